/**
 * Host cluster allocation over the refcounts: first-fit from a moving hint, refcount blocks
 * created on demand (placed so they count themselves where possible), and the refcount table
 * moved and grown when the file outgrows it. Order on disk: new blocks, then the new table, then
 * the header, then the old table is freed, each step synced before the next, so a crash or a
 * power loss leaves at worst leaked clusters.
 */
import { VdiskError } from '../../block/errors.js';
import type { Protocol } from '../../protocols/types.js';
import { getRefcountEntry, type Refcounts } from './refcount.js';
import { MAX_REFCOUNT_TABLE_BYTES } from './limits.js';

export class ClusterAllocator {
  /** Clusters freed so far: lets holders of partly used clusters notice theirs may be gone. */
  freed = 0;
  /** No free cluster below this one (a hint, lowered by frees). */
  private hint = 0;
  /** Clusters chosen for a refcount block whose own refcount is not set yet. */
  private readonly reserved = new Set<number>();
  /**
   * Clusters holding metadata (header, tables, refcount blocks): guest data must never be
   * written there, whatever a damaged L2 entry or refcount says (qemu's overlap check).
   */
  readonly metadata = new Set<number>();
  /**
   * The refcounts cannot be trusted to tell free clusters (they miss metadata): new clusters are
   * then taken only past the end of the file, where nothing live can be.
   */
  appendOnly = false;

  constructor(
    private readonly proto: Protocol,
    readonly rc: Refcounts,
    readonly clusterBits: number,
    /** First cluster past the file's end and every allocation. */
    public endCluster: number,
    /** Persist a moved refcount table in the header. */
    private readonly onTableMoved: (offset: number, clusters: number) => Promise<void>,
    private readonly path: string,
    /** Report a write that would hit metadata (marks the image corrupt); returns the error to throw. */
    readonly onOverlap: (offset: number, what: string) => Error,
  ) {}

  /** Throw (after marking the image corrupt) if [offset, offset+bytes) holds metadata. */
  guard(offset: number, bytes: number): void {
    const cs = 2 ** this.clusterBits;
    for (let c = Math.floor(offset / cs); c * cs < offset + bytes; c++) {
      if (this.metadata.has(c)) throw this.onOverlap(offset, 'metadata');
    }
  }

  private get perBlock(): number {
    return 2 ** this.rc.blockBits;
  }

  /**
   * First run of `n` free clusters at or after the hint. Each refcount block is fetched once and
   * scanned synchronously; clusters past the table (or under a missing block) are free. The hint
   * moves to the first free cluster seen, so used space is not rescanned by later allocations.
   */
  private async findFree(n: number): Promise<number> {
    const per = this.perBlock;
    if (this.appendOnly) this.hint = Math.max(this.hint, this.endCluster);
    let start = this.hint;
    let run = 0;
    let firstFree = -1;
    const see = (c: number, used: boolean): boolean => {
      if (used || this.reserved.has(c) || this.metadata.has(c)) {
        start = c + 1;
        run = 0;
        return false;
      }
      if (firstFree < 0) firstFree = c;
      return ++run === n;
    };
    for (let c = this.hint; ;) {
      const ti = Math.floor(c / per);
      const blockEnd = (ti + 1) * per;
      const off = ti < this.rc.tableEntries ? this.rc.blockOffset(ti) : 0;
      const block = off !== 0 ? await this.rc.blocks.get(off) : undefined;
      for (; c < blockEnd; c++) {
        const used = block !== undefined && getRefcountEntry(block, c - ti * per, this.rc.order) !== 0;
        if (see(c, used)) {
          this.hint = firstFree;
          return start;
        }
      }
    }
  }

  /** Record [offset, offset+bytes) as metadata. */
  markMetadata(offset: number, bytes: number): void {
    const cs = 2 ** this.clusterBits;
    for (let c = Math.floor(offset / cs); c * cs < offset + bytes; c++) this.metadata.add(c);
  }

