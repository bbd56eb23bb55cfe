import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

function dirs(): [string, string] {
  const out: string[] = [];
  for (let i = 0; i < 2; i++) {
    const d = scratch();
    qemuImg(['create', '-q', '-f', 'raw', join(d, 'sp.raw'), '8M']);
    qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 4M 512k', '-c', 'write -P 3 7M 3k', join(d, 'sp.raw')]);
    out.push(d);
  }
  return out as [string, string];
}

const cases: string[][] = [
  ['if=sp.raw', 'of=o.raw'], ['if=sp.raw', 'of=o.raw', 'bs=1M', 'count=2'], ['if=sp.raw', 'of=o.raw', 'bs=1M', 'skip=4', 'count=3'],
  ['if=sp.raw', 'of=o.raw', 'bs=1M', 'skip=4'], ['-f', 'raw', 'if=sp.raw', 'of=o.raw', 'bs=64k', 'skip=7', 'count=100'],
  ['if=sp.raw'], ['of=o.raw'], ['if=sp.raw', 'of=o.raw', 'bs=0'], ['if=sp.raw', 'of=o.raw', 'bs=foo'],
  ['if=sp.raw', 'of=o.raw', 'count=foo'], ['if=sp.raw', 'of=o.raw', 'foo=bar'], ['if=sp.raw', 'of=o.raw', 'bs=3', 'count=5000'],
  ['if=nonexist', 'of=o.raw'], ['if=sp.raw', 'of=o.raw', 'skip=100000000'], ['if=sp.raw', 'of=o.raw', 'bs=512', 'count=1', 'skip=1'],
  ['-f', 'raw', 'if=sp.raw', 'of=o.raw', 'bs=1k', 'count=1', 'count=2'], ['if=sp.raw', 'of=o.raw', 'count=-1'],
  ['-O', 'foo', 'if=sp.raw', 'of=o.raw'],
];

for (const argv of cases) {
  test(`dd matches qemu-img: ${argv.join(' ')}`, () => {
    const [a, b] = dirs();
    const want = qemuImg(['dd', ...argv], { cwd: a });
    const got = vdisk(['dd', ...argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    assert.equal(existsSync(join(b, 'o.raw')), existsSync(join(a, 'o.raw')));
    if (existsSync(join(a, 'o.raw'))) assert.deepEqual(readFileSync(join(b, 'o.raw')), readFileSync(join(a, 'o.raw')));
  });
}
