/**
 * Resizing a qcow2 image: growing (moving the L1 table when it needs more entries, optionally
 * preallocating the new area), and shrinking (dropping every cluster past the new end, then the
 * L2 tables left empty, then trimming the file after its last used cluster), as qemu does.
 */
import { VdiskError } from '../../block/errors.js';
import { isAllZero } from '../../block/bytes.js';
import type { Preallocation } from '../../protocols/types.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';
import { L2E_COMPRESSED_HI, L2E_COPIED_HI, entryOffset } from './l1l2.js';
import { AUTOCLEAR_DATA_FILE_RAW } from './header.js';
import { setRefcountEntry } from './refcount.js';
import { preallocateInFile } from './prealloc.js';

export interface ResizeContext {
  p: Qcow2Parts;
  meta: MetadataWriter;
  /** qemu's fatal corruption event (corrupt bit set, writes refused); returns the line qemu prints. */
  corruption(what: string): Promise<string>;
  /** Guest content of [from, to) as it reads now (through the backing chain). */
  current(from: number, to: number): Promise<Uint8Array>;
}

async function writeHeaderSize(c: ResizeContext, size: number): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(size));
  await c.p.proto.pwrite(b, 24);
  c.p.loaded.header.size = BigInt(size);
  c.p.loaded.size = size;
}

export async function growImage(c: ResizeContext, size: number, prealloc: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const h = p.loaded.header;
  const old = p.loaded.size;
  // every cluster of a raw data file maps to itself: qemu preallocates the new area's metadata
  if (prealloc === 'off' && p.data !== p.proto && (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n) prealloc = 'metadata';
  const needed = Math.ceil(size / 2 ** (g.l2Bits + g.clusterBits));
  if (needed > p.map.l1Entries) {
    await meta.growL1(needed, async (offset, entries) => {
      const b = new Uint8Array(12);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, entries);
      dv.setBigUint64(4, BigInt(offset));
      await p.proto.pwrite(b, 36);
      h.l1Size = entries;
      h.l1TableOffset = BigInt(offset);
    });
  }
  if (p.data !== p.proto) await p.data!.truncate(size, prealloc === 'metadata' ? 'off' : prealloc);
  // qemu's own layout for falloc/full in the image file; extended L2, encrypted and data-file
  // images keep the table-by-table walk
  const inFile = (prealloc === 'falloc' || prealloc === 'full') && p.data === p.proto && !p.luks && !g.extL2;
  if (size > old && inFile) await preallocateInFile(c, old, size, prealloc);
  else if (size > old && prealloc !== 'off') await preallocate(c, old, size, prealloc);
  await meta.flush();
  await writeHeaderSize(c, size);
}

/**
 * New L2 tables built by preallocation are written in batches of about this many bytes, after the
 * refcounts they depend on: every batch costs one flush (the ordering barrier), so bigger batches
 * mean fewer flushes; the bound keeps memory flat for 2 MiB clusters (at least one table a batch).
 */
export const PREALLOC_BATCH_BYTES = 4 << 20;

/**
 * Give every cluster of [from, to) a host cluster that reads as zeros (qemu's preallocation).
 * One L2 table at a time: the clusters it still lacks are allocated in contiguous runs and their
 * entries set in place, so a 1 TiB image costs a few thousand table operations, not 16 M. Tables
 * that did not exist are built in a few reused buffers outside the L2 cache and written in
 * batches once the refcounts they depend on are on disk; the L1 entries follow on the final flush.
 */
