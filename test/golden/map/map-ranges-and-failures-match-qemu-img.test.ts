import { test } from 'node:test';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [
  ['orphan.qcow2'], ['dir.img'], ['--start-offset=5M', 'top.qcow2'], ['--max-length=0', 'top.qcow2'],
  ['--output=json', '--max-length=0', 'top.qcow2'], ['--output=json', '--start-offset=1000', '--max-length=1', 'top.qcow2'],
  ['--output=json', '--start-offset=1M', '--max-length=1', 'top.qcow2'], ['--start-offset=-1', 'top.qcow2'],
  ['--output=json', '--start-offset=4M', 'top.qcow2'], ['--output=json', '--start-offset=1M', '--max-length=128k', 'top.qcow2'],
  ['--start-offset=1m', '--max-length=1.5M', 'top.qcow2'], ['--max-length=foo', 'top.qcow2'],
  ['--output=json', 'blkdebug:eio.conf:r1.raw'],
]) {
  test(`map matches qemu-img: ${argv.join(' ')}`, () => {
    assertSameFailure(['map', ...argv]);
  });
}
