/**
 * The NBD handshake as qemu 7.2's client runs it: fixed newstyle (oldstyle accepted), then
 * NBD_OPT_STRUCTURED_REPLY, NBD_OPT_SET_META_CONTEXT for the one block-status context wanted, and
 * NBD_OPT_GO asking for NBD_INFO_BLOCK_SIZE; NBD_OPT_EXPORT_NAME when the server has no GO.
 */
import {
  MAX_OPTION_REPLIES, MAX_OPTION_REPLY_BYTES, NBD_CLISERV_MAGIC, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE, NBD_INIT_MAGIC, NBD_OPT_EXPORT_NAME, NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT, NBD_OPT_STRUCTURED_REPLY, NBD_OPTS_MAGIC, NBD_REP_ACK, NBD_REP_ERR_BLOCK_SIZE_REQD,
  NBD_REP_ERR_INVALID, NBD_REP_ERR_PLATFORM, NBD_REP_ERR_POLICY, NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_FLAG_ERROR, NBD_REP_INFO, NBD_REP_META_CONTEXT,
} from './constants.js';
import { VdiskError } from '../block/errors.js';
import { NbdProtocolError } from './errors.js';
import type { SocketReader } from './reader.js';
import {
  OPTION_REPLY_HEADER_BYTES, decodeInfo, decodeMetaContext, decodeOptionReplyHeader, decodeText, encodeGoData,
  encodeMetaContextData, encodeOption, encodeString, safeU64,
} from './wire.js';

/** What the handshake learnt about the export. */
export interface ExportDescription {
  size: number;
  /** Transmission flags (NBD_FLAG_*). */
  flags: number;
  structuredReplies: boolean;
  /** The id of the negotiated block-status context, when there is one. */
  metaContextId?: number;
  minBlock: number;
  preferredBlock: number;
  /** Largest request the server takes (0: it did not say). */
  maxBlock: number;
}

export interface HandshakeWire {
  reader: SocketReader;
  write(b: Uint8Array): Promise<void>;
}

export interface HandshakeRequest {
  exportName: string;
  /** The meta context to negotiate (base:allocation, or an x-dirty-bitmap name). */
  metaContext?: string;
  /** Fail when that context is not offered (x-dirty-bitmap does). */
  metaContextRequired?: boolean;
}

/** Option names as qemu's messages print them. */
const OPTION_NAMES: Record<number, string> = {
  1: 'export name', 2: 'abort', 3: 'list', 5: 'starttls', 6: 'info', 7: 'go', 8: 'structured reply',
  9: 'list meta context', 10: 'set meta context',
};

function optionName(opt: number): string {
  return `${opt} (${OPTION_NAMES[opt] ?? '<unknown>'})`;
}

/** qemu's wording for an error reply to an option, with the server's message as a second line. */
export function optionErrorMessage(opt: number, type: number, serverMessage: string): string {
  const name = optionName(opt);
  const head: Record<number, string> = {
    [NBD_REP_ERR_UNSUP]: `Unsupported option ${name}`,
    [NBD_REP_ERR_POLICY]: `Denied by server for option ${name}`,
    [NBD_REP_ERR_INVALID]: `Invalid parameters for option ${name}`,
    [NBD_REP_ERR_PLATFORM]: `Server lacks support for option ${name}`,
    [NBD_REP_ERR_TLS_REQD]: `TLS negotiation required before option ${name}`,
    [NBD_REP_ERR_UNKNOWN]: 'Requested export not available',
    [NBD_REP_ERR_SHUTDOWN]: `Server shutting down before option ${name}`,
    [NBD_REP_ERR_BLOCK_SIZE_REQD]: `Server requires INFO_BLOCK_SIZE for option ${name}`,
  };
  const text = head[type] ?? `Unknown error code when asking for option ${name}`;
  return serverMessage !== '' ? `${text}\nserver reported: ${serverMessage}` : text;
}

interface OptionReply {
  type: number;
  data: Buffer;
}

