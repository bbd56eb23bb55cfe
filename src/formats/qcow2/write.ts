/**
 * The qcow2 FormatLayer: the read side (./layer.ts) plus writes. Every operation on a writable
 * image runs under one lock, so allocation and table updates never interleave; guest data writes
 * are in ./data-write.ts, zeroes, discards, compressed writes, snapshots and resizes here.
 */
import { VdiskError } from '../../block/errors.js';
import type { AmendHooks, BitmapOps, CheckResult, CompressedClusters, FormatLayer, LayerStatus, RepairMode, SnapshotOps, TruncateOptions } from '../../block/driver.js';
import { Qcow2Bitmaps } from './bitmap-ops.js';
import type { SnapshotEditor } from './snapshot-ops.js';
import type { CompressedWriter } from './compressed-write.js';
import { Qcow2Reader, type Qcow2Parts } from './layer.js';
import { AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from './header.js';
import { diskTableBytes } from './snapshot.js';
import { L2E_COMPRESSED_HI, L2E_COPIED_HI } from './l1l2.js';
import type { Refcounts } from './refcount.js';
import type { ClusterAllocator } from './cluster-alloc.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';
import { ALL_SUBCLUSTERS, GuestDataWriter, type Landing } from './data-write.js';
import { MAX_IMAGE_SIZE } from '../../block/limits.js';

/** check and resize load on first use: most commands (info, map, convert) never need them. */
const checkQcow2: typeof import('./check.js').checkQcow2 = async (...a) => (await import('./check.js')).checkQcow2(...a);
const growImage: typeof import('./resize.js').growImage = async (...a) => (await import('./resize.js')).growImage(...a);
const shrinkImage: typeof import('./resize.js').shrinkImage = async (...a) => (await import('./resize.js')).shrinkImage(...a);
const amendQcow2: typeof import('./amend.js').amendQcow2 = async (...a) => (await import('./amend.js')).amendQcow2(...a);
/** The write path's modules, loaded by the first writer: read-only opens (info, map, compare) never need them. */
const writeModules = async (): Promise<[typeof import('./refcount.js'), typeof import('./cluster-alloc.js'), typeof import('./l2-update.js')]> =>
  Promise.all([import('./refcount.js'), import('./cluster-alloc.js'), import('./l2-update.js')]);

export class Qcow2Layer extends Qcow2Reader implements FormatLayer {
  private lock: Promise<unknown> = Promise.resolve();
  private meta: MetadataWriter | undefined;
  private writeBlocked: VdiskError | undefined;
  private readonly bitmapState: Qcow2Bitmaps;

  constructor(p: Qcow2Parts) {
    super(p);
    this.bitmapState = new Qcow2Bitmaps(p, () => this.writer(), (fn) => this.serial(fn));
    this.guest = new GuestDataWriter(p, (buf, offset) => super.read(buf, offset), () => this.size, this.landing);
  }

  get granularity(): number {
    return this.p.map.geo.clusterSize;
  }

  get backing(): { filename: string; format?: string } | undefined {
    return this.p.loaded.backing;
  }

  /**
   * Run `fn` alone (writable images only; read-only images need no ordering). It also waits for
   * the data in flight of earlier writes (see `landing`) that overlaps `range`, guest bytes
   * [start, end), or for all of it when the operation gives no range.
   */
  private serial<T>(fn: () => Promise<T>, range?: readonly [number, number]): Promise<T> {
    if (this.p.readOnly) return fn();
    // after the last exclusive operation and after the reads started since it
    const readers = this.readers;
    this.readers = undefined;
    const before = readers ? Promise.all([this.lock, readers.done]) : this.lock;
    const go = (): Promise<T> => (this.landing.size === 0 ? fn() : this.landed(range).then(fn));
    const run = before.then(go, go);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Whole-cluster writes to new clusters whose data is still being written: allocated, but their
   * L2 entries are set only when the data has landed. The next operation need not wait for that
   * (a convert's next request allocates and starts writing meanwhile); one that touches these
   * guest bytes, or any operation without a range, waits.
   */
  private readonly landing = new Set<Landing>();
  private readonly guest: GuestDataWriter;

  private async landed(range?: readonly [number, number]): Promise<void> {
    for (;;) {
      let wait: Promise<void> | undefined;
      for (const w of this.landing) {
        if (!range || (w.start < range[1] && range[0] < w.end)) {
          wait = w.done;
          break;
        }
      }
      if (!wait) return;
      await wait;
    }
  }

  /** Reads running since the last exclusive operation was queued (the next one waits for them). */
  private readers: { count: number; done: Promise<void>; resolve: () => void } | undefined;

  /**
   * A read of a writable image: after the exclusive operations queued before it, but alongside
   * other reads (commit reads its top, which it writes only at the end, several requests at once).
   * Only until the first write through this open: from then on the caches may hold dirty tables,
   * which a read's cache miss would write back, so reads are exclusive again.
   */
  private shared<T>(fn: () => Promise<T>, range: readonly [number, number]): Promise<T> {
    if (this.p.readOnly) return fn();
    if (this.meta) return this.serial(fn, range);
    if (!this.readers) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => { resolve = r; });
      this.readers = { count: 0, done, resolve };
    }
    const gen = this.readers;
    gen.count++;
    const run = this.lock.then(fn, fn);
    const settle = (): void => {
      if (--gen.count > 0) return;
      gen.resolve();
      if (this.readers === gen) this.readers = undefined;
    };
    run.then(settle, settle);
    return run;
  }

  /**
   * Decide, once at open, whether writes can be honoured safely. Like qemu, a read-write open
   * (not a check's) loads the persistent bitmaps, marking them in-use until the image is closed.
   */
  async prepareWrites(forCheck = false): Promise<void> {
    if (this.p.readOnly) return;
    // as qemu does on every read-write open, even one that then writes nothing (check -r)
    await this.clearUnknownAutoclear();
    if (!forCheck && this.p.loaded.bitmaps.length > 0 && !this.p.ioBlocked && this.p.loaded.header.cryptMethod === 0) {
      // a bitmap that cannot be loaded fails the operation that needs it, not the open
      await this.bitmapState.load().catch(() => undefined);
    }
    const l = this.p.loaded;
    const h = l.header;
    const path = this.p.path;
    if (h.cryptMethod !== 0 && !this.p.luks?.unlocked) {
      this.writeBlocked = new VdiskError('unsupported', 'QCOW2_ENCRYPTED_WRITE', `Could not write to '${path}': vdisk does not write encrypted qcow2 images`, { path, format: 'qcow2' });
    }
  }

  /**
   * A dirty image (lazy refcounts, not closed cleanly) may have stale refcounts: like qemu, repair
   * them before the first write and mark the image clean; if anything is left unrepaired, refuse.
   */
  private async repairDirty(): Promise<void> {
    const h = this.p.loaded.header;
    if (!(h.incompatibleFeatures & INCOMPAT_DIRTY)) return;
    const r = await checkQcow2(this.p, 'all', undefined);
    if (r.corruptions || r.leaks || r.checkErrors) {
      const path = this.p.path;
      this.writeBlocked = new VdiskError('corrupt', 'QCOW2_DIRTY', `Could not write to '${path}': the image is dirty and its refcounts could not be repaired; run 'qemu-img check -r all'`, { path, format: 'qcow2' });
      throw this.writeBlocked;
    }
    await this.markClean();
  }

  private async markClean(): Promise<void> {
    const h = this.p.loaded.header;
    h.incompatibleFeatures &= ~INCOMPAT_DIRTY;
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, h.incompatibleFeatures);
    await this.p.proto.flush();
    await this.p.proto.pwrite(b, 72);
    await this.p.proto.flush();
  }

  /** Why refcounts that miss metadata refuse writes (set when a shrink went ahead regardless). */
  private uncovered: VdiskError | undefined;

  /**
   * The metadata writer. `metadataOnly`: the caller changes metadata, never guest data (amend), so
   * enabled persistent bitmaps cannot go stale and do not block it. `shrink`: the caller only drops
   * clusters, so refcounts that miss metadata do not refuse it (qemu does not look); what it must
   * allocate (an L2 table, as qemu's discard does) goes past the end of the file.
   */
  private async writer(metadataOnly = false, shrink = false): Promise<MetadataWriter> {
    this.checkIo();
    if (this.writeBlocked && !(metadataOnly && this.writeBlocked.code === 'QCOW2_BITMAPS_WRITE')) throw this.writeBlocked;
    if (this.meta) {
      if (this.uncovered && !shrink) throw this.uncovered;
      return this.meta;
    }
    await this.repairDirty();
    const p = this.p;
    const h = p.loaded.header;
    const cs = p.map.geo.clusterSize;
    const [{ Refcounts }, { ClusterAllocator }, { MetadataWriter }] = await writeModules();
    const rc = await Refcounts.load(p.proto, h.clusterBits, h.refcountOrder, p.loaded.refcountTableOffset, h.refcountTableClusters, p.path);
    const end = Math.ceil((await p.proto.size()) / cs);
    const alloc = new ClusterAllocator(p.proto, rc, h.clusterBits, end, async (offset, clusters) => {
      const b = new Uint8Array(12);
      const dv = new DataView(b.buffer);
      dv.setBigUint64(0, BigInt(offset));
      dv.setUint32(8, clusters);
      await p.proto.pwrite(b, 48);
      h.refcountTableOffset = BigInt(offset);
      h.refcountTableClusters = clusters;
    }, p.path, (offset, what) => this.overlap(offset, what));
    seedMetadata(p, alloc, rc);
    const uncovered = await this.uncoveredMetadata(alloc, rc);
    if (uncovered) {
      if (!shrink) throw (this.writeBlocked = uncovered);
      alloc.appendOnly = true;
      this.uncovered = uncovered;
    }
    this.meta = new MetadataWriter(p.proto, p.map, rc, alloc, p.loaded.l1Offset, p.data !== p.proto, p.path, p.data !== p.proto ? p.data : undefined);
    return this.meta;
  }

  private corruptMark: Promise<void> | undefined;

  /**
   * A write about to land on metadata: qemu's answer is to mark the image corrupt (so nothing
   * writes to it until it is repaired) and fail the write. Returns the error to throw.
   */
  private overlap(offset: number, what: string): VdiskError {
    const err = new VdiskError('corrupt', 'QCOW2_METADATA_OVERLAP',
      `qcow2: Marking image as corrupt: Preventing invalid write on metadata (overlaps with ${what} at host offset 0x${offset.toString(16)}); further corruption events will be suppressed`,
      { path: this.p.path, format: 'qcow2', offset, op: 'write' });
    this.writeBlocked = err;
    this.setCorruptBit();
    return err;
  }

  /** The corrupt bit on disk (v3 only: v2 has no feature bits), written once. */
  private setCorruptBit(): void {
    const h = this.p.loaded.header;
    if (h.version >= 3 && !this.corruptMark) {
      h.incompatibleFeatures |= INCOMPAT_CORRUPT;
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, h.incompatibleFeatures);
      this.corruptMark = this.p.proto.pwrite(b, 72).then(() => this.p.proto.flush());
    }
  }

  /**
   * Allocation trusts refcounts; if they do not even count the image's own metadata (a refcount
   * table past the end of the file, zeroed blocks), new clusters would land on live data: the
   * error that refuses allocation, if so.
   */
  private async uncoveredMetadata(alloc: ClusterAllocator, rc: Refcounts): Promise<VdiskError | undefined> {
    for (const c of alloc.metadata) {
      let n = 0;
      try {
        n = await rc.get(c);
      } catch {
        n = 0;
      }
      if (n === 0) {
        const path = this.p.path;
        return new VdiskError('corrupt', 'QCOW2_REFCOUNTS_BROKEN',
          `Could not write to '${path}': the refcounts do not cover the image's metadata (cluster ${c} has refcount 0); repair it with 'qemu-img check -r all'`,
          { path, format: 'qcow2', offset: c * this.p.map.geo.clusterSize, op: 'write' });
      }
    }
    return undefined;
  }

  /**
   * qemu's fatal corruption event outside a guest write: the corrupt bit is set (v3) and nothing
   * more is written through this open. Returns the line qemu prints.
   */
  private async corruption(what: string): Promise<string> {
    this.setCorruptBit();
    await this.corruptMark;
    this.writeBlocked = new VdiskError('corrupt', 'QCOW2_CORRUPTED', 'No medium found', { path: this.p.path, format: 'qcow2' });
    return `qcow2: Marking image as corrupt: ${what}; further corruption events will be suppressed`;
  }

  /** The spec lets a writer keep autoclear bits only for features it maintains. */
  private async clearUnknownAutoclear(): Promise<void> {
    const h = this.p.loaded.header;
    const known = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW;
    if (h.version < 3 || (h.autoclearFeatures & ~known) === 0n) return;
    h.autoclearFeatures &= known;
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, h.autoclearFeatures);
    await this.p.proto.pwrite(b, 88);
  }

  override read(buf: Uint8Array, offset: number): Promise<void> {
    return this.shared(() => super.read(buf, offset), [offset, offset + buf.length]);
  }

  override blockStatus(offset: number, length: number): Promise<LayerStatus> {
    return this.shared(() => super.blockStatus(offset, length), [offset, offset + length]);
  }

  /** Only without writes: a writable image's status waits for the writes queued before it. */
  override blockStatusSync(offset: number, length: number): LayerStatus | undefined {
    return this.p.readOnly ? super.blockStatusSync(offset, length) : undefined;
  }

  /** The writer for a guest write of [offset, offset + length): enabled bitmaps record it first. */
  private async guestWriter(offset: number, length: number): Promise<MetadataWriter> {
    const meta = await this.writer();
    await this.bitmapState.markWritten(offset, length);
    return meta;
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    // blkdebug's rules count events in qemu's order: data lands before the next request there
    const flying: Array<Promise<void>> | undefined = this.p.proto.debugEvent ? undefined : [];
    let failed: unknown;
    try {
      await this.serial(async () => {
        const meta = await this.guestWriter(offset, buf.length);
        await this.writeData(meta, buf, offset, flying);
        if (meta.mustFlush) await meta.flush();
      }, [offset, offset + buf.length]);
    } catch (e) {
      failed = e;
    }
    // the caller's buffer is in use until all of its data has landed, even after a failure
    if (flying && flying.length > 0) {
      for (const r of await Promise.allSettled(flying)) if (r.status === 'rejected' && failed === undefined) failed = r.reason;
    }
    if (failed !== undefined) throw failed;
  }

  /** Guest data into the image (./data-write.ts); the compressed writer's state is stale after it. */
  private async writeData(meta: MetadataWriter, buf: Uint8Array, offset: number, flying?: Array<Promise<void>>): Promise<void> {
    await this.guest.writeData(meta, buf, offset, flying);
    this.invalidateCompressed();
  }

  /** A request's clusters compressed off the lock and off the main thread, ahead of its writeCompressed. */
  async compressClusters(buf: Uint8Array, skip?: Uint8Array): Promise<CompressedClusters> {
    const { compressClusters } = await import('./compress-pool.js');
    return compressClusters(this.p.loaded.header.compressionType, this.p.map.geo.clusterSize, buf, skip);
  }

  /**
   * Whole clusters compressed (convert -c); the last one may be short at the end of the image.
   * `pre`: the same clusters from compressClusters (else they are compressed here).
   */
  writeCompressed(buf: Uint8Array, offset: number, pre?: CompressedClusters): Promise<void> {
    return this.serial(async () => {
      const meta = await this.guestWriter(offset, buf.length);
      const path = this.p.path;
      if (this.p.luks) {
        throw new VdiskError('unsupported', 'QCOW2_NO_COMPRESSION', 'Compression is not supported for encrypted images', { path, format: 'qcow2' });
      }
      if (this.p.data !== this.p.proto) {
        // qemu fails the write itself (ENOTSUP), worded as any failed write of convert
        throw new VdiskError('io', 'QCOW2_NO_COMPRESSION', `error while writing at byte ${offset}: Operation not supported`,
          { path, format: 'qcow2', offset, op: 'write', errno: 'EOPNOTSUPP' });
      }
      const cs = this.p.map.geo.clusterSize;
      this.compressed ??= new (await import('./compressed-write.js')).CompressedWriter(this.p);
      const { packed, lengths } = pre ?? (await this.compressHere(buf));
      const plain = await this.compressed.write(meta, offset, buf.length, packed, lengths);
      for (const p of plain) await this.writeData(meta, packed.subarray(p.from, p.to), offset + p.index * cs);
      this.invalidateCompressed();
      if (meta.mustFlush) await meta.flush();
    });
  }

  /** Compression on this thread, for writes that come without compressClusters (library callers, tests). */
  private async compressHere(buf: Uint8Array): Promise<{ packed: Uint8Array; lengths: Int32Array }> {
    const { compressBatch } = await import('./compress-worker.js');
    // packed in place: in a copy (the caller's buffer stays as it is) with room for whole clusters
    const cs = this.p.map.geo.clusterSize;
    const data = new Uint8Array(Math.ceil(buf.length / cs) * cs);
    data.set(buf);
    const lengths = compressBatch({ id: 0, type: this.p.loaded.header.compressionType, clusterSize: cs,
      data: data.buffer, offset: 0, bytes: buf.length, room: data.length });
    return { packed: data, lengths };
  }

  private compressed: CompressedWriter | undefined;

  writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    return this.serial(() => this.zeroRange(offset, length, mayUnmap));
  }

  private async zeroRange(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    {
      const meta = await this.guestWriter(offset, length);
      const g = this.p.map.geo;
      const unit = g.extL2 ? g.subclusterSize : g.clusterSize;
      // zero flags need v3; a raw data file must hold the zeros itself
      const flags = this.p.loaded.header.version >= 3 && !this.rawDataFile();
      const end = offset + length;
      for (let pos = offset; pos < end;) {
        const next = Math.min(end, (Math.floor(pos / g.clusterSize) + 1) * g.clusterSize);
        const a = Math.ceil(pos / unit) * unit;
        // a run ending at the end of the image takes its last, partial unit whole, as in qemu
        const b = (next === this.p.loaded.size ? Math.ceil : Math.floor)(next / unit) * unit;
        if (!flags || a >= b) await this.zeroBytes(meta, pos, next - pos);
        else {
          if (a > pos) await this.zeroBytes(meta, pos, a - pos);
          await this.zeroFlagged(meta, a, b - a, mayUnmap);
          if (next > b) await this.zeroBytes(meta, b, next - b);
        }
        pos = next;
      }
      this.invalidateCompressed();
      if (meta.mustFlush) await meta.flush();
    }
  }

  /**
   * The grown area must read as zeros over a longer backing file (qemu's BDRV_REQ_ZERO_WRITE):
   * zero flags from the first aligned unit, explicit zeros written for the unaligned head, as
   * qcow2_co_truncate does; falloc/full preallocation has already written the area.
   */
  private async zeroGrownArea(old: number, size: number, prealloc: TruncateOptions['prealloc']): Promise<void> {
    if (size <= old || prealloc === 'falloc' || prealloc === 'full') return;
    const g = this.p.map.geo;
    const unit = g.extL2 ? g.subclusterSize : g.clusterSize;
    const start = Math.ceil(old / unit) * unit;
    if (size > start) await this.zeroRange(start, size - start, false);
    if (start > old) {
      const meta = await this.guestWriter(old, Math.min(start, size) - old);
      await this.writeData(meta, new Uint8Array(Math.min(start, size) - old), old);
      if (meta.mustFlush) await meta.flush();
    }
  }

  /**
   * Unallocated clusters read from a backing file if the header names one, even when it was not
   * opened (convert's target with -B): zeros must then be recorded, not assumed.
   */
  private backingShows(): boolean {
    return this.p.backingReader.present || this.p.loaded.backing !== undefined;
  }

  private rawDataFile(): boolean {
    return (this.p.loaded.header.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n && this.p.data !== this.p.proto;
  }

  /** Zeros written as data, skipped where the bytes already read as zeros without a backing file. */
  private async zeroBytes(meta: MetadataWriter, pos: number, n: number): Promise<void> {
    const m = await this.p.map.lookup(pos, n);
    if (m.length >= n && (m.type === 'zero-plain' || m.type === 'zero-alloc' || (m.type === 'unallocated' && !this.backingShows()))) return;
    await this.writeData(meta, new Uint8Array(n), pos);
  }

  /**
   * A backing file is linked, or named in the header though not opened (convert -n opens its target
   * without the chain): unallocated clusters then do not read as zeros.
   */
  /**
   * Zero whole clusters (or subclusters) within one cluster through the L2 entry's zero flags; as
   * qemu, unallocated clusters get the flag too (an L2 table is allocated for it).
   */
  private async zeroFlagged(meta: MetadataWriter, pos: number, n: number, mayUnmap: boolean): Promise<void> {
    const g = this.p.map.geo;
    const { l1i, idx, inC } = this.guest.locate(pos);
    const l2off = await meta.l2ForWrite(l1i);
    const e = await meta.entry(l2off, idx);
    const keep = this.guest.hasHost(e) && (e.hi & L2E_COPIED_HI) !== 0 && !mayUnmap && !this.p.readOnly;
    if (!g.extL2) {
      await meta.setEntry(l2off, idx, keep ? this.guest.entryFor(this.guest.hostOf(e), true) : { hi: 0, lo: 1, zeroBits: 0, allocBits: 0 });
      if (!keep) meta.releaseEntry(e);
      return;
    }
    const s0 = inC / g.subclusterSize;
    const count = n / g.subclusterSize;
    const mask = count === 32 ? ALL_SUBCLUSTERS : ((2 ** count - 1) * 2 ** s0) >>> 0;
    const compressed = (e.hi & L2E_COMPRESSED_HI) !== 0;
    const zeroBits = ((compressed ? 0 : e.zeroBits) | mask) >>> 0;
    const allocBits = compressed ? 0 : (e.allocBits & ~mask) >>> 0;
    if (compressed || (!keep && zeroBits === ALL_SUBCLUSTERS) || (!this.guest.hasHost(e))) {
      if (compressed && mask !== ALL_SUBCLUSTERS) {
        // a partly zeroed compressed cluster: write its remaining content plainly
        return this.zeroBytes(meta, pos, n);
      }
      await meta.setEntry(l2off, idx, { hi: 0, lo: 0, zeroBits, allocBits: 0 });
      meta.releaseEntry(e);
      return;
    }
    await meta.setEntry(l2off, idx, { ...e, zeroBits, allocBits });
  }

  discard(offset: number, length: number): Promise<void> {
    return this.clearClusters(offset, length, false);
  }

  /** Unallocate every cluster, so the backing file shows through again (qemu-img commit empties the top). */
  makeEmpty(): Promise<void> {
    return this.clearClusters(0, this.size, true);
  }

  private clearClusters(offset: number, length: number, unallocate: boolean): Promise<void> {
    return this.serial(async () => {
      const meta = await this.guestWriter(offset, length);
      const g = this.p.map.geo;
      const h = this.p.loaded.header;
      const backing = this.backingShows() && !unallocate;
      // v2 cannot mark a cluster zero, so with a backing file a discard would expose its data
      if (this.p.data !== this.p.proto || (h.version < 3 && backing)) return;
      const first = Math.ceil(offset / g.clusterSize);
      // the image's last cluster may be partial: reaching the image end clears it too
      const end = offset + length;
      const last = end >= this.size ? Math.ceil(end / g.clusterSize) : Math.floor(end / g.clusterSize);
      for (let c = first; c < last; c++) {
        const { l1i, idx } = this.guest.locate(c * g.clusterSize);
        // without an L2 table the cluster is unallocated: with a backing file qemu still makes it read as zeros
        if (this.p.map.l2Offset(l1i) === 0 && !backing) continue;
        const l2off = await meta.l2ForWrite(l1i);
        const e = await meta.entry(l2off, idx);
        const cleared: RawEntry = g.extL2
          ? { hi: 0, lo: 0, zeroBits: backing ? ALL_SUBCLUSTERS : 0, allocBits: 0 }
          : { hi: 0, lo: backing ? 1 : 0, zeroBits: 0, allocBits: 0 };
        await meta.setEntry(l2off, idx, cleared);
        meta.releaseEntry(e);
      }
      this.invalidateCompressed();
      if (meta.mustFlush) await meta.flush();
    });
  }

  /** Internal snapshot operations, each under the layer's lock. */
  get snapshots(): SnapshotOps | undefined {
    if (this.p.readOnly) return undefined;
    let editor: Promise<SnapshotEditor> | undefined;
    const ed = (): Promise<SnapshotEditor> => (editor ??= import('./snapshot-ops.js').then((m) => new m.SnapshotEditor(this.p, () => this.writer())));
    const done = (): void => this.invalidateCompressed();
    return {
      create: (name, date) => this.serial(async () => { await (await ed()).create(name, date); done(); }),
      apply: (idOrName) => this.serial(async () => { await (await ed()).apply(idOrName); done(); }),
      delete: (name, report) => this.serial(async () => { await (await ed()).delete(name, report); done(); }),
    };
  }

  /** Persistent dirty bitmaps, each operation under the layer's lock. */
  get bitmaps(): BitmapOps {
    return this.bitmapState;
  }

  check(repair: RepairMode): Promise<CheckResult> {
    return this.serial(async () => {
      if (this.meta) await this.meta.flush();
      const r = await checkQcow2(this.p, repair, this.meta?.rc);
      // a repaired dirty image is clean again (qemu clears the bit after a successful repair)
      const h = this.p.loaded.header;
      if (repair !== 'none' && !this.p.readOnly && h.incompatibleFeatures & INCOMPAT_DIRTY && !r.corruptions && !r.leaks && !r.checkErrors) {
        await this.markClean();
      }
      return r;
    });
  }

  flush(): Promise<void> {
    return this.serial(async () => {
      if (this.corruptMark) await this.corruptMark;
      if (!this.meta) return;
      await this.meta.flush();
      if (this.p.data && this.p.data !== this.p.proto) await this.p.data.flush();
    });
  }

  truncate(size: number, opts: TruncateOptions): Promise<void> {
    return this.serial(() => this.resize(size, opts));
  }

  /** qemu-img amend, under the layer's lock (./amend.ts). */
  amend(values: Readonly<Record<string, string>>, force: boolean, hooks?: AmendHooks): Promise<void> {
    return this.serial(() => amendQcow2({
      p: this.p,
      writer: () => this.writer(true),
      resetWriter: async () => {
        if (this.meta) await this.meta.flush();
        this.meta = undefined;
      },
      resize: (size) => this.resize(size, { prealloc: 'off', shrink: true }),
      markClean: () => this.markClean(),
    }, values, force, hooks ?? {}));
  }

  private async resize(size: number, opts: TruncateOptions): Promise<void> {
    {
      const path = this.p.path;
      const fail = (code: string, msg: string): VdiskError => new VdiskError('invalid-argument', code, msg, { path, format: 'qcow2', op: 'resize' });
      if (this.p.loaded.header.version < 3 && this.p.loaded.snapshots.length > 0) {
        throw new VdiskError('unsupported', 'QCOW2_RESIZE_V2_SNAPSHOTS', "Can't resize a v2 image which has snapshots", { path, format: 'qcow2', op: 'resize' });
      }
      if (size % 512 !== 0) throw fail('QCOW2_RESIZE_ALIGN', 'The new size must be a multiple of 512');
      if (size > MAX_IMAGE_SIZE) throw fail('QCOW2_RESIZE_SIZE', `Image size ${size} is too large`);
      const shrinking = size < this.size;
      const meta = await this.writer(false, shrinking);
      // bitmaps follow the new size (stored at close); inconsistent ones refuse it, as in qemu
      await this.bitmapState.beforeResize();
      const ctx = { p: this.p, meta, corruption: (what: string) => this.corruption(what), current: (from: number, to: number) => this.guest.current(from, to) };
      if (shrinking) {
        if (opts.prealloc !== 'off') throw fail('QCOW2_SHRINK_PREALLOC', "Preallocation can't be used for shrinking an image");
        await shrinkImage(ctx, size);
      } else {
        const old = this.size;
        await growImage(ctx, size, opts.prealloc);
        if (opts.zeroWrite) await this.zeroGrownArea(old, size, opts.prealloc);
      }
      this.bitmapState.resized();
      this.invalidateCompressed();
    }
  }

  async close(): Promise<void> {
    // the bits of enabled bitmaps written through are stored, and their in-use flag cleared, last
    if (!this.p.readOnly) await this.serial(() => this.bitmapState.store());
    if (this.p.data && this.p.data !== this.p.proto) await this.p.data.close();
  }
}

