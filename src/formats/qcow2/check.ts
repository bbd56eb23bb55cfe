/**
 * Consistency check (qemu-img check): count every reference the metadata makes to host clusters
 * (header, L1/L2 tables and data of the active state and every snapshot, snapshot table, refcount
 * table and blocks, encryption header, bitmaps), compare with the stored refcounts, and report
 * differences with qemu's wording: stored < counted is corruption, stored > counted is a leak.
 * Repair (-r) sets stored refcounts to the counted ones where a refcount block exists.
 */
import type { CheckResult, RepairMode } from '../../block/driver.js';
import { VdiskError } from '../../block/errors.js';
import type { Qcow2Parts } from './layer.js';
import { Refcounts } from './refcount.js';
import { compressedDescriptor, L2E_COMPRESSED_HI, L2E_COPIED_HI } from './l1l2.js';
import { readBitmapDirectory } from './bitmap.js';
import { diskTableBytes, type Snapshot } from './snapshot.js';

/** Clusters of host file the check counts in memory (4 bytes each): 256 MiB of counters at most. */
export const MAX_CHECK_CLUSTERS = 1 << 26;

const hex = (n: number): string => n.toString(16);
const hex64 = (hi: number, lo: number): string => ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);

interface Counter {
  counts: Uint32Array;
  res: CheckResult;
  fileLen: number;
}

export async function checkQcow2(p: Qcow2Parts, repair: RepairMode, rc: Refcounts | undefined): Promise<CheckResult> {
  const g = p.map.geo;
  const cs = g.clusterSize;
  const h = p.loaded.header;
  const fileLen = await p.proto.size();
  const nb = Math.ceil(fileLen / cs);
  if (nb > MAX_CHECK_CLUSTERS) {
    throw new VdiskError('limit', 'QCOW2_CHECK_TOO_BIG', `Image file has ${nb} clusters; vdisk checks at most ${MAX_CHECK_CLUSTERS}`, { path: p.path, format: 'qcow2' });
  }
  const res: CheckResult = {
    corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0,
    totalClusters: Math.ceil(p.loaded.size / cs), allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, messages: [],
  };
  const c: Counter = { counts: new Uint32Array(nb), res, fileLen };
  const refs = rc ?? await Refcounts.load(p.proto, h.clusterBits, h.refcountOrder, p.loaded.refcountTableOffset, h.refcountTableClusters, p.path);

  const complete = completeSnapshots(p, c);
  inc(c, cs, 0, cs);
  await countL1(p, c, p.loaded.l1Offset, p.map.l1, true);
  for (const s of complete) {
    const l1 = new Uint8Array(Math.min(s.l1Size, (32 << 20) / 8) * 8);
    await p.proto.pread(l1, Number(s.l1TableOffset));
    await countL1(p, c, Number(s.l1TableOffset), l1, false);
  }
  if (h.nbSnapshots > 0) inc(c, cs, Number(h.snapshotsOffset), snapshotTableBytes(p));
  inc(c, cs, Number(h.refcountTableOffset), h.refcountTableClusters * cs);
  if (p.loaded.ext.crypto) inc(c, cs, Number(p.loaded.ext.crypto.offset), Number(p.loaded.ext.crypto.length));
  await countBitmaps(p, c);
  for (let ti = 0; ti < refs.tableEntries; ti++) {
    const off = refs.blockOffset(ti);
    if (off === 0) continue;
    const cl = off / cs;
    if (cl >= nb) {
      res.messages.push(`ERROR refcount block ${ti} is outside image`);
      res.corruptions++;
      continue;
    }
    inc(c, cs, off, cs);
    if (c.counts[cl] !== 1) {
      res.messages.push(`ERROR refcount block ${ti} refcount=${c.counts[cl]}`);
      res.corruptions++;
    }
  }
  const highest = await compare(c, refs, cs, repair, p.readOnly);
  await checkCopied(p, c, refs);
  res.imageEndOffset = (highest + 1) * cs;
  return res;
}

function entryBytes(s: Snapshot): number {
  return Math.ceil((40 + s.extra.length + new TextEncoder().encode(s.id).length + new TextEncoder().encode(s.name).length) / 8) * 8;
}

function snapshotTableBytes(p: Qcow2Parts): number {
  return diskTableBytes(p.loaded.snapshots);
}

