/**
 * A qcow2 write to new clusters allocates them under the layer's lock but writes their data after
 * releasing it (the next request allocates meanwhile); the L2 entries are set when the data lands.
 * These pin what that must keep: entries of writes still in flight are not lost to cache
 * eviction or to later writes in the same table, overlapping requests still apply in the order
 * they were issued, and the image checks clean with every byte where qemu reads it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openImage } from '../../../../dist/block/open.js';
import { FileProtocol } from '../../../../dist/protocols/file.js';
import { TableCache } from '../../../../dist/formats/qcow2/l2-cache.js';
import { qemuImg, qemuIo, scratch } from '../../../helpers/oracle.ts';

const dir = scratch('vdisk-qcow2-overlap-');
const MiB = 1 << 20;
/** With 2 MiB clusters one L2 table maps 512 GiB, and the 32 MiB table cache holds 16 tables. */
const TABLE_SPAN = 512 * 1024 * MiB;
const TABLES = 20;

/** Hold back every data write of at least 4 MiB by `ms`, so all requests are issued before any lands. */
async function withSlowDataWrites<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  const proto = FileProtocol.prototype as unknown as Record<string, (this: FileProtocol, ...a: unknown[]) => Promise<unknown>>;
  const orig = proto['pwrite']!;
  proto['pwrite'] = async function (this: FileProtocol, ...a: unknown[]) {
    if ((a[0] as Uint8Array).length >= 4 * MiB) await new Promise((r) => setTimeout(r, ms));
    return orig.apply(this, a);
  };
  try {
    return await fn();
  } finally {
    proto['pwrite'] = orig;
  }
}

const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);

function assertReads(img: string, checks: ReadonlyArray<[offset: number, length: number, byte: number]>, forceShare = false): void {
  const args = ['-f', 'qcow2', '-r', ...(forceShare ? ['-U'] : [])];
  for (const [off, len, byte] of checks) args.push('-c', `read -P 0x${byte.toString(16)} ${off} ${len}`);
  const r = qemuIo([...args, img]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /Pattern verification failed/, r.stdout);
}

test('writes in flight to more L2 tables than the cache holds keep all their entries, first and second write per table alike', async () => {
  const img = join(dir, 'tables.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', img, `${TABLES * 512}G`]).code, 0);
  const image = await openImage(img, { format: 'qcow2', readOnly: false });
  const writes: Array<Promise<void>> = [];
  // long enough for all 40 requests to be issued (each eviction syncs) before the first lands
  await withSlowDataWrites(400, async () => {
    // round one allocates a new table per write and evicts the oldest; round two comes back to
    // every table while round one's data (and entries) are still in flight
    for (let t = 0; t < TABLES; t++) writes.push(image.write(fill(4 * MiB, 0x10 + t), t * TABLE_SPAN));
    for (let t = 0; t < TABLES; t++) writes.push(image.write(fill(4 * MiB, 0x60 + t), t * TABLE_SPAN + 8 * MiB));
    await Promise.all(writes);
  });
  await image.close();
  const check = qemuImg(['check', '-f', 'qcow2', img]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const reads: Array<[number, number, number]> = [];
  for (let t = 0; t < TABLES; t++) {
    reads.push([t * TABLE_SPAN, 4 * MiB, 0x10 + t], [t * TABLE_SPAN + 4 * MiB, 4 * MiB, 0], [t * TABLE_SPAN + 8 * MiB, 4 * MiB, 0x60 + t]);
  }
  assertReads(img, reads);
});

