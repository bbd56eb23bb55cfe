/**
 * qcow2 persistent bitmaps: the bit arithmetic of merges and guest writes, and each named limit
 * on bitmaps crossed by a crafted or oversized image (refused with a message, nothing allocated).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../../../dist/block/open.js';
import { mergeBits, setBitRange } from '../../../../dist/formats/qcow2/bitmap-ops.js';
import { MAX_BITMAP_DATA_BYTES, MAX_BITMAP_NAME_BYTES, MAX_BITMAP_TABLE_ENTRIES } from '../../../../dist/formats/qcow2/limits.js';
import { qemuImg, scratch } from '../../../helpers/oracle.ts';

const dir = scratch('vdisk-qcow2-bitmaps-');
const mk = (name: string, size: string, ...bitmap: string[][]): string => {
  const f = join(dir, name);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', f, size]).code, 0);
  for (const b of bitmap) assert.equal(qemuImg(['bitmap', '--add', ...b.slice(1), f, b[0]!]).code, 0);
  return f;
};
const base = mk('base.qcow2', '10M', ['b1']);

/** Offset of the first bitmap directory entry (the bitmaps extension follows the header). */
function directoryOffset(f: string): number {
  const b = readFileSync(f);
  for (let off = b.readUInt32BE(100); ;) {
    if (b.readUInt32BE(off) === 0x23852875) return Number(b.readBigUInt64BE(off + 24));
    off += 8 + Math.ceil(b.readUInt32BE(off + 4) / 8) * 8;
  }
}

function patched(name: string, at: (f: string) => number, bytes: Uint8Array): string {
  const f = join(dir, name);
  copyFileSync(base, f);
  const fd = openSync(f, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at(f));
  closeSync(fd);
  return f;
}

async function readError(f: string): Promise<string> {
  const img = await openImage(f, { format: 'qcow2', readOnly: true });
  try {
    await img.layer.bitmaps!.read('b1');
    return 'read';
  } catch (e) {
    return (e as Error).message;
  } finally {
    await img.close();
  }
}

test('setBitRange sets exactly the bits of the range, across byte boundaries', () => {
  const b = new Uint8Array(4);
  setBitRange(b, 3, 21);
  assert.deepEqual([...b], [0xf8, 0xff, 0x1f, 0]);
});

test('mergeBits from a finer granularity sets each coarse bit a fine one touches', () => {
  const dst = new Uint8Array(2);
  // source: 1 KiB granules over 16 KiB; bits 4 and 9 set (bytes 4096.. and 9216..)
  mergeBits(dst, 4096, { granularity: 1024, size: 16384, bits: Uint8Array.from([0x10, 0x02]) }, 16384);
  assert.deepEqual([...dst], [0b0110, 0]);
});

test('mergeBits from a coarser granularity sets every fine bit of the coarse range, not past the end', () => {
  const dst = new Uint8Array(2);
  mergeBits(dst, 1024, { granularity: 8192, size: 10240, bits: Uint8Array.from([0x02]) }, 10240);
  assert.deepEqual([...dst], [0, 0b11]);
});

test('MAX_BITMAP_TABLE_ENTRIES: a table size that does not fit the image is refused before reading', async () => {
  assert.equal(MAX_BITMAP_TABLE_ENTRIES, 0x8000000);
  const be32 = new Uint8Array(4);
  new DataView(be32.buffer).setUint32(0, MAX_BITMAP_TABLE_ENTRIES + 1);
  const f = patched('table-size.qcow2', (x) => directoryOffset(x) + 8, be32);
  assert.equal(await readError(f), "Bitmap 'b1' has an invalid table size");
});

test('a bitmap table entry with reserved bits set is refused', async () => {
  const table = (f: string): number => Number(readFileSync(f).readBigUInt64BE(directoryOffset(f)));
  const f = patched('entry.qcow2', table, Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0x02]));
  assert.equal(await readError(f), "Bitmap 'b1' has an invalid table entry");
  assert.equal(await readError(base), 'read');
});

test('MAX_BITMAP_DATA_BYTES: a new bitmap of more than 512 MiB of bits is refused, exactly 512 MiB is not', async () => {
  assert.equal(MAX_BITMAP_DATA_BYTES, 512 << 20);
  const f = mk('huge.qcow2', '8T');
  const img = await openImage(f, { format: 'qcow2', readOnly: true });
  try {
    // 8 TiB at 2 KiB granules is 2^32 bits: 512 MiB
    assert.doesNotThrow(() => img.layer.bitmaps!.checkNew('b', 2048));
    assert.throws(() => img.layer.bitmaps!.checkNew('b', 1024), { message: 'Too much space will be occupied by the bitmap. Use larger granularity' });
  } finally {
    await img.close();
  }
});

test('MAX_BITMAP_NAME_BYTES: names are counted in UTF-8 bytes, 1023 at most', async () => {
  assert.equal(MAX_BITMAP_NAME_BYTES, 1023);
  const img = await openImage(base, { format: 'qcow2', readOnly: true });
  try {
    assert.doesNotThrow(() => img.layer.bitmaps!.checkNew('x'.repeat(1023), 65536));
    assert.throws(() => img.layer.bitmaps!.checkNew('é'.repeat(512), 65536), { message: 'Name length exceeds maximum (1023 characters)' });
  } finally {
    await img.close();
  }
});
