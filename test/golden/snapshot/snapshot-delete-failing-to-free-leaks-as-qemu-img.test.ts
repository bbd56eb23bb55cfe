import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// an I/O error once clusters start being freed (blkdebug's cluster_free event): the snapshot is
// already gone from the table, qemu-img reports the failed free and the failed L1 walk, and the
// image is left with leaks only (iotest 217)
function run(tool: typeof vdisk, d: string): { r: RunResult; check: RunResult; list: RunResult } {
  assert.equal(qemuImg(['create', '-f', 'qcow2', 't.qcow2', '64M'], { cwd: d }).code, 0);
  assert.equal(qemuIo(['-c', 'write 0 64k', join(d, 't.qcow2')]).code, 0);
  assert.equal(qemuImg(['snapshot', '-c', 'foo', 't.qcow2'], { cwd: d }).code, 0);
  writeFileSync(join(d, 'bd.conf'), '[inject-error]\nevent = "cluster_free"\nerrno = "5"\n');
  const r = tool(['snapshot', '-d', 'foo', 'blkdebug:bd.conf:t.qcow2'], { cwd: d });
  return { r, list: qemuImg(['snapshot', '-l', 't.qcow2'], { cwd: d }), check: qemuImg(['check', 't.qcow2'], { cwd: d }) };
}

test('snapshot -d that fails while freeing clusters reports and leaks as qemu-img does', () => {
  const want = run(qemuImg, scratch());
  const got = run(vdisk, scratch());
  assert.deepEqual(got, want);
  assert.equal(want.check.code, 3);
});
