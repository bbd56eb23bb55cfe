/**
 * qcow2's persistent bitmap operations (qemu-img bitmap, convert --bitmaps) and the tracking of
 * guest writes in enabled bitmaps.
 *
 * Each operation rewrites the bitmap list through ./bitmap-store.ts (copy-on-write, header
 * switched last). Writes to an image with enabled bitmaps work as in qemu: before the first
 * write those bitmaps are loaded and marked in-use on disk, writes set their bits in memory, and
 * closing the image stores them and clears in-use. A crash in between leaves them in-use, which
 * qemu reports as inconsistent: never a bitmap claiming clean ranges that were written.
 */
import { VdiskError } from '../../block/errors.js';
import type { BitmapBits, BitmapOps, PersistentBitmap } from '../../block/driver.js';
import { FLAG_AUTO, FLAG_IN_USE, type BitmapEntry } from './bitmap.js';
import { bitmapGeometry, entryBytes, readBitmapData, storeBitmaps, type BitmapPlan } from './bitmap-store.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter } from './l2-update.js';
import { MAX_BITMAPS, MAX_BITMAP_DATA_BYTES, MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAP_NAME_BYTES, MAX_BITMAP_TABLE_ENTRIES } from './limits.js';

const TYPE_DIRTY_TRACKING = 1;
/** qemu's default granularity: the cluster size, kept within 4 KiB..64 KiB. */
const MIN_DEFAULT_GRANULARITY = 4096;
const MAX_DEFAULT_GRANULARITY = 65536;

const utf8 = new TextEncoder();

/** Set bits [from, to) of `bits`. */
export function setBitRange(bits: Uint8Array, from: number, to: number): void {
  let i = from;
  for (; i < to && i % 8 !== 0; i++) bits[i >> 3]! |= 1 << (i & 7);
  for (; i + 8 <= to; i += 8) bits[i >> 3] = 0xff;
  for (; i < to; i++) bits[i >> 3]! |= 1 << (i & 7);
}

/** OR `src` into `dst` (both over `size` guest bytes), converting between granularities. */
export function mergeBits(dst: Uint8Array, dstGran: number, src: BitmapBits, size: number): void {
  const dstBits = Math.ceil(size / dstGran);
  if (src.granularity === dstGran) {
    for (let i = 0; i < Math.min(dst.length, src.bits.length); i++) dst[i]! |= src.bits[i]!;
    return;
  }
  for (let byte = 0; byte < src.bits.length; byte++) {
    const v = src.bits[byte]!;
    if (v === 0) continue;
    for (let b = 0; b < 8; b++) {
      if (!(v & (1 << b))) continue;
      const start = (byte * 8 + b) * src.granularity;
      if (start >= size) break;
      const end = Math.min(size, start + src.granularity);
      setBitRange(dst, Math.floor(start / dstGran), Math.min(dstBits, Math.ceil(end / dstGran)));
    }
  }
}

export class Qcow2Bitmaps implements BitmapOps {
  constructor(
    private readonly p: Qcow2Parts,
    private readonly meta: () => Promise<MetadataWriter>,
    /** Run an operation under the layer's lock. */
    private readonly serial: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}

  get supported(): boolean {
    return this.p.loaded.header.version >= 3;
  }

  get defaultGranularity(): number {
    return Math.min(MAX_DEFAULT_GRANULARITY, Math.max(MIN_DEFAULT_GRANULARITY, this.p.loaded.clusterSize));
  }

  list(): PersistentBitmap[] {
    return this.p.loaded.bitmaps.map((b) => ({
      name: b.name, granularity: 2 ** b.granularityBits, enabled: (b.flags & FLAG_AUTO) !== 0, inconsistent: (b.flags & FLAG_IN_USE) !== 0,
    }));
  }

  private fail(code: string, message: string): VdiskError {
    return new VdiskError('unsupported', code, message, { path: this.p.path, format: 'qcow2' });
  }

  checkNew(name: string, granularity: number): void {
    const l = this.p.loaded;
    if (l.header.version < 3) throw this.fail('QCOW2_BITMAPS_V2', 'Cannot store dirty bitmaps in qcow2 v2 files');
    const gbits = Math.log2(granularity);
    const geo = bitmapGeometry(l.size, gbits, l.clusterSize);
    if (geo.bytes > MAX_BITMAP_DATA_BYTES || geo.tableEntries > MAX_BITMAP_TABLE_ENTRIES) {
      throw this.fail('QCOW2_BITMAP_TOO_LARGE', 'Too much space will be occupied by the bitmap. Use larger granularity');
    }
    if (utf8.encode(name).length > MAX_BITMAP_NAME_BYTES) {
      throw this.fail('QCOW2_BITMAP_NAME', `Name length exceeds maximum (${MAX_BITMAP_NAME_BYTES} characters)`);
    }
    if (l.bitmaps.length >= MAX_BITMAPS) throw this.fail('QCOW2_BITMAPS_COUNT', 'Maximum number of persistent bitmaps is already reached');
    const dir = l.bitmaps.reduce((n, b) => n + entryBytes(b.name, b.extra.length), 0);
    if (dir + entryBytes(name, 0) > MAX_BITMAP_DIRECTORY_BYTES) throw this.fail('QCOW2_BITMAP_DIR_FULL', 'Not enough space in the bitmap directory');
  }

