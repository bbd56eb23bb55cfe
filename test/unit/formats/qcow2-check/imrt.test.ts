/**
 * The in-memory refcount table of a qcow2 check: compact counters per refcount width, qemu's
 * allocation order for rebuilt structures, refcount blocks laid out as on disk, and the memory
 * limit with its own error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Imrt, counterBytes, maxCheckClusters, MAX_CHECK_COUNTER_BYTES } from '../../../../dist/formats/qcow2/check-imrt.js';
import { getRefcountEntry } from '../../../../dist/formats/qcow2/refcount.js';
import { VdiskError } from '../../../../dist/block/errors.js';

test('counters take one byte up to 8-bit refcounts, two for 16-bit, four above', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map(counterBytes), [1, 1, 1, 1, 2, 4, 4]);
  assert.equal(maxCheckClusters(4), MAX_CHECK_COUNTER_BYTES / 2);
});

test('each counter saturates at the largest refcount the width holds', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((o) => new Imrt(o, 4, 'x').max), [1, 3, 15, 255, 65535, 0xffffffff]);
});

test('allocation takes the first run of free clusters and remembers the first gap it saw', () => {
  const t = new Imrt(4, 10, 'x');
  for (const k of [0, 1, 3, 6, 7]) t.set(k, 1);
  const from = { value: 0 };
  // clusters 4-5 are the first two free in a row; cluster 2 was the first gap
  assert.equal(t.allocate(2, from), 4);
  assert.equal(from.value, 2);
  assert.equal(t.get(4), 1);
  assert.equal(t.get(5), 1);
  assert.equal(t.allocate(1, from), 2);
});

test('allocation past the end grows the table and keeps free clusters at its end', () => {
  const t = new Imrt(4, 4, 'x');
  t.set(0, 1);
  t.set(1, 1);
  t.set(2, 1);
  assert.equal(t.allocate(3, { value: 0 }), 3);
  assert.equal(t.size, 6);
  assert.deepEqual([3, 4, 5].map((k) => t.get(k)), [1, 1, 1]);
});

for (const order of [0, 1, 2, 3, 4, 5, 6]) {
  test(`a refcount block of ${1 << order}-bit entries reads back through the on-disk decoder`, () => {
    const clusterBits = 9;
    const per = 2 ** (clusterBits + 3 - order);
    const t = new Imrt(order, per * 2, 'x');
    const max = Math.min(t.max, 1000);
    for (let k = per; k < per * 2; k += 3) t.set(k, Math.min(max, (k % max) + 1));
    const block = t.refblock(1, clusterBits);
    assert.equal(block.length, 512);
    for (let i = 0; i < per; i++) assert.equal(getRefcountEntry(block, i, order), t.get(per + i), `entry ${i}`);
  });
}

test('a table larger than the memory limit is refused with a limit error naming the file', () => {
  assert.throws(() => new Imrt(4, maxCheckClusters(4) + 1, 'big.qcow2'), (e: unknown) =>
    e instanceof VdiskError && e.kind === 'limit' && e.code === 'QCOW2_CHECK_TOO_BIG' && e.context.path === 'big.qcow2' && /^File too large/.test(e.message));
  const t = new Imrt(3, 1, 'x');
  assert.throws(() => t.grow(maxCheckClusters(3) + 1), (e: unknown) => e instanceof VdiskError && e.code === 'QCOW2_CHECK_TOO_BIG');
});
