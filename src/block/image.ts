/**
 * The generic layer: an opened image (one FormatLayer over one Protocol) plus its backing chain.
 *
 * Every request is checked here once (range, read-only, closed) before a format sees it, missing
 * capabilities are emulated (write-zeroes via write, discard as a no-op), and backing-chain reads
 * (short backing files read as zeros past their end) are answered in one place.
 */
import { VdiskError } from './errors.js';
import type { BackingReader, CheckResult, CompressedClusters, FormatLayer, LayerInfo, LayerStatus, RepairMode } from './driver.js';
import type { Preallocation, Protocol } from '../protocols/types.js';
import { MAX_REQUEST_BYTES } from './limits.js';
import {
  RUN_ALLOCATED, RUN_COMPRESSED, RUN_DATA, RUN_HOST, RUN_NO_ASK_HOST, RUN_UNKNOWN, RUN_ZERO, StatusRuns,
} from './status-runs.js';

/** Block status through the whole chain, as `map` reports it. */
export interface ChainStatus {
  length: number;
  /** Some layer of the chain defines these bytes. */
  present: boolean;
  zero: boolean;
  data: boolean;
  /** Index in the chain of the layer that defines them (0 = top); chain length when none does. */
  depth: number;
  /** Host offset and file, where the data is stored plainly. */
  hostOffset?: number;
  hostFile?: string;
  compressed?: boolean;
}

export interface ImageOpenInfo {
  /** The name as given by the user (shown in messages and info). */
  filename: string;
  format: string;
  /** The format was guessed by probing (raw then restricts writes to block 0, like qemu). */
  probed: boolean;
  readOnly: boolean;
  /** The name qemu shows (info's "image:") when it is not `filename` (blkdebug/quorum option trees). */
  displayName?: string;
  /** The name qemu shows for the image's file node then (map's "File" column). */
  fileDisplayName?: string;
}

const ZERO_STATUS_CHUNK = 1 << 30;
/** Runs asked of a layer at a time by chainStatusRunsSync (a map of a fragmented image: ~100 000 in all). */
const LAYER_RUNS = 1024;
/** mayBeInHole for a run in the layer's own file: of these flags, exactly RUN_DATA and RUN_HOST. */
const IN_HOLE_MASK = RUN_DATA | RUN_ZERO | RUN_COMPRESSED | RUN_NO_ASK_HOST | RUN_HOST;

export class Image {
  private closed = false;
  /** The backing image, once linked by openChain (null: none, or not opened). */
  backing: Image | null = null;
  /** chainStatusRunsSync's scratch for this layer's runs. */
  private layerRuns: StatusRuns | undefined;

  constructor(
    readonly layer: FormatLayer,
    readonly protocol: Protocol,
    readonly meta: ImageOpenInfo,
    private readonly backingLink: MutableBackingReader,
  ) {}

  get filename(): string {
    return this.meta.filename;
  }
  get displayName(): string {
    return this.meta.displayName ?? this.meta.filename;
  }
  get format(): string {
    return this.meta.format;
  }
  get size(): number {
    return this.layer.size;
  }
  get readOnly(): boolean {
    return this.meta.readOnly;
  }

  /** Attach the image below this one; reads of unallocated ranges go to it from now on. */
  linkBacking(img: Image | null): void {
    this.backing = img;
    this.backingLink.target = img;
  }