async function preallocate(c: ResizeContext, from: number, to: number, mode: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const cs = g.clusterSize;
  const per = 2 ** g.l2Bits;
  const fileEnd = await p.proto.size();
  // the cluster the old end falls in keeps its guest content (backing data) in its new place
  const headStart = Math.floor(from / cs) * cs;
  const hadHost = (await p.map.lookup(headStart, 1)).hostOffset !== undefined;
  const head = from % cs !== 0 && !hadHost && p.data === p.proto && !p.luks ? await c.current(headStart, from) : undefined;
  const pending: Array<{ l1i: number; offset: number; table: Uint8Array }> = [];
  const batch = Math.max(1, Math.floor(PREALLOC_BATCH_BYTES / cs));
  const spare: Uint8Array[] = [];
  const writePending = async (): Promise<void> => {
    await meta.rc.flush();
    // the tables of a batch do not depend on each other: write them all at once
    await Promise.all(pending.map((t) => p.proto.pwrite(t.table, t.offset)));
    for (const t of pending) {
      meta.setL1(t.l1i, t.offset);
      spare.push(t.table);
    }
    pending.length = 0;
  };
  const last = Math.ceil(to / cs);
  for (let cl = Math.floor(from / cs); cl < last;) {
    const l1i = Math.floor(cl / per);
    const stop = Math.min(last, (l1i + 1) * per);
    if (p.map.l2Offset(l1i) === 0) {
      const offset = await meta.alloc.allocateMeta(1);
      const table = spare.pop()?.fill(0) ?? new Uint8Array(cs);
      await fillTable(c, table, l1i, cl, stop, fileEnd, mode);
      pending.push({ l1i, offset, table });
      if (pending.length >= batch) await writePending();
    } else {
      const l2off = await meta.l2ForWrite(l1i);
      const table = await p.map.l2Cache.get(l2off);
      await fillTable(c, table, l1i, cl, stop, fileEnd, mode);
      p.map.l2Cache.markDirty(l2off, table);
    }
    cl = stop;
  }
  await writePending();
  if (p.data === p.proto) {
    const end = meta.alloc.endCluster * cs;
    if (end > fileEnd) await p.proto.truncate(end, mode === 'metadata' ? 'off' : mode);
  }
  if (head) {
    await meta.flush();
    const m = await p.map.lookup(headStart, 1);
    if (m.type === 'normal' && m.hostOffset !== undefined) await p.proto.pwrite(head, m.hostOffset);
  }
}

/** Allocate host clusters for the entries of guest clusters [cl, stop) of L2 table `l1i` that lack one. */
async function fillTable(c: ResizeContext, table: Uint8Array, l1i: number, cl: number, stop: number, fileEnd: number, mode: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const cs = g.clusterSize;
  const eb = g.entryBytes;
  const base = l1i * 2 ** g.l2Bits;
  const external = p.data !== p.proto;
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const needsHost = (idx: number): boolean => {
    const hi = dv.getUint32(idx * eb);
    if (hi & L2E_COMPRESSED_HI || (external && hi & L2E_COPIED_HI)) return false;
    return entryOffset(hi, dv.getUint32(idx * eb + 4), p.path, 'Cluster allocation') === 0;
  };
  while (cl < stop) {
    if (!needsHost(cl - base)) {
      cl++;
      continue;
    }
    let n = 1;
    while (cl + n < stop && needsHost(cl + n - base)) n++;
    // clusters below the allocation end are reused: freed before this call or during it (the old
    // refcount table when the table moves), and they still hold old bytes
    const used = Math.max(fileEnd, meta.alloc.endCluster * cs);
    const run = external ? { offset: cl * cs, count: n } : await meta.alloc.allocateRun(n);
    if (!external && run.offset < used) {
      const bytes = Math.min(run.count * cs, Math.ceil((used - run.offset) / cs) * cs);
      await p.proto.writeZeroes?.(run.offset, bytes, mode === 'metadata');
    }
    for (let k = 0; k < run.count; k++) {
      const host = run.offset + k * cs;
      const idx = cl + k - base;
      dv.setUint32(idx * eb, (Math.floor(host / 0x100000000) | L2E_COPIED_HI) >>> 0);
      dv.setUint32(idx * eb + 4, host >>> 0);
      // extended L2: a place for the cluster, no subcluster allocated (qemu's preallocation leaves
      // the bitmap clear), so the guest still sees the backing file, or zeros without one
      if (eb === 16) {
        dv.setUint32(idx * eb + 8, 0);
        dv.setUint32(idx * eb + 12, 0);
      }
    }
    cl += run.count;
  }
}

export async function shrinkImage(c: ResizeContext, size: number): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const per = 2 ** g.l2Bits;
  const firstDropped = Math.ceil(size / g.clusterSize);
  const firstL1 = Math.floor(firstDropped / per);
  // qemu's discard of the cut range gives the L2 table it starts in a place even if nothing is
  // mapped there (the tables it makes wholly past the end it frees again at once)
  const partial = firstDropped % per !== 0 && firstDropped * g.clusterSize < p.loaded.size;
  for (let l1i = firstL1; l1i < p.map.l1Entries; l1i++) {
    if (p.map.l2Offset(l1i) === 0 && !(partial && l1i === firstL1)) continue;
    const l2off = await meta.l2ForWrite(l1i);
    for (let idx = Math.max(0, firstDropped - l1i * per); idx < per; idx++) {
      const e = await meta.entry(l2off, idx);
      if (e.hi === 0 && e.lo === 0 && e.zeroBits === 0 && e.allocBits === 0) continue;
      await meta.setEntry(l2off, idx, { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 });
      meta.releaseEntry(e);
    }
    if (l1i * per >= firstDropped) {
      meta.clearL1(l1i);
      meta.map.l2Cache.drop(l2off);
      meta.queueFree(l2off, g.clusterSize);
    }
  }
  await meta.flush();
  await shrinkReftable(c);
  await writeHeaderSize(c, size);
  if (p.data !== p.proto) await p.data!.truncate(size);
  const last = await meta.rc.lastUsedCluster();
  const end = (last + 1) * g.clusterSize;
  if (end < (await p.proto.size())) {
    await p.proto.truncate(end);
    meta.alloc.endCluster = last + 1;
  }
}

