import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// a quorum is data where any child has data and zero where all children read zero (iotest 312's
// empty quorum maps to nothing)
function setup(d: string): void {
  for (const n of ['0', '1', '2']) assert.equal(qemuImg(['create', '-f', 'qcow2', `t.qcow2.${n}`, '10M'], { cwd: d }).code, 0);
  for (const n of ['r0', 'r1']) assert.equal(qemuImg(['create', '-f', 'raw', `${n}.raw`, '1M'], { cwd: d }).code, 0);
  const fd = openSync(join(d, 'r1.raw'), 'r+');
  writeSync(fd, Buffer.from('abc'), 0, 3, 70000);
  closeSync(fd);
}

test('map over a quorum matches qemu-img', () => {
  const a = scratch();
  const b = scratch();
  setup(a);
  setup(b);
  const q = (d: string): string => `driver=raw,file.driver=quorum,file.vote-threshold=2,${[0, 1, 2].map((i) => `file.children.${i}.driver=qcow2,file.children.${i}.file.filename=${d}/t.qcow2.${i}`).join(',')}`;
  const r = (d: string): string => `driver=raw,file.driver=quorum,file.vote-threshold=1,${['r0', 'r1'].map((n, i) => `file.children.${i}.driver=file,file.children.${i}.filename=${d}/${n}.raw`).join(',')}`;
  const clean = (x: RunResult, d: string): RunResult => ({ code: x.code, stdout: x.stdout.replaceAll(d, 'D'), stderr: x.stderr.replaceAll(d, 'D') });
  for (const [name, args] of [['qcow2 children', q], ['raw children', r]] as const) {
    for (const out of ['human', 'json']) {
      const argv = (d: string): string[] => ['map', `--output=${out}`, '--image-opts', args(d)];
      assert.deepEqual(clean(vdisk(argv(b), { cwd: b }), b), clean(qemuImg(argv(a), { cwd: a }), a), `${name} ${out}`);
    }
  }
});
