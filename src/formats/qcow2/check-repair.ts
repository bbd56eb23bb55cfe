/**
 * The comparing and repairing phases of a qcow2 check: stored refcounts against counted ones
 * (fixing leaks and too-low counts in place), rebuilding the refcount structures from the counts
 * when they are themselves broken, and the "copied" flag (bit 63) of active L1/L2 entries, which
 * must say whether the cluster's refcount is exactly 1.
 *
 * Every repair write lands where nothing references it yet, or changes only what the counts
 * prove: a rebuild writes new refcount blocks and a new refcount table into free clusters and
 * only then, after a flush, points the header at them, so a crash at any moment leaves either the
 * old structures or the new ones in force.
 */
import { CheckAbort, hex64, type CheckCtx, type Fix } from './check-context.js';
import { refcountAt, StoredRefError, StoredRefs } from './check-stored.js';
import { OL_ACTIVE_L2, overlapOk } from './check-overlap.js';
import { isZeroTable } from './check-count.js';
import { L2TableReader } from './check-tables.js';
import { readMeta } from './l2-cache.js';

const TWO32 = 0x100000000;

/**
 * qemu's compare_refcounts: report (and with `fix`, repair) every cluster whose stored refcount
 * differs from the counted one. Returns the highest cluster in use and whether a stored refcount
 * of zero for a used cluster calls for a rebuild.
 */
export async function compareRefcounts(c: CheckCtx, fix: Fix): Promise<{ highest: number; rebuild: boolean }> {
  const st = c.stored;
  const imrt = c.imrt;
  const res = c.res;
  const scan = { highest: 0 };
  let rebuild = false;
  const freed: number[] = [];
  const per = st.perBlock;
  for (let start = 0; start < imrt.size; start += per) {
    const end = Math.min(imrt.size, start + per);
    let block: Uint8Array | null;
    try {
      block = await st.blockData(start / per);
    } catch (e) {
      if (!(e instanceof StoredRefError)) throw e;
      for (let i = start; i < end; i++) {
        c.msg(`Can't get refcount for cluster ${i}: ${e.message}`);
        res.checkErrors++;
      }
      continue;
    }
    // equalRun passes over the clusters whose counts agree; the loop body sees the others
    for (let i = equalRun(scan, block, st.order, imrt.counters, start, start, end); i < end; i = equalRun(scan, block, st.order, imrt.counters, start, i + 1, end)) {
      const stored = block ? refcountAt(block, i - start, st.order) : 0;
      const counted = imrt.get(i);
      if (stored > 0 || counted > 0) scan.highest = i;
      let repair: 'leak' | 'error' | undefined;
      if (stored === 0) rebuild = true;
      else if (stored > counted && fix.leaks) repair = 'leak';
      else if (stored < counted && fix.errors) repair = 'error';
      // 64-bit refcounts past 2^53 are read saturated; the message shows the stored value exactly
      const shown = block && st.order === 6 && stored === Number.MAX_SAFE_INTEGER
        ? new DataView(block.buffer, block.byteOffset, block.byteLength).getBigUint64((i - start) * 8).toString()
        : String(stored);
      c.msg(`${repair ? 'Repairing' : stored < counted ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${shown} reference=${counted}`);
      if (repair) {
        await st.set(i, counted);
        if (counted === 0) freed.push(i);
        if (repair === 'leak') res.leaksFixed++;
        else res.corruptionsFixed++;
        continue;
      }
      if (stored < counted) res.corruptions++;
      else res.leaks++;
    }
  }
  if (c.fatal) {
    // qemu's refcount updates go through its cache, which an unusable image never writes back
    st.discardChanges();
  } else {
    await st.flush();
    await discardClusters(c, freed);
  }
  return { highest: scan.highest, rebuild };
}

/**
 * compareRefcounts' walk over the clusters from `i` to `end` of the refcount block that starts at
 * cluster `start` (`block` null: no block, all stored refcounts zero), as long as the stored and
 * counted refcounts agree; `scan.highest` follows the last cluster in use. Returns the first
 * cluster whose counts differ, or `end`.
 */
