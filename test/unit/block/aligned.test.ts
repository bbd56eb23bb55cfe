import { test } from 'node:test';
import assert from 'node:assert/strict';
import { IO_ALIGNMENT, alignedBuffer, alignedBuffers } from '../../../dist/block/aligned.js';

test('aligned buffers are zeroed, of the size asked, page-aligned in their mapping and disjoint', () => {
  const bufs = alignedBuffers(3, 5000);
  assert.equal(bufs.length, 3);
  for (const b of bufs) {
    assert.equal(b.length, 5000);
    assert.equal(b.byteOffset % IO_ALIGNMENT, 0);
    assert.ok(b.every((x) => x === 0));
  }
  // one mapping, no overlap: writing one leaves the others zero
  bufs[1]!.fill(0xff);
  assert.equal(bufs[0]!.buffer, bufs[1]!.buffer);
  assert.ok(bufs[0]!.every((x) => x === 0));
  assert.ok(bufs[2]!.every((x) => x === 0));
});

test('the mapping is a WebAssembly memory (its own mapping, so it starts on a page)', () => {
  const b = alignedBuffer(2 << 20);
  assert.equal(b.length, 2 << 20);
  assert.equal(b.buffer.byteLength % 65536, 0);
  assert.equal(b.byteOffset, 0);
});

test('no buffers, or empty ones, when asked for none', () => {
  assert.deepEqual(alignedBuffers(2, 0).map((b) => b.length), [0, 0]);
  assert.deepEqual(alignedBuffers(0, 4096), []);
});
