/**
 * Each named hostile-input limit of the qcow2 engine, crossed by a crafted header: opening fails
 * fast with a clear message instead of allocating or reading what the header claims.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../../../dist/block/open.js';
import {
  MAX_L1_BYTES, MAX_REFCOUNT_TABLE_BYTES, MAX_SNAPSHOTS, MAX_SNAPSHOT_EXTRA_BYTES, MAX_SNAPSHOT_TABLE_BYTES,
  MAX_BACKING_NAME_BYTES, MAX_BITMAPS, MAX_BITMAP_DIRECTORY_BYTES, L2_CACHE_BYTES,
  MIN_CLUSTER_BITS, MAX_CLUSTER_BITS, MAX_REFCOUNT_ORDER,
} from '../../../../dist/formats/qcow2/limits.js';
import { MAX_IMAGE_SIZE } from '../../../../dist/block/limits.js';
import { readSnapshots } from '../../../../dist/formats/qcow2/snapshot.js';
import { TableCache } from '../../../../dist/formats/qcow2/l2-cache.js';
import { qemuImg, scratch } from '../../../helpers/oracle.ts';

const dir = scratch('vdisk-qcow2-limits-');
const base = join(dir, 'base.qcow2');
const r = qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
assert.equal(r.code, 0, r.stderr);

let n = 0;
function crafted(patches: Array<[number, Uint8Array]>): string {
  const f = join(dir, `c${n++}.qcow2`);
  copyFileSync(base, f);
  const fd = openSync(f, 'r+');
  for (const [off, bytes] of patches) writeSync(fd, bytes, 0, bytes.length, off);
  closeSync(fd);
  return f;
}
function be32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
}
function be64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v);
  return b;
}
async function openError(f: string): Promise<string> {
  try {
    const img = await openImage(f, { format: 'qcow2', readOnly: true });
    await img.close();
  } catch (e) {
    return (e as Error).message;
  }
  return 'opened';
}

test('MAX_L1_BYTES: an L1 table one entry past 32 MiB is refused', async () => {
  assert.equal(MAX_L1_BYTES, 32 << 20);
  assert.equal(await openError(crafted([[36, be32(MAX_L1_BYTES / 8 + 1)]])), 'Active L1 table too large');
});

test('MAX_REFCOUNT_TABLE_BYTES: a refcount table one cluster past 8 MiB is refused', async () => {
  const clusters = MAX_REFCOUNT_TABLE_BYTES / 65536 + 1;
  assert.equal(await openError(crafted([[56, be32(clusters)]])), 'Reference count table too large');
  assert.equal(await openError(crafted([[56, be32(clusters - 1)]])), 'opened');
});

test('MAX_SNAPSHOTS: one snapshot more than 65536 is refused', async () => {
  assert.equal(await openError(crafted([[60, be32(MAX_SNAPSHOTS + 1)], [64, be64(0x100000n)]])), 'Snapshot table too large');
});

test('MAX_SNAPSHOT_EXTRA_BYTES: an entry with more extra data is refused', async () => {
  const entry = new Uint8Array(40);
  new DataView(entry.buffer).setUint32(36, MAX_SNAPSHOT_EXTRA_BYTES + 1);
  const f = crafted([[60, be32(1)], [64, be64(0x40000n)], [0x40000, entry]]);
  assert.match(await openError(f), /^Too much extra metadata in snapshot table entry 0\n/);
});

test('MAX_SNAPSHOT_TABLE_BYTES: entries with maximal names stop at the table size limit', async () => {
  const entryBytes = Math.ceil((40 + 0xffff * 2) / 8) * 8;
  // a protocol whose every entry claims 64 KiB id and name: a 1 GiB table if nothing stopped it
  const proto = {
    async pread(buf: Uint8Array, offset: number) {
      for (let i = 0; i < buf.length; i++) {
        const p = (offset + i) % entryBytes;
        buf[i] = p >= 12 && p < 16 ? 0xff : 0x41;
        if (p < 12 || (p >= 16 && p < 40)) buf[i] = 0;
      }
    },
  };
  await assert.rejects(readSnapshots(proto as never, 0, 8192, 'x.qcow2'),
    { message: 'Snapshot table is too big\nYou can force-remove all 7681 overhanging snapshots with qemu-img check -r all' });
  assert.ok(MAX_SNAPSHOT_TABLE_BYTES < 8192 * entryBytes);
});

test('MAX_BACKING_NAME_BYTES: a 1024-byte backing file name is refused', async () => {
  const f = crafted([[8, be64(0x200n)], [16, be32(MAX_BACKING_NAME_BYTES + 1)]]);
  assert.equal(await openError(f), 'Backing file name too long');
});

test('header extensions: a record longer than the first cluster is refused, many small ones are fine', async () => {
  const area = new Uint8Array(1100 * 8);
  for (let i = 0; i < 1100; i++) new DataView(area.buffer).setUint32(i * 8, 0x11110001);
  assert.equal(await openError(crafted([[112, area]])), 'opened');
  assert.equal(await openError(crafted([[112, be32(0x11110001)], [116, be32(0x10000)]])), 'Header extension too large');
});

test('MAX_BITMAPS and MAX_BITMAP_DIRECTORY_BYTES: the bitmaps extension is bounded', async () => {
  const ext = (count: number, dirSize: bigint) => {
    const b = new Uint8Array(32);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, 0x23852875);
    dv.setUint32(4, 24);
    dv.setUint32(8, count);
    dv.setBigUint64(16, dirSize);
    dv.setBigUint64(24, 0x40000n);
    return b;
  };
  const autoclear: [number, Uint8Array] = [88, be64(1n)];
  assert.equal(await openError(crafted([[112, ext(MAX_BITMAPS + 1, 40n)], autoclear])),
    'bitmaps_ext: Image has 65536 bitmaps, exceeding the QEMU supported maximum of 65535');
  assert.equal(await openError(crafted([[112, ext(1, BigInt(MAX_BITMAP_DIRECTORY_BYTES + 1))], autoclear])),
    'bitmaps_ext: bitmap directory size (67107841) exceeds the maximum supported size (67107840)');
  assert.equal(await openError(crafted([[112, ext(MAX_BITMAPS + 1, 40n)]])), 'opened', 'without the autoclear bit the extension is ignored');
});

test('L2_CACHE_BYTES: the table cache never holds more tables than its budget', async () => {
  let reads = 0;
  const proto = { async pread() { reads++; }, async pwrite() {} };
  const cache = new TableCache(proto as never, 2 << 20, L2_CACHE_BYTES);
  assert.equal(cache.capacity, L2_CACHE_BYTES / (2 << 20));
  for (let i = 0; i < 100; i++) await cache.get(i * (2 << 20));
  assert.equal(reads, 100);
  await cache.get(99 * (2 << 20));
  assert.equal(reads, 100, 'the most recent table is still cached');
  await cache.get(0);
  assert.equal(reads, 101, 'the oldest table was evicted');
});

test('MIN_CLUSTER_BITS and MAX_CLUSTER_BITS: cluster_bits outside 9..21 is refused with qemu\'s message', async () => {
  assert.deepEqual([MIN_CLUSTER_BITS, MAX_CLUSTER_BITS], [9, 21]);
  assert.equal(await openError(crafted([[20, be32(MIN_CLUSTER_BITS - 1)]])), 'Unsupported cluster size: 2^8');
  assert.equal(await openError(crafted([[20, be32(MAX_CLUSTER_BITS + 1)]])), 'Unsupported cluster size: 2^22');
  assert.equal(await openError(crafted([[20, be32(63)]])), 'Unsupported cluster size: 2^63');
});

test('MAX_REFCOUNT_ORDER: refcount_order 7 (128-bit refcounts) is refused, 6 opens', async () => {
  assert.equal(MAX_REFCOUNT_ORDER, 6);
  assert.equal(await openError(crafted([[96, be32(MAX_REFCOUNT_ORDER + 1)]])), 'Reference count entry width too large; may not exceed 64 bits');
  assert.equal(await openError(crafted([[96, be32(MAX_REFCOUNT_ORDER)]])), 'opened');
});

test('MAX_IMAGE_SIZE: a virtual size past 2^53 - 512 is refused before any table is sized from it', async () => {
  assert.equal(await openError(crafted([[24, be64((1n << 63n) - 512n)]])), 'Image is too big');
  // 2 MiB clusters: an L1 of 16384 entries maps 2^53 bytes, so only the size limit can refuse it
  const big = join(dir, 'big-clusters.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', big, '4M']).code, 0);
  const sized = (size: bigint): string => {
    const f = join(dir, `c${n++}.qcow2`);
    copyFileSync(big, f);
    const fd = openSync(f, 'r+');
    writeSync(fd, be64(size), 0, 8, 24);
    writeSync(fd, be32(16384), 0, 4, 36);
    closeSync(fd);
    return f;
  };
  assert.equal(await openError(sized(BigInt(MAX_IMAGE_SIZE) + 512n)), 'Image is too big');
  assert.equal(await openError(sized(BigInt(MAX_IMAGE_SIZE))), 'opened');
});
