/**
 * The refcounts the image stores, as a check sees them: the refcount table read from the header's
 * place, blocks read on demand through a small cache. Unlike the writer's Refcounts, damaged
 * entries are data here, not errors: a missing block counts zero, an unaligned one is an I/O
 * error for its clusters (as qemu's qcow2_get_refcount), a block past the end of the file reads
 * as zeros.
 */
import type { Protocol } from '../../protocols/types.js';
import { setRefcountEntry } from './refcount.js';
import { readMeta } from './l2-cache.js';

/** Refcount blocks a check keeps in memory at once (each one cluster). */
const CACHED_BLOCKS = 64;
const TWO32 = 0x100000000;

type Slot = { data: Uint8Array; dirty: boolean };

/** Entry `i` of a refcount block (the hot path of a check: no DataView per call). */
export function refcountAt(b: Uint8Array, i: number, order: number): number {
  switch (order) {
    case 3: return b[i]!;
    case 4: return (b[2 * i]! << 8) | b[2 * i + 1]!;
    case 5: return b[4 * i]! * 0x1000000 + ((b[4 * i + 1]! << 16) | (b[4 * i + 2]! << 8) | b[4 * i + 3]!);
    case 6: {
      const hi = b[8 * i]! * 0x1000000 + ((b[8 * i + 1]! << 16) | (b[8 * i + 2]! << 8) | b[8 * i + 3]!);
      const lo = b[8 * i + 4]! * 0x1000000 + ((b[8 * i + 5]! << 16) | (b[8 * i + 6]! << 8) | b[8 * i + 7]!);
      // beyond 2^53 no real count can reach: saturate, as the writer's reader does
      return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * TWO32 + lo;
    }
    default: {
      const bits = 1 << order;
      const bit = i * bits;
      return (b[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
    }
  }
}

export class StoredRefs {
  private readonly view: DataView;
  private readonly cache = new Map<number, Slot>();
  /** The block returned last, looked up without touching the cache order. */
  private lastTi = -1;
  private last: Slot | null = null;
  readonly perBlock: number;
  readonly cs: number;

  constructor(
    private readonly proto: Protocol,
    readonly clusterBits: number,
    readonly order: number,
    /** The refcount table as stored (big-endian entries). */
    readonly table: Uint8Array,
    private fileLen: number,
    /** Called with qemu's wording when a block offset is unusable (corruption event). */
    private readonly onUnaligned: (message: string) => Promise<void>,
  ) {
    this.view = new DataView(table.buffer, table.byteOffset, table.byteLength);
    this.perBlock = 2 ** (clusterBits + 3 - order);
    this.cs = 2 ** clusterBits;
  }

  static async load(proto: Protocol, clusterBits: number, order: number, offset: number, clusters: number,
    onUnaligned: (message: string) => Promise<void>): Promise<StoredRefs> {
    const table = new Uint8Array(clusters * 2 ** clusterBits);
    await proto.pread(table, offset);
    return new StoredRefs(proto, clusterBits, order, table, await proto.size(), onUnaligned);
  }

  get entries(): number {
    return this.table.length / 8;
  }

  /** Bits 0-31 and 32-63 of table entry `i`. */
  raw(i: number): { hi: number; lo: number } {
    return { hi: this.view.getUint32(i * 8), lo: this.view.getUint32(i * 8 + 4) };
  }

  /** The block offset of entry `i` (bits 9-63), or undefined when it cannot be a JS number. */
  blockOffset(i: number): number | undefined {
    if (i >= this.entries) return 0;
    const { hi, lo } = this.raw(i);
    if (hi >= 0x200000) return undefined;
    return hi * TWO32 + ((lo & 0xfffffe00) >>> 0);
  }

  setFileLen(n: number): void {
    this.fileLen = n;
  }

  /** The block holding cluster `k`: null when there is none (refcount 0); throws on an I/O error. */
  private async block(ti: number): Promise<Slot | null> {
    if (ti === this.lastTi) return this.last;
    const b = await this.lookup(ti);
    this.lastTi = ti;
    this.last = b;
    return b;
  }

  private async lookup(ti: number): Promise<Slot | null> {
    if (ti >= this.entries) return null;
    const { hi, lo } = this.raw(ti);
    if (hi === 0 && (lo & 0xfffffe00) === 0) return null;
    const off = this.blockOffset(ti);
    const unaligned = ((lo & 0xfffffe00) >>> 0) % this.cs !== 0;
    if (unaligned) {
      const full = (BigInt(hi) << 32n) | BigInt((lo & 0xfffffe00) >>> 0);
      await this.onUnaligned(`Refblock offset 0x${full.toString(16)} unaligned (reftable index: ${ti === 0 ? '0' : `0x${ti.toString(16)}`})`);
      throw new StoredRefError('Input/output error');
    }
    // qemu refuses requests past 2^63; below that, reads past the end of the file are zeros
    if (off === undefined && hi >= 0x80000000) throw new StoredRefError('Input/output error');
    if (off === undefined || off >= this.fileLen) return { data: new Uint8Array(this.cs), dirty: false };
    let b = this.cache.get(off);
    if (b) {
      this.cache.delete(off);
      this.cache.set(off, b);
      return b;
    }
    b = { data: new Uint8Array(this.cs), dirty: false };
    await readMeta(this.proto, b.data, off);
    await this.evict();
    this.cache.set(off, b);
    return b;
  }

  private async evict(): Promise<void> {
    while (this.cache.size >= CACHED_BLOCKS) {
      const [off, b] = this.cache.entries().next().value as [number, Slot];
      if (b.dirty) await this.proto.pwrite(b.data, off);
      this.cache.delete(off);
    }
  }

  /**
   * Table entry `ti`'s block for a look without side effects: its data when cached, null when
   * there is none (refcounts zero); undefined when it is not cached or not cleanly readable.
   */
  cachedBlock(ti: number): Uint8Array | null | undefined {
    if (ti >= this.entries) return null;
    const { hi, lo } = this.raw(ti);
    if (hi === 0 && (lo & 0xfffffe00) === 0) return null;
    const off = this.blockOffset(ti);
    if (off === undefined || ((lo & 0xfffffe00) >>> 0) % this.cs !== 0) return undefined;
    return this.cache.get(off)?.data;
  }

  /**
   * Read table entry `ti`'s block into the cache when that is silent: true when it is there (or
   * there is none), false when reading it would be a corruption event or an error, or it lies
   * past the end of the file; then get() is what reads it, in qemu's order.
   */
  async prefetch(ti: number): Promise<boolean> {
    if (this.cachedBlock(ti) !== undefined) return true;
    const { lo } = this.raw(ti);
    const off = this.blockOffset(ti);
    if (off === undefined || ((lo & 0xfffffe00) >>> 0) % this.cs !== 0 || off >= this.fileLen) return false;
    const b: Slot = { data: new Uint8Array(this.cs), dirty: false };
    await readMeta(this.proto, b.data, off);
    await this.evict();
    this.cache.set(off, b);
    return true;
  }

  /** The data of table entry `ti`'s block (null: no block, all refcounts zero); throws StoredRefError. */
  async blockData(ti: number): Promise<Uint8Array | null> {
    return (await this.block(ti))?.data ?? null;
  }

  async get(k: number): Promise<number> {
    const b = await this.block(Math.floor(k / this.perBlock));
    return b ? refcountAt(b.data, k % this.perBlock, this.order) : 0;
  }

  /** The refcount of `k` when its block is the one used last (no I/O); undefined otherwise. */
  peek(k: number): number | undefined {
    const ti = Math.floor(k / this.perBlock);
    if (ti !== this.lastTi) return undefined;
    return this.last ? refcountAt(this.last.data, k % this.perBlock, this.order) : 0;
  }

  /**
   * The data of table entry `ti`'s block when it is the one used last (null: no block, all
   * refcounts zero); undefined when another block is at hand (no I/O).
   */
  peekBlock(ti: number): Uint8Array | null | undefined {
    if (ti !== this.lastTi) return undefined;
    return this.last ? this.last.data : null;
  }

  /** Set a stored refcount whose block exists (callers only change nonzero refcounts). */
  async set(k: number, v: number): Promise<void> {
    const ti = Math.floor(k / this.perBlock);
    const b = await this.block(ti);
    if (!b) throw new StoredRefError('Input/output error');
    setRefcountEntry(b.data, k % this.perBlock, this.order, v);
    const off = this.blockOffset(ti)!;
    // a block past the end of the file is not cached; write it straight away
    if (!this.cache.has(off)) {
      await this.proto.pwrite(b.data, off);
      this.fileLen = Math.max(this.fileLen, off + this.cs);
    } else {
      b.dirty = true;
    }
  }

  /** Forget changes not yet written (the image became unusable before they could be). */
  discardChanges(): void {
    for (const [off, b] of [...this.cache]) if (b.dirty) this.cache.delete(off);
    this.lastTi = -1;
    this.last = null;
  }

  /** Offsets of the blocks changed since the last flush, then written. */
  async flush(): Promise<number[]> {
    const written: number[] = [];
    for (const [off, b] of this.cache) {
      if (!b.dirty) continue;
      await this.proto.pwrite(b.data, off);
      b.dirty = false;
      written.push(off);
    }
    if (written.length) await this.proto.flush();
    return written;
  }
}

/** A stored refcount could not be read (qemu: "Can't get refcount for cluster N: <errno text>"). */
export class StoredRefError extends Error {}
