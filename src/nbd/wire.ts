/**
 * Encoders and decoders of NBD's messages (all big-endian). Pure functions over buffers; the
 * handshake and the transmission phase read and write through them only, so no byte offset of the
 * protocol appears elsewhere.
 */
import {
  MAX_BLOCK_STATUS_CHUNK_BYTES, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT, NBD_MAX_STRING_BYTES, NBD_OPTS_MAGIC,
  NBD_REP_MAGIC, NBD_REQUEST_MAGIC,
} from './constants.js';
import { NbdProtocolError } from './errors.js';

export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_REPLY_BYTES = 20;
export const BLOCK_DESCRIPTOR_BYTES = 8;

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: false });

/** A 64-bit field that must fit a JavaScript number (sizes and offsets below 2^53). */
export function safeU64(b: Buffer, at: number, what: string): number {
  const hi = b.readUInt32BE(at);
  // below 2^53 the high word has at most 21 bits (read once per data chunk: no BigInt)
  if (hi >= 0x200000) throw new NbdProtocolError(`server sent an out-of-range ${what} (${b.readBigUInt64BE(at)})`);
  return hi * 0x100000000 + b.readUInt32BE(at + 4);
}

export function encodeString(s: string): Buffer {
  const b = Buffer.from(utf8.encode(s));
  if (b.length > NBD_MAX_STRING_BYTES) throw new NbdProtocolError(`name too long for the NBD protocol: ${s.slice(0, 40)}...`);
  return b;
}

/** "IHAVEOPT", option, length, data. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  b.set(data, OPTION_HEADER_BYTES);
  return b;
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader {
  if (b.readBigUInt64BE(0) !== NBD_REP_MAGIC) throw new NbdProtocolError('Unexpected option reply magic');
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/** Payload of NBD_OPT_GO / NBD_OPT_INFO: the export name and the information requests. */
export function encodeGoData(exportName: string, infos: readonly number[]): Buffer {
  const name = encodeString(exportName);
  const b = Buffer.alloc(4 + name.length + 2 + 2 * infos.length);
  b.writeUInt32BE(name.length, 0);
  b.set(name, 4);
  b.writeUInt16BE(infos.length, 4 + name.length);
  infos.forEach((t, i) => b.writeUInt16BE(t, 6 + name.length + 2 * i));
  return b;
}

export type ExportInfo =
  | { type: 'export'; size: number; flags: number }
  | { type: 'block-size'; min: number; preferred: number; max: number }
  | { type: 'other'; code: number };

/** One NBD_REP_INFO payload; types vdisk does not use are skipped, as the spec asks. */
export function decodeInfo(b: Buffer): ExportInfo {
  if (b.length < 2) throw new NbdProtocolError('Invalid info reply length');
  const code = b.readUInt16BE(0);
  if (code === NBD_INFO_EXPORT) {
    if (b.length !== 12) throw new NbdProtocolError(`Invalid length ${b.length} for export info`);
    return { type: 'export', size: safeU64(b, 2, 'export size'), flags: b.readUInt16BE(10) };
  }
  if (code === NBD_INFO_BLOCK_SIZE) {
    if (b.length !== 14) throw new NbdProtocolError(`Invalid length ${b.length} for block size info`);
    return { type: 'block-size', min: b.readUInt32BE(2), preferred: b.readUInt32BE(6), max: b.readUInt32BE(10) };
  }
  return { type: 'other', code };
}

/** Payload of NBD_OPT_SET_META_CONTEXT / LIST_META_CONTEXT. */
export function encodeMetaContextData(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const name = encodeString(exportName);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(name.length, 0);
  parts.push(head, name);
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const q of queries) {
    const s = encodeString(q);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(s.length, 0);
    parts.push(len, s);
  }
  return Buffer.concat(parts);
}

export function decodeMetaContext(b: Buffer): { id: number; name: string } {
  if (b.length < 4 || b.length - 4 > NBD_MAX_STRING_BYTES) throw new NbdProtocolError('Invalid meta context reply length');
  return { id: b.readUInt32BE(0), name: utf8d.decode(b.subarray(4)) };
}

export function decodeText(b: Uint8Array): string {
  return utf8d.decode(b);
}

/** The 28-byte request header (a write's data follows it). */
export function encodeRequest(flags: number, type: number, handle: number, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
  b.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  writeU64(b, handle, 8);
  writeU64(b, offset, 16);
  b.writeUInt32BE(length, 24);
  return b;
}

/** A 64-bit field from a safe integer, without a BigInt per request. */
function writeU64(b: Buffer, v: number, at: number): void {
  const hi = Math.floor(v / 0x100000000);
  b.writeUInt32BE(hi, at);
  b.writeUInt32BE(v - hi * 0x100000000, at + 4);
}

export interface BlockDescriptor {
  length: number;
  flags: number;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: the context id and at least one descriptor. */
export function decodeBlockStatus(b: Buffer): { contextId: number; extents: BlockDescriptor[] } {
  if (b.length > MAX_BLOCK_STATUS_CHUNK_BYTES) throw new NbdProtocolError('block status reply too large');
  if (b.length < 4 + BLOCK_DESCRIPTOR_BYTES || (b.length - 4) % BLOCK_DESCRIPTOR_BYTES !== 0) {
    throw new NbdProtocolError(`Protocol error: invalid payload for NBD_REPLY_TYPE_BLOCK_STATUS`);
  }
  const extents: BlockDescriptor[] = [];
  for (let at = 4; at < b.length; at += BLOCK_DESCRIPTOR_BYTES) {
    extents.push({ length: b.readUInt32BE(at), flags: b.readUInt32BE(at + 4) });
  }
  return { contextId: b.readUInt32BE(0), extents };
}

/** NBD_REPLY_TYPE_ERROR(_OFFSET): the error value and the server's message. */
export function decodeErrorChunk(b: Buffer, withOffset: boolean): { error: number; message: string } {
  if (b.length < 6) throw new NbdProtocolError('Protocol error: invalid payload for structured error');
  const msgLen = b.readUInt16BE(4);
  if (6 + msgLen + (withOffset ? 8 : 0) !== b.length) {
    throw new NbdProtocolError('Protocol error: invalid payload for structured error');
  }
  return { error: b.readUInt32BE(0), message: utf8d.decode(b.subarray(6, 6 + msgLen)) };
}