/** Snapshot entries that lie (partly) past the end of the file are corrupt and not followed. */
function completeSnapshots(p: Qcow2Parts, c: Counter): Snapshot[] {
  const out: Snapshot[] = [];
  let off = Number(p.loaded.header.snapshotsOffset);
  p.loaded.snapshots.forEach((s, i) => {
    off += entryBytes(s);
    if (off > c.fileLen) {
      c.res.messages.push(`ERROR snapshot table entry ${i} is incomplete`);
      c.res.corruptions++;
    } else {
      out.push(s);
    }
  });
  return out;
}

function inc(c: Counter, cs: number, offset: number, size: number): void {
  if (size <= 0) return;
  if (offset + size - c.fileLen >= cs) {
    c.res.messages.push(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}`);
    c.res.corruptions++;
    return;
  }
  for (let k = Math.floor(offset / cs); k * cs < offset + size; k++) {
    if (k >= c.counts.length) {
      const grown = new Uint32Array(k + 1);
      grown.set(c.counts);
      c.counts = grown;
    }
    c.counts[k]!++;
  }
}

async function countL1(p: Qcow2Parts, c: Counter, l1Offset: number, l1: Uint8Array, active: boolean): Promise<void> {
  const cs = p.map.geo.clusterSize;
  inc(c, cs, l1Offset, l1.length);
  const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < l1.length / 8; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    const off = (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
    if (off === 0) continue;
    if (hi & 0x7f000000 || lo & 0x1ff) {
      c.res.messages.push(`ERROR found L1 entry with reserved bits set: ${hex64(hi, lo)}`);
      c.res.corruptions++;
    }
    inc(c, cs, off, cs);
    if (off % cs) {
      c.res.messages.push(`ERROR l2_offset=${hex(off)}: Table is not cluster aligned; L1 entry corrupted`);
      c.res.corruptions++;
    }
    // qemu reads the table where the entry points even when unaligned; past the end it reads zeros
    if (off < c.fileLen) await countL2(p, c, off, active);
  }
}

async function countL2(p: Qcow2Parts, c: Counter, l2off: number, active: boolean): Promise<void> {
  let nextContiguous = 0;
  const g = p.map.geo;
  const table = await p.map.l2Cache.get(l2off);
  const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const external = p.data !== p.proto;
  for (let i = 0; i < 2 ** g.l2Bits; i++) {
    const hi = dv.getUint32(i * g.entryBytes);
    const lo = dv.getUint32(i * g.entryBytes + 4);
    if (hi & L2E_COMPRESSED_HI) {
      if (hi & L2E_COPIED_HI) {
        const d = compressedDescriptor(hi, lo, g.clusterBits);
        c.res.messages.push(`ERROR: coffset=0x${hex(d.hostOffset)}: copied flag must never be set for compressed clusters`);
        c.res.corruptions++;
      }
      const d = compressedDescriptor(hi, lo, g.clusterBits);
      if (d.exact > BigInt(Number.MAX_SAFE_INTEGER)) {
        c.res.messages.push(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${d.exact.toString(16)} size 0x${hex(d.size)}`);
        c.res.corruptions++;
      } else {
        inc(c, g.clusterSize, d.hostOffset, d.size);
      }
      if (active) {
        c.res.allocatedClusters++;
        c.res.compressedClusters++;
        c.res.fragmentedClusters++;
      }
      continue;
    }
    if (hi & 0x3f000000 || lo & (g.extL2 ? 0x1ff : 0x1fe)) {
      c.res.messages.push(`ERROR found l2 entry with reserved bits set: ${hex64(hi, lo)}`);
      c.res.corruptions++;
    }
    const off = (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
    const hasHost = off !== 0 || (external && (hi & L2E_COPIED_HI) !== 0);
    if (!hasHost) continue;
    if (off % g.clusterSize) {
      c.res.messages.push(`ERROR offset=${hex(off)}: Cluster is not properly aligned; L2 entry corrupted.`);
      c.res.corruptions++;
      continue;
    }
    if (active) {
      c.res.allocatedClusters++;
      if (nextContiguous !== 0 && off !== nextContiguous) c.res.fragmentedClusters++;
      nextContiguous = off + g.clusterSize;
    }
    if (!external) inc(c, g.clusterSize, off, g.clusterSize);
  }
}