async function readOptionReply(w: HandshakeWire, opt: number): Promise<OptionReply> {
  const h = decodeOptionReplyHeader(await w.reader.read(OPTION_REPLY_HEADER_BYTES));
  if (h.option !== opt) {
    throw new NbdProtocolError(`Unexpected option type ${h.option} in reply to option ${optionName(opt)}`);
  }
  if (h.length > MAX_OPTION_REPLY_BYTES) {
    throw new NbdProtocolError(`server's reply to option ${optionName(opt)} is too long (${h.length} bytes)`);
  }
  return { type: h.type, data: await w.reader.read(h.length) };
}

function failOnError(opt: number, r: OptionReply): void {
  if (r.type & NBD_REP_FLAG_ERROR) throw new NbdProtocolError(optionErrorMessage(opt, r.type, decodeText(r.data)));
}

/** A bare option answered by ACK or an error; false when the server does not support it. */
async function simpleOption(w: HandshakeWire, opt: number): Promise<boolean> {
  await w.write(encodeOption(opt));
  const r = await readOptionReply(w, opt);
  if (r.type === NBD_REP_ERR_UNSUP) return false;
  failOnError(opt, r);
  if (r.type !== NBD_REP_ACK || r.data.length !== 0) throw new NbdProtocolError(`Unexpected reply to option ${optionName(opt)}`);
  return true;
}

/** SET_META_CONTEXT for one context: its id, or undefined when the server offers none. */
async function setMetaContext(w: HandshakeWire, exportName: string, context: string): Promise<number | undefined> {
  await w.write(encodeOption(NBD_OPT_SET_META_CONTEXT, encodeMetaContextData(exportName, [context])));
  let id: number | undefined;
  for (let n = 0; n < MAX_OPTION_REPLIES; n++) {
    const r = await readOptionReply(w, NBD_OPT_SET_META_CONTEXT);
    if (r.type === NBD_REP_ACK) return id;
    if (r.type === NBD_REP_ERR_UNSUP) return undefined;
    failOnError(NBD_OPT_SET_META_CONTEXT, r);
    if (r.type !== NBD_REP_META_CONTEXT) throw new NbdProtocolError('Unexpected reply type to NBD_OPT_SET_META_CONTEXT');
    const m = decodeMetaContext(r.data);
    if (m.name !== context || id !== undefined) throw new NbdProtocolError(`Server replied with unexpected meta context '${m.name}'`);
    id = m.id;
  }
  throw new NbdProtocolError(`server sent more than ${MAX_OPTION_REPLIES} replies to option ${optionName(NBD_OPT_SET_META_CONTEXT)}`);
}

function checkBlockSizes(d: ExportDescription): void {
  const pow2 = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(d.minBlock) || d.minBlock > 65536) throw new NbdProtocolError(`server minimum block size ${d.minBlock} is not a power of two`);
  if (!pow2(d.preferredBlock) || d.preferredBlock < d.minBlock) {
    throw new NbdProtocolError(`server preferred block size ${d.preferredBlock} is not valid`);
  }
  if (d.maxBlock !== 0 && (d.maxBlock < d.minBlock || d.maxBlock % d.minBlock !== 0)) {
    throw new NbdProtocolError(`server maximum block size ${d.maxBlock} is not valid`);
  }
}