  /** Allocate clusters for metadata (tables), remembered by the overlap check. */
  async allocateMeta(n: number): Promise<number> {
    const off = await this.allocate(n);
    this.markMetadata(off, n * 2 ** this.clusterBits);
    return off;
  }

  /** Allocate `n` contiguous clusters with refcount 1; returns the host offset of the first. */
  async allocate(n: number): Promise<number> {
    for (;;) {
      const start = await this.findFree(n);
      let changed = false;
      const lastTi = Math.floor((start + n - 1) / this.perBlock);
      for (let ti = Math.floor(start / this.perBlock); ti <= lastTi; ti++) {
        if (await this.ensureBlock(ti)) changed = true;
      }
      // a new block (or a moved table) may have taken clusters of the run: look again
      if (changed) continue;
      for (let c = start; c < start + n; c++) {
        // a free cluster holding metadata means the refcounts are damaged
        if (this.metadata.has(c)) throw this.onOverlap(c * 2 ** this.clusterBits, 'metadata with refcount 0');
      }
      for (let c = start; c < start + n; c++) await this.rc.add(c, 1);
      if (start <= this.hint) this.hint = start + n;
      this.endCluster = Math.max(this.endCluster, start + n);
      return start * 2 ** this.clusterBits;
    }
  }

  /**
   * Allocate a run of up to `max` contiguous clusters at the first free cluster, with refcount 1:
   * the same clusters, in the same order, as `max` calls of allocate(1), but the run is scanned and
   * counted in one pass (it ends at a used cluster or at the end of its refcount block).
   */
  async allocateRun(max: number): Promise<{ offset: number; count: number }> {
    const per = this.perBlock;
    for (;;) {
      const start = await this.findFree(1);
      const ti = Math.floor(start / per);
      // a new block (or a moved table) may have taken the cluster: look again
      if (await this.ensureBlock(ti)) continue;
      if (this.metadata.has(start)) throw this.onOverlap(start * 2 ** this.clusterBits, 'metadata with refcount 0');
      const block = await this.rc.blocks.get(this.rc.blockOffset(ti));
      // the run stops before the next metadata or reserved cluster (found once, not per cluster)
      let limit = Math.min(start + max, (ti + 1) * per);
      for (const c of this.metadata) if (c > start && c < limit) limit = c;
      for (const c of this.reserved) if (c > start && c < limit) limit = c;
      let end = start + 1;
      while (end < limit && getRefcountEntry(block, end - ti * per, this.rc.order) === 0) end++;
      await this.rc.addRun(start, end - start, 1);
      if (start <= this.hint) this.hint = end;
      this.endCluster = Math.max(this.endCluster, end);
      return { offset: start * 2 ** this.clusterBits, count: end - start };
    }
  }

  /** Drop one reference to each cluster of [offset, offset+bytes); freed clusters are discarded in the file. */
  async release(offset: number, bytes: number, discardFreed: boolean): Promise<void> {
    this.proto.debugEvent?.('cluster_free');
    const cs = 2 ** this.clusterBits;
    const first = Math.floor(offset / cs);
    const last = Math.floor((offset + bytes - 1) / cs);
    const own = !this.discards;
    if (own && discardFreed) this.beginDiscards();
    for (let c = first; c <= last; c++) {
      const v = await this.rc.add(c, -1);
      if (v === 0) {
        this.freed++;
        this.metadata.delete(c);
        this.hint = Math.min(this.hint, c);
        if (discardFreed) this.discards!.add(c * cs, cs);
      }
    }
    if (own && discardFreed) await this.endDiscards();
  }

  private discards: DiscardQueue | undefined;

  /** Until endDiscards, freed clusters are collected and punched as merged ranges, as qemu does. */
  beginDiscards(): void {
    this.discards ??= new DiscardQueue();
  }

  async endDiscards(): Promise<void> {
    const q = this.discards;
    this.discards = undefined;
    if (q && this.proto.discard) for (const [off, len] of q.ranges()) await this.proto.discard(off, len);
  }

