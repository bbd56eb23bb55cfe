import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HEADER_FIELDS, SLOT_FIELDS, LUKS_HEADER_BYTES, LUKS_SLOTS_OFFSET, LUKS_SLOT_BYTES, fieldBytes, decodeLuksHeader,
  encodeLuksHeader, LUKS_MAGIC, SLOT_ACTIVE, SLOT_DISABLED,
} from '../../../../dist/crypto/luks/header.js';

function contiguous(fields: readonly { offset: number; name: string }[], size: (f: never) => number): number {
  let end = 0;
  for (const f of [...fields].sort((a, b) => a.offset - b.offset)) {
    assert.equal(f.offset, end, `field ${f.name} starts where the previous one ends`);
    end = f.offset + size(f as never);
  }
  return end;
}

test('the LUKS1 header table covers the spec layout up to the key slots (208 bytes) without gaps', () => {
  assert.equal(contiguous(HEADER_FIELDS, fieldBytes as never), LUKS_SLOTS_OFFSET);
  assert.equal(LUKS_SLOTS_OFFSET, 208);
});

test('a key slot entry is 48 bytes and the whole header with 8 slots is 592 bytes', () => {
  assert.equal(contiguous(SLOT_FIELDS, fieldBytes as never), LUKS_SLOT_BYTES);
  assert.equal(LUKS_SLOT_BYTES, 48);
  assert.equal(LUKS_HEADER_BYTES, 592);
});

test('header encode and decode round-trip every field and slot', () => {
  const h = {
    magic: LUKS_MAGIC, version: 1, cipherName: 'aes', cipherMode: 'cbc-essiv:sha256', hashSpec: 'sha512',
    payloadOffset: 4040, keyBytes: 32, mkDigest: Uint8Array.from({ length: 20 }, (_, i) => i + 1),
    mkDigestSalt: Uint8Array.from({ length: 32 }, (_, i) => 255 - i), mkDigestIterations: 123456,
    uuid: '92911815-5e92-4283-b6af-58dc7d6bc46c',
    slots: Array.from({ length: 8 }, (_, i) => ({
      active: i % 2 ? SLOT_ACTIVE : SLOT_DISABLED, iterations: 1000 * i, salt: new Uint8Array(32).fill(i),
      keyMaterialOffset: 8 + 504 * i, stripes: 4000,
    })),
  };
  const b = encodeLuksHeader(h);
  assert.equal(b.length, 592);
  assert.deepEqual(decodeLuksHeader(b), h);
  assert.deepEqual([...b.subarray(0, 8)], [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 1]);
  // big-endian payload offset at 104, slot 1's key material offset at 208 + 48 + 40
  assert.equal(new DataView(b.buffer).getUint32(104), 4040);
  assert.equal(new DataView(b.buffer).getUint32(208 + 48 + 40), 512);
});

test('strings stop at the first NUL as C reads them', () => {
  const b = new Uint8Array(592);
  b.set(Buffer.from('aes\0junk'), 8);
  assert.equal(decodeLuksHeader(b).cipherName, 'aes');
});
