import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// iotest 274: growing an overlay over a backing file that reaches past its old end. falloc/full
// preallocation leaves the new clusters as (zeroed) data, as qemu does, instead of zero-flagging
// them; without preallocation the partial last cluster at the new end is zero-flagged too
const cases: Array<[prealloc: string, base: string, oldSize: string, newSize: string, dataAt: string]> = [
  ['off', '512k', '256k', '500k', '436k'],
  ['off', '384k', '253k', '512k', '253k'],
  ['falloc', '10M', '5M', '15M', '9M'],
  ['full', '16M', '8M', '12M', '11M'],
];

function chain(base: string, oldSize: string, dataAt: string): string {
  const d = scratch();
  const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: d }).code, 0);
  q(['create', '-q', '-f', 'qcow2', 'base.qcow2', base]);
  q(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 't.qcow2', oldSize]);
  assert.equal(qemuIo(['-c', `write -P 1 ${dataAt} 64k`, join(d, 'base.qcow2')]).code, 0);
  return d;
}

for (const [prealloc, base, oldSize, newSize, dataAt] of cases) {
  test(`resize --preallocation=${prealloc} ${oldSize} -> ${newSize} over a ${base} backing file matches qemu-img`, () => {
    const a = chain(base, oldSize, dataAt);
    const b = chain(base, oldSize, dataAt);
    const argv = ['resize', `--preallocation=${prealloc}`, 't.qcow2', newSize];
    assert.deepEqual(vdisk(argv, { cwd: b }), qemuImg(argv, { cwd: a }));
    for (const check of [['map', '--output=json', 't.qcow2'], ['check', 't.qcow2'], ['compare', 't.qcow2', join(a, 't.qcow2')]]) {
      assert.deepEqual(qemuImg(check, { cwd: b }), qemuImg(check, { cwd: a }), check.join(' '));
    }
  });
}