  private checkRequest(offset: number, length: number, op: string, write: boolean): void {
    if (this.closed) {
      throw new VdiskError('invalid-argument', 'CLOSED', `${op} on a closed image`, { path: this.filename, op });
    }
    if (write && this.readOnly) {
      throw new VdiskError('permission', 'READ_ONLY', `Could not ${op} '${this.filename}': image is read-only`, { path: this.filename, op });
    }
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new VdiskError('out-of-bounds', 'OUT_OF_BOUNDS',
        `${op} request out of bounds: offset ${offset} length ${length} image size ${this.size}`,
        { path: this.filename, offset, op });
    }
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRequest(offset, buf.length, 'read', false);
    if (buf.length === 0) return;
    for (let done = 0; done < buf.length; done += MAX_REQUEST_BYTES) {
      const n = Math.min(MAX_REQUEST_BYTES, buf.length - done);
      await this.layer.read(buf.subarray(done, done + n), offset + done);
    }
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.checkRequest(offset, buf.length, 'write', true);
    if (buf.length === 0) return;
    if (!this.layer.write) throw unsupported(this, 'write');
    if (this.meta.probed && this.format === 'raw' && offset < 512) guardProbedRawBlock0(this, buf, offset);
    for (let done = 0; done < buf.length; done += MAX_REQUEST_BYTES) {
      const n = Math.min(MAX_REQUEST_BYTES, buf.length - done);
      await this.layer.write(buf.subarray(done, done + n), offset + done);
    }
  }

  /**
   * Compressed write of whole clusters (convert -c); the last cluster may be short at the image end.
   * `pre`: what compressClusters() returned for the same clusters.
   */
  async writeCompressed(buf: Uint8Array, offset: number, pre?: CompressedClusters): Promise<void> {
    this.checkRequest(offset, buf.length, 'write', true);
    if (!this.layer.writeCompressed) {
      throw new VdiskError('unsupported', 'NO_COMPRESSION', 'Compression not supported for this file format', { path: this.filename, op: 'write' });
    }
    if (pre) return this.layer.writeCompressed(buf, offset, pre);
    const g = this.layer.granularity ?? buf.length;
    for (let done = 0; done < buf.length; done += g) {
      await this.layer.writeCompressed(buf.subarray(done, Math.min(buf.length, done + g)), offset + done);
    }
  }

  /**
   * A request's clusters compressed for a later writeCompressed; undefined when the format cannot
   * do it ahead. `buf`'s bytes are consumed (FormatLayer.compressClusters).
   */
  compressClusters(buf: Uint8Array, skip?: Uint8Array): Promise<CompressedClusters> | undefined {
    return this.layer.compressClusters?.(buf, skip);
  }

  async writeZeroes(offset: number, length: number, mayUnmap = false): Promise<void> {
    this.checkRequest(offset, length, 'write', true);
    if (length === 0) return;
    if (this.layer.writeZeroes) return this.layer.writeZeroes(offset, length, mayUnmap);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let off = offset; off < offset + length; off += chunk.length) {
      const n = Math.min(chunk.length, offset + length - off);
      await this.write(chunk.subarray(0, n), off);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkRequest(offset, length, 'discard', true);
    if (length === 0 || !this.layer.discard) return;
    await this.layer.discard(offset, length);
  }

  /** Unallocate the whole image (the backing chain shows through); false if the format cannot. */
  async makeEmpty(): Promise<boolean> {
    this.checkRequest(0, 0, 'make-empty', true);
    if (!this.layer.makeEmpty) return false;
    await this.layer.makeEmpty();
    return true;
  }

  async flush(): Promise<void> {
    if (this.readOnly || this.closed) return;
    await this.layer.flush?.();
    await this.protocol.flush();
  }

  async truncate(size: number, prealloc: Preallocation = 'off', shrink = false): Promise<void> {
    this.checkRequest(0, 0, 'resize', true);
    if (!this.layer.truncate) throw unsupported(this, 'resize');
    const old = this.size;
    // as qemu's generic truncate: a backing file long enough to show through the new area would
    // leak its old data into it, so the layer must make the new area read as zeros
    const zeroWrite = size > old && this.backing !== null && this.backing.size > old;
    await this.layer.truncate(size, { prealloc, shrink, ...(zeroWrite ? { zeroWrite } : {}) });
  }

  /** This layer's own status of the run at `offset` (length clamped to the image). */
  async layerStatus(offset: number, length: number): Promise<LayerStatus> {
    this.checkRequest(offset, length, 'block-status', false);
    return this.checkedStatus(await this.layer.blockStatus(offset, Math.min(length, ZERO_STATUS_CHUNK * 4)), offset, length);
  }

  private checkedStatus(st: LayerStatus, offset: number, length: number): LayerStatus {
    if (!(st.length > 0) || st.length > length) throw this.badStatus(st.length, offset);
    return st;
  }

  private badStatus(length: number, offset: number): VdiskError {
    return new VdiskError('corrupt', 'BAD_BLOCK_STATUS', `block status of '${this.filename}' returned length ${length}`,
      { path: this.filename, offset, op: 'block-status' });
  }

  /**
   * chainStatus's answer when every layer it asks can give its status without I/O (see
   * FormatLayer.blockStatusSync), else undefined: then call chainStatus. Throws what it would reject with.
   */
  chainStatusSync(offset: number, length: number, depth = 0, askHost = true): ChainStatus | undefined {
    if (!this.layer.blockStatusSync) return undefined;
    this.checkRequest(offset, length, 'block-status', false);
    const raw = this.layer.blockStatusSync(offset, Math.min(length, ZERO_STATUS_CHUNK * 4));
    if (raw === undefined) return undefined;
    const st = this.checkedStatus(raw, offset, length);
    if (st.allocated) return askHost && mayBeInHole(st) ? undefined : this.allocatedStatus(st, depth);
    const below = this.backing;
    if (!below || offset >= below.size) return this.unallocatedStatus(st, depth, below);
    return below.chainStatusSync(offset, Math.min(st.length, below.size - offset), depth + 1, askHost);
  }

  /**
   * chainStatusSync for many runs at once: consecutive chain runs from `offset` appended to `out`
   * (from out.count, until out.limit; RUN_ALLOCATED meaning present, depths and out.files set),
   * as far as every layer asked answers through blockStatusRunsSync. Returns the bytes covered,
   * which the appended runs add up to; 0: call chainStatusSync or chainStatus for the next run.
   * The runs are chainStatus's, cut at every layer's run boundaries. Throws what chainStatus
   * would reject with.
   */
  chainStatusRunsSync(offset: number, length: number, out: StatusRuns, depth = 0): number {
    if (!this.layer.blockStatusRunsSync || out.full) return 0;
    this.checkRequest(offset, length, 'block-status', false);
    const lr = this.layerRuns ??= new StatusRuns(LAYER_RUNS);
    lr.limit = Math.min(lr.capacity, out.limit - out.count);
    const n = this.layer.blockStatusRunsSync(offset, Math.min(length, ZERO_STATUS_CHUNK * 4), lr);
    const end = offset + length;
    const { lengths, flags, hosts } = lr;
    // data in this layer's own file may sit in a hole of it: chainStatus asks the file
    const ownFile = lr.hostFile === undefined;
    out.files[depth] = lr.hostFile ?? this.meta.fileDisplayName ?? this.filename;
    let pos = offset;
    for (let i = 0; i < n && !out.full; i++) {
      const len = lengths[i]!;
      const f = flags[i]!;
      if (!(len > 0) || len > end - pos) throw this.badStatus(len, pos);
      if (f & RUN_ALLOCATED) {
        if (ownFile && (f & IN_HOLE_MASK) === (RUN_DATA | RUN_HOST)) break;
        out.push(len, f & (RUN_ALLOCATED | RUN_ZERO | RUN_DATA | RUN_COMPRESSED | RUN_HOST), hosts[i]!, depth);
        pos += len;
        continue;
      }
      const below = this.backing;
      let rest = len;
      if (below && pos < below.size) {
        const n2 = Math.min(len, below.size - pos);
        const got = below.chainStatusRunsSync(pos, n2, out, depth + 1);
        pos += got;
        if (got < n2) break;
        rest = len - n2;
        if (rest === 0) continue;
        if (out.full) break;
      }
      // unallocatedStatus: nothing defines these bytes (no backing file, or past a short one's end)
      const host = !below && (f & RUN_HOST) !== 0;
      out.push(rest, (f & RUN_UNKNOWN ? 0 : RUN_ZERO) | (host ? RUN_HOST : 0), hosts[i]!, depth);
      pos += rest;
    }
    return pos - offset;
  }

  private allocatedStatus(st: LayerStatus, depth: number): ChainStatus {
    const r: ChainStatus = { length: st.length, present: true, zero: st.zero, data: st.data, depth };
    if (st.hostOffset !== undefined) r.hostOffset = st.hostOffset;
    if (st.hostFile !== undefined) r.hostFile = st.hostFile;
    else if (st.hostOffset !== undefined) r.hostFile = this.meta.fileDisplayName ?? this.filename;
    if (st.compressed) r.compressed = true;
    return r;
  }

  /** Status of a run nothing below defines (no backing file, or past a short one's end). */
  private unallocatedStatus(st: LayerStatus, depth: number, below: Image | null): ChainStatus {
    const r: ChainStatus = { length: st.length, present: false, zero: !st.unknownContents, data: false, depth };
    // an unallocated subcluster of an allocated cluster still has a place in the file (qemu shows it)
    if (!below && st.hostOffset !== undefined) {
      r.hostOffset = st.hostOffset;
      r.hostFile = st.hostFile ?? this.meta.fileDisplayName ?? this.filename;
    }
    return r;
  }

  /**
   * Status through the chain: the first layer (from the top) that defines the bytes decides; runs
   * past a short backing file read as zeros and are not present. `askHost` also asks the file
   * below whether stored data sits in a hole (qemu's want_zero; measure does without it).
   */
  async chainStatus(offset: number, length: number, depth = 0, askHost = true): Promise<ChainStatus> {
    const st = await this.layerStatus(offset, length);
    if (st.allocated) {
      if (askHost && mayBeInHole(st)) await this.refineWithHost(st);
      return this.allocatedStatus(st, depth);
    }
    const below = this.backing;
    if (!below || offset >= below.size) return this.unallocatedStatus(st, depth, below);
    const r = await below.chainStatus(offset, Math.min(st.length, below.size - offset), depth + 1, askHost);
    return r;
  }

  /** The format's consistency check; undefined when the format has none (qemu-img exits 63). */
  async check(repair: RepairMode): Promise<CheckResult | undefined> {
    if (!this.layer.check) return undefined;
    if (repair !== 'none' && this.readOnly) {
      throw new VdiskError('permission', 'READ_ONLY', `Cannot repair '${this.filename}' opened read-only`, { path: this.filename, op: 'check' });
    }
    return this.layer.check(repair);
  }

  /**
   * Data stored plainly in this image's own file may sit in a host hole: it then reads as zeros,
   * and `map` says so (zero and data both true), as qemu does when it asks the file below.
   */
  private async refineWithHost(st: LayerStatus): Promise<void> {
    const host = st.hostOffset;
    if (!mayBeInHole(st) || host === undefined) return;
    if (this.format === 'raw' || !this.protocol.extent) return;
    const ext = await this.protocol.extent(host, st.length);
    // data mapped past the end of the file is not a hole to qemu: it stays data, not zero
    if (!ext.data && host >= (await this.protocol.size())) return;
    if (!ext.data) st.zero = true;
    if (ext.length > 0 && ext.length < st.length) st.length = ext.length;
  }

  async info(): Promise<LayerInfo> {
    return this.layer.info();
  }

  /** Bytes the image's file uses on the host. */
  async allocatedSize(): Promise<number | undefined> {
    return this.protocol.allocatedSize();
  }

  /** Close this image and everything below it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readOnly) await this.layer.flush?.();
      await this.layer.close();
    } finally {
      await this.protocol.close();
      if (this.backing) await this.backing.close();
    }
  }
}

/** The BackingReader handed to a layer at open; the chain is linked after the header is read. */
export class MutableBackingReader implements BackingReader {
  target: Image | null = null;