function equalRun(scan: { highest: number }, block: Uint8Array | null, order: number, counted: ArrayLike<number>,
  start: number, from: number, end: number): number {
  let i = from;
  let highest = scan.highest;
  if (block === null) {
    while (i < end && counted[i] === 0) i++;
  } else if (order === 4) {
    for (; i < end; i++) {
      const j = (i - start) * 2;
      const v = (block[j]! << 8) | block[j + 1]!;
      if (v !== counted[i]) break;
      if (v !== 0) highest = i;
    }
  } else {
    for (; i < end; i++) {
      const v = refcountAt(block, i - start, order);
      if (v !== counted[i]) break;
      if (v !== 0) highest = i;
    }
  }
  scan.highest = highest;
  return i;
}

/** Give freed clusters back to the host, as qemu does (they read as zeros afterwards). */
async function discardClusters(c: CheckCtx, clusters: readonly number[]): Promise<void> {
  const proto = c.p.proto;
  if (!proto.discard || clusters.length === 0) return;
  const len = await proto.size();
  for (let i = 0; i < clusters.length;) {
    let j = i + 1;
    while (j < clusters.length && clusters[j] === clusters[j - 1]! + 1) j++;
    const start = clusters[i]! * c.cs;
    const end = Math.min(len, (clusters[j - 1]! + 1) * c.cs);
    if (start < end) await proto.discard(start, end - start);
    i = j;
  }
}

/**
 * qemu's rebuild_refcount_structure: lay the counted refcounts out as new refcount blocks in free
 * clusters, then a new refcount table, and point the header at it. The old structures are left
 * alone (they become leaks the caller then frees).
 */
export async function rebuildRefcounts(c: CheckCtx): Promise<void> {
  const imrt = c.imrt;
  const cs = c.cs;
  const per = c.stored.perBlock;
  const table: number[] = [];
  const write = async (first: number, endIn: number): Promise<boolean> => {
    let end = endIn;
    let grown = false;
    const from = { value: 0 };
    for (let cluster = first; cluster < end; cluster++) {
      if (imrt.get(cluster) === 0) continue;
      const idx = Math.floor(cluster / per);
      const start = idx * per;
      let off = table[idx] ?? 0;
      if (off === 0) {
        if (from.value < start) from.value = start;
        const at = imrt.allocate(1, from);
        if (at >= end) end = at + 1;
        if (table.length <= idx) {
          const entries = Math.ceil(((idx + 1) * 8) / cs) * cs / 8;
          while (table.length < entries) table.push(0);
          grown = true;
        }
        off = at * cs;
        table[idx] = off;
      }
      await writeMeta(c, off, imrt.refblock(idx, c.clusterBits), 'ERROR writing refblock');
      cluster = start + per - 1;
    }
    return grown;
  };
  await write(0, imrt.size);
  let tableAt = 0;
  let tableClusters = 0;
  for (let grown = true; grown;) {
    tableClusters = Math.ceil((table.length * 8) / cs);
    tableAt = imrt.allocate(tableClusters, { value: 0 });
    grown = await write(tableAt, tableAt + tableClusters);
  }
  const bytes = new Uint8Array(table.length * 8);
  const dv = new DataView(bytes.buffer);
  table.forEach((off, i) => {
    dv.setUint32(i * 8, Math.floor(off / TWO32));
    dv.setUint32(i * 8 + 4, off >>> 0);
  });
  await writeMeta(c, tableAt * cs, bytes, 'ERROR writing reftable');
  // the header names the new table only once the table and its blocks are on disk
  await c.p.proto.flush();
  const ptr = new Uint8Array(12);
  const pv = new DataView(ptr.buffer);
  pv.setUint32(0, Math.floor((tableAt * cs) / TWO32));
  pv.setUint32(4, (tableAt * cs) >>> 0);
  pv.setUint32(8, tableClusters);
  await c.p.proto.pwrite(ptr, 48);
  await c.p.proto.flush();
  const h = c.p.loaded.header;
  h.refcountTableOffset = BigInt(tableAt * cs);
  h.refcountTableClusters = tableClusters;
  c.p.loaded.refcountTableOffset = tableAt * cs;
  const full = new Uint8Array(tableClusters * cs);
  full.set(bytes);
  c.stored = new StoredRefs(c.p.proto, c.clusterBits, c.stored.order, full, await c.p.proto.size(), (m) => c.signalCorruption(m));
}

