/**
 * qcow2 header extensions (qcow2.txt "Header extensions"): type/length records padded to 8 bytes
 * between the header and the backing file name (or the end of the first cluster). vdisk keeps the
 * ones it knows decoded and unknown ones verbatim, so rewriting the header preserves them.
 *
 *   0 type (u32) | 4 length (u32) | 8 data | padding to a multiple of 8
 */
import { invalid } from './header.js';
import { MAX_BACKING_FORMAT_BYTES, MAX_BITMAPS, MAX_BITMAP_DIRECTORY_BYTES } from './limits.js';

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export interface FeatureName {
  /** 0 incompatible, 1 compatible, 2 autoclear. */
  type: number;
  bit: number;
  name: string;
}

export interface BitmapsExt {
  nbBitmaps: number;
  directorySize: bigint;
  directoryOffset: bigint;
}

export interface Extensions {
  backingFormat?: string;
  features: FeatureName[];
  bitmaps?: BitmapsExt;
  crypto?: { offset: bigint; length: bigint };
  dataFile?: string;
  /** Extensions vdisk does not interpret, kept to be written back unchanged. */
  unknown: Array<{ type: number; data: Uint8Array }>;
}

const FEATURE_ENTRY_BYTES = 48;
const latin = new TextDecoder('latin1');
const utf8 = new TextDecoder('utf-8');

function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return utf8.decode(nul < 0 ? b : b.subarray(0, nul));
}

/**
 * Parse the extension area `head[start, end)` (`head` is the first cluster of the file). Limits:
 * every length is checked against the area before it is used; the count of records is bounded.
 */
export function parseExtensions(head: Uint8Array, start: number, end: number, path: string, bitmapsConsistent = true): Extensions {
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const ext: Extensions = { features: [], unknown: [] };
  let off = start;
  // the area lies inside the first cluster (at most 2 MiB), which bounds the number of records
  while (off < end) {
    if (off + 8 > head.length) break;
    const type = dv.getUint32(off);
    const len = dv.getUint32(off + 4);
    off += 8;
    if (off > end || len > end - off) throw invalid('QCOW2_EXT_TOO_LARGE', 'Header extension too large', path);
    const data = head.subarray(off, off + len);
    if (type === EXT_END) break;
    // without the autoclear bit, a program unaware of bitmaps rewrote the image: qemu ignores them
    if (type !== EXT_BITMAPS || bitmapsConsistent) decodeOne(ext, type, data, path);
    off += Math.ceil(len / 8) * 8;
  }
  return ext;
}

function decodeOne(ext: Extensions, type: number, data: Uint8Array, path: string): void {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (type) {
    case EXT_BACKING_FORMAT:
      if (data.length > MAX_BACKING_FORMAT_BYTES) {
        throw invalid('QCOW2_EXT_BACKING_FMT', `ERROR: ext_backing_format: len=${data.length} too large (>=${MAX_BACKING_FORMAT_BYTES + 1})`, path);
      }
      ext.backingFormat = latin.decode(data);
      return;
    case EXT_FEATURE_TABLE:
      for (let i = 0; i + FEATURE_ENTRY_BYTES <= data.length; i += FEATURE_ENTRY_BYTES) {
        ext.features.push({ type: data[i]!, bit: data[i + 1]!, name: cString(data.subarray(i + 2, i + FEATURE_ENTRY_BYTES)) });
      }
      return;
    case EXT_BITMAPS: {
      if (data.length !== 24) throw invalid('QCOW2_EXT_BITMAPS', 'bitmaps_ext: Invalid extension length', path);
      const b: BitmapsExt = { nbBitmaps: dv.getUint32(0), directorySize: dv.getBigUint64(8), directoryOffset: dv.getBigUint64(16) };
      if (dv.getUint32(4) !== 0) throw invalid('QCOW2_EXT_BITMAPS', 'bitmaps_ext: Reserved field is not zero', path);
      if (b.nbBitmaps > MAX_BITMAPS) {
        throw invalid('QCOW2_BITMAPS_COUNT', `bitmaps_ext: Image has ${b.nbBitmaps} bitmaps, exceeding the QEMU supported maximum of ${MAX_BITMAPS}`, path, 'limit');
      }
      if (b.nbBitmaps === 0) throw invalid('QCOW2_EXT_BITMAPS', 'found bitmaps extension with zero bitmaps', path);
      if (b.directorySize > BigInt(MAX_BITMAP_DIRECTORY_BYTES)) {
        throw invalid('QCOW2_BITMAP_DIR_SIZE', `bitmaps_ext: bitmap directory size (${b.directorySize}) exceeds the maximum supported size (${MAX_BITMAP_DIRECTORY_BYTES})`, path, 'limit');
      }
      ext.bitmaps = b;
      return;
    }
    case EXT_CRYPTO:
      if (data.length !== 16) throw invalid('QCOW2_EXT_CRYPTO', `Unable to read CRYPTO header extension`, path);
      ext.crypto = { offset: dv.getBigUint64(0), length: dv.getBigUint64(8) };
      return;
    case EXT_DATA_FILE:
      ext.dataFile = utf8.decode(data);
      return;
    default:
      ext.unknown.push({ type, data: data.slice() });
  }
}

