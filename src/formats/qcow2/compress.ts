/**
 * Compressed clusters: zlib type is raw deflate (no zlib header), zstd type is zstd frames
 * (header compression_type 1). A compressed cluster decompresses to exactly one cluster; the
 * stored bytes may run on into the next cluster's data, which decompression must ignore.
 */
import * as zlib from 'node:zlib';
import { COMPRESSION_ZLIB, COMPRESSION_ZSTD } from './header.js';

type ZstdFns = {
  zstdDecompressSync?: (buf: Uint8Array, opts?: object) => Buffer;
  zstdCompressSync?: (buf: Uint8Array, opts?: object) => Buffer;
};
const z = zlib as unknown as ZstdFns;

/** Decompress into `out` (one cluster); returns false when the data is not a valid stream. */
export function decompressCluster(type: number, src: Uint8Array, out: Uint8Array): boolean {
  let r: Buffer;
  try {
    if (type === COMPRESSION_ZLIB) {
      r = zlib.inflateRawSync(src, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: out.length });
    } else if (type === COMPRESSION_ZSTD && z.zstdDecompressSync) {
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
  const dec = z.zstdDecompressSync!;
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

/** Compress one cluster; undefined when compression does not save space (store it plainly). */
export function compressCluster(type: number, data: Uint8Array): Uint8Array | undefined {
  let r: Buffer;
  if (type === COMPRESSION_ZLIB) {
    r = zlib.deflateRawSync(data, { level: zlib.constants.Z_DEFAULT_COMPRESSION, windowBits: 12, memLevel: 9 });
  } else if (type === COMPRESSION_ZSTD && z.zstdCompressSync) {
    r = z.zstdCompressSync(data);
  } else {
    return undefined;
  }
  return r.length < data.length ? r : undefined;
}
