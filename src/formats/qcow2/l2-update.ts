/**
 * Changing the mapping: L1 and L2 entries, copy-on-write of shared L2 tables, releasing host
 * clusters, moving the L1 table, and the flush order that keeps the file consistent after a crash
 * at any point: data, then refcount increments, then L2 tables, then L1 entries and the header,
 * and only then refcount decrements (so a freed cluster is never reused while an on-disk table
 * still points at it). Each step is separated from the next by an fsync (`sync`) when the next
 * step has anything to write: without it the disk may reorder them, and after a power loss an
 * L2 entry could point at a cluster whose refcount or data never arrived (qemu's cache
 * dependencies and flushes between the refcount and L2 caches).
 */
import type { Protocol } from '../../protocols/types.js';
import { compressedDescriptor, entryOffset, L1E_COPIED_HI, L2E_COMPRESSED_HI, L2E_COPIED_HI, type ClusterMap } from './l1l2.js';
import type { Refcounts } from './refcount.js';
import type { ClusterAllocator } from './cluster-alloc.js';
import { invalid } from './header.js';
import { MAX_L1_BYTES } from './limits.js';

/** The four 32-bit words of an L2 entry (bitmap words are 0 without extended L2). */
export interface RawEntry {
  hi: number;
  lo: number;
  /** Extended L2: "reads as zeros" bits (bits 32-63 of the bitmap). */
  zeroBits: number;
  /** Extended L2: "allocated" bits (bits 0-31). */
  allocBits: number;
}

/** Auto-flush pending frees beyond this many ranges, to keep the list bounded. */
const MAX_PENDING_FREES = 4096;

export class MetadataWriter {
  private readonly dirtyL1 = new Set<number>();
  private pendingFrees: Array<[number, number, boolean]> = [];

  constructor(
    private readonly proto: Protocol,
    readonly map: ClusterMap,
    readonly rc: Refcounts,
    readonly alloc: ClusterAllocator,
    public l1Offset: number,
    /** Whether guest data lives in an external data file (its clusters are not refcounted). */
    private readonly dataFile: boolean,
    private readonly path: string,
    /** The external data file, synced with the image at each barrier (guest data lives there). */
    private readonly data?: Protocol,
  ) {
    // an L2 table reaches the file only after the refcounts and data it points at are durable
    map.l2Cache.beforeWrite = async () => {
      await rc.flush();
      await this.sync();
    };
  }

  /** Write barrier: everything written so far is on stable storage before anything after it. */
  async sync(): Promise<void> {
    if (this.data) await this.data.flush();
    await this.proto.flush();
  }

  get cs(): number {
    return this.map.geo.clusterSize;
  }

  setL1(i: number, offset: number): void {
    const v = this.map.l1View;
    v.setUint32(i * 8, (Math.floor(offset / 0x100000000) | L1E_COPIED_HI) >>> 0);
    v.setUint32(i * 8 + 4, offset >>> 0);
    this.dirtyL1.add(i);
  }

  setL1Raw(i: number, hi: number, lo: number): void {
    this.map.l1View.setUint32(i * 8, hi >>> 0);
    this.map.l1View.setUint32(i * 8 + 4, lo >>> 0);
    this.dirtyL1.add(i);
  }

  clearL1(i: number): void {
    this.map.l1View.setUint32(i * 8, 0);
    this.map.l1View.setUint32(i * 8 + 4, 0);
    this.dirtyL1.add(i);
  }

  /** The L2 table for L1 index `l1i`, made private to the active L1 (allocated or copied) first. */
  async l2ForWrite(l1i: number): Promise<number> {
    const old = this.map.l2Offset(l1i);
    if (old !== 0 && this.map.l1View.getUint32(l1i * 8) & L1E_COPIED_HI) return old;
    const nu = await this.alloc.allocateMeta(1);
    const table = await this.map.l2Cache.fresh(nu);
    if (old !== 0) {
      // refcounts count snapshots, not tables: the data clusters keep theirs, the old table loses one
      table.set(await this.map.l2Cache.get(old));
      this.queueFree(old, this.cs, false);
    }
    this.map.l2Cache.markDirty(nu, table);
    this.setL1(l1i, nu);
    return nu;
  }

  async entry(l2off: number, idx: number): Promise<RawEntry> {
    const t = await this.map.l2Cache.get(l2off);
    const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
    const eb = this.map.geo.entryBytes;
    const e = { hi: dv.getUint32(idx * eb), lo: dv.getUint32(idx * eb + 4), zeroBits: 0, allocBits: 0 };
    if (eb === 16) {
      e.zeroBits = dv.getUint32(idx * eb + 8);
      e.allocBits = dv.getUint32(idx * eb + 12);
    }
    return e;
  }

  async setEntry(l2off: number, idx: number, e: RawEntry): Promise<void> {
    const t = await this.map.l2Cache.get(l2off);
    const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
    const eb = this.map.geo.entryBytes;
    dv.setUint32(idx * eb, e.hi >>> 0);
    dv.setUint32(idx * eb + 4, e.lo >>> 0);
    if (eb === 16) {
      dv.setUint32(idx * eb + 8, e.zeroBits >>> 0);
      dv.setUint32(idx * eb + 12, e.allocBits >>> 0);
    }
    this.map.l2Cache.markDirty(l2off, t);
  }

