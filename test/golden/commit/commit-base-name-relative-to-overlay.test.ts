/** commit -b names the base relative to the overlay's directory, as qemu-img resolves it (iotest 020). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

function chain(): string {
  const d = scratch();
  mkdirSync(join(d, 'subdir'));
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 'subdir/b.qcow2', '1M'], { cwd: d }).code, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'subdir/m.qcow2'], { cwd: d }).code, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'm.qcow2', '-F', 'qcow2', 'subdir/t.qcow2'], { cwd: d }).code, 0);
  return d;
}

for (const base of ['m.qcow2', 'subdir/m.qcow2', 'ABS/subdir/m.qcow2', 'b.qcow2', 'subdir/b.qcow2']) {
  test(`commit -b ${base} subdir/t.qcow2 matches qemu-img`, () => {
    const a = chain();
    const b = chain();
    const want = qemuImg(['commit', '-b', base.replace('ABS', a), 'subdir/t.qcow2'], { cwd: a });
    const got = vdisk(['commit', '-b', base.replace('ABS', b), 'subdir/t.qcow2'], { cwd: b });
    assert.deepEqual(got, { ...want, stderr: want.stderr.replaceAll(a, b) });
  });
}
