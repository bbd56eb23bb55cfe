/**
 * Writing persistent dirty bitmaps (qcow2.txt "Bitmaps extension", "Bitmap directory", "Bitmap
 * table", "Bitmap data").
 *
 *   bitmap table entry (u64): bits 9-55 host offset of a data cluster; offset 0 with bit 0 set:
 *   the cluster's bits are all ones, clear: all zeros. Data: bit i (LSB first in each byte)
 *   covers guest bytes [i * granularity, (i + 1) * granularity).
 *
 * Every change is copy-on-write, in the order that keeps the image consistent after a crash at
 * any point: new data clusters and tables, then a new directory, refcounts and a flush; then the
 * header (bitmaps extension and autoclear bit) in one write of the first cluster and a flush;
 * only then are the old directory, tables and data clusters freed. A crash before the header
 * write leaks clusters; after it, the new bitmaps are whole.
 */
import { AUTOCLEAR_BITMAPS, invalid, toSafe } from './header.js';
import { ENTRY_FIXED, type BitmapEntry } from './bitmap.js';
import { currentName, writeHeaderArea } from './backing-change.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter } from './l2-update.js';
import type { Extensions } from './extensions.js';
import { MAX_BITMAP_DATA_BYTES, MAX_BITMAP_TABLE_ENTRIES } from './limits.js';

const ENTRY_ALL_ONES = 1;
/** Bits of a table entry that are neither the offset nor the all-ones flag. */
const ENTRY_RESERVED_HI = 0xff000000;
const ENTRY_RESERVED_LO = 0x1fe;

/** Bits and bytes of a bitmap with this granularity over `size` guest bytes. */
export function bitmapGeometry(size: number, granularityBits: number, clusterSize: number): { bits: number; bytes: number; tableEntries: number } {
  const bits = Math.ceil(size / 2 ** granularityBits);
  const bytes = Math.ceil(bits / 8);
  return { bits, bytes, tableEntries: Math.ceil(bytes / clusterSize) };
}

/** One bitmap as it will be stored: its entry (table fields ignored when `data` is given) and new bits. */
export interface BitmapPlan {
  entry: BitmapEntry;
  /** New contents ('empty': all zeros); absent: the bitmap's table and data stay where they are. */
  data?: Uint8Array | 'empty';
}

function entryHostOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

/** The bitmap's table, checked entry by entry (a hostile table is refused before any data is read). */
async function readTable(p: Qcow2Parts, b: BitmapEntry): Promise<DataView> {
  const cs = p.loaded.clusterSize;
  const geo = bitmapGeometry(p.loaded.size, b.granularityBits, cs);
  if (b.tableSize !== geo.tableEntries || b.tableSize > MAX_BITMAP_TABLE_ENTRIES) {
    throw invalid('QCOW2_BITMAP_TABLE_SIZE', `Bitmap '${b.name}' has an invalid table size`, p.path, 'corrupt');
  }
  const t = new Uint8Array(b.tableSize * 8);
  await p.proto.pread(t, toSafe(b.tableOffset, 'Bitmap table', p.path));
  const dv = new DataView(t.buffer);
  for (let i = 0; i < b.tableSize; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    const off = entryHostOffset(hi, lo);
    if (hi & ENTRY_RESERVED_HI || lo & ENTRY_RESERVED_LO || off % cs !== 0 || (off !== 0 && lo & ENTRY_ALL_ONES)) {
      throw invalid('QCOW2_BITMAP_ENTRY', `Bitmap '${b.name}' has an invalid table entry`, p.path, 'corrupt');
    }
  }
  return dv;
}

/** The bits of a stored bitmap, `bitmapGeometry().bytes` long. */
export async function readBitmapData(p: Qcow2Parts, b: BitmapEntry): Promise<Uint8Array> {
  const cs = p.loaded.clusterSize;
  const geo = bitmapGeometry(p.loaded.size, b.granularityBits, cs);
  if (geo.bytes > MAX_BITMAP_DATA_BYTES) {
    throw invalid('QCOW2_BITMAP_TOO_LARGE', `Bitmap '${b.name}' is too large`, p.path, 'limit');
  }
  const dv = await readTable(p, b);
  const out = new Uint8Array(geo.bytes);
  for (let i = 0; i < b.tableSize; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    const off = entryHostOffset(hi, lo);
    const part = out.subarray(i * cs, Math.min(out.length, (i + 1) * cs));
    if (off !== 0) await p.proto.pread(part, off);
    else if (lo & ENTRY_ALL_ONES) part.fill(0xff);
  }
  return out;
}

/**
 * Host ranges a stored bitmap occupies: every data cluster it names (discarded when freed, as
 * qemu does) and its table (not discarded).
 */
async function storedRanges(p: Qcow2Parts, b: BitmapEntry): Promise<Array<[number, number, boolean]>> {
  const cs = p.loaded.clusterSize;
  const out: Array<[number, number, boolean]> = [];
  let dv: DataView;
  try {
    dv = await readTable(p, b);
  } catch {
    // a damaged table is dropped without freeing what it names (check -r finds the leaks)
    return out;
  }
  for (let i = 0; i < b.tableSize; i++) {
    const off = entryHostOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4));
    if (off !== 0) out.push([off, cs, true]);
  }
  if (b.tableSize > 0) out.push([Number(b.tableOffset), b.tableSize * 8, false]);
  return out;
}

