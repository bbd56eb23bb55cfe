/**
 * Internal snapshots (qcow2.txt "Snapshots"): create copies the active L1 table and takes one
 * more reference on every L2 table and data cluster it reaches; delete drops the snapshot's
 * references; apply makes a snapshot's L1 the active one. Refcounts count snapshots, so after
 * each change the "copied" bits of the active tables are recomputed from them. The snapshot table
 * is always rewritten to new clusters and switched in the header in one 12-byte write.
 */
import { VdiskError } from '../../block/errors.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter } from './l2-update.js';
import { L1E_COPIED_HI, L2E_COMPRESSED_HI, L2E_COPIED_HI, UNSAFE_HI } from './l1l2.js';
import { MAX_REFCOUNT_TABLE_BYTES, MAX_SNAPSHOTS } from './limits.js';
import { snapshotL1Problem } from './load.js';
import { diskTableBytes, encodeSnapshots, type Snapshot } from './snapshot.js';

function l1Offset(dv: DataView, i: number): number {
  return (dv.getUint32(i * 8) & 0x00ffffff) * 0x100000000 + ((dv.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
}

/**
 * A reference qemu's snapshot creation cannot take because the cluster has no refcount block.
 * qemu first allocates (and zeroes) a new block for it; if the table has a slot for the block it
 * hooks it in and fails with EAGAIN (its callers would retry: `hook`), otherwise the table must
 * grow, which fails with EFBIG past qemu's table limit (the zeroed cluster is leaked). Growing the
 * table into the far area such a cluster lies in (EAGAIN) is not reproduced: the cluster is leaked.
 */
class UncountableCluster extends Error {
  constructor(readonly errno: '-27 (File too large)' | '-11 (Resource temporarily unavailable)', readonly hook?: number) {
    super(errno);
  }
}

/** Add `delta` references to every L2 table and cluster reachable from `l1`. */
async function walk(meta: MetadataWriter, l1: Uint8Array, delta: 1 | -1): Promise<void> {
  const g = meta.map.geo;
  const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  for (let i = 0; i < l1.length / 8; i++) {
    const l2 = l1Offset(dv, i);
    if (l2 === 0) continue;
    for (let idx = 0; idx < 2 ** g.l2Bits; idx++) {
      const e = await meta.entry(l2, idx);
      if (delta > 0 && !(e.hi & L2E_COMPRESSED_HI) && e.hi & UNSAFE_HI) throw new UncountableCluster('-27 (File too large)');
      for (const [off, bytes] of meta.hostRanges(e)) await ref(meta, off, bytes, delta);
    }
    await ref(meta, l2, g.clusterSize, delta);
  }
}

async function ref(meta: MetadataWriter, off: number, bytes: number, delta: 1 | -1): Promise<void> {
  if (delta < 0) {
    meta.queueFree(off, bytes);
    return;
  }
  const cs = meta.map.geo.clusterSize;
  for (let c = Math.floor(off / cs); c * cs < off + bytes; c++) {
    const ti = Math.floor(c / 2 ** meta.rc.blockBits);
    if (ti >= meta.rc.tableEntries || meta.rc.blockOffset(ti) === 0) {
      if (ti >= MAX_REFCOUNT_TABLE_BYTES / 8) throw new UncountableCluster('-27 (File too large)');
      throw new UncountableCluster('-11 (Resource temporarily unavailable)', ti < meta.rc.tableEntries ? c : undefined);
    }
    await meta.rc.add(c, 1);
  }
}

/** Bit 63 of active L1 and L2 entries: set exactly where the refcount is 1. */
async function updateCopied(meta: MetadataWriter): Promise<void> {
  const g = meta.map.geo;
  const dv = meta.map.l1View;
  for (let i = 0; i < meta.map.l1Entries; i++) {
    const l2 = l1Offset(dv, i);
    if (l2 === 0) continue;
    const hi = dv.getUint32(i * 8);
    const one = (await meta.rc.get(l2 / g.clusterSize)) === 1;
    const want = one ? (hi | L1E_COPIED_HI) >>> 0 : (hi & ~L1E_COPIED_HI) >>> 0;
    if (want !== hi) meta.setL1Raw(i, want, dv.getUint32(i * 8 + 4));
    for (let idx = 0; idx < 2 ** g.l2Bits; idx++) {
      const e = await meta.entry(l2, idx);
      if (e.hi & L2E_COMPRESSED_HI) continue;
      const ranges = meta.hostRanges(e);
      if (ranges.length === 0) continue;
      const r1 = (await meta.rc.get(ranges[0]![0] / g.clusterSize)) === 1;
      const h = r1 ? (e.hi | L2E_COPIED_HI) >>> 0 : (e.hi & ~L2E_COPIED_HI) >>> 0;
      if (h !== e.hi) await meta.setEntry(l2, idx, { ...e, hi: h });
    }
  }
}

export class SnapshotEditor {
  constructor(private readonly p: Qcow2Parts, private readonly meta: () => Promise<MetadataWriter>) {}

  private refuse(): void {
    if (this.p.data !== this.p.proto) {
      throw new VdiskError('unsupported', 'QCOW2_SNAPSHOT_DATA_FILE', '-95 (Operation not supported)', { path: this.p.path, format: 'qcow2' });
    }
  }

  /** Write `list` as the new snapshot table and switch the header to it. */
  private async writeTable(meta: MetadataWriter, list: Snapshot[]): Promise<void> {
    const h = this.p.loaded.header;
    const cs = meta.map.geo.clusterSize;
    const old = { offset: Number(h.snapshotsOffset), bytes: diskTableBytes(this.p.loaded.snapshots) };
    // entries are written with at least the 24 bytes of extra data the spec requires for v3
    for (const s of list) {
      if (s.extra.length < 24) {
        const e = new Uint8Array(24);
        e.set(s.extra);
        s.extra = e;
      }
    }
    const bytes = encodeSnapshots(list);
    let offset = 0;
    if (bytes.length > 0) {
      offset = await meta.alloc.allocateMeta(Math.ceil(bytes.length / cs));
      await this.p.proto.pwrite(bytes, offset);
    }
    await meta.flush();
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, list.length);
    dv.setBigUint64(4, BigInt(offset));
    await this.p.proto.pwrite(b, 60);
    h.nbSnapshots = list.length;
    h.snapshotsOffset = BigInt(offset);
    this.p.loaded.snapshots = list;
    if (old.bytes > 0) meta.queueFree(old.offset, old.bytes);
  }

  async create(name: string, date: { sec: number; nsec: number }): Promise<void> {
    if (this.p.loaded.snapshots.length >= MAX_SNAPSHOTS) {
      throw new VdiskError('limit', 'QCOW2_SNAPSHOT_TABLE_FULL', '-27 (File too large)', { path: this.p.path, format: 'qcow2' });
    }
    this.refuse();
    const meta = await this.meta();
    await meta.flush();
    try {
      await walk(meta, meta.map.l1, 1);
    } catch (e) {
      const errno = e instanceof UncountableCluster ? e.errno
        : e instanceof VdiskError && e.code === 'QCOW2_REFCOUNT_OVERFLOW' ? '-22 (Invalid argument)' : undefined;
      if (errno === undefined) throw e;
      await this.failCreate(meta, e instanceof UncountableCluster ? e : undefined);
      throw new VdiskError('limit', 'QCOW2_SNAPSHOT_REFCOUNT', errno, { path: this.p.path, format: 'qcow2' }, e);
    }
    await updateCopied(meta);
    const cs = meta.map.geo.clusterSize;
    const l1 = meta.map.l1.slice();
    const l1Bytes = Math.ceil(l1.length / cs) * cs;
    const l1Off = l1.length > 0 ? await meta.alloc.allocateMeta(l1Bytes / cs) : 0;
    if (l1.length > 0) {
      const padded = new Uint8Array(l1Bytes);
      padded.set(l1);
      await this.p.proto.pwrite(padded, l1Off);
    }
    const ids = this.p.loaded.snapshots.map((s) => Number(s.id)).filter((n) => Number.isSafeInteger(n));
    const snap: Snapshot = {
      l1TableOffset: BigInt(l1Off), l1Size: l1.length / 8, id: String(Math.max(0, ...ids) + 1), name,
      dateSec: date.sec, dateNsec: date.nsec, vmClockNsec: 0n, vmStateSize: 0n, diskSize: BigInt(this.p.loaded.size),
      icount: 0n, extra: new Uint8Array(24),
    };
    await this.writeTable(meta, [...this.p.loaded.snapshots, snap]);
    await meta.flush();
  }

  /**
   * Leave the image as qemu's failed creation does: it has copied the active L1 table to new
   * clusters (leaked) and, for a cluster without a refcount block, made a block (see
   * UncountableCluster).
   */
  private async failCreate(meta: MetadataWriter, why: UncountableCluster | undefined): Promise<void> {
    const cs = meta.map.geo.clusterSize;
    if (meta.map.l1.length > 0) {
      const at = await meta.alloc.allocateMeta(Math.ceil(meta.map.l1.length / cs));
      await this.p.proto.pwrite(meta.map.l1.slice(), at);
    }
    if (why?.hook !== undefined) await meta.alloc.cover(why.hook);
    else if (why) await this.p.proto.pwrite(new Uint8Array(cs), await meta.alloc.allocate(1));
    await meta.flush();
  }

  /** The snapshot's L1 table must pass qemu's table check before it is used. */
  private checkL1(s: Snapshot, report: boolean): void {
    const bad = snapshotL1Problem(s, this.p.map.geo.clusterSize);
    if (!bad) return;
    const ctx = { path: this.p.path, format: 'qcow2' };
    if (!report) throw new VdiskError('invalid-format', 'QCOW2_SNAPSHOT_L1', bad.message, ctx);
    // apply reports the table's problem on its own line and fails with the errno
    throw new VdiskError('invalid-format', 'QCOW2_SNAPSHOT_L1', `Failed to load snapshot: ${bad.tooLarge ? 'File too large' : 'Invalid argument'}`,
      { ...ctx, preface: [{ text: bad.message, prefixed: true }] });
  }

  async delete(name: string, report?: (text: string) => void): Promise<void> {
    this.refuse();
    const i = this.p.loaded.snapshots.findIndex((s) => s.name === name);
    if (i < 0) throw new VdiskError('not-found', 'QCOW2_NO_SNAPSHOT', 'snapshot not found', { path: this.p.path, format: 'qcow2' });
    const s = this.p.loaded.snapshots[i]!;
    this.checkL1(s, false);
    const meta = await this.meta();
    await meta.flush();
    await this.writeTable(meta, this.p.loaded.snapshots.filter((_, j) => j !== i));
    // qemu frees the old table at once, and a failure there is reported and passed over: the
    // snapshot is gone from the table either way, its clusters only leak (iotest 217)
    try {
      await meta.flush();
    } catch (e) {
      report?.(`qcow2_free_clusters failed: ${e instanceof Error ? e.message : String(e)}\n`);
    }
    let l1: Uint8Array;
    try {
      l1 = await this.readL1(s);
      await walk(meta, l1, -1);
    } catch (e) {
      if (!(e instanceof VdiskError) || e.kind !== 'io') throw e;
      throw new VdiskError('io', 'QCOW2_SNAPSHOT_FREE', `Failed to free the cluster and L1 table: ${e.message}`, e.context, e);
    }
    if (l1.length > 0) meta.queueFree(Number(s.l1TableOffset), l1.length);
    await meta.flush();
    await updateCopied(meta);
    await meta.flush();
  }

  async apply(idOrName: string): Promise<void> {
    this.refuse();
    const list = this.p.loaded.snapshots;
    const s = list.find((x) => x.id === idOrName) ?? list.find((x) => x.name === idOrName);
    if (!s) throw new VdiskError('not-found', 'QCOW2_NO_SNAPSHOT', 'Failed to load snapshot: No such file or directory', { path: this.p.path, format: 'qcow2' });
    this.checkL1(s, true);
    const meta = await this.meta();
    await meta.flush();
    const l1 = await this.readL1(s);
    await walk(meta, l1, 1);
    await meta.flush();
    const oldActive = meta.map.l1.slice();
    if (l1.length / 8 > meta.map.l1Entries) {
      await meta.growL1(l1.length / 8, async (offset, entries) => {
        const b = new Uint8Array(12);
        const dv = new DataView(b.buffer);
        dv.setUint32(0, entries);
        dv.setBigUint64(4, BigInt(offset));
        await this.p.proto.pwrite(b, 36);
        this.p.loaded.header.l1Size = entries;
        this.p.loaded.header.l1TableOffset = BigInt(offset);
      });
    }
    const dv = new DataView(l1.buffer);
    for (let i = 0; i < meta.map.l1Entries; i++) {
      const inSnap = i < l1.length / 8;
      meta.setL1Raw(i, inSnap ? dv.getUint32(i * 8) : 0, inSnap ? dv.getUint32(i * 8 + 4) : 0);
    }
    await meta.flush();
    await walk(meta, oldActive, -1);
    await meta.flush();
    await updateCopied(meta);
    await meta.flush();
    if (s.diskSize !== undefined && Number(s.diskSize) !== this.p.loaded.size) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, s.diskSize);
      await this.p.proto.pwrite(b, 24);
      this.p.loaded.header.size = s.diskSize;
      this.p.loaded.size = Number(s.diskSize);
    }
  }

  private async readL1(s: Snapshot): Promise<Uint8Array> {
    const l1 = new Uint8Array(s.l1Size * 8);
    await this.p.proto.pread(l1, Number(s.l1TableOffset));
    return l1;
  }
}

