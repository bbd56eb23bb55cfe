import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

function dirs(): [string, string] {
  const out: string[] = [];
  for (let i = 0; i < 2; i++) {
    const d = scratch();
    qemuImg(['create', '-q', '-f', 'raw', join(d, 'r.raw'), '3M']);
    qemuIo(['-f', 'raw', '-c', 'write -P 9 1M 64k', join(d, 'r.raw')]);
    out.push(d);
  }
  return out as [string, string];
}

const cases: string[][] = [
  ['r.raw', '4M'], ['r.raw', '+1M'], ['r.raw', '-1M'], ['--shrink', 'r.raw', '-1M'], ['-f', 'raw', 'r.raw', '1000'],
  ['r.raw', 'foo'], ['r.raw'], [], ['-q', 'r.raw', '4M'], ['--preallocation=full', '-f', 'raw', 'r.raw', '5M'],
  ['--preallocation=foo', 'r.raw', '6M'], ['--preallocation=falloc', 'r.raw', '7M'],
  ['--preallocation=metadata', '-f', 'raw', 'r.raw', '8M'], ['r.raw', '--', '-1M'], ['--shrink', '-f', 'raw', 'r.raw', '1M'],
  ['r.raw', '+0'], ['nonexist', '1M'], ['--shrink', '-f', 'raw', 'r.raw', '-100M'], ['-f', 'qcow2', 'r.raw', '1M'],
  ['r.raw', '9E'], ['--bogus', 'r.raw', '1M'],
];

for (const argv of cases) {
  test(`resize matches qemu-img: ${argv.join(' ')}`, () => {
    const [a, b] = dirs();
    const want = qemuImg(['resize', ...argv], { cwd: a });
    const got = vdisk(['resize', ...argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    assert.equal(statSync(join(b, 'r.raw')).size, statSync(join(a, 'r.raw')).size);
    assert.deepEqual(readFileSync(join(b, 'r.raw')), readFileSync(join(a, 'r.raw')));
  });
}
