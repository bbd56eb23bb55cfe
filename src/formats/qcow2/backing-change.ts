/**
 * Changing the backing file recorded in a qcow2 image (qemu-img rebase, commit): the header area
 * (header, extensions, backing file name) is rewritten as a whole, as qemu does, so the name
 * follows the extensions and the backing format extension appears or disappears with it.
 */
import { VdiskError } from '../../block/errors.js';
import { V2_HEADER_BYTES, V3_HEADER_BYTES, encodeHeader, type RawHeader } from './header.js';
import { encodeExtensions, type Extensions } from './extensions.js';
import { MAX_BACKING_NAME_BYTES } from './limits.js';
import type { Qcow2Parts } from './layer.js';

const enc = new TextEncoder();

/**
 * Write the first cluster's header area in one write: header `nh`, extensions `ext` and the
 * backing file name `name` right after them (the header's backing fields are set here).
 */
export async function writeHeaderArea(p: Qcow2Parts, nh0: RawHeader, ext: Extensions, name: Uint8Array | undefined): Promise<RawHeader> {
  const h = p.loaded.header;
  const cs = p.loaded.clusterSize;
  const extBytes = encodeExtensions(ext);
  const nameOffset = h.headerLength + extBytes.length;
  const end = nameOffset + (name ? name.length : 0);
  if (end > cs) {
    throw new VdiskError('unsupported', 'QCOW2_HEADER_FULL', 'No space left in the file header', { path: p.path });
  }
  const head = new Uint8Array(cs);
  // keep header bytes past the fields vdisk knows (a longer header_length) as they are
  await p.proto.pread(head.subarray(0, h.headerLength), 0);
  const nh: RawHeader = { ...nh0, backingFileOffset: name ? BigInt(nameOffset) : 0n, backingFileSize: name ? name.length : 0 };
  encodeHeader(nh, head.subarray(0, Math.min(h.headerLength, h.version < 3 ? V2_HEADER_BYTES : V3_HEADER_BYTES)));
  head.set(extBytes, h.headerLength);
  if (name) head.set(name, nameOffset);
  await p.proto.pwrite(head, 0);
  await p.proto.flush?.();
  p.loaded.header = nh;
  p.loaded.ext = ext;
  return nh;
}

/** The backing file name the header stores now (to rewrite the header area without changing it). */
export function currentName(p: Qcow2Parts): Uint8Array | undefined {
  return p.loaded.backing ? enc.encode(p.loaded.backing.filename) : undefined;
}

export async function changeBacking(p: Qcow2Parts, filename: string | null, format: string | null): Promise<void> {
  const name = filename !== null && filename !== '' ? enc.encode(filename) : undefined;
  if (name && name.length > MAX_BACKING_NAME_BYTES) {
    throw new VdiskError('invalid-argument', 'BACKING_NAME_TOO_LONG', 'Invalid argument', { path: p.path });
  }
  const ext: Extensions = { ...p.loaded.ext };
  if (name && format !== null) ext.backingFormat = format;
  else delete ext.backingFormat;
  await writeHeaderArea(p, p.loaded.header, ext, name);
  if (name) {
    p.loaded.backing = ext.backingFormat !== undefined ? { filename: filename!, format: ext.backingFormat } : { filename: filename! };
  } else {
    delete p.loaded.backing;
  }
}
