/**
 * Opening a qcow2 image: read and check the header, its extensions and every table it points at,
 * in qemu's order and with qemu's messages, before any guest byte is read. Every size taken from
 * the file is checked against a named limit (./limits.ts) before memory is allocated for it.
 */
import type { OpenContext } from '../../block/driver.js';
import { VdiskError } from '../../block/errors.js';
import { MAX_IMAGE_SIZE } from '../../block/limits.js';
import type { Protocol } from '../../protocols/types.js';
import {
  AUTOCLEAR_BITMAPS, COMPRESSION_ZLIB, COMPRESSION_ZSTD, CRYPT_LUKS, INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT,
  INCOMPAT_DATA_FILE, INCOMPAT_EXTL2, INCOMPAT_KNOWN, V3_HEADER_BYTES, checkHeader, decodeHeader, invalid,
  virtualSize, type RawHeader,
} from './header.js';
import { parseExtensions, unsupportedFeatures, type Extensions } from './extensions.js';
import { MAX_BACKING_NAME_BYTES, MAX_L1_BYTES, MAX_REFCOUNT_ORDER, MAX_REFCOUNT_TABLE_BYTES, MAX_SNAPSHOTS } from './limits.js';
import { readSnapshots, findSnapshot, type Snapshot } from './snapshot.js';
import { readBitmapDirectory, type BitmapEntry } from './bitmap.js';

export interface Loaded {
  header: RawHeader;
  ext: Extensions;
  clusterSize: number;
  size: number;
  l1Offset: number;
  l1: Uint8Array;
  refcountTableOffset: number;
  backing?: { filename: string; format?: string };
  snapshots: Snapshot[];
  bitmaps: BitmapEntry[];
  /** Name of the external data file, when the image has one. */
  dataFileName?: string;
  /** The snapshot opened instead of the active state (read-only `-l` view). */
  snapshot?: Snapshot;
}

const INT_MAX = 0x7fffffff;
const INT64_MAX = (1n << 63n) - 1n;

/** qemu's check of a table's place: its size first, then alignment and overflow of its offset. */
function checkTable(offset: bigint, entries: number, entryBytes: number, maxBytes: number, clusterSize: number, name: string, path: string): void {
  if (entries > maxBytes / entryBytes) throw invalid('QCOW2_TABLE_TOO_LARGE', `${name} too large`, path, 'limit');
  const bytes = BigInt(entries) * BigInt(entryBytes);
  if (INT64_MAX - bytes < offset || offset % BigInt(clusterSize) !== 0n) {
    throw invalid('QCOW2_TABLE_OFFSET', `${name} offset invalid`, path);
  }
}

/**
 * What qemu's table check says of a snapshot's L1 table, or undefined if it passes; `tooLarge`
 * (EFBIG) or not (EINVAL) is the errno qemu's callers print.
 */
export function snapshotL1Problem(s: Snapshot, clusterSize: number): { message: string; tooLarge: boolean } | undefined {
  if (s.l1Size > MAX_L1_BYTES / 8) return { message: 'Snapshot L1 table too large', tooLarge: true };
  const bytes = BigInt(s.l1Size) * 8n;
  if (INT64_MAX - bytes < s.l1TableOffset || s.l1TableOffset % BigInt(clusterSize) !== 0n) {
    return { message: 'Snapshot L1 table offset invalid', tooLarge: false };
  }
  return undefined;
}

function checkFeatures(h: RawHeader, ext: Extensions, path: string, readOnly: boolean): void {
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown) throw invalid('QCOW2_UNKNOWN_FEATURE', unsupportedFeatures(unknown, ext.features), path, 'unsupported');
  if (h.incompatibleFeatures & INCOMPAT_CORRUPT && !readOnly) {
    throw invalid('QCOW2_CORRUPT_BIT', 'qcow2: Image is corrupt; cannot be opened read/write', path, 'corrupt');
  }
  if (h.refcountOrder > MAX_REFCOUNT_ORDER) {
    throw invalid('QCOW2_REFCOUNT_ORDER', 'Reference count entry width too large; may not exceed 64 bits', path);
  }
  if (h.compressionType !== COMPRESSION_ZLIB && h.compressionType !== COMPRESSION_ZSTD) {
    throw invalid('QCOW2_COMPRESSION_TYPE', `qcow2: unknown compression type: ${h.compressionType}`, path, 'unsupported');
  }
  const bit = (h.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (h.compressionType === COMPRESSION_ZLIB && bit) {
    throw invalid('QCOW2_COMPRESSION_BIT', 'qcow2: Compression type incompatible feature bit must not be set', path);
  }
  if (h.compressionType !== COMPRESSION_ZLIB && !bit) {
    throw invalid('QCOW2_COMPRESSION_BIT', 'qcow2: Compression type incompatible feature bit must be set', path);
  }
  if (h.incompatibleFeatures & INCOMPAT_EXTL2 && h.clusterBits < 14) {
    throw invalid('QCOW2_EXTL2_CLUSTER', `Unsupported subcluster size: ${2 ** (h.clusterBits - 5)}`, path, 'unsupported');
  }
  if (h.cryptMethod > CRYPT_LUKS) throw invalid('QCOW2_CRYPT_METHOD', `Unsupported encryption method ${h.cryptMethod}`, path, 'unsupported');
  if (h.cryptMethod === CRYPT_LUKS && !ext.crypto) {
    throw invalid('QCOW2_CRYPTO_EXT', 'LUKS encryption method requires a crypto header extension', path);
  }
  if (h.cryptMethod !== CRYPT_LUKS && ext.crypto) {
    throw invalid('QCOW2_CRYPTO_EXT', 'CRYPTO header extension only expected with LUKS encryption method', path);
  }
}

