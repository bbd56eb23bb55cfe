import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../helpers/oracle.ts';

// Regression (found by qemu-iotests 013): data runs that start or end inside a cluster were sent
// to the compressed writer as partial clusters, and the converted image read zeros there.
test('convert -c keeps data whose runs start and end inside clusters', () => {
  const d = scratch();
  qemuImg(['create', '-q', '-f', 'qcow2', join(d, 'orig.qcow2'), '64M']);
  for (const off of [0, 65000, 1000000, 6285312, 8384512]) {
    qemuIo(['-f', 'qcow2', '-c', `write -P 7 ${off} 12288`, join(d, 'orig.qcow2')]);
  }
  qemuImg(['convert', '-O', 'raw', join(d, 'orig.qcow2'), join(d, 'orig.raw')]);
  for (const [src, fmt] of [['orig.qcow2', 'qcow2'], ['orig.raw', 'raw']] as const) {
    const out = join(d, `c-${fmt}.qcow2`);
    const r = vdisk(['convert', '-f', fmt, '-O', 'qcow2', '-c', src, out], { cwd: d });
    assert.equal(r.code, 0, r.stderr);
    const cmp = qemuImg(['compare', '-f', fmt, '-F', 'qcow2', join(d, src), out]);
    assert.equal(cmp.stdout, 'Images are identical.\n', src);
    assert.equal(qemuImg(['check', out]).code, 0);
  }
});
