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

/**
 * Compressions running at once: one per threadpool thread but one, which stays free for the
 * file reads and writes the copy is waiting on. Each zlib/zstd stream holds a few hundred KiB of
 * state, so queueing the rest keeps memory flat however many clusters a copy has in flight.
 */
const MAX_COMPRESSING = Math.max(1, Number(process.env['UV_THREADPOOL_SIZE'] ?? 4) - 1);
let compressing = 0;
const waiting: Array<() => void> = [];

/**
 * compressCluster off the main thread, so clusters compress on as many cores as there are while
 * the main thread reads and writes: in batches on worker threads (./compress-pool.ts), else on
 * the libuv threadpool. The bytes are the synchronous call's. null: store plainly.
 */
export async function compressClusterAsync(type: number, data: Uint8Array): Promise<Uint8Array | null> {
  const workers = await (poolModule ??= import('./compress-pool.js'));
  if (workers.workersAvailable()) {
    try {
      return await workers.compressOnWorker(type, data);
    } catch (e) {
      if (workers.workersAvailable()) throw e;
    }
  }
  return compressOnThreadpool(type, data);
}

/** The worker pool (./compress-pool.ts), loaded by the first compressed write. */
let poolModule: Promise<typeof import('./compress-pool.js')> | undefined;

/** The fallback when no worker thread can be started: one async zlib/zstd call per cluster. */
async function compressOnThreadpool(type: number, data: Uint8Array): Promise<Uint8Array | null> {
  if (compressing >= MAX_COMPRESSING) await new Promise<void>((r) => waiting.push(r));
  compressing++;
  try {
    return await new Promise((resolve, reject) => {
      const done = (e: Error | null, r: Buffer): void => {
        if (e) reject(e);
        else resolve(r.length < data.length ? r : null);
      };
      // one output chunk per cluster: each chunk is a round trip to the pool
      const chunk = { chunkSize: Math.max(data.length + 1024, 16384) };
      if (type === COMPRESSION_ZLIB) lib().deflateRaw(data, { ...DEFLATE_OPTIONS, ...chunk }, done);
      else if (type === COMPRESSION_ZSTD && zstd().zstdCompress) zstd().zstdCompress!(data, { ...chunk, pledgedSrcSize: data.length }, done);
      else resolve(null);
    });
  } finally {
    compressing--;
    waiting.shift()?.();
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
