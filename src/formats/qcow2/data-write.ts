/**
 * Guest data writes of the qcow2 layer (./write.ts), run under its lock: in place where the host
 * cluster is private (refcount 1, copied flag), otherwise into a newly allocated cluster filled
 * first with the old guest content around the written bytes (copy-on-write from the backing
 * file, a compressed or shared cluster, or zeros), after which the mapping switches. Runs of new
 * whole clusters (a convert target) write their data after the lock is released (see `land`).
 */
import type { Qcow2Parts } from './layer.js';
import { entryOffset, L2E_COMPRESSED_HI, L2E_COPIED_HI } from './l1l2.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';

/** Every subcluster of an extended L2 entry. */
export const ALL_SUBCLUSTERS = 0xffffffff;

/** A fresh run's guest bytes whose data is still being written (its L2 entries not yet set). */
export interface Landing {
  start: number;
  end: number;
  /** Settles (never rejects) when the data has landed or failed. */
  done: Promise<void>;
}

export class GuestDataWriter {
  constructor(
    private readonly p: Qcow2Parts,
    /** Guest content as it reads now, below the lock (the layer's own read). */
    private readonly readGuest: (buf: Uint8Array, offset: number) => Promise<void>,
    private readonly size: () => number,
    /** The layer's set of fresh runs in flight: the lock waits on overlapping ones. */
    private readonly landing: Set<Landing>,
  ) {}

  /**
   * `flying`: where fresh runs put their data writes instead of waiting for them (their L2 entries
   * are set as each lands); absent, every write is waited for here.
   */
  async writeData(meta: MetadataWriter, buf: Uint8Array, offset: number, flying?: Array<Promise<void>>): Promise<void> {
    const cs = this.p.map.geo.clusterSize;
    for (let done = 0; done < buf.length;) {
      const pos = offset + done;
      const fresh = await this.writeFreshRun(meta, buf.subarray(done), pos, flying);
      if (fresh > 0) {
        done += fresh;
        continue;
      }
      const inPlace = await this.writeInPlaceRun(meta, buf.subarray(done), pos);
      if (inPlace > 0) {
        done += inPlace;
        continue;
      }
      const n = Math.min(buf.length - done, cs - (pos % cs));
      await this.writeInCluster(meta, buf.subarray(done, done + n), pos);
      done += n;
    }
  }

  /**
   * Whole clusters with no host cluster yet (a fresh convert target): one contiguous run of new
   * clusters and one write for all of them instead of a write per cluster; the same clusters and
   * entries writeInCluster would give one by one. Returns the bytes written (0: not applicable).
   */
  private async writeFreshRun(meta: MetadataWriter, data: Uint8Array, pos: number, flying?: Array<Promise<void>>): Promise<number> {
    const g = this.p.map.geo;
    const cs = g.clusterSize;
    if (g.extL2 || this.p.luks || this.p.data !== this.p.proto || pos % cs !== 0 || data.length < 2 * cs) return 0;
    const { l1i, idx } = this.locate(pos);
    const l2off = await meta.l2ForWrite(l1i);
    const max = Math.min(Math.floor(data.length / cs), 2 ** g.l2Bits - idx);
    // unallocated, or a zero flag without a host cluster: a whole-cluster write needs no old content
    const k = await meta.freshEntries(l2off, idx, max);
    if (k < 2) return 0;
    const run = await meta.alloc.allocateRun(k);
    const bytes = run.count * cs;
    if (flying) {
      // held under the lock, before anything else can evict it
      const table = await meta.holdL2(l2off);
      this.land(meta, data.subarray(0, bytes), pos, { l2off, idx, table }, run, flying);
      return bytes;
    }
    this.p.proto.debugEvent?.('write_aio');
    await this.p.proto.pwrite(data.subarray(0, bytes), run.offset);
    await meta.setDataRun(l2off, idx, run.count, run.offset);
    return bytes;
  }

