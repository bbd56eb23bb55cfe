import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';
import { PREALLOC_BATCH_BYTES } from '../../../dist/formats/qcow2/resize.js';

// 512-byte clusters: an L2 table maps 64 clusters (32 KiB), so 300 MiB needs 9600 new tables,
// more than one batch of PREALLOC_BATCH_BYTES / 512 tables, and the refcount table moves several
// times on the way. vdisk used to hand the clusters of the moved table to guest data without
// clearing them: the image passed qemu-img check but read old refcount entries at 16 MiB.
test('metadata preallocation over several table batches allocates every cluster, and clusters of a moved refcount table read as zeros', () => {
  const tables = (300 << 20) / (64 * 512);
  assert.ok(tables > PREALLOC_BATCH_BYTES / 512, 'the image spans more than one batch');
  const d = scratch();
  const c = vdisk(['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=512', 'x.qcow2', '300M'], { cwd: d });
  assert.equal(c.code, 0, c.stderr);
  const check = qemuImg(['check', '--output=json', join(d, 'x.qcow2')]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const r = JSON.parse(check.stdout) as Record<string, number>;
  assert.equal(r['allocated-clusters'], r['total-clusters']);
  assert.equal(r['total-clusters'], (300 << 20) / 512);
  qemuImg(['create', '-q', '-f', 'raw', join(d, 'zero.raw'), '300M']);
  const cmp = qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', join(d, 'x.qcow2'), join(d, 'zero.raw')]);
  assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
});