/** Bits 9-63 of a refcount table entry, as qemu masks them (damaged entries can exceed 2^53). */
const REFT_OFFSET_MASK = 0xfffffffffffffe00n;

function rawBlockOffset(table: Uint8Array, ti: number): bigint {
  return new DataView(table.buffer, table.byteOffset, table.byteLength).getBigUint64(ti * 8) & REFT_OFFSET_MASK;
}

const hex = (n: bigint | number): string => `0x${n.toString(16)}`;

/**
 * After a shrink, as qemu does: refcount blocks that count nothing but (perhaps) themselves leave
 * the table, which is written whole, and each one's own refcount is then dropped in the block that
 * covers it. A block the table's entries cannot reach (damaged entries) is qemu's fatal corruption
 * event; the virtual size is then left unchanged.
 */
async function shrinkReftable(c: ResizeContext): Promise<void> {
  const { p, meta } = c;
  const rc = meta.rc;
  const cs = p.map.geo.clusterSize;
  const per = 2 ** rc.blockBits;
  const fail = async (what: string): Promise<VdiskError> => {
    const line = await c.corruption(what);
    return new VdiskError('io', 'QCOW2_SHRINK_REFBLOCKS', 'Failed to discard unused refblocks: Input/output error',
      { path: p.path, format: 'qcow2', op: 'resize', errno: 'EIO', preface: [{ text: line }] });
  };
  const kept = rc.table.slice();
  const dropped: Array<{ ti: number; offset: bigint }> = [];
  for (let ti = 0; ti < rc.tableEntries; ti++) {
    const off = rawBlockOffset(rc.table, ti);
    if (off === 0n) continue;
    if (off % BigInt(cs) !== 0n) throw await fail(`Cannot get entry from refcount block cache: Offset ${hex(off)} is unaligned`);
    // a block past any file reads as zeros, as qemu reads past the end of the file
    if (off <= BigInt(Number.MAX_SAFE_INTEGER) && !blockIsUnused(await rc.blocks.get(Number(off)), ti, Number(off), cs, per, rc.order)) continue;
    new DataView(kept.buffer).setBigUint64(ti * 8, 0n);
    dropped.push({ ti, offset: off });
  }
  if (dropped.length === 0) return;
  await p.proto.pwrite(kept, rc.tableOffset);
  await p.proto.flush();
  let failure: VdiskError | undefined;
  for (const d of dropped) {
    if (!failure) failure = await discardRefblock(c, d.offset, fail);
    rc.forgetBlock(d.ti);
  }
  await meta.flush();
  if (failure) throw failure;
}

function blockIsUnused(block: Uint8Array, ti: number, off: number, cs: number, per: number, order: number): boolean {
  const own = Math.floor(off / cs);
  let b = block;
  if (Math.floor(own / per) === ti) {
    // a block that counts itself: its own entry does not make it used
    b = block.slice();
    setRefcountEntry(b, own % per, order, 0);
  }
  return isAllZero(b);
}

/** Drop the refcount of the refcount block at `off`; returns qemu's failure when that is impossible. */
async function discardRefblock(c: ResizeContext, off: bigint, fail: (what: string) => Promise<VdiskError>): Promise<VdiskError | undefined> {
  const { p, meta } = c;
  const rc = meta.rc;
  const cs = p.map.geo.clusterSize;
  const per = 2 ** rc.blockBits;
  const coverTi = off / BigInt(cs * per);
  const cover = coverTi < BigInt(rc.tableEntries) ? rawBlockOffset(rc.table, Number(coverTi)) : 0n;
  if (cover === 0n) return fail(`Refblock at ${hex(off)} is not covered by the refcount structures`);
  const cluster = Number(off / BigInt(cs));
  const n = await rc.get(cluster);
  if (n !== 1) {
    return fail(`Invalid refcount: refblock offset ${hex(cover)}, reftable index ${coverTi}, block offset ${hex(off)}, refcount ${hex(n)}`);
  }
  await rc.add(cluster, -1);
  meta.alloc.metadata.delete(cluster);
  await p.proto.discard?.(Number(off), cs);
  return undefined;
}
