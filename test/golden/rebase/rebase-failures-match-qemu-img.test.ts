import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg } from '../../helpers/oracle.ts';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [
  ['-b', 'base.qcow2', '-F', 'qcow2', 'orphan.qcow2'],
  ['-b', 'missing.qcow2', '-F', 'qcow2', 'top.qcow2'],
  ['-u', '-b', 'missing.qcow2', '-F', 'qcow2', 'orphan.qcow2'],
  ['-b', 'small.qcow2', '-F', 'qcow2', 'top.qcow2'],
  ['-b', 'dir.img', '-F', 'raw', 'top.qcow2'],
]) {
  test(`rebase matches qemu-img on missing, smaller or bad backing files: ${argv.join(' ')}`, () => {
    const { a, b } = assertSameFailure(['rebase', ...argv]);
    const img = argv[argv.length - 1]!;
    assert.equal(qemuImg(['compare', '-U', join(a, img), join(b, img)]).stdout, qemuImg(['compare', '-U', join(a, img), join(a, img)]).stdout);
  });
}
