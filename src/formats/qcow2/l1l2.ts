/**
 * Guest-to-host cluster mapping (qcow2.txt "Cluster mapping", "Extended L2 Entries").
 *
 * L1 entry: bits 9-55 L2 table offset, bit 63 "copied" (refcount 1).
 * L2 entry: bit 62 compressed, bit 63 copied; standard descriptor: bit 0 zero (v3 without extended
 * L2), bits 9-55 host cluster offset. Compressed descriptor: low x bits host byte offset, bits x-61
 * extra 512-byte sectors, x = 62 - (cluster_bits - 8). Extended L2 entries add a 64-bit bitmap:
 * bits 0-31 "subcluster allocated", bits 32-63 "subcluster reads as zeros".
 *
 * Host offsets are decoded from two 32-bit halves; anything at or above 2^53 is rejected as
 * corrupt before it can reach the I/O path.
 */
import { VdiskError } from '../../block/errors.js';
import type { TableCache } from './l2-cache.js';
import type { StatusRuns } from '../../block/status-runs.js';

export type SubclusterType =
  | 'unallocated' // ask the backing file
  | 'unallocated-alloc' // extended L2: host cluster exists, subcluster not yet written
  | 'zero-plain' // reads as zeros, no host cluster
  | 'zero-alloc' // reads as zeros, host cluster preallocated
  | 'normal'
  | 'compressed';

export interface Geometry {
  clusterBits: number;
  clusterSize: number;
  /** log2 of L2 entries per table. */
  l2Bits: number;
  extL2: boolean;
  /** Bytes per L2 entry: 8, or 16 with extended L2. */
  entryBytes: number;
  subclusterBits: number;
  subclusterSize: number;
  /** v3 without extended L2: bit 0 is the zero flag. */
  zeroFlag: boolean;
  hasDataFile: boolean;
}

export function geometry(clusterBits: number, extL2: boolean, version: number, hasDataFile: boolean): Geometry {
  const entryBytes = extL2 ? 16 : 8;
  const l2Bits = clusterBits - (extL2 ? 4 : 3);
  const subclusterBits = extL2 ? clusterBits - 5 : clusterBits;
  return {
    clusterBits, clusterSize: 2 ** clusterBits, l2Bits, extL2, entryBytes,
    subclusterBits, subclusterSize: 2 ** subclusterBits, zeroFlag: version >= 3 && !extL2, hasDataFile,
  };
}

/** SubclusterType as a small number (ClusterMap.runsSync). */
export const RUN_TYPE: Readonly<Record<SubclusterType, number>> = {
  'unallocated': 0, 'unallocated-alloc': 1, 'zero-plain': 2, 'zero-alloc': 3, 'normal': 4, 'compressed': 5,
};

/** RUN_TYPE's codes back to the types. */
export const RUN_TYPES: readonly SubclusterType[] = ['unallocated', 'unallocated-alloc', 'zero-plain', 'zero-alloc', 'normal', 'compressed'];

/** One run of guest bytes with the same kind of mapping. */
export interface Mapping {
  type: SubclusterType;
  /** Guest bytes from the queried offset. */
  length: number;
  /** Host byte of the queried guest offset (normal, zero-alloc, unallocated-alloc). */
  hostOffset?: number;
  /** Compressed cluster: where its bytes start and how many to read; the run stays within the cluster. */
  compressed?: { hostOffset: number; size: number; exact: bigint };
}

/** What entryAt finds for one (sub)cluster; host -1 when it has no host cluster. */
interface ScannedEntry {
  type: SubclusterType;
  end: number;
  host: number;
  compressed: { hostOffset: number; size: number; exact: bigint } | undefined;
}

export const L1E_COPIED_HI = 0x80000000;
export const L2E_COPIED_HI = 0x80000000;
export const L2E_COMPRESSED_HI = 0x40000000;
/** Bits 53..55 of a host offset: offsets this high cannot be real and would lose precision. */
export const UNSAFE_HI = 0x00e00000;

