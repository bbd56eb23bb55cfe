/**
 * qcow2's persistent bitmap operations (qemu-img bitmap, convert --bitmaps) and the tracking of
 * guest writes in enabled bitmaps, in qemu's way so images come out laid out as qemu's do:
 *
 * - before the first change or guest write, every consistent bitmap is loaded into memory and
 *   marked in-use on disk (the directory rewritten in place);
 * - add, clear, enable, disable and merge change only the bitmaps in memory; guest writes set
 *   bits of the enabled ones; remove changes the image at once (new directory, clusters freed);
 * - closing the image stores every loaded bitmap through ./bitmap-store.ts (new data clusters
 *   and tables in directory order; new bitmaps appended to the directory in qemu's in-memory
 *   order, newest first), in-use cleared, then the old clusters freed.
 *
 * A crash in between leaves the bitmaps in-use, which qemu reports as inconsistent: never a
 * bitmap claiming clean ranges that were written.
 */
import { VdiskError } from '../../block/errors.js';
import type { BitmapBits, BitmapOps, PersistentBitmap } from '../../block/driver.js';
import { FLAG_AUTO, FLAG_IN_USE, type BitmapEntry } from './bitmap.js';
import { bitmapGeometry, entryBytes, readBitmapData, rewriteDirectoryInPlace, storeBitmaps, type BitmapPlan } from './bitmap-store.js';
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

/** A bitmap as qemu holds it in memory while the image is open read-write. */
interface Loaded {
  name: string;
  granularityBits: number;
  enabled: boolean;
  /** In use on disk before vdisk opened it: kept as it is, never stored. */
  inconsistent: boolean;
  /** Its directory entry when it is on disk (undefined: added since). */
  entry?: BitmapEntry;
  bits: Uint8Array | 'empty';
}

export class Qcow2Bitmaps implements BitmapOps {
  /** qemu's in-memory list, newest first; undefined until loaded. */
  private mem: Loaded[] | undefined;

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

  /** Directory order: the image's bitmaps, then the added ones as they will be appended. */
  private ordered(): Loaded[] {
    if (!this.mem) return this.p.loaded.bitmaps.map((b) => fromEntry(b, 'empty'));
    const onDisk = this.p.loaded.bitmaps.map((b) => this.mem!.find((m) => m.entry === b)).filter((m): m is Loaded => m !== undefined);
    return [...onDisk, ...this.mem.filter((m) => !m.entry)];
  }

  list(): PersistentBitmap[] {
    return this.ordered().map((b) => ({ name: b.name, granularity: 2 ** b.granularityBits, enabled: b.enabled, inconsistent: b.inconsistent }));
  }

  private fail(code: string, message: string): VdiskError {
    return new VdiskError('unsupported', code, message, { path: this.p.path, format: 'qcow2' });
  }

  checkNew(name: string, granularity: number): void {
    const l = this.p.loaded;
    if (l.header.version < 3) throw this.fail('QCOW2_BITMAPS_V2', 'Cannot store dirty bitmaps in qcow2 v2 files');
    const geo = bitmapGeometry(l.size, Math.log2(granularity), l.clusterSize);
    if (geo.bytes > MAX_BITMAP_DATA_BYTES || geo.tableEntries > MAX_BITMAP_TABLE_ENTRIES) {
      throw this.fail('QCOW2_BITMAP_TOO_LARGE', 'Too much space will be occupied by the bitmap. Use larger granularity');
    }
    if (utf8.encode(name).length > MAX_BITMAP_NAME_BYTES) {
      throw this.fail('QCOW2_BITMAP_NAME', `Name length exceeds maximum (${MAX_BITMAP_NAME_BYTES} characters)`);
    }
    const all = this.ordered();
    if (all.length >= MAX_BITMAPS) throw this.fail('QCOW2_BITMAPS_COUNT', 'Maximum number of persistent bitmaps is already reached');
    const dir = all.reduce((n, b) => n + entryBytes(b.name, b.entry?.extra.length ?? 0), 0);
    if (dir + entryBytes(name, 0) > MAX_BITMAP_DIRECTORY_BYTES) throw this.fail('QCOW2_BITMAP_DIR_FULL', 'Not enough space in the bitmap directory');
  }

  private writable(): void {
    if (this.p.readOnly) throw new VdiskError('permission', 'QCOW2_BITMAPS_READ_ONLY', 'Bitmaps cannot be changed in a read-only image', { path: this.p.path, format: 'qcow2' });
  }

  /** Load every bitmap (bits of the consistent ones) and mark the consistent ones in-use on disk. */
  async load(): Promise<Loaded[]> {
    if (this.mem) return this.mem;
    this.writable();
    const disk = this.p.loaded.bitmaps;
    const mem: Loaded[] = [];
    for (const b of disk) {
      const inconsistent = (b.flags & FLAG_IN_USE) !== 0 || b.type !== TYPE_DIRTY_TRACKING;
      mem.unshift(fromEntry(b, inconsistent ? 'empty' : await readBitmapData(this.p, b)));
    }
    const marked = disk.map((b) => (b.flags & FLAG_IN_USE ? b : { ...b, flags: b.flags | FLAG_IN_USE }));
    if (marked.some((b, i) => b !== disk[i])) {
      await rewriteDirectoryInPlace(this.p, marked);
      for (const m of mem) m.entry = marked[disk.indexOf(m.entry!)];
    }
    this.mem = mem;
    return mem;
  }