  /** Give `cluster` a refcount block if it has none (the table must already reach it). */
  async cover(cluster: number): Promise<void> {
    await this.ensureBlock(Math.floor(cluster / this.perBlock));
  }

  /** Make sure refcount block `ti` exists; true when clusters were allocated for it. */
  private async ensureBlock(ti: number): Promise<boolean> {
    if (ti >= this.rc.tableEntries) {
      await this.growTable(ti);
      return true;
    }
    if (this.rc.blockOffset(ti) !== 0) return false;
    const c = await this.findFree(1);
    const off = c * 2 ** this.clusterBits;
    await this.rc.blocks.fresh(off);
    this.rc.setBlockOffset(ti, off);
    this.metadata.add(c);
    this.endCluster = Math.max(this.endCluster, c + 1);
    const own = Math.floor(c / this.perBlock);
    if (own !== ti) {
      this.reserved.add(c);
      try {
        await this.ensureBlock(own);
      } finally {
        this.reserved.delete(c);
      }
    }
    await this.rc.add(c, 1);
    return true;
  }

  /**
   * qemu's layout for a preallocating resize: new refcount blocks and a new refcount table (always
   * moved, even when the old one would do) placed at cluster `start`, sized to cover `additional`
   * more clusters past `start` plus the new structures themselves; every cluster of the area gets
   * refcount 1 and the old table is freed. Returns the first cluster after the area.
   */
  async refcountArea(start: number, additional: number): Promise<number> {
    const cs = 2 ** this.clusterBits;
    const rc = this.rc;
    const per = this.perBlock;
    const perTableCluster = cs / 8;
    // blocks and table clusters that cover everything up to and including themselves
    let blocks = 0;
    let tableClusters = 0;
    for (let last = -1, n = 0; n !== last;) {
      last = n;
      blocks = Math.ceil((start + additional + blocks + tableClusters) / per);
      tableClusters = Math.ceil(blocks / perTableCluster);
      n = start + additional + blocks + tableClusters;
    }
    if (tableClusters * cs > MAX_REFCOUNT_TABLE_BYTES) {
      throw new VdiskError('limit', 'QCOW2_REFTABLE_FULL', 'Failed to resize refcount structures: File too large', { path: this.path, format: 'qcow2' });
    }
    const old = { offset: rc.tableOffset, bytes: rc.table.length };
    const table = new Uint8Array(tableClusters * cs);
    table.set(rc.table.subarray(0, Math.min(rc.table.length, table.length)));
    const firstIndex = Math.floor(start / per);
    const view = new DataView(table.buffer);
    const has = (i: number): boolean => view.getBigUint64(i * 8) !== 0n;
    let next = start;
    const fresh: number[] = [];
    for (let i = firstIndex; i < blocks; i++) {
      if (has(i)) continue;
      fresh.push(i);
      view.setBigUint64(i * 8, BigInt(next++ * cs));
    }
    const tableAt = next;
    const end = tableAt + tableClusters;
    rc.replaceTable(table, tableAt * cs);
    for (const i of fresh) await rc.blocks.fresh(rc.blockOffset(i));
    for (let i = firstIndex; i < blocks; i++) {
      const from = Math.max(start, i * per);
      const to = Math.min(end, (i + 1) * per);
      if (from < to) await rc.addRun(from, to - from, 1);
    }
    for (let c = start; c < end; c++) this.metadata.add(c);
    this.endCluster = Math.max(this.endCluster, end);
    await rc.blocks.flush();
    await this.proto.pwrite(table, tableAt * cs);
    await this.proto.flush();
    await this.onTableMoved(tableAt * cs, tableClusters);
    await this.proto.flush();
    await this.release(old.offset, old.bytes, false);
    return end;
  }

