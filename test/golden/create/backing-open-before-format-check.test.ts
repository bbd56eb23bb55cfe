import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// qemu-img create opens the backing image before it looks for -F (unless -u): an open error wins,
// and the probed format comes as a hint without a final newline
const dir = scratch();
assert.equal(qemuImg(['create', '-q', '-f', 'raw', 'base.raw', '1M'], { cwd: dir }).code, 0);
const cases = [
  '-b nonexist x.qcow2 1M', '-b nonexist x.qcow2', '-u -b nonexist x.qcow2 1M', '-u -b nonexist x.qcow2',
  '-b base.raw x.qcow2 1M', '-u -b base.raw x.qcow2 1M', '-u -b base.raw x.qcow2', '-b base.raw x.qcow2',
  '-b base.raw -F qcow2 x.qcow2', '-u -b base.raw -F qcow2 x.qcow2', '-b nonexist -F raw x.qcow2',
];
for (const c of cases) {
  test(`create -f qcow2 ${c} matches qemu-img`, () => {
    const args = ['create', '-f', 'qcow2', ...c.split(' ')];
    assert.deepEqual(vdisk(args, { cwd: dir }), qemuImg(args, { cwd: dir }));
  });
}