  private async find(name: string): Promise<Loaded> {
    const b = (await this.load()).find((x) => x.name === name);
    if (!b) throw new VdiskError('not-found', 'BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`, { path: this.p.path, format: 'qcow2' });
    return b;
  }

  add(name: string, granularity: number, enabled: boolean): Promise<void> {
    return this.serial(async () => {
      const mem = await this.load();
      this.checkNew(name, granularity);
      mem.unshift({ name, granularityBits: Math.log2(granularity), enabled, inconsistent: false, bits: 'empty' });
    });
  }

  /** qemu removes a stored bitmap from the image at once: new directory without it, its clusters freed. */
  remove(name: string): Promise<void> {
    return this.serial(async () => {
      const m = await this.find(name);
      this.mem!.splice(this.mem!.indexOf(m), 1);
      if (!m.entry) return;
      await storeBitmaps(this.p, await this.meta(), this.p.loaded.bitmaps.filter((b) => b !== m.entry).map((entry) => ({ entry })));
      for (const x of this.mem!) if (x.entry) x.entry = this.p.loaded.bitmaps.find((b) => b.name === x.name);
    });
  }

  clear(name: string): Promise<void> {
    return this.serial(async () => {
      (await this.find(name)).bits = 'empty';
    });
  }

  setEnabled(name: string, enabled: boolean): Promise<void> {
    return this.serial(async () => {
      (await this.find(name)).enabled = enabled;
    });
  }

  read(name: string): Promise<BitmapBits> {
    return this.serial(async () => {
      const size = this.p.loaded.size;
      const m = this.mem?.find((x) => x.name === name);
      if (m) return { granularity: 2 ** m.granularityBits, size, bits: materialize(m, size, this.p.loaded.clusterSize) };
      const b = this.p.loaded.bitmaps.find((x) => x.name === name);
      if (!b) throw new VdiskError('not-found', 'BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`, { path: this.p.path, format: 'qcow2' });
      return { granularity: 2 ** b.granularityBits, size, bits: await readBitmapData(this.p, b) };
    });
  }

  merge(name: string, src: BitmapBits): Promise<void> {
    return this.serial(async () => {
      const m = await this.find(name);
      mergeBits(materialize(m, this.p.loaded.size, this.p.loaded.clusterSize), 2 ** m.granularityBits, src, this.p.loaded.size);
    });
  }

  /** A guest write of [offset, offset + length): the enabled consistent bitmaps record it. */
  async markWritten(offset: number, length: number): Promise<void> {
    if (this.p.loaded.bitmaps.length === 0 && !this.mem) return;
    const mem = await this.load();
    const size = this.p.loaded.size;
    for (const m of mem) {
      if (!m.enabled || m.inconsistent || length <= 0) continue;
      const g = 2 ** m.granularityBits;
      setBitRange(materialize(m, size, this.p.loaded.clusterSize), Math.floor(offset / g), Math.ceil(Math.min(offset + length, size) / g));
    }
  }

  /** Before the image is resized: load the bitmaps; an inconsistent one refuses (directory order). */
  async beforeResize(): Promise<void> {
    if (this.p.loaded.bitmaps.length === 0) return;
    await this.load();
    const bad = this.ordered().find((b) => b.inconsistent);
    if (bad) {
      throw new VdiskError('busy', 'BITMAP_INCONSISTENT', `Bitmap '${bad.name}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk`, { path: this.p.path, format: 'qcow2' });
    }
  }

  /** After a resize: every loaded bitmap covers the new size (bits past the end dropped). */
  resized(): void {
    const size = this.p.loaded.size;
    for (const m of this.mem ?? []) {
      if (m.bits === 'empty') continue;
      const geo = bitmapGeometry(size, m.granularityBits, this.p.loaded.clusterSize);
      const bits = new Uint8Array(geo.bytes);
      bits.set(m.bits.subarray(0, geo.bytes));
      // the last byte may hold bits past the new end
      if (geo.bits % 8 !== 0 && geo.bytes > 0) bits[geo.bytes - 1]! &= (1 << (geo.bits % 8)) - 1;
      m.bits = bits;
    }
  }

  /** Store the loaded bitmaps as qemu does when it closes the image (see the header comment). */
  async store(): Promise<void> {
    const mem = this.mem;
    this.mem = undefined;
    if (!mem || mem.every((m) => m.inconsistent)) return;
    const meta = await this.meta();
    const plans: BitmapPlan[] = [];
    for (const entry of this.p.loaded.bitmaps) {
      const m = mem.find((x) => x.entry === entry);
      plans.push(m && !m.inconsistent ? { entry: toEntry(m, entry), data: m.bits } : { entry });
    }
    for (const m of mem) if (!m.entry && !m.inconsistent) plans.push({ entry: toEntry(m, undefined), data: m.bits });
    await storeBitmaps(this.p, meta, plans);
  }
}

function fromEntry(b: BitmapEntry, bits: Uint8Array | 'empty'): Loaded {
  return {
    name: b.name, granularityBits: b.granularityBits, enabled: (b.flags & FLAG_AUTO) !== 0,
    inconsistent: (b.flags & FLAG_IN_USE) !== 0 || b.type !== TYPE_DIRTY_TRACKING, entry: b, bits,
  };
}

/** The directory entry a loaded bitmap is stored with (in-use cleared; extra data kept). */
function toEntry(m: Loaded, was: BitmapEntry | undefined): BitmapEntry {
  const flags = ((was?.flags ?? 0) & ~(FLAG_IN_USE | FLAG_AUTO)) | (m.enabled ? FLAG_AUTO : 0);
  return {
    name: m.name, granularityBits: m.granularityBits, flags, tableOffset: was?.tableOffset ?? 0n, tableSize: was?.tableSize ?? 0,
    type: TYPE_DIRTY_TRACKING, extra: was?.extra ?? new Uint8Array(0),
  };
}

function materialize(m: Loaded, size: number, clusterSize: number): Uint8Array {
  if (m.bits === 'empty') m.bits = new Uint8Array(bitmapGeometry(size, m.granularityBits, clusterSize).bytes);
  return m.bits;
}