  get present(): boolean {
    return this.target !== null;
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    return readClipped(this.target, buf, offset);
  }
}

/** Read `buf.length` bytes of `img` at `offset`: zeros past its end, and all zeros without an image. */
export async function readClipped(img: Image | null, buf: Uint8Array, offset: number): Promise<void> {
  if (!img || offset >= img.size) {
    buf.fill(0);
    return;
  }
  const n = Math.min(buf.length, img.size - offset);
  await img.read(buf.subarray(0, n), offset);
  if (n < buf.length) buf.fill(0, n);
}

function unsupported(img: Image, op: string): VdiskError {
  return new VdiskError('unsupported', 'OP_UNSUPPORTED', `Format '${img.format}' does not support ${op} yet`,
    { path: img.filename, format: img.format, op });
}

/**
 * qemu's rule for a raw image whose format was guessed: block 0 may not be written with bytes that
 * would make it probe as another format, since that lets a guest turn its disk into, say, a qcow2
 * naming /etc/shadow as backing file. The check itself is in the registry (probe scores).
 */
let guard: ((img: Image, buf: Uint8Array, offset: number) => void) | undefined;
export function setProbedRawGuard(fn: (img: Image, buf: Uint8Array, offset: number) => void): void {
  guard = fn;
}
function guardProbedRawBlock0(img: Image, buf: Uint8Array, offset: number): void {
  guard?.(img, buf, offset);
}

/** Data stored in this layer's own file, which the file below may hold as a hole (see refineWithHost). */
function mayBeInHole(st: LayerStatus): boolean {
  return st.data && !st.zero && !st.compressed && st.askHost !== false && st.hostOffset !== undefined && st.hostFile === undefined;
}
