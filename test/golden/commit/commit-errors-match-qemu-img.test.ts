import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, vdisk } from '../../helpers/oracle.ts';
import { makeChain } from '../../interop/chains/chain.ts';

const cases: string[][] = [
  ['base.raw'], ['-b', 'nope', 'top.qcow2'], ['-b', 'top.qcow2', 'top.qcow2'], ['-r', 'x', 'top.qcow2'],
  ['-r', '-1', 'top.qcow2'], [], ['top.qcow2', 'mid.qcow2'], ['missing.qcow2'], ['--bogus', 'top.qcow2'],
  ['-f', 'raw', 'top.qcow2'], ['--image-opts', '-f', 'qcow2', 'top.qcow2'],
];

for (const argv of cases) {
  test(`commit prints what qemu-img prints: ${argv.join(' ')}`, () => {
    const a = makeChain('raw');
    const b = makeChain('raw');
    const want = qemuImg(['commit', ...argv], { cwd: a });
    const got = vdisk(['commit', ...argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}
