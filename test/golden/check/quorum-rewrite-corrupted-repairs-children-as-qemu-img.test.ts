import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// a qcow2 image on a quorum of three copies, one with a damaged L2 table: reads of the metadata
// vote the damage away, rewrite-corrupted writes the winning bytes back over the damaged copy
// (the node must be writable: read-only opens refuse the option), and writes reach every copy
function setup(d: string): string {
  assert.equal(qemuImg(['create', '-f', 'qcow2', 'r0.qcow2', '1M'], { cwd: d }).code, 0);
  assert.equal(qemuIo(['-c', 'write -P 7 0 64k', join(d, 'r0.qcow2')]).code, 0);
  copyFileSync(join(d, 'r0.qcow2'), join(d, 'r1.qcow2'));
  copyFileSync(join(d, 'r0.qcow2'), join(d, 'r2.qcow2'));
  const fd = openSync(join(d, 'r1.qcow2'), 'r+');
  writeSync(fd, Buffer.from('XYZ'), 0, 3, 0x40100);
  closeSync(fd);
  return `driver=qcow2,file.driver=quorum,file.vote-threshold=2,file.rewrite-corrupted=on,${[0, 1, 2].map((i) => `file.children.${i}.driver=file,file.children.${i}.filename=${d}/r${i}.qcow2`).join(',')}`;
}

test('rewrite-corrupted repairs the outvoted child on a writable open; writes reach every child', () => {
  const a = scratch();
  const b = scratch();
  const qa = setup(a);
  const qb = setup(b);
  const clean = (r: RunResult, d: string): RunResult => ({ code: r.code, stdout: r.stdout.replace(/[0-9.]+ seconds/, 'N seconds'), stderr: r.stderr.replaceAll(d, 'D') });
  for (const argv of [
    (q: string) => ['convert', '-O', 'raw', '--image-opts', q, 'o.raw'],
    (q: string) => ['check', '-r', 'leaks', '--image-opts', q],
    (q: string) => ['bench', '-w', '-c', '1', '-s', '4k', '-o', '65536', '--image-opts', q],
  ]) {
    assert.deepEqual(clean(vdisk(argv(qb), { cwd: b }), b), clean(qemuImg(argv(qa), { cwd: a }), a), argv('Q').join(' '));
  }
  for (const n of ['r0', 'r1', 'r2']) {
    assert.ok(readFileSync(join(b, `${n}.qcow2`)).equals(readFileSync(join(a, `${n}.qcow2`))), `${n}.qcow2 as qemu-img leaves it`);
  }
});