/** Data clusters (all-zero ones left unallocated) and a table for `data`; returns the table offset. */
async function writeBitmap(p: Qcow2Parts, meta: MetadataWriter, data: Uint8Array | 'empty', entries: number): Promise<number> {
  const cs = p.loaded.clusterSize;
  const table = new Uint8Array(Math.ceil((entries * 8) / cs) * cs);
  const tv = new DataView(table.buffer);
  const zero = Buffer.alloc(cs);
  for (let i = 0; data !== 'empty' && i < entries; i++) {
    const part = data.subarray(i * cs, Math.min(data.length, (i + 1) * cs));
    if (zero.compare(part, 0, part.length, 0, part.length) === 0) continue;
    const cluster = new Uint8Array(cs);
    cluster.set(part);
    const off = await meta.alloc.allocateMeta(1);
    await p.proto.pwrite(cluster, off);
    tv.setUint32(i * 8, Math.floor(off / 0x100000000));
    tv.setUint32(i * 8 + 4, off >>> 0);
  }
  const off = await meta.alloc.allocateMeta(table.length / cs);
  // only the entries are written, as qemu does (the rest of the cluster keeps what it held)
  await p.proto.pwrite(table.subarray(0, entries * 8), off);
  return off;
}

const utf8 = new TextEncoder();

export function entryBytes(name: string, extraBytes: number): number {
  return Math.ceil((ENTRY_FIXED + extraBytes + utf8.encode(name).length) / 8) * 8;
}

function encodeDirectory(list: readonly BitmapEntry[]): Uint8Array {
  const out = new Uint8Array(list.reduce((n, b) => n + entryBytes(b.name, b.extra.length), 0));
  const dv = new DataView(out.buffer);
  let off = 0;
  for (const b of list) {
    const name = utf8.encode(b.name);
    dv.setBigUint64(off, b.tableOffset);
    dv.setUint32(off + 8, b.tableSize);
    dv.setUint32(off + 12, b.flags);
    dv.setUint8(off + 16, b.type);
    dv.setUint8(off + 17, b.granularityBits);
    dv.setUint16(off + 18, name.length);
    dv.setUint32(off + 20, b.extra.length);
    out.set(b.extra, off + ENTRY_FIXED);
    out.set(name, off + ENTRY_FIXED + b.extra.length);
    off += entryBytes(b.name, b.extra.length);
  }
  return out;
}

/**
 * Make `plans` the image's bitmap list (in directory order): bitmaps with new data get new
 * tables (allocated in directory order, as qemu does), the others keep theirs; bitmaps of the old
 * list that are gone or rewritten are freed.
 */
export async function storeBitmaps(p: Qcow2Parts, meta: MetadataWriter, plans: readonly BitmapPlan[]): Promise<void> {
  const l = p.loaded;
  const cs = l.clusterSize;
  await meta.flush();
  const old = l.bitmaps;
  const oldExt = l.ext.bitmaps;
  // tables that stay where they are, by offset (a kept bitmap may come with new flags)
  const keep = new Set<bigint>();
  const list: BitmapEntry[] = plans.map((plan) => plan.entry);
  for (const plan of plans) if (!plan.data) keep.add(plan.entry.tableOffset);
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i]!;
    if (!plan.data) continue;
    const entries = bitmapGeometry(l.size, plan.entry.granularityBits, cs).tableEntries;
    const tableOffset = await writeBitmap(p, meta, plan.data, entries);
    list[i] = { ...plan.entry, tableOffset: BigInt(tableOffset), tableSize: entries };
  }
  const dir = encodeDirectory(list);
  let dirOffset = 0;
  if (dir.length > 0) {
    // only the directory's bytes are written, as qemu does (the file may end inside the cluster)
    dirOffset = await meta.alloc.allocateMeta(Math.ceil(dir.length / cs));
    await p.proto.pwrite(dir, dirOffset);
  }
  await meta.flush();
  await p.proto.flush();

  const h = { ...l.header };
  const ext: Extensions = { ...l.ext };
  if (list.length > 0) {
    ext.bitmaps = { nbBitmaps: list.length, directorySize: BigInt(dir.length), directoryOffset: BigInt(dirOffset) };
    h.autoclearFeatures |= AUTOCLEAR_BITMAPS;
  } else {
    delete ext.bitmaps;
    h.autoclearFeatures &= ~AUTOCLEAR_BITMAPS;
  }
  await writeHeaderArea(p, h, ext, currentName(p));
  l.bitmaps = list;

  // qemu discards freed bitmap data clusters, not tables or directories ("other" discards are off)
  const frees: Array<[number, number, boolean]> = [];
  if (oldExt && oldExt.directorySize > 0n) frees.push([Number(oldExt.directoryOffset), Number(oldExt.directorySize), false]);
  for (const b of old) {
    if (keep.has(b.tableOffset)) continue;
    frees.push(...(await storedRanges(p, b)));
  }
  for (const [off, bytes, discard] of frees) await meta.alloc.release(off, bytes, discard);
  await meta.flush();
}

/**
 * Rewrite the directory where it is with new flags only (qemu marks the bitmaps it loads in-use
 * this way when it opens an image read-write): one write of the same size at the same place.
 */
export async function rewriteDirectoryInPlace(p: Qcow2Parts, list: readonly BitmapEntry[]): Promise<void> {
  const ext = p.loaded.ext.bitmaps!;
  const dir = encodeDirectory(list);
  await p.proto.pwrite(dir, Number(ext.directoryOffset));
  await p.proto.flush();
  p.loaded.bitmaps = [...list];
}
