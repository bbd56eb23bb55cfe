/**
 * Regression (found by the crash test): discarding clusters whose L2 table does not exist yet left
 * them unallocated, so the backing file showed through; qemu allocates the L2 table and sets the
 * zero flag, so the discarded range reads as zeros. Same image, same discard, same map.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openImage } from '../../../dist/block/open.js';
import { qemuImg, qemuIo, scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-discard-l2-');

function overlay(name: string, opts: string): string {
  const back = join(dir, `${name}.raw`);
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', back, '1M']).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 0x55 0 1M', back]).code, 0);
  const f = join(dir, `${name}.qcow2`);
  const r = qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts, '-b', back, '-F', 'raw', f, '1M']);
  assert.equal(r.code, 0, r.stderr);
  return f;
}

for (const opts of ['cluster_size=65536', 'cluster_size=16384,extended_l2=on']) {
  test(`discard of clusters without an L2 table reads as zeros over a backing file, as in qemu (${opts})`, async () => {
    const ours = overlay('vdisk', opts);
    const theirs = overlay('qemu', opts);
    const img = await openImage(ours, { readOnly: false });
    await img.discard(0, 65536);
    await img.close();
    assert.equal(qemuIo(['-c', 'discard 0 64k', theirs]).code, 0);
    const read = qemuIo(['-c', 'read -P 0 0 64k', '-c', 'read -P 0x55 64k 960k', ours]);
    assert.doesNotMatch(read.stdout, /Pattern verification failed/, read.stdout);
    const map = (f: string): string => qemuImg(['map', '--output=json', f]).stdout;
    assert.equal(map(ours), map(theirs));
    const check = qemuImg(['check', ours]);
    assert.equal(check.code, 0, check.stdout);
  });
}
