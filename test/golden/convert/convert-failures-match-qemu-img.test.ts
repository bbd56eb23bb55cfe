import { test } from 'node:test';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [
  ['-O', 'raw', 'orphan.qcow2', 'o.raw'],
  ['-O', 'raw', 'dir.img', 'o.raw'],
  ['-n', '-O', 'qcow2', 'top.qcow2', 'small.qcow2'],
  ['-n', '-O', 'qcow2', 'top.qcow2', 'missing.qcow2'],
  ['-O', 'raw', 'blkdebug:eio.conf:r1.raw', 'o.raw'],
  ['-O', 'raw', '-l', 'snapshot.id=1', 'top.qcow2', 'o.raw'],
  ['-O', 'raw', '-l', 'snapshot.name=', 'top.qcow2', 'o.raw'],
]) {
  test(`convert fails as qemu-img: ${argv.join(' ')}`, () => {
    assertSameFailure(['convert', ...argv]);
  });
}
