/**
 * Counting phase of a qcow2 check (qcow2.txt "Host cluster management"): every host cluster the
 * metadata uses gets one reference per use in the in-memory refcount table — the header, the
 * active and every snapshot's L1 table with their L2 tables and data clusters, the snapshot table,
 * the refcount table and blocks, the encryption header, the bitmap directory, tables and data.
 * Damaged entries are reported on the way with qemu's wording; with error repair, preallocated
 * clusters at unaligned offsets are turned into zero clusters, and refcount blocks past the end
 * of the file get the file grown under them.
 */
import { CheckAbort, hex, hex64, hexAlt, type CheckCtx, type Fix } from './check-context.js';
import { maxCheckClusters } from './check-imrt.js';
import { OL_ACTIVE_L2, OL_INACTIVE_L2, overlapOk, snapshotTableBytes } from './check-overlap.js';
import { compressedDescriptor } from './l1l2.js';
import { MAX_L1_BYTES } from './limits.js';
import { L2TableReader } from './check-tables.js';
import { isAllZero } from '../../block/bytes.js';
import { readMeta } from './l2-cache.js';
import { countPlain, type CopiedCheck, type L2Walk } from './check-plain.js';

const TWO32 = 0x100000000;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_MAX = (1n << 63n) - 1n;

/** Bits 9-55 of a table entry. */
function entryOff(hi: number, lo: number): number {
  return (hi & 0xffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
}

/** Count one reference to every cluster of [offset, offset+size) (qemu's qcow2_inc_refcounts_imrt). */
export function inc(c: CheckCtx, offset: number | bigint, size: number): void {
  if (size <= 0) return;
  if (typeof offset === 'bigint') {
    if (offset + BigInt(size) - BigInt(c.fileLen) >= BigInt(c.cs)) {
      exceeding(c, offset, size);
      return;
    }
    offset = Number(offset);
  } else if (offset + size - c.fileLen >= c.cs) {
    exceeding(c, offset, size);
    return;
  }
  const imrt = c.imrt;
  const last = Math.floor((offset + size - 1) / c.cs);
  for (let k = Math.floor(offset / c.cs); k <= last; k++) {
    if (k >= imrt.size) imrt.grow(k + 1);
    const v = imrt.get(k);
    if (v === imrt.max) {
      c.msg(`ERROR: overflow cluster offset=0x${hex(k * c.cs)}`);
      c.msg('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing');
      c.res.corruptions++;
      continue;
    }
    imrt.set(k, v + 1);
  }
}

function exceeding(c: CheckCtx, offset: number | bigint, size: number): void {
  c.msg(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
  c.res.corruptions++;
}

/** Bits 9-55 of a table entry, as a number when exact, else as a bigint. */
function entryOffset(hi: number, lo: number): number | bigint {
  if (hi & 0xe00000) return (BigInt(hi & 0xffffff) << 32n) | BigInt((lo & 0xfffffe00) >>> 0);
  return entryOff(hi, lo);
}

/** `n` bytes of the file at `offset`; past 2^53 (and before qemu's 2^63 request limit) zeros. */
async function readAt(c: CheckCtx, at: number | bigint, n: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(n);
  const offset = BigInt(at);
  if (offset > INT64_MAX - BigInt(n)) {
    c.msg(`ERROR: I/O error in ${what}`);
    c.res.checkErrors++;
    throw new CheckAbort('Input/output error');
  }
  if (offset <= SAFE && Number(offset) < c.fileLen) await readMeta(c.p.proto, buf, Number(offset));
  return buf;
}

export async function checkL1(c: CheckCtx, l1Offset: bigint, l1Size: number, frag: boolean, fix: Fix, active: boolean): Promise<void> {
  if (l1Size === 0) return;
  inc(c, l1Offset, l1Size * 8);
  c.spend(l1Size);
  const l1 = await readAt(c, l1Offset, l1Size * 8, 'check_refcounts_l1');
  const dv = new DataView(l1.buffer);
  const tables = new L2TableReader(c.p.proto, c.cs, dv, l1Size, c.fileLen);
  // nothing is written during a read-only check: the copied flags can be checked on this walk
  const verify = active && !c.writable;
  if (verify) c.copiedChecked = { l1, tables: new Uint8Array(l1Size) };
  for (let i = 0; i < l1Size; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    if (hi === 0 && lo === 0) continue;
    if (hi & 0x7f000000 || lo & 0x1ff) {
      c.msg(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
      c.res.corruptions++;
    }
    const l2 = entryOffset(hi, lo);
    inc(c, l2, c.cs);
    if (lo & (c.cs - 1) & 0xfffffe00) {
      c.msg(`ERROR l2_offset=${hex(l2)}: Table is not cluster aligned; L1 entry corrupted`);
      c.res.corruptions++;
    }
    const copied = verify && typeof l2 === 'number' && l2 % c.cs === 0 ? { ok: true, ti: -1, block: null, miss: -1 } : null;
    await checkL2(c, l2, frag, fix, active, () => (typeof l2 === 'number' ? tables.table(i, l2) : Promise.resolve(undefined)), copied);
    if (copied?.ok) c.copiedChecked!.tables[i] = 1;
  }
}

/** `batched`: the table from the L1 walk's reader, when it could read it with its neighbours. */
async function checkL2(c: CheckCtx, l2: number | bigint, frag: boolean, fix: Fix, active: boolean,
  batched: () => Promise<Uint8Array | undefined>, copied: CopiedCheck | null): Promise<void> {
  const g = c.p.map.geo;
  const n = 2 ** g.l2Bits;
  c.spend(n);
  // a table past the end of the file reads as zeros: nothing to count (a hostile L1 can name
  // tens of thousands of them; reading and walking each would take minutes)
  const at = BigInt(l2);
  if (at <= INT64_MAX - BigInt(g.clusterSize) && !(at <= SAFE && Number(at) < c.fileLen)) {
    if (copied) copied.ok = false;
    return;
  }
  const table = (await batched()) ?? await readAt(c, l2, g.clusterSize, 'check_refcounts_l2');
  const w: L2Walk = { table, dv: new DataView(table.buffer, table.byteOffset, table.byteLength), l2, nextContiguous: 0, copied };
  // countPlain takes the entries that need no message, repair or I/O; slowEntry the others
  for (let i = countPlain(c, w, 0, frag); i < n;) {
    if (copied && copied.miss >= 0) {
      // the stored refcount block an entry's copied flag needs: read it (if that is silent) and go on at that entry
      if (!(await c.stored.prefetch(copied.miss)) || c.stored.cachedBlock(copied.miss) === undefined) copied.ok = false;
      copied.miss = -1;
      i = countPlain(c, w, i, frag);
      continue;
    }
    // checkCopied passes over compressed entries; it checks every other one the fast walk left
    if (copied && !(w.dv.getUint32(i * g.entryBytes) & 0x40000000)) copied.ok = false;
    await slowEntry(c, w, i, frag, fix, active);
    i = countPlain(c, w, i + 1, frag);
  }
}

/** checkL2's work for entry `i`, one that needs a message, a repair or I/O. */
async function slowEntry(c: CheckCtx, w: L2Walk, i: number, frag: boolean, fix: Fix, active: boolean): Promise<void> {
  const g = c.p.map.geo;
  const at = i * g.entryBytes;
  const hi = w.dv.getUint32(at);
  const lo = w.dv.getUint32(at + 4);
  const bhi = g.extL2 ? w.dv.getUint32(at + 8) : 0;
  const blo = g.extL2 ? w.dv.getUint32(at + 12) : 0;
  if ((hi | lo | bhi | blo) === 0) return;
  if (hi & 0x40000000) {
    compressedEntry(c, i, hi, lo, bhi | blo, frag);
    return;
  }
  if (hi & 0x3f000000 || lo & 0x1fe) {
    c.msg(`ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
    c.res.corruptions++;
  }
  const off = entryOff(hi, lo);
  const zeroFlag = (lo & 1) !== 0 && !g.extL2;
  const hasHost = off !== 0 || (!zeroFlag && g.hasDataFile && (hi & 0x80000000) !== 0);
  if (!hasHost) {
    if (!zeroFlag && blo) {
      c.res.corruptions++;
      c.msg('ERROR: Unallocated cluster has non-zero subcluster allocation map');
    }
    return;
  }
  const plain = (bhi & blo) === 0 && ((lo & 0xfffffe00) >>> 0) % g.clusterSize === 0;
  if (!plain && !(await hostEntry(c, w, i, hi, lo, bhi, blo, fix, active))) return;
  if (frag) {
    c.res.allocatedClusters++;
    if (w.nextContiguous && off !== w.nextContiguous) c.res.fragmentedClusters++;
    w.nextContiguous = off + g.clusterSize;
  }
  if (!g.hasDataFile) inc(c, entryOffset(hi, lo), g.clusterSize);
}

/** Whether a table holds only zero entries (then no entry of it needs checking). */
export function isZeroTable(t: Uint8Array): boolean {
  return isAllZero(t);
}

function compressedEntry(c: CheckCtx, i: number, hi: number, lo: number, bitmap: number, frag: boolean): void {
  const g = c.p.map.geo;
  const d = compressedDescriptor(hi, lo, g.clusterBits);
  if (hi & 0x80000000) {
    c.msg(`ERROR: coffset=0x${hex(d.exact)}: copied flag must never be set for compressed clusters`);
    hi &= 0x7fffffff;
    c.res.corruptions++;
  }
  if (g.hasDataFile) {
    c.msg(`ERROR compressed cluster ${i} with data file, entry=0x${hex64(hi, lo)}`);
    c.res.corruptions++;
    return;
  }
  if (bitmap) {
    c.msg(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hex64(hi, lo)}`);
    c.res.corruptions++;
    return;
  }
  inc(c, d.exact, d.size);
  if (frag) {
    c.res.allocatedClusters++;
    c.res.compressedClusters++;
    // compressed clusters share sectors with their neighbours: qemu counts each as fragmented
    c.res.fragmentedClusters++;
  }
}

/**
 * Checks of an entry with a host cluster (normal or preallocated zero). Returns false when the
 * entry was repaired into a zero cluster and no longer uses its cluster.
 */
async function hostEntry(c: CheckCtx, w: L2Walk, i: number, hi: number, lo: number, bhi: number, blo: number, fix: Fix, active: boolean): Promise<boolean> {
  const g = c.p.map.geo;
  const offHex = hex(entryOffset(hi, lo));
  if (bhi & blo) {
    c.res.corruptions++;
    c.msg(`ERROR offset=${offHex}: Allocated cluster has corrupted subcluster allocation bitmap`);
  }
  if (((lo & 0xfffffe00) >>> 0) % g.clusterSize === 0) return true;
  c.res.corruptions++;
  const containsData = g.extL2 ? blo !== 0 : (lo & 1) === 0;
  if (containsData) {
    c.msg(`ERROR offset=${offHex}: Data cluster is not properly aligned; L2 entry corrupted.`);
    return true;
  }
  c.msg(`${fix.errors ? 'Repairing' : 'ERROR'} offset=${offHex}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
  if (!fix.errors) return true;
  return !(await zeroEntry(c, w, i, bhi, blo, active));
}

/** qemu's fix_l2_entry_by_zero: the entry becomes a zero cluster without a host cluster. True when fixed. */
async function zeroEntry(c: CheckCtx, w: L2Walk, i: number, bhi: number, blo: number, active: boolean): Promise<boolean> {
  const g = c.p.map.geo;
  const at = i * g.entryBytes;
  if (g.extL2) {
    // allocated subclusters read as zeros from now on
    w.dv.setUint32(at + 8, (bhi | blo) >>> 0);
    w.dv.setUint32(at + 12, 0);
    w.dv.setUint32(at, 0);
    w.dv.setUint32(at + 4, 0);
  } else {
    w.dv.setUint32(at, 0);
    w.dv.setUint32(at + 4, 1);
  }
  const where = Number(w.l2) + at;
  if (!(await overlapOk(c, active ? OL_ACTIVE_L2 : OL_INACTIVE_L2, where, g.entryBytes))) {
    c.msg('ERROR: Overlap check failed');
    c.res.checkErrors++;
    throw new CheckAbort('Input/output error');
  }
  await c.p.proto.pwrite(w.table.slice(at, at + g.entryBytes), where);
  await c.p.proto.flush();
  c.p.map.l2Cache.drop(Number(w.l2));
  c.res.corruptions--;
  c.res.corruptionsFixed++;
  return true;
}

/** Count the snapshots' L1 trees and the snapshot table itself. */
async function countSnapshots(c: CheckCtx, fix: Fix): Promise<void> {
  const l = c.p.loaded;
  if (c.p.map.geo.hasDataFile && l.snapshots.length) {
    c.msg(`ERROR ${l.snapshots.length} snapshots in image with data file`);
    c.res.corruptions++;
  }
  for (const s of l.snapshots) {
    if (s.l1TableOffset % BigInt(c.cs) !== 0n) {
      c.msg(`ERROR snapshot ${s.id} (${s.name}) l1_offset=${hexAlt(s.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      c.res.corruptions++;
      continue;
    }
    if (s.l1Size > MAX_L1_BYTES / 8) {
      c.msg(`ERROR snapshot ${s.id} (${s.name}) l1_size=${hexAlt(s.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
      c.res.corruptions++;
      continue;
    }
    await checkL1(c, s.l1TableOffset, s.l1Size, false, fix, false);
  }
  inc(c, l.header.snapshotsOffset, l.snapshots.length ? snapshotTableBytes(c) : 0);
}

/** The bitmap directory, each bitmap's table and the clusters its entries name. */
async function countBitmaps(c: CheckCtx): Promise<void> {
  const l = c.p.loaded;
  const ext = l.ext.bitmaps;
  if (!ext || ext.nbBitmaps === 0) return;
  inc(c, ext.directoryOffset, Number(ext.directorySize));
  for (const bm of l.bitmaps) {
    inc(c, bm.tableOffset, bm.tableSize * 8);
    c.spend(bm.tableSize);
    const t = await readAt(c, bm.tableOffset, bm.tableSize * 8, 'bitmap table');
    const dv = new DataView(t.buffer);
    const offsets: number[] = [];
    for (let i = 0; i < bm.tableSize; i++) {
      const hi = dv.getUint32(i * 8);
      const lo = dv.getUint32(i * 8 + 4);
      const off = entryOff(hi, lo);
      const bad = hi & 0xff000000 || lo & 0x1fe || (off !== 0 && (lo & 1 || ((lo & 0xfffffe00) >>> 0) % c.cs !== 0));
      if (bad) {
        // qemu loads the whole table first and gives up on the check at a bad entry
        c.res.corruptions++;
        throw new CheckAbort('Invalid argument');
      }
      if (off) offsets.push(off);
    }
    for (const off of offsets) inc(c, off, c.cs);
  }
}

/** Account for each refcount block and check the refcount table entries. Returns whether a rebuild is needed. */
async function countRefblocks(c: CheckCtx, fix: Fix): Promise<boolean> {
  let rebuild = false;
  const st = c.stored;
  for (let i = 0; i < st.entries; i++) {
    const { hi, lo } = st.raw(i);
    if (lo & 0x1ff) {
      c.msg(`ERROR refcount table entry ${i} has reserved bits set`);
      c.res.corruptions++;
      rebuild = true;
      continue;
    }
    if (((lo >>> 0) % c.cs) !== 0) {
      c.msg(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
      c.res.corruptions++;
      rebuild = true;
      continue;
    }
    const offset = (BigInt(hi) << 32n) | BigInt(lo >>> 0);
    const cluster = offset / BigInt(c.cs);
    if (cluster >= BigInt(c.imrt.size)) {
      c.res.corruptions++;
      c.msg(`${fix.errors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
      if (fix.errors && !(await growUnder(c, offset))) rebuild = true;
      continue;
    }
    if (offset !== 0n) {
      inc(c, offset, c.cs);
      const n = c.imrt.get(Number(cluster));
      if (n !== 1) {
        c.msg(`ERROR refcount block ${i} refcount=${n}`);
        c.res.corruptions++;
        rebuild = true;
      }
    }
  }
  return rebuild;
}

/** Grow the file so a refcount block past its end is inside it (a zeroed block). False: could not. */
async function growUnder(c: CheckCtx, offset: bigint): Promise<boolean> {
  const cs = BigInt(c.cs);
  let why: string | undefined;
  if (offset > INT64_MAX - cs) why = 'Invalid argument';
  else if ((offset + cs) / cs > BigInt(Math.min(2 ** 53 / c.cs, maxCheckClusters(c.imrt.order)))) why = 'File too large';
  if (why === undefined) {
    const end = Number(offset + cs);
    await c.p.proto.truncate(end);
    await c.refreshFileLen();
    c.stored.setFileLen(c.fileLen);
    c.imrt.grow(Math.ceil(c.fileLen / c.cs));
    c.res.corruptions--;
    c.res.corruptionsFixed++;
    inc(c, offset, c.cs);
    return true;
  }
  c.msg(`ERROR could not resize image: ${why}`);
  return false;
}

/** qemu's calculate_refcounts. Returns whether the refcount structures must be rebuilt. */
export async function calculateRefcounts(c: CheckCtx, fix: Fix): Promise<boolean> {
  const l = c.p.loaded;
  const h = l.header;
  await c.refreshFileLen();
  c.stored.setFileLen(c.fileLen);
  inc(c, 0, c.cs);
  await checkL1(c, h.l1TableOffset, h.l1Size, true, fix, true);
  await countSnapshots(c, fix);
  inc(c, h.refcountTableOffset, h.refcountTableClusters * c.cs);
  if (l.ext.crypto && l.ext.crypto.length) inc(c, l.ext.crypto.offset, Number(l.ext.crypto.length));
  await countBitmaps(c);
  return countRefblocks(c, fix);
}