  /** Move the refcount table to the end of the file, large enough for index `minIndex` and itself. */
  private async growTable(minIndex: number): Promise<void> {
    const cs = 2 ** this.clusterBits;
    const rc = this.rc;
    const c0 = this.endCluster;
    let entries = Math.max(minIndex + 1, Math.ceil(rc.tableEntries * 1.5));
    let tableClusters = 0;
    let blocks: number[] = [];
    // the table and its new blocks must be covered by the table itself: iterate to a fixed point
    for (let guard = 0; guard < 64; guard++) {
      tableClusters = Math.ceil((entries * 8) / cs);
      const end = c0 + tableClusters + blocks.length;
      const need: number[] = [];
      for (let ti = Math.floor(c0 / this.perBlock); ti <= Math.floor((end - 1) / this.perBlock); ti++) {
        if (ti >= rc.tableEntries || rc.blockOffset(ti) === 0) need.push(ti);
      }
      const maxTi = Math.max(minIndex, ...need);
      if (need.length === blocks.length && maxTi < (tableClusters * cs) / 8) {
        blocks = need;
        break;
      }
      blocks = need;
      entries = Math.max(entries, maxTi + 1);
    }
    if (tableClusters * cs > MAX_REFCOUNT_TABLE_BYTES) {
      throw new VdiskError('limit', 'QCOW2_REFTABLE_FULL', 'Reference count table too large', { path: this.path, format: 'qcow2' });
    }
    const old = { offset: rc.tableOffset, bytes: rc.table.length };
    const table = new Uint8Array(tableClusters * cs);
    table.set(rc.table);
    rc.replaceTable(table, c0 * cs);
    const b0 = c0 + tableClusters;
    for (let j = 0; j < blocks.length; j++) {
      await rc.blocks.fresh((b0 + j) * cs);
      rc.setBlockOffset(blocks[j]!, (b0 + j) * cs);
    }
    const end = b0 + blocks.length;
    for (let c = c0; c < end; c++) {
      await rc.add(c, 1);
      this.metadata.add(c);
    }
    this.endCluster = Math.max(this.endCluster, end);
    await rc.blocks.flush();
    await this.proto.pwrite(table, c0 * cs);
    rc.replaceTable(table, c0 * cs);
    await this.proto.flush();
    await this.onTableMoved(c0 * cs, tableClusters);
    await this.proto.flush();
    await this.release(old.offset, old.bytes, false);
  }
}

/**
 * Host ranges to punch, merged as qemu's discard queue merges them: a freed range joins the first
 * queued range (in queue order) it touches, and a range that then touches another absorbs it; the
 * queue keeps the order ranges first came in. One punch a run instead of one a cluster also
 * leaves the host file system's extent tree (its disk usage) as qemu leaves it.
 */
class DiscardQueue {
  private readonly list: Array<{ start: number; end: number; gone: boolean }> = [];
  private readonly byStart = new Map<number, { start: number; end: number; gone: boolean }>();
  private readonly byEnd = new Map<number, { start: number; end: number; gone: boolean }>();

  add(offset: number, length: number): void {
    const end = offset + length;
    const touching = [this.byEnd.get(offset), this.byStart.get(end)].filter((r) => r !== undefined);
    if (touching.length === 0) {
      const r = { start: offset, end, gone: false };
      this.list.push(r);
      this.byStart.set(offset, r);
      this.byEnd.set(end, r);
      return;
    }
    touching.sort((x, y) => this.list.indexOf(x) - this.list.indexOf(y));
    const d = touching[0]!;
    this.byStart.delete(d.start);
    this.byEnd.delete(d.end);
    d.start = Math.min(d.start, offset);
    d.end = Math.max(d.end, end);
    const other = touching[1];
    if (other) {
      this.byStart.delete(other.start);
      this.byEnd.delete(other.end);
      other.gone = true;
      d.start = Math.min(d.start, other.start);
      d.end = Math.max(d.end, other.end);
    }
    this.byStart.set(d.start, d);
    this.byEnd.set(d.end, d);
  }

  ranges(): Array<[number, number]> {
    return this.list.filter((r) => !r.gone).map((r) => [r.start, r.end - r.start]);
  }
}
