import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// resize opens the whole chain as qemu-img does: a missing backing file fails, and growing an
// overlay whose backing file reaches past the old end writes the new area as zeros so old backing
// data (or the stale tail of a cut cluster) does not show through
function pair(extL2: string): string {
  const d = scratch();
  const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: d }).code, 0);
  q(['create', '-q', '-f', 'qcow2', '-o', `extended_l2=${extL2}`, 'base.qcow2', '1M']);
  assert.equal(qemuIo(['-c', 'write -P 0x11 0 1M', join(d, 'base.qcow2')]).code, 0);
  q(['create', '-q', '-f', 'qcow2', '-o', `extended_l2=${extL2}`, '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2']);
  assert.equal(qemuIo(['-c', 'write -P 0x22 0 1M', join(d, 't.qcow2')]).code, 0);
  return d;
}

for (const extL2 of ['off', 'on']) {
  test(`shrink then grow over a longer backing file matches qemu-img (extended_l2=${extL2})`, () => {
    const a = pair(extL2);
    const b = pair(extL2);
    for (const argv of [['resize', '--shrink', 't.qcow2', '520k'], ['resize', 't.qcow2', '567k'], ['resize', 't.qcow2', '3M']]) {
      assert.deepEqual(vdisk(argv, { cwd: b }), qemuImg(argv, { cwd: a }), argv.join(' '));
    }
    for (const argv of [['map', '--output=json', 't.qcow2'], ['check', 't.qcow2'], ['compare', 't.qcow2', join(a, 't.qcow2')]]) {
      assert.deepEqual(qemuImg(argv, { cwd: b }), qemuImg(argv, { cwd: a }), argv.join(' '));
    }
  });
}

test('resize of an overlay whose backing file is missing fails as in qemu-img', () => {
  const d = scratch();
  qemuImg(['create', '-q', '-f', 'qcow2', 'gone.qcow2', '1M'], { cwd: d });
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'gone.qcow2', '-F', 'qcow2', 'x.qcow2'], { cwd: d });
  copyFileSync(join(d, 'x.qcow2'), join(d, 'y.qcow2'));
  rmSync(join(d, 'gone.qcow2'));
  const want = qemuImg(['resize', 'y.qcow2', '2M'], { cwd: d });
  assert.notEqual(want.code, 0);
  assert.deepEqual(vdisk(['resize', 'x.qcow2', '2M'], { cwd: d }), { ...want, stderr: want.stderr.replaceAll('y.qcow2', 'x.qcow2') });
});
