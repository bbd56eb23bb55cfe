import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// qemu-img commit is an active mirror with unmap: ranges the overlay zeroes free the base's
// clusters (zero flag in v3, unallocated in v2 without backing) instead of keeping them allocated
function chain(compat: string, baseHasBacking: boolean): string {
  const d = scratch();
  const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: d }).code, 0);
  const io = (cmds: string[], f: string): void => assert.equal(qemuIo([...cmds.flatMap((c) => ['-c', c]), join(d, f)]).code, 0);
  const o = `compat=${compat},cluster_size=4096`;
  if (baseHasBacking) {
    q(['create', '-q', '-f', 'qcow2', '-o', o, 'bb.qcow2', '4M']);
    io(['write -P 3 0 4M'], 'bb.qcow2');
    q(['create', '-q', '-f', 'qcow2', '-o', o, '-b', 'bb.qcow2', '-F', 'qcow2', 'base.qcow2']);
  } else {
    q(['create', '-q', '-f', 'qcow2', '-o', o, 'base.qcow2', '4M']);
  }
  io(['write -P 1 0 4M'], 'base.qcow2');
  q(['create', '-q', '-f', 'qcow2', '-o', o, '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
  io(['write -z 0 1M', 'write -z 1026k 3k', 'write -P 2 2M 6k', 'discard 3M 64k'], 'top.qcow2');
  return d;
}

for (const compat of ['1.1', '0.10']) {
  for (const baseHasBacking of [false, true]) {
    test(`commit of zeroed ranges leaves the base as qemu-img does (compat=${compat}${baseHasBacking ? ', base with backing' : ''})`, () => {
      const a = chain(compat, baseHasBacking);
      const b = chain(compat, baseHasBacking);
      assert.deepEqual(vdisk(['commit', 'top.qcow2'], { cwd: b }), qemuImg(['commit', 'top.qcow2'], { cwd: a }));
      for (const argv of [['map', '--output=json', 'base.qcow2'], ['check', 'base.qcow2']]) {
        assert.deepEqual(qemuImg(argv, { cwd: b }), qemuImg(argv, { cwd: a }), argv.join(' '));
      }
    });
  }
}
