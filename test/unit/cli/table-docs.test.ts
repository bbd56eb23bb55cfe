import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliDoc } from '../../../dist/cli/clidoc.js';
import { helpText } from '../../../dist/cli/help.js';
import { COMMANDS } from '../../../dist/cli/table.js';
import { ROOT } from '../../helpers/oracle.ts';

test('docs/cli.md is the one generated from the command table', () => {
  assert.equal(readFileSync(join(ROOT, 'docs', 'cli.md'), 'utf8'), cliDoc(),
    'regenerate with: node dist/cli/clidoc.js > docs/cli.md');
});

test('--help lists every qemu-img command with its usage line from the table', () => {
  const help = helpText('qemu-img');
  for (const c of COMMANDS) assert.ok(help.includes(`  ${c.name} ${c.usage}\n`), c.name);
});

test('--help keeps qemu-img 7.2 command syntax lines in its order', () => {
  const names = [...helpText('qemu-img').matchAll(/^  ([a-z]+) /gm)].map((m) => m[1]);
  assert.deepEqual(names.slice(0, 15), ['amend', 'bench', 'bitmap', 'check', 'commit', 'compare', 'convert', 'create', 'dd', 'info', 'map', 'measure', 'snapshot', 'rebase', 'resize']);
});
