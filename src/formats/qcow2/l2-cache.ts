/**
 * A bounded LRU cache of cluster-sized metadata tables (L2 tables, refcount blocks), keyed by host
 * offset. Dirty tables are written back before eviction and on flush, so memory stays bounded
 * however large the image; a JS Map keeps insertion order, and a hit re-inserts to mark recency.
 */
import type { Protocol } from '../../protocols/types.js';

/**
 * Read metadata at `offset` into `buf`: synchronously when the protocol can (a host file: far
 * cheaper for one table than a round trip through the threadpool), else through `pread`.
 */
export function readMeta(proto: Protocol, buf: Uint8Array, offset: number): Promise<void> | undefined {
  if (proto.preadSync) {
    proto.preadSync(buf, offset);
    return undefined;
  }
  return proto.pread(buf, offset);
}

interface Slot {
  data: Uint8Array;
  dirty: boolean;
  /** Writes in flight that will change this array when their data lands: it must not be evicted. */
  pins?: number;
}

export class TableCache {
  private readonly slots = new Map<number, Slot>();
  /** The key inserted last (the Map's last entry), or undefined when unknown. */
  private newest: number | undefined;
  readonly capacity: number;
  /** Called before a dirty table is written, to flush what it depends on first (refcounts before L2). */
  beforeWrite: (() => Promise<void>) | undefined;

  constructor(
    private readonly proto: Protocol,
    readonly tableBytes: number,
    budgetBytes: number,
  ) {
    this.capacity = Math.max(4, Math.floor(budgetBytes / tableBytes));
  }

  /** The table at `offset`, read from the file on a miss. */
  async get(offset: number): Promise<Uint8Array> {
    const hit = this.slots.get(offset);
    if (hit) {
      // already the most recent (the common case: one table serves a whole request): no reordering
      if (offset !== this.newest) {
        this.slots.delete(offset);
        this.slots.set(offset, hit);
        this.newest = offset;
      }
      return hit.data;
    }
    const data = new Uint8Array(this.tableBytes);
    await readMeta(this.proto, data, offset);
    await this.insert(offset, { data, dirty: false });
    return data;
  }

  /** The table at `offset` when it is cached (marked used), else undefined: no I/O, no promise. */
  peek(offset: number): Uint8Array | undefined {
    const hit = this.slots.get(offset);
    if (!hit) return undefined;
    this.slots.delete(offset);
    this.slots.set(offset, hit);
    return hit.data;
  }

  /** A table that is new in the file: zero-filled, dirty, no read. */
  async fresh(offset: number): Promise<Uint8Array> {
    const data = new Uint8Array(this.tableBytes);
    this.slots.delete(offset);
    await this.insert(offset, { data, dirty: true });
    return data;
  }

  /**
   * Mark a table changed. `data` is the array the caller changed: if the table was evicted (or
   * re-read) since the caller got it, the caller's copy is the newest and takes the slot again; the
   * cache may then exceed its capacity by one until the next insertion.
   */
  markDirty(offset: number, data: Uint8Array): void {
    const s = this.slots.get(offset);
    if (s && s.data === data) {
      s.dirty = true;
      return;
    }
    this.slots.delete(offset);
    this.slots.set(offset, { data, dirty: true });
    this.newest = offset;
  }

  /** Forget a table (its cluster was freed); it is not written back. */
  drop(offset: number): void {
    this.slots.delete(offset);
    if (offset === this.newest) this.newest = undefined;
  }

  /**
   * Keep the cached table at `offset` (and so the array `get` returned) in the cache until as many
   * unpin calls: a write whose data is still in flight updates that array when the data lands.
   */
  pin(offset: number): Uint8Array {
    const s = this.slots.get(offset);
    if (!s) throw new Error(`TableCache.pin: table at ${offset} is not cached`);
    s.pins = (s.pins ?? 0) + 1;
    return s.data;
  }

  unpin(offset: number): void {
    const s = this.slots.get(offset);
    if (s?.pins) s.pins--;
  }

  private async insert(offset: number, slot: Slot): Promise<void> {
    while (this.slots.size >= this.capacity) {
      const victim = this.oldestUnpinned();
      // every table is pinned (more writes in flight than slots): exceed the capacity by their number
      if (!victim) break;
      const [oldest, s] = victim;
      // leaving the cache: its own array can be written (a later change by a holder re-inserts it dirty)
      if (s.dirty) await this.writeBack(oldest, s, false);
      // a pin taken while it was being written keeps it
      if (!s.pins) this.slots.delete(oldest);
    }
    this.slots.set(offset, slot);
    this.newest = offset;
  }

  private oldestUnpinned(): [number, Slot] | undefined {
    for (const e of this.slots) if (!e[1].pins) return e;
    return undefined;
  }

  private async writeBack(offset: number, s: Slot, copy = true): Promise<void> {
    await this.beforeWrite?.();
    // clean before the write, and write a copy: a change made meanwhile marks it dirty again
    s.dirty = false;
    await this.proto.pwrite(copy ? s.data.slice() : s.data, offset);
  }

  /** Write every dirty table (what they depend on is flushed once, before the first). */
  async flush(): Promise<void> {
    let first = true;
    for (const [off, s] of this.slots) {
      if (!s.dirty) continue;
      if (first) await this.beforeWrite?.();
      first = false;
      s.dirty = false;
      await this.proto.pwrite(s.data.slice(), off);
    }
  }

  get dirtyCount(): number {
    let n = 0;
    for (const s of this.slots.values()) if (s.dirty) n++;
    return n;
  }
}