/** NBD_OPT_GO; false when the server does not know GO (then EXPORT_NAME is used). */
async function go(w: HandshakeWire, exportName: string, d: ExportDescription): Promise<boolean> {
  await w.write(encodeOption(NBD_OPT_GO, encodeGoData(exportName, [NBD_INFO_BLOCK_SIZE])));
  let haveExport = false;
  for (let n = 0; n < MAX_OPTION_REPLIES; n++) {
    const r = await readOptionReply(w, NBD_OPT_GO);
    if (r.type === NBD_REP_ERR_UNSUP && n === 0) return false;
    failOnError(NBD_OPT_GO, r);
    if (r.type === NBD_REP_ACK) {
      if (!haveExport) throw new NbdProtocolError('broken server omitted NBD_INFO_EXPORT');
      checkBlockSizes(d);
      return true;
    }
    if (r.type !== NBD_REP_INFO) throw new NbdProtocolError(`unexpected reply type ${r.type} to option ${optionName(NBD_OPT_GO)}`);
    const info = decodeInfo(r.data);
    if (info.type === 'export') {
      d.size = info.size;
      d.flags = info.flags;
      haveExport = true;
    } else if (info.type === 'block-size') {
      d.minBlock = info.min;
      d.preferredBlock = info.preferred;
      d.maxBlock = info.max;
    }
  }
  throw new NbdProtocolError(`server sent more than ${MAX_OPTION_REPLIES} replies to option ${optionName(NBD_OPT_GO)}`);
}

/** NBD_OPT_EXPORT_NAME: the server answers with size and flags, or closes the connection. */
async function exportName(w: HandshakeWire, name: string, noZeroes: boolean, d: ExportDescription): Promise<void> {
  await w.write(encodeOption(NBD_OPT_EXPORT_NAME, encodeString(name)));
  let b: Buffer;
  try {
    b = await w.reader.read(10 + (noZeroes ? 0 : 124));
  } catch (e) {
    throw new NbdProtocolError(`Failed to read export length: ${(e as Error).message}`);
  }
  d.size = safeU64(b, 0, 'export size');
  d.flags = b.readUInt16BE(8);
}

function emptyDescription(): ExportDescription {
  return { size: 0, flags: 0, structuredReplies: false, minBlock: 1, preferredBlock: 4096, maxBlock: 0 };
}

export async function handshake(w: HandshakeWire, req: HandshakeRequest): Promise<ExportDescription> {
  let head: Buffer;
  try {
    head = await w.reader.read(16);
  } catch (e) {
    throw new NbdProtocolError(`Failed to read initial magic: ${(e as Error).message}`);
  }
  const magic = head.readBigUInt64BE(0);
  if (magic !== NBD_INIT_MAGIC) throw new NbdProtocolError(`Bad initial magic received: 0x${magic.toString(16).padStart(16, '0')}`);
  const d = emptyDescription();
  const second = head.readBigUInt64BE(8);
  if (second === NBD_CLISERV_MAGIC) {
    if (req.exportName !== '') throw new NbdProtocolError('Server does not support non-empty export names');
    const b = await w.reader.read(8 + 4 + 124);
    d.size = safeU64(b, 0, 'export size');
    d.flags = b.readUInt32BE(8) & 0xffff;
    return d;
  }
  if (second !== NBD_OPTS_MAGIC) throw new NbdProtocolError(`Bad server magic received: 0x${second.toString(16).padStart(16, '0')}`);
  const serverFlags = (await w.reader.read(2)).readUInt16BE(0);
  const fixed = (serverFlags & NBD_FLAG_FIXED_NEWSTYLE) !== 0;
  const noZeroes = (serverFlags & NBD_FLAG_NO_ZEROES) !== 0;
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE((fixed ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0), 0);
  await w.write(clientFlags);
  if (fixed) {
    d.structuredReplies = await simpleOption(w, NBD_OPT_STRUCTURED_REPLY);
    if (d.structuredReplies && req.metaContext !== undefined) {
      const id = await setMetaContext(w, req.exportName, req.metaContext);
      if (id !== undefined) d.metaContextId = id;
    }
    if (req.metaContextRequired && d.metaContextId === undefined) {
      throw missingContext();
    }
    if (await go(w, req.exportName, d)) return d;
  } else if (req.metaContextRequired) {
    throw missingContext();
  }
  await exportName(w, req.exportName, noZeroes, d);
  return d;
}

/** qemu 7.2 loses its own "x-dirty-bitmap not found" message on the way up and reports this. */
function missingContext(): VdiskError {
  return new VdiskError('invalid-argument', 'EINVAL', 'Could not open image: Invalid argument', { op: 'nbd', errno: 'EINVAL' });
}