  private find(name: string): BitmapEntry {
    const b = this.p.loaded.bitmaps.find((x) => x.name === name);
    if (!b) throw new VdiskError('not-found', 'BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`, { path: this.p.path, format: 'qcow2' });
    return b;
  }

  private writable(): void {
    if (this.p.readOnly) throw new VdiskError('permission', 'QCOW2_BITMAPS_READ_ONLY', 'Bitmaps cannot be changed in a read-only image', { path: this.p.path, format: 'qcow2' });
  }

  /** Store the list with `change` applied to the bitmap named `name` (or appended/removed). */
  private async rewrite(plans: BitmapPlan[]): Promise<void> {
    this.writable();
    await storeBitmaps(this.p, await this.meta(), plans);
  }

  private keepAll(): BitmapPlan[] {
    return this.p.loaded.bitmaps.map((entry) => ({ entry }));
  }

  add(name: string, granularity: number, enabled: boolean): Promise<void> {
    return this.serial(async () => {
      this.checkNew(name, granularity);
      const entry: BitmapEntry = {
        name, granularityBits: Math.log2(granularity), flags: enabled ? FLAG_AUTO : 0, tableOffset: 0n, tableSize: 0,
        type: TYPE_DIRTY_TRACKING, extra: new Uint8Array(0),
      };
      await this.rewrite([...this.keepAll(), { entry, data: 'empty' }]);
    });
  }

  remove(name: string): Promise<void> {
    return this.serial(async () => {
      const b = this.find(name);
      await this.rewrite(this.keepAll().filter((x) => x.entry !== b));
    });
  }

  clear(name: string): Promise<void> {
    return this.serial(async () => {
      const b = this.find(name);
      await this.rewrite(this.keepAll().map((x) => (x.entry === b ? { entry: b, data: 'empty' as const } : x)));
    });
  }

  setEnabled(name: string, enabled: boolean): Promise<void> {
    return this.serial(async () => {
      const b = this.find(name);
      const flags = enabled ? b.flags | FLAG_AUTO : b.flags & ~FLAG_AUTO;
      if (flags === b.flags) return;
      await this.rewrite(this.keepAll().map((x) => (x.entry === b ? { entry: { ...b, flags } } : x)));
    });
  }

  read(name: string): Promise<BitmapBits> {
    return this.serial(async () => {
      const b = this.find(name);
      return { granularity: 2 ** b.granularityBits, size: this.p.loaded.size, bits: await readBitmapData(this.p, b) };
    });
  }

  merge(name: string, src: BitmapBits): Promise<void> {
    return this.serial(async () => {
      const b = this.find(name);
      const bits = await readBitmapData(this.p, b);
      mergeBits(bits, 2 ** b.granularityBits, src, this.p.loaded.size);
      await this.rewrite(this.keepAll().map((x) => (x.entry === b ? { entry: b, data: bits } : x)));
    });
  }
}

/**
 * Enabled bitmaps while the image is written: loaded and marked in-use before the first write,
 * bits set for every written range, stored (in-use cleared) when the image is closed.
 */
export class DirtyTracker {
  private tracked: Array<{ entry: BitmapEntry; bits: Uint8Array }> | undefined;

  constructor(private readonly p: Qcow2Parts) {}

  /** Bitmaps this image's writes must record: enabled, consistent, of the dirty-tracking type. */
  private static tracks(b: BitmapEntry): boolean {
    return (b.flags & FLAG_AUTO) !== 0 && (b.flags & FLAG_IN_USE) === 0 && b.type === TYPE_DIRTY_TRACKING;
  }

  /** Before a write: load the bitmaps to track and mark them in-use on disk (once). */
  async begin(meta: MetadataWriter): Promise<void> {
    if (this.tracked) return;
    const list = this.p.loaded.bitmaps;
    const tracked: Array<{ entry: BitmapEntry; bits: Uint8Array }> = [];
    for (const entry of list) {
      if (DirtyTracker.tracks(entry)) tracked.push({ entry, bits: await readBitmapData(this.p, entry) });
    }
    this.tracked = tracked;
    if (tracked.length === 0) return;
    const inUse = new Set(tracked.map((t) => t.entry));
    await storeBitmaps(this.p, meta, list.map((entry) => ({ entry: inUse.has(entry) ? { ...entry, flags: entry.flags | FLAG_IN_USE } : entry })));
    // the stored list has new entry objects; follow them by name
    for (const t of tracked) t.entry = this.p.loaded.bitmaps.find((b) => b.name === t.entry.name)!;
  }

  /** Record that guest bytes [offset, offset + length) changed. */
  mark(offset: number, length: number): void {
    if (!this.tracked || length <= 0) return;
    for (const t of this.tracked) {
      const g = 2 ** t.entry.granularityBits;
      setBitRange(t.bits, Math.floor(offset / g), Math.ceil(Math.min(offset + length, this.p.loaded.size) / g));
    }
  }

  /** Store the tracked bitmaps with their new bits and in-use cleared. */
  async finish(meta: MetadataWriter): Promise<void> {
    const tracked = this.tracked;
    this.tracked = undefined;
    if (!tracked || tracked.length === 0) return;
    const byEntry = new Map(tracked.map((t) => [t.entry, t.bits]));
    await storeBitmaps(this.p, meta, this.p.loaded.bitmaps.map((entry) => {
      const bits = byEntry.get(entry);
      return bits ? { entry: { ...entry, flags: entry.flags & ~FLAG_IN_USE }, data: bits } : { entry };
    }));
  }
}
