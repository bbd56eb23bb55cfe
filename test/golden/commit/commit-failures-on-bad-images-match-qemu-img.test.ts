import { test } from 'node:test';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [['orphan.qcow2'], ['dir.img'], ['small.qcow2'], ['-b', 'gone.qcow2', 'orphan.qcow2']]) {
  test(`commit fails as qemu-img: ${argv.join(' ')}`, () => {
    assertSameFailure(['commit', ...argv]);
  });
}
