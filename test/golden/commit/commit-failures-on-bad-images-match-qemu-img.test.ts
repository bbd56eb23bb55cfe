import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';
import { assertSameFailure } from '../failure-fixture.ts';

for (const argv of [['orphan.qcow2'], ['dir.img'], ['small.qcow2'], ['-b', 'gone.qcow2', 'orphan.qcow2']]) {
  test(`commit fails as qemu-img: ${argv.join(' ')}`, () => {
    assertSameFailure(['commit', ...argv]);
  });
}

test('commit into a backing file whose writes fail ends as qemu-img\'s block job (json: backing over blkdebug)', () => {
  const backing = "json:{'driver': 'qcow2', 'file': {'driver': 'blkdebug', 'inject-error': [{'event': 'write_aio', 'errno': 28, 'once': true}], 'image': {'driver': 'file', 'filename': 'base.qcow2'}}}";
  const results = [];
  for (const run of [qemuImg, vdisk]) {
    const d = scratch();
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 'base.qcow2', '1M'], { cwd: d }).code, 0);
    const created = run(['create', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', 'top.qcow2'], { cwd: d });
    assert.equal(qemuIo(['-c', 'write 0 64k', 'top.qcow2'], { cwd: d }).code, 0);
    results.push({ created, committed: run(['commit', 'top.qcow2'], { cwd: d }) });
  }
  assert.deepEqual(results[1], results[0]);
});
