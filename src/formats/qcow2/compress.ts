/**
 * Compressed clusters: zlib type is raw deflate (no zlib header), zstd type is zstd frames
 * (header compression_type 1). A compressed cluster decompresses to exactly one cluster; the
 * stored bytes may run on into the next cluster's data, which decompression must ignore.
 */
import type * as Zlib from 'node:zlib';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from './header.js';

type ZstdFns = {
  zstdDecompressSync?: (buf: Uint8Array, opts?: object) => Buffer;
  zstdCompressSync?: (buf: Uint8Array, opts?: object) => Buffer;
  zstdCompress?: (buf: Uint8Array, opts: object, cb: (e: Error | null, r: Buffer) => void) => void;
};
/** node:zlib, loaded on first use (its load is a noticeable part of start-up for `info` or `map`). */
let zlibModule: typeof Zlib | undefined;
function lib(): typeof Zlib {
  zlibModule ??= process.getBuiltinModule('node:zlib');
  return zlibModule;
}
/** The zstd calls, absent from Node builds without zstd. */
const zstd = (): ZstdFns => lib() as unknown as ZstdFns;
/** qemu's zlib settings for qcow2 clusters: raw deflate, level 6, 4 KiB window, memLevel 9. */
const Z_DEFAULT_COMPRESSION = -1;
const Z_SYNC_FLUSH = 2;

/** Decompress into `out` (one cluster); returns false when the data is not a valid stream. */
export function decompressCluster(type: number, src: Uint8Array, out: Uint8Array): boolean {
  let r: Buffer;
  try {
    if (type === COMPRESSION_ZLIB) {
      r = lib().inflateRawSync(src, { finishFlush: Z_SYNC_FLUSH, maxOutputLength: out.length });
    } else if (type === COMPRESSION_ZSTD && zstd().zstdDecompressSync) {
      r = zstdDecompressPrefix(src, out.length);
    } else {
      return false;
    }
  } catch {
    return false;
  }
  if (r.length < out.length) return false;
  out.set(r.subarray(0, out.length));
  return true;
}

/**
 * zstd frames are followed by whatever shares their last sector; the frame header carries the
 * content size qemu wrote, so decompress by trying the stream as is, then the frame alone.
 */
function zstdDecompressPrefix(src: Uint8Array, size: number): Buffer {
  const dec = zstd().zstdDecompressSync!;
  try {
    return dec(src, { maxOutputLength: size });
  } catch (e) {
    const end = zstdFrameEnd(src);
    if (end === undefined || end >= src.length) throw e;
    return dec(src.subarray(0, end), { maxOutputLength: size });
  }
}

/** The byte length of the first zstd frame in `src` by walking its block headers. */
function zstdFrameEnd(src: Uint8Array): number | undefined {
  if (src.length < 6 || src[0] !== 0x28 || src[1] !== 0xb5 || src[2] !== 0x2f || src[3] !== 0xfd) return undefined;
  const fhd = src[4]!;
  const dictIdBytes = [0, 1, 2, 4][fhd & 3]!;
  const singleSegment = (fhd >> 5) & 1;
  const fcsFlag = fhd >> 6;
  const fcsBytes = fcsFlag === 0 ? singleSegment : [1, 2, 4, 8][fcsFlag]!;
  const checksum = (fhd >> 2) & 1;
  let p = 5 + (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
  for (;;) {
    if (p + 3 > src.length) return undefined;
    const bh = src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16);
    const last = bh & 1;
    const btype = (bh >> 1) & 3;
    const bsize = bh >>> 3;
    p += 3 + (btype === 1 ? 1 : bsize);
    if (last) break;
  }
  return p + (checksum ? 4 : 0);
}

const DEFLATE_OPTIONS = { level: Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9 };

/** The native zlib/zstd context of a Node compression stream, called synchronously. */
interface NativeHandle {
  writeSync(flush: number, src: Uint8Array, srcOff: number, srcLen: number, out: Uint8Array, outOff: number, outLen: number): void;
  reset(): void;
}
type StreamInternals = { _handle?: NativeHandle; _writeState?: Uint32Array; on(ev: 'error', f: (e: Error) => void): unknown };
const Z_FINISH = 4;
const ZSTD_E_END = 2;

/**
 * Compresses clusters one after another straight into the caller's buffer with one zlib/zstd
 * context, reset between clusters (a fresh stream per cluster, as qemu compresses them). Node's
 * one-shot calls build a stream object and an output buffer per call: for 64 KiB clusters that
 * garbage costs as much as a third of zstd's own time and keeps tens of MiB of dead output
 * buffers resident in a small worker heap. The context is driven through the stream's native
 * handle, which Node does not document; where it is missing the one-shot calls are used (the same
 * bytes: a unit test compares the two).
 */
export class ClusterCompressor {
  private handle: NativeHandle | undefined;
  private state: Uint32Array | undefined;
  private error: Error | undefined;

  /** `oneShot`: use Node's one-shot calls even where the native handle is there (tests). */
  constructor(readonly type: number, oneShot = false) {
    const z = lib() as unknown as Record<string, unknown>;
    const Ctor = (type === COMPRESSION_ZLIB ? z['DeflateRaw'] : type === COMPRESSION_ZSTD ? z['ZstdCompress'] : undefined) as
      (new (o: object) => StreamInternals) | undefined;
    if (!Ctor || oneShot) return;
    const s = new Ctor(type === COMPRESSION_ZLIB ? DEFLATE_OPTIONS : {});
    if (typeof s._handle?.writeSync !== 'function' || typeof s._handle.reset !== 'function' || !(s._writeState instanceof Uint32Array)) return;
    s.on('error', (e) => { this.error = e; });
    this.handle = s._handle;
    this.state = s._writeState;
  }

  /**
   * Compress one whole cluster into out[at, at + src.length - 1]: the byte length written, or -1
   * when it does not shrink (the cluster is stored plainly).
   */
  compressInto(src: Uint8Array, out: Uint8Array, at: number): number {
    const h = this.handle;
    if (!h) {
      const r = compressCluster(this.type, src);
      if (!r) return -1;
      out.set(r, at);
      return r.length;
    }
    h.reset();
    h.writeSync(this.type === COMPRESSION_ZLIB ? Z_FINISH : ZSTD_E_END, src, 0, src.length, out, at, src.length);
    if (this.error) throw this.error;
    const availOut = this.state![0]!;
    const availIn = this.state![1]!;
    // output space left means the stream ended (zlib Z_STREAM_END, zstd frame flushed)
    if (availOut === 0 || availIn !== 0) return -1;
    return src.length - availOut;
  }
}

/** Compress one cluster; undefined when compression does not save space (store it plainly). */
export function compressCluster(type: number, data: Uint8Array): Uint8Array | undefined {
  let r: Buffer;
  if (type === COMPRESSION_ZLIB) {
    r = lib().deflateRawSync(data, DEFLATE_OPTIONS);
  } else if (type === COMPRESSION_ZSTD && zstd().zstdCompressSync) {
    r = zstd().zstdCompressSync!(data);
  } else {
    return undefined;
  }
  return r.length < data.length ? r : undefined;
}
