/**
 * Reference counts (qcow2.txt "Host cluster management"): a refcount table (contiguous, held in
 * memory, at most MAX_REFCOUNT_TABLE_BYTES) of refcount block offsets; each block is one cluster
 * of refcount_bits-wide entries (big-endian; sub-byte widths start at the least significant bit).
 * Blocks go through a bounded TableCache; new blocks are placed so that they count themselves.
 */
import { VdiskError } from '../../block/errors.js';
import type { Protocol } from '../../protocols/types.js';
import { TableCache } from './l2-cache.js';
import { corrupt, entryOffset, hx } from './l1l2.js';
import { REFCOUNT_CACHE_BYTES } from './limits.js';

export function getRefcountEntry(block: Uint8Array, i: number, order: number): number {
  const bits = 1 << order;
  if (bits < 8) {
    const bit = i * bits;
    return (block[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
  }
  // byte arithmetic, not a DataView per call: allocation scans call this for every cluster
  switch (bits) {
    case 8: return block[i]!;
    case 16: return (block[i * 2]! << 8) | block[i * 2 + 1]!;
    case 32: return ((block[i * 4]! << 24) | (block[i * 4 + 1]! << 16) | (block[i * 4 + 2]! << 8) | block[i * 4 + 3]!) >>> 0;
    default: {
      const dv = new DataView(block.buffer, block.byteOffset, block.byteLength);
      const hi = dv.getUint32(i * 8);
      // refcounts beyond 2^53 cannot come from real use; saturate so they never reach zero
      return hi > 0x1fffff ? Number.MAX_SAFE_INTEGER : hi * 0x100000000 + dv.getUint32(i * 8 + 4);
    }
  }
}

export function setRefcountEntry(block: Uint8Array, i: number, order: number, v: number): void {
  const bits = 1 << order;
  if (bits < 8) {
    const bit = i * bits;
    const mask = ((1 << bits) - 1) << (bit & 7);
    block[bit >> 3] = (block[bit >> 3]! & ~mask) | ((v << (bit & 7)) & mask);
    return;
  }
  switch (bits) {
    case 8: block[i] = v; return;
    case 16: block[i * 2] = v >>> 8; block[i * 2 + 1] = v; return;
    case 32: block[i * 4] = v >>> 24; block[i * 4 + 1] = v >>> 16; block[i * 4 + 2] = v >>> 8; block[i * 4 + 3] = v; return;
    default: {
      const dv = new DataView(block.buffer, block.byteOffset, block.byteLength);
      dv.setUint32(i * 8, Math.floor(v / 0x100000000));
      dv.setUint32(i * 8 + 4, v >>> 0);
    }
  }
}

export function maxRefcount(order: number): number {
  return order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
}

export class Refcounts {
  readonly blocks: TableCache;
  /** log2 of entries per refcount block. */
  readonly blockBits: number;
  private tableView: DataView;
  /** Table entries changed in memory and not yet written. */
  private readonly dirtyEntries = new Set<number>();

  constructor(
    private readonly proto: Protocol,
    readonly clusterBits: number,
    readonly order: number,
    public table: Uint8Array,
    public tableOffset: number,
    private readonly path: string,
  ) {
    this.blocks = new TableCache(proto, 2 ** clusterBits, REFCOUNT_CACHE_BYTES);
    this.blockBits = clusterBits + 3 - order;
    this.tableView = new DataView(table.buffer, table.byteOffset, table.byteLength);
  }

  static async load(proto: Protocol, clusterBits: number, order: number, offset: number, clusters: number, path: string): Promise<Refcounts> {
    const table = new Uint8Array(clusters * 2 ** clusterBits);
    await proto.pread(table, offset);
    return new Refcounts(proto, clusterBits, order, table, offset, path);
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  /** Clusters the current table can describe. */
  get coveredClusters(): number {
    return this.tableEntries * 2 ** this.blockBits;
  }

  blockOffset(ti: number): number {
    if (ti >= this.tableEntries) return 0;
    const off = entryOffset(this.tableView.getUint32(ti * 8), this.tableView.getUint32(ti * 8 + 4), this.path, 'Refcount block');
    if (off & (2 ** this.clusterBits - 1)) throw corrupt(this.path, `Refblock offset ${hx(off)} unaligned (reftable index: ${hx(ti)})`, off);
    return off;
  }

  setBlockOffset(ti: number, off: number): void {
    this.tableView.setUint32(ti * 8, Math.floor(off / 0x100000000));
    this.tableView.setUint32(ti * 8 + 4, off >>> 0);
    this.dirtyEntries.add(ti);
  }

  async get(cluster: number): Promise<number> {
    const ti = Math.floor(cluster / 2 ** this.blockBits);
    const off = this.blockOffset(ti);
    if (off === 0) return 0;
    const block = await this.blocks.get(off);
    return getRefcountEntry(block, cluster % 2 ** this.blockBits, this.order);
  }

  /**
   * Set a refcount whose block exists (callers make sure of it through the allocator). Returns
   * the new value.
   */
  async add(cluster: number, delta: number): Promise<number> {
    const ti = Math.floor(cluster / 2 ** this.blockBits);
    const off = this.blockOffset(ti);
    if (off === 0) {
      if (delta < 0) throw corrupt(this.path, `refcount of cluster ${hx(cluster)} would drop below zero`);
      throw new VdiskError('corrupt', 'QCOW2_NO_REFBLOCK', `no refcount block for cluster ${hx(cluster)}`, { path: this.path, format: 'qcow2' });
    }
    const block = await this.blocks.get(off);
    const i = cluster % 2 ** this.blockBits;
    const v = getRefcountEntry(block, i, this.order) + delta;
    if (v < 0) throw corrupt(this.path, `refcount of cluster ${hx(cluster)} would drop below zero`);
    if (v > maxRefcount(this.order)) {
      throw new VdiskError('limit', 'QCOW2_REFCOUNT_OVERFLOW', `refcount of cluster ${hx(cluster)} would overflow ${1 << this.order} bits`, { path: this.path, format: 'qcow2' });
    }
    setRefcountEntry(block, i, this.order, v);
    this.blocks.markDirty(off, block);
    return v;
  }

  /**
   * Add `delta` to the refcounts of `n` clusters from `first`, all under one existing block: one
   * block lookup for the run instead of one per cluster (preallocation sets millions).
   */
  async addRun(first: number, n: number, delta: number): Promise<void> {
    const per = 2 ** this.blockBits;
    const ti = Math.floor(first / per);
    if (n <= 0) return;
    if (Math.floor((first + n - 1) / per) !== ti) throw new RangeError('refcount run crosses a block');
    const off = this.blockOffset(ti);
    if (off === 0) {
      await this.add(first, delta); // throws the error add() gives
      return;
    }
    const block = await this.blocks.get(off);
    const max = maxRefcount(this.order);
    const i0 = first - ti * per;
    for (let i = i0; i < i0 + n; i++) {
      const v = getRefcountEntry(block, i, this.order) + delta;
      if (v < 0) throw corrupt(this.path, `refcount of cluster ${hx(ti * per + i)} would drop below zero`);
      if (v > max) {
        throw new VdiskError('limit', 'QCOW2_REFCOUNT_OVERFLOW', `refcount of cluster ${hx(ti * per + i)} would overflow ${1 << this.order} bits`, { path: this.path, format: 'qcow2' });
      }
      setRefcountEntry(block, i, this.order, v);
    }
    this.blocks.markDirty(off, block);
  }

  /** The highest cluster with a nonzero refcount (-1: none). */
  async lastUsedCluster(): Promise<number> {
    const per = 2 ** this.blockBits;
    for (let ti = this.tableEntries - 1; ti >= 0; ti--) {
      const off = this.blockOffset(ti);
      if (off === 0) continue;
      const block = await this.blocks.get(off);
      for (let i = per - 1; i >= 0; i--) if (getRefcountEntry(block, i, this.order) !== 0) return ti * per + i;
    }
    return -1;
  }

  /**
   * Write dirty blocks, then the changed table entries, with an fsync between: a table entry
   * never names a block that is not on disk, even if the disk reorders writes.
   */
  async flush(): Promise<void> {
    await this.blocks.flush();
    if (this.dirtyEntries.size === 0) return;
    await this.proto.flush();
    const cs = 2 ** this.clusterBits;
    const touched = new Set<number>();
    for (const ti of this.dirtyEntries) touched.add(Math.floor((ti * 8) / cs));
    for (const c of touched) await this.proto.pwrite(this.table.subarray(c * cs, (c + 1) * cs), this.tableOffset + c * cs);
    this.dirtyEntries.clear();
  }

  /** Forget block `ti` (the caller has written the table without it). */
  forgetBlock(ti: number): void {
    const off = this.blockOffsetOrZero(ti);
    this.tableView.setBigUint64(ti * 8, 0n);
    this.dirtyEntries.delete(ti);
    if (off !== 0) this.blocks.drop(off);
  }

  private blockOffsetOrZero(ti: number): number {
    try {
      return this.blockOffset(ti);
    } catch {
      return 0;
    }
  }

  /** Replace the table (after it moved and grew); the caller writes it and the header. */
  replaceTable(table: Uint8Array, offset: number): void {
    this.table = table;
    this.tableOffset = offset;
    this.tableView = new DataView(table.buffer, table.byteOffset, table.byteLength);
    this.dirtyEntries.clear();
  }
}
