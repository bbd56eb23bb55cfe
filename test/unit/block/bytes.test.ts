import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstDifference, firstNonZero, isAllZero } from '../../../dist/block/bytes.js';

test('isAllZero sees a single nonzero byte anywhere, also past the shared 1 MiB zero buffer', () => {
  const b = new Uint8Array((3 << 20) + 5);
  assert.equal(isAllZero(b), true);
  assert.equal(isAllZero(b.subarray(0, 0)), true);
  for (const at of [0, 1, (1 << 20) - 1, 1 << 20, b.length - 1]) {
    b[at] = 7;
    assert.equal(isAllZero(b), false, `byte ${at}`);
    assert.equal(firstNonZero(b), at);
    b[at] = 0;
  }
  assert.equal(firstNonZero(b), -1);
});

test('firstDifference gives the first differing index within the common length, -1 when equal', () => {
  const a = new Uint8Array(5000).fill(3);
  const b = new Uint8Array(6000).fill(3);
  assert.equal(firstDifference(a, b), -1);
  b[4321] = 4;
  b[4500] = 5;
  assert.equal(firstDifference(a, b), 4321);
  b[5500] = 9; // past a's end: not compared
  b[4321] = 3;
  b[4500] = 3;
  assert.equal(firstDifference(a, b), -1);
});

test('isZeroRange tests exactly [start, end), at every alignment and across the 1 MiB zero buffer', async () => {
  const { isZeroRange } = await import('../../../dist/block/bytes.js');
  const b = new Uint8Array((2 << 20) + 64);
  assert.equal(isZeroRange(b, 0, b.length), true);
  assert.equal(isZeroRange(b, 5, 5), true);
  for (const at of [0, 1, 7, 8, 63, 4095, 4096, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, b.length - 1]) {
    b[at] = 1;
    for (let s = Math.max(0, at - 9); s <= at; s++) assert.equal(isZeroRange(b, s, at + 1), false, `[${s}, ${at + 1})`);
    assert.equal(isZeroRange(b, 0, at), true, `[0, ${at})`);
    assert.equal(isZeroRange(b, at + 1, b.length), true, `[${at + 1}, end)`);
    assert.equal(isZeroRange(b, 0, b.length), false);
    b[at] = 0;
  }
});