  /**
   * Write a fresh run's data without holding the lock; its L2 entries are set when it lands (so
   * the table never points at clusters not yet written), from the table held in the cache until
   * then. A crash meanwhile leaks the allocated clusters, which check -r leaks repairs.
   */
  private land(meta: MetadataWriter, data: Uint8Array, pos: number, l2: { l2off: number; idx: number; table: Uint8Array },
    run: { offset: number; count: number }, flying: Array<Promise<void>>): void {
    const entry = { start: pos, end: pos + data.length, done: Promise.resolve() };
    const write = (async (): Promise<void> => {
      try {
        await this.p.proto.pwrite(data, run.offset);
        meta.setDataRunIn(l2.table, l2.l2off, l2.idx, run.count, run.offset);
      } finally {
        meta.releaseL2(l2.l2off);
        this.landing.delete(entry);
      }
    })();
    entry.done = write.catch(() => undefined);
    this.landing.add(entry);
    flying.push(write);
  }

  /**
   * Clusters this image owns (copied, not zero, not compressed) whose host clusters follow each
   * other: overwritten with one write for the run instead of one per cluster (commit and rebase
   * overwrite such runs); the same bytes in the same places as writeInCluster would put them.
   * Returns the bytes written (0: not applicable).
   */
  private async writeInPlaceRun(meta: MetadataWriter, data: Uint8Array, pos: number): Promise<number> {
    const g = this.p.map.geo;
    const cs = g.clusterSize;
    const inC = pos % cs;
    if (g.extL2 || this.p.luks || this.p.data !== this.p.proto || data.length <= cs - inC) return 0;
    const { l1i, idx } = this.locate(pos);
    const l2off = await meta.l2ForWrite(l1i);
    const max = Math.min(Math.ceil((inC + data.length) / cs), 2 ** g.l2Bits - idx);
    let host = 0;
    let k = 0;
    for (; k < max; k++) {
      const e = await meta.entry(l2off, idx + k);
      if (!this.hasHost(e) || (e.hi & L2E_COPIED_HI) === 0 || (g.zeroFlag && (e.lo & 1) !== 0)) break;
      if (k === 0) host = this.hostOf(e);
      else if (this.hostOf(e) !== host + k * cs) break;
    }
    if (k < 2) return 0;
    const n = Math.min(data.length, k * cs - inC);
    this.guard(meta, host + inC, n);
    await this.putData(data.subarray(0, n), host + inC, pos);
    return n;
  }

  locate(pos: number): { l1i: number; idx: number; cstart: number; inC: number } {
    const g = this.p.map.geo;
    const cluster = Math.floor(pos / g.clusterSize);
    return {
      l1i: Math.floor(cluster / 2 ** g.l2Bits), idx: cluster % 2 ** g.l2Bits,
      cstart: cluster * g.clusterSize, inC: pos - cluster * g.clusterSize,
    };
  }

  /** Guest content of [from, to) as it reads now (zeros past the end of the image). */
  async current(from: number, to: number): Promise<Uint8Array> {
    const out = new Uint8Array(to - from);
    const end = Math.min(to, this.size());
    if (end > from) await this.readGuest(out.subarray(0, end - from), from);
    return out;
  }

  /** Guest bytes to their host place; encrypted images rewrite whole 512-byte sectors. */
  async putData(buf: Uint8Array, host: number, guest: number): Promise<void> {
    const luks = this.p.luks;
    this.p.data!.debugEvent?.('write_aio');
    if (!luks) return this.p.data!.pwrite(buf, host);
    const start = host - (host % 512);
    const end = Math.ceil((host + buf.length) / 512) * 512;
    const tmp = new Uint8Array(end - start);
    if (start !== host || end !== host + buf.length) {
      await this.p.data!.pread(tmp, start);
      luks.decrypt(tmp, start, guest - (host - start));
    }
    tmp.set(buf, host - start);
    luks.encrypt(tmp, start, guest - (host - start));
    await this.p.data!.pwrite(tmp, start);
  }

  /** Data about to be written in place must not land on metadata (guest data in a data file cannot). */
  guard(meta: MetadataWriter, offset: number, bytes: number): void {
    if (this.p.data === this.p.proto) meta.alloc.guard(offset, bytes);
  }

  hostOf(e: RawEntry): number {
    return entryOffset(e.hi, e.lo, this.p.path, 'Cluster allocation');
  }

  hasHost(e: RawEntry): boolean {
    if (e.hi & L2E_COMPRESSED_HI) return false;
    return this.hostOf(e) !== 0 || (this.p.data !== this.p.proto && (e.hi & L2E_COPIED_HI) !== 0);
  }