async function writeMeta(c: CheckCtx, offset: number, data: Uint8Array, what: string): Promise<void> {
  if (!(await overlapOk(c, 0, offset, data.length))) {
    c.msg(`qemu-img: ${what}: Input/output error`);
    c.res.checkErrors++;
    throw new CheckAbort('Input/output error');
  }
  await c.p.proto.pwrite(data, offset);
}

/** Stored refcount of cluster `k`, or undefined when it cannot be read (qemu skips those silently). */
async function storedOrSkip(c: CheckCtx, k: number): Promise<number | undefined> {
  const quick = c.stored.peek(k);
  if (quick !== undefined) return quick;
  try {
    return await c.stored.get(k);
  } catch (e) {
    if (e instanceof StoredRefError) return undefined;
    throw e;
  }
}

/** qemu's check_oflag_copied over the active L1 table and its L2 tables. */
export async function checkCopied(c: CheckCtx, fix: Fix): Promise<void> {
  const res = c.res;
  const repair = fix.errors || (fix.leaks && !res.checkErrors && !res.corruptions && !res.leaks);
  const map = c.p.map;
  const g = map.geo;
  const l1 = map.l1View;
  const single = new Uint8Array(g.clusterSize);
  const tables = new L2TableReader(c.p.proto, g.clusterSize, l1, map.l1Entries, c.fileLen);
  // tables the counting walk found right need no second look, if it walked this same L1 table
  const cc = c.copiedChecked;
  const checked = cc && Buffer.from(cc.l1.buffer, cc.l1.byteOffset, cc.l1.byteLength).equals(map.l1) ? cc.tables : undefined;
  for (let i = 0; i < map.l1Entries; i++) {
    const hi = l1.getUint32(i * 8);
    const lo = l1.getUint32(i * 8 + 4);
    const l2Big = (BigInt(hi & 0xffffff) << 32n) | BigInt((lo & 0xfffffe00) >>> 0);
    if (l2Big === 0n) continue;
    const safe = l2Big <= BigInt(Number.MAX_SAFE_INTEGER);
    const l2 = Number(l2Big);
    const rc = safe ? await storedOrSkip(c, Math.floor(l2 / g.clusterSize)) : 0;
    if (rc === undefined) continue;
    if ((rc === 1) !== ((hi & 0x80000000) !== 0)) {
      res.corruptions++;
      c.msg(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex64(hi, lo)} refcount=${rc}`);
      if (repair) {
        l1.setUint32(i * 8, rc === 1 ? (hi | 0x80000000) >>> 0 : hi & 0x7fffffff);
        await c.p.proto.pwrite(map.l1.slice(i * 8, i * 8 + 8), c.p.loaded.l1Offset + i * 8);
        res.corruptions--;
        res.corruptionsFixed++;
      }
    }
    // past the end of the file the table reads as zeros: no entry to check
    if (!(safe && l2 < c.fileLen)) continue;
    if (checked?.[i]) continue;
    let table = await tables.table(i, l2);
    if (!table) {
      table = single;
      await readMeta(c.p.proto, table, l2);
    }
    if (isZeroTable(table)) continue;
    const dirty = await copiedInL2(c, table, repair);
    if (dirty === 0) continue;
    if (!(await overlapOk(c, OL_ACTIVE_L2, l2, g.clusterSize))) {
      c.msg('ERROR: Could not write L2 table; metadata overlap check failed: Input/output error');
      res.checkErrors++;
      throw new CheckAbort('Input/output error');
    }
    await c.p.proto.pwrite(table, l2);
    map.l2Cache.drop(l2);
    res.corruptions -= dirty;
    res.corruptionsFixed += dirty;
  }
  await c.p.proto.flush();
}

/** Check (and with `repair`, fix in `table`) the copied flags of one L2 table; returns how many were fixed. */
async function copiedInL2(c: CheckCtx, table: Uint8Array, repair: boolean): Promise<number> {
  const walk: CopiedWalk = { dv: new DataView(table.buffer, table.byteOffset, table.byteLength), j: 0, dirty: 0, repair };
  // synchronous while the refcounts are in the block at hand (a whole preallocated table is);
  // a miss reads that block and the walk goes on after the entry
  for (let k = copiedScan(c, walk); k >= 0; k = copiedScan(c, walk)) {
    const rc = await storedOrSkip(c, k);
    if (rc !== undefined) copiedEntry(c, walk, rc);
    walk.j++;
  }
  return walk.dirty;
}

interface CopiedWalk { dv: DataView; j: number; dirty: number; repair: boolean }

/** Walk entries from `w.j` on; returns the cluster whose refcount is not at hand (w.j at its entry), or -1 at the end. */
function copiedScan(c: CheckCtx, w: CopiedWalk): number {
  const g = c.p.map.geo;
  const n = 2 ** g.l2Bits;
  const eb = g.entryBytes;
  const extL2 = g.extL2;
  const dataFile = g.hasDataFile;
  const cb = g.clusterBits;
  // bits of the high half that would make the cluster number reach 2^31 (then computed in doubles)
  const tooFar = 0xffffff & ~((1 << (cb - 1)) - 1);
  const st = c.stored;
  const perBits = cb + 3 - st.order;
  const perMask = st.perBlock - 1;
  const order = st.order;
  const dv = w.dv;
  // the block at hand, looked up again only when an entry's refcount lies in another one
  let ti = -1;
  let block: Uint8Array | null = null;
  // int32 throughout, as in the counting walk (check-count.ts countPlain)
  for (; w.j < n; w.j++) {
    const at = w.j * eb;
    const hi = dv.getInt32(at);
    const lo = dv.getInt32(at + 4);
    if (hi & 0x40000000) continue;
    const offHi = hi & 0xffffff;
    const zeroFlag = (lo & 1) !== 0 && !extL2;
    const hasHost = offHi !== 0 || (lo & ~0x1ff) !== 0 || (!zeroFlag && dataFile && hi < 0);
    if (!hasHost) continue;
    let rc = 1;
    if (!dataFile) {
      if (offHi >= 0x200000) {
        rc = 0;
      } else {
        const k = (offHi & tooFar) === 0
          ? (offHi << (32 - cb)) | (lo >>> cb)
          : Math.floor((offHi * TWO32 + ((lo & 0xfffffe00) >>> 0)) / 2 ** cb);
        const kt = k < 0x80000000 ? k >>> perBits : Math.floor(k / 2 ** perBits);
        if (kt !== ti) {
          const b = st.peekBlock(kt);
          if (b === undefined) return k;
          ti = kt;
          block = b;
        }
        const r = k < 0x80000000 ? k & perMask : k - kt * 2 ** perBits;
        rc = block === null ? 0 : order === 4 ? (block[2 * r]! << 8) | block[2 * r + 1]! : refcountAt(block, r, order);
      }
    }
    if ((rc === 1) !== (hi < 0)) copiedEntry(c, w, rc);
  }
  return -1;
}

/** Entry `w.j` with stored refcount `rc`: report (and with repair, fix) a wrong copied flag. */
function copiedEntry(c: CheckCtx, w: CopiedWalk, rc: number): void {
  const at = w.j * c.p.map.geo.entryBytes;
  const hi = w.dv.getUint32(at);
  const lo = w.dv.getUint32(at + 4);
  if ((rc === 1) === ((hi & 0x80000000) !== 0)) return;
  c.res.corruptions++;
  c.msg(`${w.repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex64(hi, lo)} refcount=${rc}`);
  if (w.repair) {
    w.dv.setUint32(at, rc === 1 ? (hi | 0x80000000) >>> 0 : hi & 0x7fffffff);
    w.dirty++;
  }
}