export function hx(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

export function corrupt(path: string, message: string, offset?: number): VdiskError {
  return new VdiskError('corrupt', 'QCOW2_CORRUPT', `Image is corrupt: ${message}`, { path, format: 'qcow2', ...(offset !== undefined ? { offset } : {}) });
}

/** Bits 9-55 of a table entry given as two halves, as a safe number (throws when out of range). */
export function entryOffset(hi: number, lo: number, path: string, what: string): number {
  if (hi & UNSAFE_HI) throw corrupt(path, `${what} offset beyond 2^53`);
  return (hi & 0x001fffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

/** Decode the host offset of a compressed descriptor and its byte count. */
export function compressedDescriptor(hi: number, lo: number, clusterBits: number): { hostOffset: number; size: number; exact: bigint } {
  const entry = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo >>> 0);
  const x = BigInt(62 - (clusterBits - 8));
  const off = entry & ((1n << x) - 1n);
  const sectors = Number(entry >> x) + 1;
  // offsets past 2^53 cannot be in any file; callers check `exact` before using hostOffset
  const hostOffset = Number(off);
  return { hostOffset, size: sectors * 512 - Number(off & 511n), exact: off };
}

export class ClusterMap {
  l1View: DataView;

  constructor(
    readonly geo: Geometry,
    /** The active L1 table, in file byte order. */
    public l1: Uint8Array,
    readonly l2Cache: TableCache,
    readonly path: string,
  ) {
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  }

  replaceL1(l1: Uint8Array): void {
    this.l1 = l1;
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  }

  get l1Entries(): number {
    return this.l1.length / 8;
  }

  /** Host offset of the L2 table for L1 index `i` (0: none). */
  l2Offset(i: number): number {
    if (i >= this.l1Entries) return 0;
    const hi = this.l1View.getUint32(i * 8);
    const lo = this.l1View.getUint32(i * 8 + 4);
    // alignment first, as qemu checks it: a garbage entry is reported as unaligned with its full offset
    if ((lo & 0xfffffe00 & (this.geo.clusterSize - 1)) !== 0) {
      const full = (BigInt(hi & 0x00ffffff) << 32n) | BigInt((lo & 0xfffffe00) >>> 0);
      const at = full <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(full) : undefined;
      throw corrupt(this.path, `L2 table offset 0x${full.toString(16)} unaligned (L1 index: ${hx(i)})`, at);
    }
    return entryOffset(hi, lo, this.path, 'L2 table');
  }

  /**
   * The mapping of the run starting at guest `offset`, at most `max` bytes long. Runs of
   * unallocated L1 entries are skipped a whole L2 range at a time, so a sparse 4 TiB image costs
   * a scan of its L1 table, never a read per cluster.
   */
  async lookup(offset: number, max: number): Promise<Mapping> {
    const m = this.lookupSync(offset, max);
    if (m) return m;
    const l2off = this.l2Offset(Math.floor(offset / 2 ** (this.geo.l2Bits + this.geo.clusterBits)));
    return this.lookupIn(await this.l2Cache.get(l2off), offset, max);
  }

  /** lookup's answer when it needs no table read (unallocated L1 entries, or the L2 table cached), else undefined. */
  lookupSync(offset: number, max: number): Mapping | undefined {
    const g = this.geo;
    const l2Span = 2 ** (g.l2Bits + g.clusterBits);
    let l1i = Math.floor(offset / l2Span);
    const l2off = this.l2Offset(l1i);
    if (l2off === 0) {
      let end = (l1i + 1) * l2Span;
      while (end < offset + max && this.l2Offset(++l1i) === 0) end += l2Span;
      return { type: 'unallocated', length: Math.min(end, offset + max) - offset };
    }
    const table = this.l2Cache.peek(l2off);
    return table && this.lookupIn(table, offset, max);
  }

  /** The run at `offset` in its L2 table `table`. */
  private lookupIn(table: Uint8Array, offset: number, max: number): Mapping {
    const g = this.geo;
    const l2Span = 2 ** (g.l2Bits + g.clusterBits);
    const l1i = Math.floor(offset / l2Span);
    const l2off = this.l2Offset(l1i);
    const dv = new DataView(table.buffer, table.byteOffset, table.byteLength);
    const limit = Math.min(offset + max, (l1i + 1) * l2Span);
    const r = this.run;
    const end = this.scanRun(dv, offset, limit, l2off);
    const m: Mapping = { type: r.type, length: end - offset };
    if (r.host >= 0) m.hostOffset = r.host;
    if (r.compressed) m.compressed = r.compressed;
    return m;
  }

  /** The run scanRun found last: its type, host byte at its start (-1: none), compressed descriptor. */
  private readonly run: ScannedEntry = { type: 'unallocated', end: 0, host: -1, compressed: undefined };

  /** The end of the run at `offset` in the table `dv` (at `l2off`), at most `limit`; the run's kind into this.run. */
  private scanRun(dv: DataView, offset: number, limit: number, l2off: number, words?: Int32Array): number {
    const e = this.scan;
    this.entryAt(dv, offset, l2off, e);
    const type = e.type;
    const host = e.host;
    const r = this.run;
    r.type = type;
    r.host = host;
    r.compressed = e.compressed;
    let pos = e.end;
    if (type !== 'compressed') {
      // the long stretch of like clusters in one integer loop; what it stops at goes entry by entry
      this.sameRunEnded = false;
      if (!this.geo.extL2 && pos < limit) pos = this.sameRun(dv, pos, limit, type, host < 0 ? -1 : host + (pos - offset), words);
      while (pos < limit && !this.sameRunEnded) {
        this.entryAt(dv, pos, l2off, e);
        if (e.type !== type) break;
        if (host >= 0 && e.host !== host + (pos - offset)) break;
        pos = e.end;
      }
    }
    return Math.min(pos, limit);
  }

  /**
   * lookupSync for many runs: consecutive runs from `offset` (at most `max` bytes, until
   * `out.limit` runs) appended to `out` as RUN_TYPE codes in `flags`, host byte in `hosts` (-1:
   * none); compressed runs carry no descriptor. An L2 table that is not cached is read with
   * `readTable` (a blocking read of the image file) into one scratch table, not the cache: a walk
   * over the whole image visits each table once, and caching them all made a map's memory grow
   * with the image. Without `readTable` it stops before such a table. Returns the bytes covered.
   * Only for images nothing writes to (the scratch copy would go stale).
   */
  runsSync(offset: number, max: number, out: StatusRuns, readTable?: (buf: Uint8Array, offset: number) => void): number {
    const g = this.geo;
    const l2Span = 2 ** (g.l2Bits + g.clusterBits);
    const end = offset + max;
    const r = this.run;
    let pos = offset;
    while (pos < end && !out.full) {
      let l1i = Math.floor(pos / l2Span);
      const l2off = this.l2Offset(l1i);
      if (l2off === 0) {
        let runEnd = (l1i + 1) * l2Span;
        while (runEnd < end && this.l2Offset(++l1i) === 0) runEnd += l2Span;
        runEnd = Math.min(runEnd, end);
        out.push(runEnd - pos, RUN_TYPE.unallocated, -1, 0);
        pos = runEnd;
        continue;
      }
      const cached = this.l2Cache.peek(l2off);
      const t = cached ? tableViews(cached) : readTable && this.scratchTable(l2off, readTable);
      if (!t) break;
      const { dv, words } = t;
      const limit = Math.min(end, (l1i + 1) * l2Span);
      while (pos < limit && !out.full) {
        const runEnd = this.scanRun(dv, pos, limit, l2off, words);
        out.push(runEnd - pos, RUN_TYPE[r.type], r.host, 0);
        pos = runEnd;
      }
    }
    return pos - offset;
  }

  /** runsSync's one table read outside the cache, and the host offset it was read from. */
  private scratch: (TableViews & { table: Uint8Array; from: number }) | undefined;

  private scratchTable(l2off: number, readTable: (buf: Uint8Array, offset: number) => void): TableViews {
    let s = this.scratch;
    if (!s) {
      const table = new Uint8Array(this.l2Cache.tableBytes);
      s = this.scratch = { table, ...tableViews(table), from: -1 };
    }
    if (s.from !== l2off) {
      s.from = -1;
      readTable(s.table, l2off);
      s.from = l2off;
    }
    return s;
  }

  /**
   * From cluster boundary `pos` on (standard L2 entries only), the end of the clusters that have
   * type `type` and, when `host` is not -1, continue the host run that reaches `host` at `pos`.
   * It stops early at anything unusual (compressed, unaligned, offsets out of range) and leaves
   * that to lookup's per-entry path, which also throws where entryAt does. A long unallocated run
   * is most of a sparse image's clusters: this is one loop over int32 entries, with no object per
   * cluster and no host offset in a double (both allocate before the optimizing compiler runs).
   */
  private sameRun(dv: DataView, from: number, limit: number, type: SubclusterType, host: number, words?: Int32Array): number {
    const g = this.geo;
    const cs = g.clusterSize;
    const cb = g.clusterBits;
    const wantZero = type === 'zero-alloc' || type === 'zero-plain';
    const wantHost = type === 'zero-alloc' || type === 'normal';
    const zeroFlag = g.zeroFlag;
    const dataFile = g.hasDataFile;
    const unaligned = (cs - 1) & ~0x1ff;
    const tooFar = 0x1fffff & ~((1 << (cb - 1)) - 1);
    // the host cluster the next entry must name; past 2^31 clusters the per-entry path decides
    let hk = 0;
    if (wantHost) {
      if (host % cs !== 0 || host / cs >= 0x7fffffff) return from;
      hk = host / cs;
    }
    const mask = (1 << g.l2Bits) - 1;
    let idx = Math.floor(from / cs) & mask;
    let pos = from;
    if (words && type === 'unallocated') {
      // entries that are all zero bits continue an unallocated run, whatever the byte order
      const stop = 2 * (idx + Math.ceil((limit - pos) / cs));
      let w = 2 * idx;
      while (w < stop && (words[w]! | words[w + 1]!) === 0) w += 2;
      pos += (w / 2 - idx) * cs;
      idx = w / 2;
    }
    for (; pos < limit; pos += cs, idx++) {
      const hi = dv.getInt32(idx * 8);
      const lo = dv.getInt32(idx * 8 + 4);
      if (hi & 0x40e00000) return pos;
      const hostHi = hi & 0x1fffff;
      const hasHost = hostHi !== 0 || (lo & ~0x1ff) !== 0 || (dataFile && hi < 0);
      if (hasHost && (lo & unaligned) !== 0) return pos;
      if (hasHost !== wantHost || (zeroFlag && (lo & 1) !== 0) !== wantZero) {
        // another type, in an entry entryAt would take without complaint: the run ends here
        this.sameRunEnded = true;
        return pos;
      }
      if (hasHost) {
        if ((hostHi & tooFar) !== 0) return pos;
        if (((hostHi << (32 - cb)) | (lo >>> cb)) !== hk) {
          this.sameRunEnded = true;
          return pos;
        }
        hk++;
      }
    }
    return pos;
  }

  /** sameRun stopped at an entry that ends the run for certain (scanRun need not look at it again). */
  private sameRunEnded = false;

  /** One reused record for entryAt: a lookup walks up to a whole table, one entry at a time. */
  private readonly scan: ScannedEntry = { type: 'unallocated', end: 0, host: -1, compressed: undefined };

  /** The type of the (sub)cluster holding `pos`, where it ends, and its host byte (-1: none), into `out`. */
  private entryAt(dv: DataView, pos: number, l2off: number, out: ScannedEntry): void {
    const g = this.geo;
    const cluster = Math.floor(pos / g.clusterSize);
    const idx = cluster & ((1 << g.l2Bits) - 1);
    const hi = dv.getUint32(idx * g.entryBytes);
    const lo = dv.getUint32(idx * g.entryBytes + 4);
    const inCluster = pos - cluster * g.clusterSize;
    const clusterEnd = (cluster + 1) * g.clusterSize;
    out.compressed = undefined;
    if (hi & L2E_COMPRESSED_HI) {
      out.type = 'compressed';
      out.end = clusterEnd;
      out.host = -1;
      out.compressed = compressedDescriptor(hi, lo, g.clusterBits);
      return;
    }
    const host = entryOffset(hi, lo, this.path, 'Cluster allocation');
    const copied = (hi & L2E_COPIED_HI) !== 0;
    const hasHost = host !== 0 || (g.hasDataFile && copied);
    if (hasHost && host & (g.clusterSize - 1)) {
      throw corrupt(this.path, `Cluster allocation offset ${hx(host)} unaligned (L2 offset: ${hx(l2off)}, L2 index: ${hx(idx)})`, host);
    }
    out.host = hasHost ? host + inCluster : -1;
    if (!g.extL2) {
      if (g.zeroFlag && lo & 1) out.type = hasHost ? 'zero-alloc' : 'zero-plain';
      else out.type = hasHost ? 'normal' : 'unallocated';
      out.end = clusterEnd;
      return;
    }
    const bhi = dv.getUint32(idx * 16 + 8);
    const blo = dv.getUint32(idx * 16 + 12);
    const sc = Math.floor(inCluster / g.subclusterSize);
    const alloc = (blo >>> sc) & 1;
    const zero = (bhi >>> sc) & 1;
    if (alloc && (zero || !hasHost)) {
      throw corrupt(this.path, `Invalid cluster entry found (L2 offset: ${hx(l2off)}, L2 index: ${hx(idx)})`);
    }
    // the run continues through following subclusters with the same two bits
    let scEnd = sc + 1;
    while (scEnd < 32 && ((blo >>> scEnd) & 1) === alloc && ((bhi >>> scEnd) & 1) === zero) scEnd++;
    out.end = cluster * g.clusterSize + scEnd * g.subclusterSize;
    if (alloc) out.type = 'normal';
    else if (zero) out.type = hasHost ? 'zero-alloc' : 'zero-plain';
    else out.type = hasHost ? 'unallocated-alloc' : 'unallocated';
  }
}

/** An L2 table as runsSync reads it: entries by DataView, and as int32 words where aligned (sameRun's zero scan). */
interface TableViews {
  dv: DataView;
  words: Int32Array | undefined;
}

function tableViews(table: Uint8Array): TableViews {
  return {
    dv: new DataView(table.buffer, table.byteOffset, table.byteLength),
    words: table.byteOffset % 4 === 0 ? new Int32Array(table.buffer, table.byteOffset, table.byteLength >> 2) : undefined,
  };
}