  /**
   * How many entries from `idx` (at most `max`) are free for a fresh whole-cluster write: no host
   * cluster and nothing compressed (unallocated, or a plain zero flag). Standard L2 entries only.
   */
  async freshEntries(l2off: number, idx: number, max: number): Promise<number> {
    const t = await this.map.l2Cache.get(l2off);
    const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
    let k = 0;
    while (k < max) {
      const at = (idx + k) * 8;
      const lo = dv.getUint32(at + 4);
      if (dv.getUint32(at) !== 0 || (lo !== 0 && lo !== 1)) break;
      k++;
    }
    return k;
  }

  /**
   * Point `count` standard L2 entries from `idx` at the contiguous host clusters from `host`
   * (copied flag set, zero flag clear): what setEntry would write one by one, in one pass.
   */
  async setDataRun(l2off: number, idx: number, count: number, host: number): Promise<void> {
    this.setDataRunIn(await this.map.l2Cache.get(l2off), l2off, idx, count, host);
  }

  /** The L2 table at `l2off`, held in the cache (not evicted) until releaseL2: see setDataRunIn. */
  async holdL2(l2off: number): Promise<Uint8Array> {
    await this.map.l2Cache.get(l2off);
    return this.map.l2Cache.pin(l2off);
  }

  releaseL2(l2off: number): void {
    this.map.l2Cache.unpin(l2off);
  }

  /**
   * setDataRun into the array of a held table, without I/O (so without the layer's lock: a
   * synchronous change cannot interleave with another operation's).
   */
  setDataRunIn(t: Uint8Array, l2off: number, idx: number, count: number, host: number): void {
    const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
    const cs = this.cs;
    for (let j = 0; j < count; j++) {
      const h = host + j * cs;
      dv.setUint32((idx + j) * 8, (Math.floor(h / 0x100000000) | L2E_COPIED_HI) >>> 0);
      dv.setUint32((idx + j) * 8 + 4, h >>> 0);
    }
    this.map.l2Cache.markDirty(l2off, t);
  }

  /** Host byte ranges an entry holds a reference to (none for data-file images' data clusters). */
  hostRanges(e: RawEntry): Array<[number, number]> {
    if (e.hi & L2E_COMPRESSED_HI) {
      const d = compressedDescriptor(e.hi, e.lo, this.map.geo.clusterBits);
      const start = d.hostOffset - (d.hostOffset % 512);
      return [[start, d.size + (d.hostOffset - start)]];
    }
    if (this.dataFile) return [];
    const host = entryOffset(e.hi, e.lo, this.path, 'Cluster allocation');
    return host !== 0 ? [[host, this.cs]] : [];
  }

  /** Drop the entry's references once the tables that stop using them are on disk. */
  releaseEntry(e: RawEntry): void {
    for (const [off, bytes] of this.hostRanges(e)) {
      // a data reference into metadata is damage: dropping it would free (and punch) the metadata
      this.alloc.guard(off, bytes);
      this.queueFree(off, bytes);
    }
  }

  /**
   * `discard`: punch what becomes free. qemu does for guest discards, shrinks and snapshots, but
   * not for the tables it replaces (its "other" discard type, off by default): those keep their bytes.
   */
  queueFree(offset: number, bytes: number, discard = true): void {
    this.pendingFrees.push([offset, bytes, discard]);
  }

  get mustFlush(): boolean {
    return this.pendingFrees.length > MAX_PENDING_FREES;
  }

  async flush(): Promise<void> {
    await this.rc.flush();
    // the cache's beforeWrite flushes the refcounts and syncs once before the first table it writes
    if (this.map.l2Cache.dirtyCount > 0) await this.map.l2Cache.flush();
    if (this.dirtyL1.size > 0) {
      await this.sync();
      await this.writeL1();
    }
    const frees = this.pendingFrees;
    if (frees.length === 0) return;
    this.pendingFrees = [];
    // decrements only once no table on disk still points at what they free
    await this.sync();
    this.alloc.beginDiscards();
    try {
      for (const [off, bytes, discard] of frees) await this.alloc.release(off, bytes, discard);
    } finally {
      await this.alloc.endDiscards();
    }
    await this.rc.flush();
  }

  private async writeL1(): Promise<void> {
    for (const i of this.dirtyL1) {
      await this.proto.pwrite(this.map.l1.subarray(i * 8, i * 8 + 8), this.l1Offset + i * 8);
    }
    this.dirtyL1.clear();
  }

  /**
   * Move the L1 table to new clusters with room for `entries`; `persist` writes the header fields
   * (after the new table and its refcounts are on disk). The old table is freed afterwards.
   */
  async growL1(entries: number, persist: (offset: number, entries: number) => Promise<void>): Promise<void> {
    if (entries * 8 > MAX_L1_BYTES) throw invalid('QCOW2_L1_TOO_LARGE', 'Active L1 table too large', this.path, 'limit');
    const bytes = Math.ceil((entries * 8) / this.cs) * this.cs;
    await this.flush();
    const nu = await this.alloc.allocateMeta(bytes / this.cs);
    const l1 = new Uint8Array(entries * 8);
    l1.set(this.map.l1);
    // only the entries, as qemu writes them: the rest of the last cluster is never read
    await this.proto.pwrite(l1, nu);
    await this.rc.flush();
    await this.sync();
    const old = { offset: this.l1Offset, bytes: Math.ceil(this.map.l1.length / this.cs) * this.cs };
    await persist(nu, entries);
    this.map.replaceL1(l1);
    this.l1Offset = nu;
    this.dirtyL1.clear();
    if (old.bytes > 0) this.queueFree(old.offset, old.bytes, false);
    await this.flush();
  }
}