/** L1 size checks: qemu's limit, then the entries the virtual size needs. */
function checkL1(h: RawHeader, path: string): void {
  const clusterSize = 2 ** h.clusterBits;
  const extL2 = (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  checkTable(h.l1TableOffset, h.l1Size, 8, MAX_L1_BYTES, clusterSize, 'Active L1 table', path);
  const span = BigInt(clusterSize) * BigInt(clusterSize / (extL2 ? 16 : 8));
  const needed = (h.size + span - 1n) / span;
  if (needed > BigInt(INT_MAX)) throw invalid('QCOW2_TOO_BIG', 'Image is too big', path, 'limit');
  if (BigInt(h.l1Size) < needed) throw invalid('QCOW2_L1_SMALL', 'L1 table is too small', path);
}

async function readBackingName(proto: Protocol, h: RawHeader, path: string): Promise<string | undefined> {
  if (h.backingFileOffset === 0n) return undefined;
  if (h.backingFileSize > MAX_BACKING_NAME_BYTES) throw invalid('QCOW2_BACKING_NAME', 'Backing file name too long', path, 'limit');
  const b = new Uint8Array(h.backingFileSize);
  await proto.pread(b, Number(h.backingFileOffset));
  return new TextDecoder('utf-8').decode(b);
}

export async function loadImage(proto: Protocol, ctx: OpenContext): Promise<Loaded> {
  const path = ctx.filename;
  const first = new Uint8Array(V3_HEADER_BYTES);
  await proto.pread(first, 0);
  const h = decodeHeader(first);
  checkHeader(h, path);
  const clusterSize = 2 ** h.clusterBits;
  const head = new Uint8Array(clusterSize);
  await proto.pread(head, 0);
  const extEnd = h.backingFileOffset !== 0n ? Number(h.backingFileOffset) : clusterSize;
  const ext = parseExtensions(head, h.headerLength, extEnd, path, (h.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n);
  // a repair opens corrupt images read-write, as qemu-img check does
  checkFeatures(h, ext, path, ctx.readOnly || ctx.check === true);

  if (h.refcountTableClusters > MAX_REFCOUNT_TABLE_BYTES / clusterSize) {
    throw invalid('QCOW2_REFTABLE_TOO_LARGE', 'Reference count table too large', path, 'limit');
  }
  checkTable(h.refcountTableOffset, h.refcountTableClusters, clusterSize, MAX_REFCOUNT_TABLE_BYTES, clusterSize, 'Reference count table', path);
  checkTable(h.snapshotsOffset, h.nbSnapshots, 40, 40 * MAX_SNAPSHOTS, clusterSize, 'Snapshot table', path);
  checkL1(h, path);
  let size = virtualSize(h, path);

  const l1Offset = Number(h.l1TableOffset);
  let l1 = new Uint8Array(h.l1Size * 8);
  await proto.pread(l1, l1Offset);
  const backingName = await readBackingName(proto, h, path);
  const snapshots = await readSnapshots(proto, Number(h.snapshotsOffset), h.nbSnapshots, path);
  const bitmaps = ext.bitmaps ? await readBitmapDirectory(proto, ext.bitmaps, path) : [];

  const out: Loaded = {
    header: h, ext, clusterSize, size, l1Offset, l1, refcountTableOffset: Number(h.refcountTableOffset), snapshots, bitmaps,
  };
  if (backingName !== undefined) {
    out.backing = ext.backingFormat !== undefined ? { filename: backingName, format: ext.backingFormat } : { filename: backingName };
  }
  if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) {
    // data-file.filename is the file protocol's key for it (--image-opts data-file.filename=...)
    const name = ctx.options['data-file'] ?? ctx.options['data-file.filename'] ?? ext.dataFile;
    if (name !== undefined) out.dataFileName = name;
  }
  const snapName = ctx.options['snapshot.name'] ?? ctx.options['snapshot.id'];
  if (snapName !== undefined) {
    const s = ctx.options['snapshot.id'] !== undefined && ctx.options['snapshot.name'] === undefined
      ? snapshots.find((x) => x.id === snapName)
      : ctx.options['snapshot.id'] !== undefined
        ? snapshots.find((x) => x.id === ctx.options['snapshot.id'] && x.name === ctx.options['snapshot.name'])
        : findSnapshot(snapshots, snapName);
    if (!s) throw invalid('QCOW2_NO_SNAPSHOT', `Can't find snapshot`, path, 'invalid-format');
    const bad = snapshotL1Problem(s, clusterSize);
    // qemu loads the snapshot after opening the image: its errors carry no "Could not open"
    if (bad) throw new VdiskError(bad.tooLarge ? 'limit' : 'invalid-format', 'SNAPSHOT_LOAD', `Failed to load snapshot: ${bad.message}`, { path, format: 'qcow2' });
    l1 = new Uint8Array(s.l1Size * 8);
    await proto.pread(l1, Number(s.l1TableOffset));
    out.l1 = l1;
    if (s.diskSize !== undefined && s.diskSize <= BigInt(MAX_IMAGE_SIZE)) size = Number(s.diskSize);
    out.size = size;
    out.snapshot = s;
  }
  return out;
}