test('an overlapping write issued while another is in flight applies after it, and a read after both sees the later one', async () => {
  const img = join(dir, 'overlap.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', img, '64M']).code, 0);
  const image = await openImage(img, { format: 'qcow2', readOnly: false });
  const seen = new Uint8Array(MiB);
  await withSlowDataWrites(30, async () => {
    const a = image.write(fill(8 * MiB, 0xaa), 0);
    // the second overlaps the middle of the first: it must wait for it instead of allocating again
    const b = image.write(fill(4 * MiB, 0xbb), 2 * MiB);
    const c = image.write(fill(4 * MiB, 0xcc), 16 * MiB);
    await Promise.all([a, b, c]);
    await image.read(seen, 3 * MiB);
  });
  assert.ok(seen.every((x) => x === 0xbb), 'the read after both writes returns the later write');
  await image.close();
  const check = qemuImg(['check', '-f', 'qcow2', img]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assertReads(img, [[0, 2 * MiB, 0xaa], [2 * MiB, 4 * MiB, 0xbb], [6 * MiB, 2 * MiB, 0xaa], [8 * MiB, 8 * MiB, 0], [16 * MiB, 4 * MiB, 0xcc]]);
});

test('a flush waits for the data in flight, so what it makes durable includes those writes', async () => {
  const img = join(dir, 'flush.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', img, '64M']).code, 0);
  const image = await openImage(img, { format: 'qcow2', readOnly: false });
  let landed = false;
  await withSlowDataWrites(30, async () => {
    const w = image.write(fill(4 * MiB, 0x5a), 0).then(() => { landed = true; });
    await image.flush();
    assert.ok(landed, 'flush resolved only after the write it followed');
    await w;
  });
  // the flushed metadata, read by qemu while the image is still open (as after a crash)
  assertReads(img, [[0, 4 * MiB, 0x5a]], true);
  await image.close();
});

test('the table cache never evicts a pinned table, going over its capacity instead, and evicts it once unpinned', async () => {
  const writes: number[] = [];
  const proto = {
    pread: async (b: Uint8Array) => { b.fill(0); },
    pwrite: async (_b: Uint8Array, off: number) => { writes.push(off); },
  };
  const cache = new TableCache(proto as never, 4096, 4 * 4096);
  const pinned = await cache.get(0);
  cache.pin(0);
  pinned[0] = 7;
  cache.markDirty(0, pinned);
  for (let i = 1; i <= 8; i++) await cache.get(i * 4096);
  assert.equal(cache.peek(0), pinned, 'the pinned array is still the cached one');
  assert.ok(!writes.includes(0), 'a pinned dirty table is not written back by eviction');
  cache.unpin(0);
  for (let i = 9; i <= 12; i++) await cache.get(i * 4096);
  assert.equal(cache.peek(0) === pinned, false, 'unpinned, it is evicted like any other');
  assert.ok(writes.includes(0), 'and written back as it leaves');
});

test('a data write that fails in flight rejects the write and leaves its clusters leaked, never referenced (qemu-img check -r leaks repairs it)', async () => {
  const img = join(dir, 'failed.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', img, '64M']).code, 0);
  const image = await openImage(img, { format: 'qcow2', readOnly: false });
  const proto = FileProtocol.prototype as unknown as Record<string, (this: FileProtocol, ...a: unknown[]) => Promise<unknown>>;
  const orig = proto['pwrite']!;
  proto['pwrite'] = async function (this: FileProtocol, ...a: unknown[]) {
    if ((a[0] as Uint8Array).length >= 4 * MiB) throw new Error('injected data write failure');
    return orig.apply(this, a);
  };
  try {
    const ok = image.write(fill(64 * 1024, 0x11), 32 * MiB);
    await assert.rejects(image.write(fill(4 * MiB, 0x22), 0), /injected data write failure/);
    await ok;
  } finally {
    proto['pwrite'] = orig;
  }
  // a cluster allocated after the failed run puts the run inside the file, where check sees it
  await image.write(fill(64 * 1024, 0x33), 40 * MiB);
  await image.close();
  const check = qemuImg(['check', '-f', 'qcow2', img]);
  assert.equal(check.code, 3, check.stdout + check.stderr);
  assert.match(check.stdout, /^64 leaked clusters were found on the image\.$/m);
  assert.doesNotMatch(check.stdout + check.stderr, /ERROR/);
  assert.equal(qemuImg(['check', '-q', '-r', 'leaks', '-f', 'qcow2', img]).code, 0);
  assertReads(img, [[0, 4 * MiB, 0], [32 * MiB, 64 * 1024, 0x11], [40 * MiB, 64 * 1024, 0x33]]);
});
