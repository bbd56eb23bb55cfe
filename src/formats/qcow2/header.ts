/**
 * The qcow2 header (QEMU docs/interop/qcow2.txt, "Header"): one declarative field table, decode and
 * encode derived from it, and the checks qemu makes before trusting it, with qemu's wording.
 *
 *   0 magic "QFI\xfb" | 4 version | 8 backing_file_offset | 16 backing_file_size | 20 cluster_bits
 *  24 size | 32 crypt_method | 36 l1_size | 40 l1_table_offset | 48 refcount_table_offset
 *  56 refcount_table_clusters | 60 nb_snapshots | 64 snapshots_offset | -- v3: 72 incompatible
 *  80 compatible | 88 autoclear | 96 refcount_order | 100 header_length | 104 compression_type
 */
import { VdiskError } from '../../block/errors.js';
import { MAX_IMAGE_SIZE } from '../../block/limits.js';
import { MAX_CLUSTER_BITS, MIN_CLUSTER_BITS } from './limits.js';

export type FieldType = 'u8' | 'u32' | 'u64';

export interface Field<K extends string> {
  readonly name: K;
  readonly offset: number;
  readonly type: FieldType;
}

export interface RawHeader {
  magic: number;
  version: number;
  backingFileOffset: bigint;
  backingFileSize: number;
  clusterBits: number;
  size: bigint;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: bigint;
  refcountTableOffset: bigint;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: bigint;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
}

/** All fields big-endian; v2 headers end at 72 (the v3 fields then read as their defaults). */
export const HEADER_FIELDS: readonly Field<keyof RawHeader>[] = [
  { name: 'magic', offset: 0, type: 'u32' },
  { name: 'version', offset: 4, type: 'u32' },
  { name: 'backingFileOffset', offset: 8, type: 'u64' },
  { name: 'backingFileSize', offset: 16, type: 'u32' },
  { name: 'clusterBits', offset: 20, type: 'u32' },
  { name: 'size', offset: 24, type: 'u64' },
  { name: 'cryptMethod', offset: 32, type: 'u32' },
  { name: 'l1Size', offset: 36, type: 'u32' },
  { name: 'l1TableOffset', offset: 40, type: 'u64' },
  { name: 'refcountTableOffset', offset: 48, type: 'u64' },
  { name: 'refcountTableClusters', offset: 56, type: 'u32' },
  { name: 'nbSnapshots', offset: 60, type: 'u32' },
  { name: 'snapshotsOffset', offset: 64, type: 'u64' },
  { name: 'incompatibleFeatures', offset: 72, type: 'u64' },
  { name: 'compatibleFeatures', offset: 80, type: 'u64' },
  { name: 'autoclearFeatures', offset: 88, type: 'u64' },
  { name: 'refcountOrder', offset: 96, type: 'u32' },
  { name: 'headerLength', offset: 100, type: 'u32' },
  { name: 'compressionType', offset: 104, type: 'u8' },
];

export const QCOW2_MAGIC = 0x514649fb;
export const V2_HEADER_BYTES = 72;
export const V3_MIN_HEADER_BYTES = 104;
/** The header as vdisk writes it (v3 with compression_type, padded to 8). */
export const V3_HEADER_BYTES = 112;

const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u32: 4, u64: 8 };

export function fieldEnd(f: Field<string>): number {
  return f.offset + FIELD_SIZE[f.type];
}

export function decodeHeader(buf: Uint8Array): RawHeader {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: Record<string, number | bigint> = {};
  for (const f of HEADER_FIELDS) {
    const present = fieldEnd(f) <= buf.length;
    if (f.type === 'u64') out[f.name] = present ? dv.getBigUint64(f.offset) : 0n;
    else if (f.type === 'u32') out[f.name] = present ? dv.getUint32(f.offset) : 0;
    else out[f.name] = present ? dv.getUint8(f.offset) : 0;
  }
  return out as unknown as RawHeader;
}

/** Encode the fields that fit in `buf` (72 bytes for v2, 112 for v3). */
export function encodeHeader(h: RawHeader, buf: Uint8Array): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (const f of HEADER_FIELDS) {
    if (fieldEnd(f) > buf.length) continue;
    const v = h[f.name];
    if (f.type === 'u64') dv.setBigUint64(f.offset, BigInt(v));
    else if (f.type === 'u32') dv.setUint32(f.offset, Number(v));
    else dv.setUint8(f.offset, Number(v));
  }
}

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;

export const CRYPT_NONE = 0;
export const CRYPT_AES = 1;
export const CRYPT_LUKS = 2;

export const COMPRESSION_ZLIB = 0;
export const COMPRESSION_ZSTD = 1;

/** The one checked conversion of a 64-bit field into the I/O path. */
export function toSafe(v: bigint, what: string, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VdiskError('invalid-format', 'QCOW2_OFFSET_RANGE', `${what} offset invalid`, { path, format: 'qcow2' });
  }
  return Number(v);
}

export function invalid(code: string, message: string, path: string, kind: 'invalid-format' | 'unsupported' | 'limit' | 'corrupt' = 'invalid-format'): VdiskError {
  return new VdiskError(kind, code, message, { path, format: 'qcow2' });
}

/**
 * Checks on the fixed header in qemu's order (the first failing check names the error), before
 * anything it points at is read. v2 headers get the v3 defaults.
 */
export function checkHeader(h: RawHeader, path: string): void {
  if (h.magic !== QCOW2_MAGIC) throw invalid('QCOW2_MAGIC', 'Image is not in qcow2 format', path);
  if (h.version < 2 || h.version > 3) {
    throw invalid('QCOW2_VERSION', `Unsupported qcow2 version ${h.version}`, path, 'unsupported');
  }
  if (h.clusterBits < MIN_CLUSTER_BITS || h.clusterBits > MAX_CLUSTER_BITS) {
    throw invalid('QCOW2_CLUSTER_BITS', `Unsupported cluster size: 2^${h.clusterBits}`, path, 'unsupported');
  }
  if (h.version === 2) {
    h.incompatibleFeatures = 0n;
    h.compatibleFeatures = 0n;
    h.autoclearFeatures = 0n;
    h.refcountOrder = 4;
    h.headerLength = V2_HEADER_BYTES;
    h.compressionType = 0;
  } else if (h.headerLength < V3_MIN_HEADER_BYTES) {
    throw invalid('QCOW2_HEADER_SHORT', 'qcow2 header too short', path);
  }
  if (h.headerLength <= 104) h.compressionType = 0;
  const clusterSize = 2 ** h.clusterBits;
  if (h.headerLength > clusterSize) throw invalid('QCOW2_HEADER_LENGTH', 'qcow2 header exceeds cluster size', path);
  if (h.backingFileOffset > BigInt(clusterSize)) throw invalid('QCOW2_BACKING_OFFSET', 'Invalid backing file offset', path);
}

/** Virtual size in bytes: qemu keeps whole sectors, so a size that is not a multiple of 512 is cut down. */
export function virtualSize(h: RawHeader, path: string): number {
  const size = h.size - (h.size % 512n);
  if (size > BigInt(MAX_IMAGE_SIZE)) throw invalid('QCOW2_TOO_BIG', 'Image is too big', path, 'limit');
  return Number(size);
}
