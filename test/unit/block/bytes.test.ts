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
