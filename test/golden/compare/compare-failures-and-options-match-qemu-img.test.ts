import { test } from 'node:test';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [
  ['orphan.qcow2', 'r1.raw'], ['dir.img', 'r1.raw'], ['r1.raw', 'dir.img'],
  ['-f', 'raw', '-F', 'raw', 'r1.raw', 'top.qcow2'], ['-U', 'top.qcow2', 'top.qcow2'],
  ['-s', '-f', 'qcow2', '-F', 'raw', 'top.qcow2', 'r1.raw'], ['-s', 'top.qcow2', 'base.qcow2'],
  ['-F', 'qcow2', 'top.qcow2', 'top.qcow2'], ['blkdebug:eio.conf:r1.raw', 'r1.raw'],
  ['-q', 'blkdebug:eio.conf:r1.raw', 'r1.raw'], ['small.qcow2', 'r1.raw'], ['-s', 'small.qcow2', 'r1.raw'],
]) {
  test(`compare matches qemu-img: ${argv.join(' ')}`, () => {
    assertSameFailure(['compare', ...argv]);
  });
}