/** Every cluster the image's metadata occupies, for the overlap check. */
function seedMetadata(p: Qcow2Parts, alloc: ClusterAllocator, rc: Refcounts): void {
  const l = p.loaded;
  const h = l.header;
  const cs = p.map.geo.clusterSize;
  const safe = (n: bigint): number | undefined => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined);
  const mark = (off: number | undefined, bytes: number): void => {
    if (off !== undefined && bytes > 0) alloc.markMetadata(off, bytes);
  };
  mark(0, cs);
  mark(l.l1Offset, p.map.l1.length);
  for (let i = 0; i < p.map.l1Entries; i++) {
    const dv = p.map.l1View;
    const off = (dv.getUint32(i * 8) & 0x001fffff) * 0x100000000 + ((dv.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
    if (off) mark(off - (off % cs), cs);
  }
  mark(l.refcountTableOffset, h.refcountTableClusters * cs);
  for (let ti = 0; ti < rc.tableEntries; ti++) {
    try {
      mark(rc.blockOffset(ti) || undefined, cs);
    } catch {
      // a damaged refcount table entry protects nothing
    }
  }
  if (l.snapshots.length > 0) mark(safe(h.snapshotsOffset), diskTableBytes(l.snapshots));
  for (const s of l.snapshots) mark(safe(s.l1TableOffset), s.l1Size * 8);
  if (l.ext.bitmaps) mark(safe(l.ext.bitmaps.directoryOffset), Number(l.ext.bitmaps.directorySize));
  if (l.ext.crypto) mark(safe(l.ext.crypto.offset), Number(l.ext.crypto.length));
}
