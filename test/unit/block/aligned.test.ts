import { test } from 'node:test';
import assert from 'node:assert/strict';
import { alignedBuffers, IO_ALIGNMENT } from '../../../dist/block/aligned.js';

test('alignedBuffers gives separate zeroed buffers of the size asked, each at a page multiple of its memory', () => {
  const bufs = alignedBuffers(3, (2 << 20) + 100);
  assert.equal(bufs.length, 3);
  for (const [i, b] of bufs.entries()) {
    assert.equal(b.length, (2 << 20) + 100);
    assert.equal(b.byteOffset % IO_ALIGNMENT, 0);
    assert.ok(b.every((x) => x === 0));
    b.fill(i + 1);
  }
  // no buffer runs into the next one
  for (const [i, b] of bufs.entries()) assert.ok(b.every((x) => x === i + 1), `buffer ${i}`);
});

test('alignedBuffers of nothing is an empty list', () => {
  assert.deepEqual(alignedBuffers(0, 4096), []);
});
