/**
 * Rewriting the whole header cluster as qemu does whenever it updates an image's header (amend):
 * the fixed header (72 bytes for v2; 112 for v3, keeping header fields past those vdisk knows),
 * then the extensions in qemu's order with qemu's own feature name table (v3 only), the backing
 * file name, and zeros to the end of the cluster. One write of cluster 0, so a crash leaves the
 * old header or the new one.
 */
import { VdiskError } from '../../block/errors.js';
import { V2_HEADER_BYTES, V3_HEADER_BYTES, encodeHeader, type RawHeader } from './header.js';
import { QEMU_FEATURE_TABLE, encodeExtensions, type Extensions } from './extensions.js';
import type { Qcow2Parts } from './layer.js';

const enc = new TextEncoder();

/** qemu writes its feature name table only into header clusters larger than this (observed: 4 KiB none, 8 KiB one). */
const FEATURE_TABLE_MIN_CLUSTER = 8192;

/** Write `h` (with the image's extensions and backing name) as the header; updates p.loaded. */
export async function writeWholeHeader(p: Qcow2Parts, h: RawHeader): Promise<void> {
  const cs = p.loaded.clusterSize;
  const v3 = h.version >= 3;
  const ext: Extensions = { ...p.loaded.ext, features: v3 && cs >= FEATURE_TABLE_MIN_CLUSTER ? [...QEMU_FEATURE_TABLE] : [] };
  const backing = p.loaded.backing;
  if (!backing || backing.format === undefined) delete ext.backingFormat;
  else ext.backingFormat = backing.format;
  const oldLen = p.loaded.header.version >= 3 ? p.loaded.header.headerLength : V2_HEADER_BYTES;
  const len = v3 ? Math.max(V3_HEADER_BYTES, oldLen) : V2_HEADER_BYTES;
  const extBytes = encodeExtensions(ext);
  const name = backing ? enc.encode(backing.filename) : new Uint8Array(0);
  const nameAt = len + extBytes.length;
  if (nameAt + name.length > cs) {
    throw new VdiskError('unsupported', 'QCOW2_HEADER_FULL', 'Failed to update the image header: No space left on device', { path: p.path, format: 'qcow2' });
  }
  const buf = new Uint8Array(cs);
  // header fields past the ones vdisk knows stay as they are (v3 to v3 only, as qemu keeps them)
  if (v3 && len > V3_HEADER_BYTES) await p.proto.pread(buf.subarray(V3_HEADER_BYTES, len), V3_HEADER_BYTES);
  const nh: RawHeader = {
    ...h, headerLength: len,
    backingFileOffset: backing ? BigInt(nameAt) : 0n, backingFileSize: name.length,
  };
  if (!v3) {
    nh.incompatibleFeatures = 0n;
    nh.compatibleFeatures = 0n;
    nh.autoclearFeatures = 0n;
    nh.compressionType = 0;
  }
  encodeHeader(nh, buf.subarray(0, v3 ? V3_HEADER_BYTES : V2_HEADER_BYTES));
  buf.set(extBytes, len);
  buf.set(name, nameAt);
  await p.proto.pwrite(buf, 0);
  await p.proto.flush();
  // in place: open writers hold the header object
  Object.assign(p.loaded.header, nh);
  p.loaded.ext = ext;
}
