import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, vdisk } from '../../helpers/oracle.ts';
import { assertSameImages, makeChain, type BaseFormat } from './chain.ts';

function withOther(base: BaseFormat): string {
  const d = makeChain(base);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(d, 'other.qcow2'), '2M']).code, 0);
  assert.equal(qemuIo(['-c', 'write -P 0x55 0 1M', join(d, 'other.qcow2')]).code, 0);
  return d;
}

const cases: Array<{ base: BaseFormat; argv: string[] }> = [
  { base: 'raw', argv: ['-u', '-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-u', '-b', '', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-u', 'top.qcow2'] },
  { base: 'raw', argv: ['-b', '', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', '', 'mid.qcow2'] },
  { base: 'raw', argv: ['-b', 'base.raw', '-F', 'raw', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'other.qcow2', '-F', 'qcow2', 'top.qcow2'] },
  { base: 'raw', argv: ['-b', 'other.qcow2', 'top.qcow2'] },
  { base: 'raw', argv: ['-u', '-b', 'other.qcow2', 'top.qcow2'] },
  { base: 'raw', argv: ['-b', 'nonexist', '-F', 'qcow2', 'top.qcow2'] },
  { base: 'raw', argv: ['-u', '-b', 'x', '-F', 'bogus', 'top.qcow2'] },
  { base: 'raw', argv: ['top.qcow2'] },
  { base: 'raw', argv: ['-u', '-b', 'x', '-F', 'raw', 'base.raw'] },
  { base: 'qcow2', argv: ['-u', '-b', './other.qcow2', '-F', 'qcow2', 'top.qcow2'] },
];

for (const c of cases) {
  test(`rebase on a ${c.base} base leaves the same images and header as qemu-img: ${c.argv.join(' ')}`, async () => {
    const a = withOther(c.base);
    const b = withOther(c.base);
    const want = qemuImg(['rebase', ...c.argv], { cwd: a });
    const got = vdisk(['rebase', ...c.argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    await assertSameImages(a, b, c.base);
    // the header cluster (header, extensions, backing name) is rewritten byte for byte as qemu does
    const head = (d: string): Buffer => readFileSync(join(d, 'top.qcow2')).subarray(0, 4096);
    assert.deepEqual(head(b), head(a));
  });
}