/** qemu's "Unsupported qcow2 feature(s): ..." text for incompatible bits it does not know. */
export function unsupportedFeatures(mask: bigint, features: readonly FeatureName[]): string {
  const parts: string[] = [];
  let rest = mask;
  for (const f of features) {
    if (f.type !== 0 || f.bit > 63) continue;
    const bit = 1n << BigInt(f.bit);
    if (rest & bit) {
      parts.push(f.name);
      rest &= ~bit;
    }
  }
  if (rest) parts.push(`Unknown incompatible feature: ${rest.toString(16)}`);
  return `Unsupported qcow2 feature(s): ${parts.join(', ')}`;
}

function pushExt(out: number[], type: number, data: Uint8Array): void {
  const rec = new Uint8Array(8 + Math.ceil(data.length / 8) * 8);
  const dv = new DataView(rec.buffer);
  dv.setUint32(0, type);
  dv.setUint32(4, data.length);
  rec.set(data, 8);
  for (const b of rec) out.push(b);
}

const enc = new TextEncoder();

/** Encode extensions in qemu's order (backing format, data file, crypto, features, bitmaps, unknown, end). */
export function encodeExtensions(ext: Extensions): Uint8Array {
  const out: number[] = [];
  if (ext.backingFormat !== undefined) pushExt(out, EXT_BACKING_FORMAT, enc.encode(ext.backingFormat));
  if (ext.dataFile !== undefined) pushExt(out, EXT_DATA_FILE, enc.encode(ext.dataFile));
  if (ext.crypto) {
    const b = new Uint8Array(16);
    const dv = new DataView(b.buffer);
    dv.setBigUint64(0, ext.crypto.offset);
    dv.setBigUint64(8, ext.crypto.length);
    pushExt(out, EXT_CRYPTO, b);
  }
  if (ext.features.length > 0) {
    const b = new Uint8Array(ext.features.length * FEATURE_ENTRY_BYTES);
    ext.features.forEach((f, i) => {
      b[i * FEATURE_ENTRY_BYTES] = f.type;
      b[i * FEATURE_ENTRY_BYTES + 1] = f.bit;
      b.set(enc.encode(f.name).subarray(0, 46), i * FEATURE_ENTRY_BYTES + 2);
    });
    pushExt(out, EXT_FEATURE_TABLE, b);
  }
  if (ext.bitmaps) {
    const b = new Uint8Array(24);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, ext.bitmaps.nbBitmaps);
    dv.setBigUint64(8, ext.bitmaps.directorySize);
    dv.setBigUint64(16, ext.bitmaps.directoryOffset);
    pushExt(out, EXT_BITMAPS, b);
  }
  for (const u of ext.unknown) pushExt(out, u.type, u.data);
  pushExt(out, EXT_END, new Uint8Array(0));
  return Uint8Array.from(out);
}
