/**
 * docs/cli.md is generated from the command table, so the documented syntax cannot drift from what
 * `--help` prints (a unit test regenerates it and compares). Run: node dist/cli/clidoc.js > docs/cli.md
 */
import { COMMANDS } from './table.js';
import { pathToFileURL } from 'node:url';

export function cliDoc(): string {
  let s = '# vdisk command line\n\n';
  s += 'Generated from `src/cli/table.ts` by `node dist/cli/clidoc.js > docs/cli.md`; do not edit by hand.\n\n';
  s += 'vdisk accepts qemu-img 7.2 command lines. Invoked through a symlink named `qemu-img`, it prints\n';
  s += '`qemu-img: ` before its messages, so it can replace qemu-img in scripts and in QEMU\'s test suite.\n\n';
  s += '| command | syntax |\n| --- | --- |\n';
  for (const c of COMMANDS) s += `| ${c.name} | \`${c.name} ${c.usage.replace(/\|/g, '\\|')}\` |\n`;
  return s;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) process.stdout.write(cliDoc());
