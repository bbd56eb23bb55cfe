/**
 * Process entry: program name, global options (-h, -V, -T), command dispatch, exit code.
 * Nothing heavy is imported here: commands and formats load on demand.
 */
import { basename } from 'node:path';
import { makeCli, type Cli } from './context.js';
import { findCommand } from './table.js';

/** The basename the program was invoked as; bin/vdisk passes it in VDISK_ARGV0. */
export function programName(): string {
  const argv0 = process.env['VDISK_ARGV0'] ?? process.argv[1] ?? 'vdisk';
  const base = basename(argv0).replace(/\.(c?m?js)$/, '');
  return base === 'cli' || base === 'main' || base === '' ? 'vdisk' : base;
}

export async function main(argv: string[], cli: Cli = makeCli(programName())): Promise<number> {
  let i = 0;
  // Global options before the command (qemu-img: -h, -V, -T trace; getopt with "+" stops at the command).
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      cli.out((await import('./help.js')).helpText(cli.prog));
      return 0;
    }
    if (a === '-V' || a === '--version') {
      cli.out((await import('./help.js')).versionText(cli.prog) + 'Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n');
      return 0;
    }
    if (a === '-T' || a === '--trace') {
      i++; // tracing is accepted and ignored: vdisk has no trace events
      continue;
    }
    if (a.startsWith('--trace=') || (a.startsWith('-T') && a.length > 2)) continue;
    if (a.startsWith('-') && a !== '-') return cli.usageError(`unrecognized option '${a}'`);
    break;
  }
  const name = argv[i];
  if (name === undefined) return cli.usageError('Not enough arguments');
  const entry = findCommand(name);
  if (!entry) return cli.usageError(`Command not found: ${name}`);
  const run = await entry.load();
  return run(argv.slice(i + 1), cli);
}