async function countBitmaps(p: Qcow2Parts, c: Counter): Promise<void> {
  const b = p.loaded.ext.bitmaps;
  if (!b || p.loaded.bitmaps.length === 0) return;
  const cs = p.map.geo.clusterSize;
  inc(c, cs, Number(b.directoryOffset), Number(b.directorySize));
  for (const bm of await readBitmapDirectory(p.proto, b, p.path)) {
    const tableBytes = bm.tableSize * 8;
    inc(c, cs, Number(bm.tableOffset), tableBytes);
    const t = new Uint8Array(tableBytes);
    await p.proto.pread(t, Number(bm.tableOffset));
    const dv = new DataView(t.buffer);
    for (let i = 0; i < bm.tableSize; i++) {
      const off = (dv.getUint32(i * 8) & 0x00ffffff) * 0x100000000 + ((dv.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
      if (off) inc(c, cs, off, cs);
    }
  }
}

/** Compare stored and counted refcounts; returns the highest cluster either calls used. */
async function compare(c: Counter, refs: Refcounts, cs: number, repair: RepairMode, readOnly: boolean): Promise<number> {
  const res = c.res;
  const n = Math.max(c.counts.length, Math.ceil(c.fileLen / cs));
  let highest = -1;
  const fixes: Array<[number, number, number]> = [];
  for (let i = 0; i < n; i++) {
    const stored = await refs.get(i);
    const counted = c.counts[i] ?? 0;
    if (stored > 0 || counted > 0) highest = i;
    if (stored === counted) continue;
    const leak = stored > counted;
    res.messages.push(`${leak ? 'Leaked' : 'ERROR'} cluster ${i} refcount=${stored} reference=${counted}`);
    const fix = !readOnly && (repair === 'all' || (repair === 'leaks' && leak)) && refs.blockOffset(Math.floor(i / 2 ** refs.blockBits)) !== 0;
    if (fix) fixes.push([i, stored, counted]);
    else if (leak) res.leaks++;
    else res.corruptions++;
  }
  // as qemu: the whole comparison is reported first, then a second pass repairs
  for (const [i, stored, counted] of fixes) {
    res.messages.push(`Repairing cluster ${i} refcount=${stored} reference=${counted}`);
    await refs.add(i, counted - stored);
    if (stored > counted) res.leaksFixed++;
    else res.corruptionsFixed++;
  }
  if (res.leaksFixed || res.corruptionsFixed) await refs.flush();
  return highest;
}

/** Bit 63 of active L1/L2 entries must say whether the refcount is exactly 1. */
async function checkCopied(p: Qcow2Parts, c: Counter, refs: Refcounts): Promise<void> {
  const g = p.map.geo;
  const dv = p.map.l1View;
  const external = p.data !== p.proto;
  for (let i = 0; i < p.map.l1Entries; i++) {
    const hi = dv.getUint32(i * 8);
    const lo = dv.getUint32(i * 8 + 4);
    const off = (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
    if (off === 0) continue;
    const rcount = await refs.get(Math.floor(off / g.clusterSize));
    if ((rcount === 1) !== ((hi & 0x80000000) !== 0)) {
      c.res.messages.push(`ERROR OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${rcount}`);
      c.res.corruptions++;
    }
    if (off >= c.fileLen) continue;
    const table = await p.map.l2Cache.get(off);
    const tv = new DataView(table.buffer, table.byteOffset, table.byteLength);
    for (let j = 0; j < 2 ** g.l2Bits; j++) {
      const ehi = tv.getUint32(j * g.entryBytes);
      const elo = tv.getUint32(j * g.entryBytes + 4);
      if (ehi & L2E_COMPRESSED_HI) continue;
      const host = (ehi & 0x00ffffff) * 0x100000000 + ((elo & 0xfffffe00) >>> 0);
      if (host === 0 && !(external && ehi & L2E_COPIED_HI)) continue;
      const r = external ? 1 : await refs.get(Math.floor(host / g.clusterSize));
      if ((r === 1) !== ((ehi & 0x80000000) !== 0)) {
        c.res.messages.push(`ERROR OFLAG_COPIED data cluster: l2_entry=${hex64(ehi, elo)} refcount=${r}`);
        c.res.corruptions++;
      }
    }
  }
}