  entryFor(host: number, zeroFlag: boolean): RawEntry {
    return {
      hi: (Math.floor(host / 0x100000000) | L2E_COPIED_HI) >>> 0, lo: (host >>> 0) | (zeroFlag ? 1 : 0),
      zeroBits: 0, allocBits: 0,
    };
  }

  /** A new host cluster: allocated in the image, or the fixed guest-offset cluster of a data file. */
  async newCluster(meta: MetadataWriter, cstart: number): Promise<number> {
    return this.p.data !== this.p.proto ? cstart : meta.alloc.allocate(1);
  }

  private async writeInCluster(meta: MetadataWriter, data: Uint8Array, pos: number): Promise<void> {
    const g = this.p.map.geo;
    const { l1i, idx, cstart, inC } = this.locate(pos);
    const l2off = await meta.l2ForWrite(l1i);
    const e = await meta.entry(l2off, idx);
    if (g.extL2) return this.writeSubclusters(meta, data, pos, l2off, idx, e);
    const copied = (e.hi & L2E_COPIED_HI) !== 0;
    const zero = g.zeroFlag && (e.lo & 1) !== 0;
    if (this.hasHost(e) && copied && !zero) {
      this.guard(meta, this.hostOf(e) + inC, data.length);
      await this.putData(data, this.hostOf(e) + inC, pos);
      return;
    }
    const full = data.length === g.clusterSize ? data : await this.current(cstart, cstart + g.clusterSize);
    if (full !== data) full.set(data, inC);
    // a preallocated zero cluster of our own is reused, as qemu does
    const reuse = zero && copied && this.hasHost(e);
    const target = reuse ? this.hostOf(e) : await this.newCluster(meta, cstart);
    if (reuse) this.guard(meta, target, full.length);
    await this.putData(full, target, cstart);
    await meta.setEntry(l2off, idx, this.entryFor(target, false));
    if (!reuse) meta.releaseEntry(e);
  }

  /** Extended L2: write whole subclusters, filling partly written ones with their current content. */
  private async writeSubclusters(meta: MetadataWriter, data: Uint8Array, pos: number, l2off: number, idx: number, e: RawEntry): Promise<void> {
    const g = this.p.map.geo;
    const { cstart, inC } = this.locate(pos);
    const s0 = Math.floor(inC / g.subclusterSize);
    const s1 = Math.floor((inC + data.length - 1) / g.subclusterSize);
    const copied = (e.hi & L2E_COPIED_HI) !== 0;
    const mask = s1 - s0 === 31 ? ALL_SUBCLUSTERS : ((2 ** (s1 - s0 + 1) - 1) * 2 ** s0) >>> 0;
    if (this.hasHost(e) && copied) {
      const host = this.hostOf(e);
      this.guard(meta, host, g.clusterSize);
      if ((e.allocBits & mask) === mask) {
        await this.putData(data, host + inC, pos);
        return;
      }
      const from = cstart + s0 * g.subclusterSize;
      const buf = await this.current(from, cstart + (s1 + 1) * g.subclusterSize);
      buf.set(data, pos - from);
      await this.putData(buf, host + s0 * g.subclusterSize, from);
      await meta.setEntry(l2off, idx, { ...e, allocBits: (e.allocBits | mask) >>> 0, zeroBits: (e.zeroBits & ~mask) >>> 0 });
      return;
    }
    const target = await this.newCluster(meta, cstart);
    if (e.hi & L2E_COMPRESSED_HI || this.hasHost(e)) {
      // compressed or shared with a snapshot: the new cluster takes the whole cluster's content
      const full = await this.current(cstart, cstart + g.clusterSize);
      full.set(data, inC);
      await this.putData(full, target, cstart);
      await meta.setEntry(l2off, idx, { ...this.entryFor(target, false), allocBits: ALL_SUBCLUSTERS, zeroBits: 0 });
    } else {
      const from = cstart + s0 * g.subclusterSize;
      const buf = await this.current(from, cstart + (s1 + 1) * g.subclusterSize);
      buf.set(data, pos - from);
      await this.putData(buf, target + s0 * g.subclusterSize, from);
      await meta.setEntry(l2off, idx, { ...this.entryFor(target, false), allocBits: mask, zeroBits: (e.zeroBits & ~mask) >>> 0 });
    }
    meta.releaseEntry(e);
  }
}
