import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// qemu asks the file below whether qcow2 data sits in a hole only when the image looks
// preallocated with metadata; other data clusters stay data even over fallocated extents or past
// the end of a truncated file (iotests 102, 250, 274), and the human format leaves zeroed data out
const dir = scratch();
const ok = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
ok(['create', '-q', '-f', 'qcow2', 'falloc.qcow2', '5M']);
ok(['resize', '-q', '--preallocation=falloc', 'falloc.qcow2', '15M']);
ok(['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', 'meta.qcow2', '64M']);
assert.equal(qemuIo(['-c', 'write -P 1 1M 64k', join(dir, 'meta.qcow2')]).code, 0);
ok(['create', '-q', '-f', 'qcow2', 'cut.qcow2', '64k']);
assert.equal(qemuIo(['-c', 'write 0 64k', join(dir, 'cut.qcow2')]).code, 0);
ok(['resize', '-q', '-f', 'raw', '--shrink', 'cut.qcow2', String(5 * 65536)]);

for (const img of ['falloc.qcow2', 'meta.qcow2', 'cut.qcow2']) {
  for (const out of [[], ['--output=json']]) {
    test(`map ${out.join(' ')} ${img} matches qemu-img`, () => {
      const argv = ['map', ...out, img];
      assert.deepEqual(vdisk(argv, { cwd: dir }), qemuImg(argv, { cwd: dir }));
    });
  }
}
