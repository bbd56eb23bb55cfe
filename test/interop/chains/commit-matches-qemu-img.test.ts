import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, vdisk } from '../../helpers/oracle.ts';
import { assertSameImages, makeChain, type BaseFormat } from './chain.ts';

const cases: Array<{ base: BaseFormat; argv: string[] }> = [
  { base: 'raw', argv: ['-d', 'top.qcow2'] },
  { base: 'raw', argv: ['top.qcow2'] },
  { base: 'qcow2', argv: ['top.qcow2'] },
  { base: 'qcow2', argv: ['-q', '-d', 'top.qcow2'] },
  { base: 'raw', argv: ['-b', 'base.raw', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'base.qcow2', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'mid.qcow2', 'top.qcow2'] },
  { base: 'qcow2', argv: ['mid.qcow2'] },
  { base: 'raw', argv: ['-f', 'qcow2', '-t', 'none', 'mid.qcow2'] },
];

for (const c of cases) {
  test(`commit into a ${c.base} base leaves the same images as qemu-img: ${c.argv.join(' ')}`, async () => {
    const a = makeChain(c.base);
    const b = makeChain(c.base);
    const want = qemuImg(['commit', ...c.argv], { cwd: a });
    const got = vdisk(['commit', ...c.argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    await assertSameImages(a, b, c.base);
  });
}
