/**
 * The transmission phase on one connection: requests go out as they come (up to MAX_IN_FLIGHT),
 * one receiver loop matches replies to requests by handle, simple or structured. A reply that
 * breaks the protocol fails every request on the connection and closes it: after garbage nothing
 * on the stream can be trusted.
 */
import type { Socket } from 'node:net';
import { VdiskError } from '../block/errors.js';
import {
  MAX_BLOCK_STATUS_CHUNK_BYTES, MAX_ERROR_CHUNK_BYTES, MAX_IN_FLIGHT, NBD_CMD_BLOCK_STATUS, NBD_CMD_DISC, NBD_CMD_READ,
  NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_TYPE_ERROR, NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE, NBD_REPLY_TYPE_OFFSET_DATA, NBD_REPLY_TYPE_OFFSET_HOLE, NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './constants.js';
import { NbdProtocolError, replyError } from './errors.js';
import type { ExportDescription } from './handshake.js';
import type { SocketReader } from './reader.js';
import {
  type BlockDescriptor, SIMPLE_REPLY_BYTES, STRUCTURED_REPLY_BYTES, decodeBlockStatus, decodeErrorChunk, encodeRequest,
  safeU64,
} from './wire.js';

interface Pending {
  type: number;
  offset: number;
  length: number;
  /** Where a read's data goes. */
  buf?: Uint8Array;
  extents?: BlockDescriptor[];
  error?: VdiskError;
  resolve: () => void;
  reject: (e: Error) => void;
}

const OP_NAMES: Record<number, string> = { 0: 'read', 1: 'write', 3: 'flush', 4: 'trim', 6: 'write-zeroes', 7: 'block-status' };

/** Handles are numbers below 2^32 on the wire's 64 bits (a reply naming any other is unknown). */
const HANDLE_WRAP = 0x100000000;

export class NbdConnection {
  private nextHandle = 1;
  private readonly pending = new Map<number, Pending>();
  private inFlight = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private broken: VdiskError | undefined;
  private closing = false;
  /** Reply headers are read into these, one at a time: the receiver decodes each before the next read. */
  private readonly header = Buffer.allocUnsafe(STRUCTURED_REPLY_BYTES + 8);
  private readonly simpleHeader = this.header.subarray(0, SIMPLE_REPLY_BYTES);
  private readonly headerRest = this.header.subarray(SIMPLE_REPLY_BYTES, STRUCTURED_REPLY_BYTES);
  /** The offset field in front of a data chunk's bytes. */
  private readonly dataOffset = this.header.subarray(STRUCTURED_REPLY_BYTES, STRUCTURED_REPLY_BYTES + 8);

  constructor(private readonly socket: Socket, private readonly reader: SocketReader, readonly desc: ExportDescription) {
    void this.receiveLoop();
  }

  /** Requests waiting for a reply (the client picks the least loaded connection). */
  get load(): number {
    return this.inFlight + this.slotWaiters.length;
  }

  async request(type: number, flags: number, offset: number, length: number, data?: Uint8Array, buf?: Uint8Array): Promise<BlockDescriptor[] | undefined> {
    if (this.broken) throw this.broken;
    if (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => this.slotWaiters.push(r));
    if (this.broken) throw this.broken;
    this.inFlight++;
    const handle = this.nextHandle;
    this.nextHandle = this.nextHandle + 1 === HANDLE_WRAP ? 1 : this.nextHandle + 1;
    try {
      return await new Promise<BlockDescriptor[] | undefined>((resolve, reject) => {
        const p: Pending = { type, offset, length, resolve: () => resolve(p.extents), reject };
        if (buf) p.buf = buf;
        this.pending.set(handle, p);
        this.socket.write(encodeRequest(flags, type, handle, offset, length));
        if (data) this.socket.write(data);
      });
    } finally {
      this.inFlight--;
      this.slotWaiters.shift()?.();
    }
  }

  /** NBD_CMD_DISC and close; requests still in flight are failed. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (!this.broken && !this.socket.destroyed) {
      await new Promise<void>((r) => this.socket.end(encodeRequest(0, NBD_CMD_DISC, this.nextHandle, 0, 0), () => r()));
    }
    this.socket.destroy();
    this.fail(new VdiskError('io', 'ESHUTDOWN', 'Connection closed', { op: 'nbd', errno: 'ESHUTDOWN' }));
  }

  private fail(e: VdiskError): void {
    if (!this.broken) this.broken = e;
    for (const p of this.pending.values()) p.reject(this.broken);
    this.pending.clear();
    for (const w of this.slotWaiters.splice(0)) w();
  }

  private async receiveLoop(): Promise<void> {
    try {
      for (;;) {
        const h = this.header;
        await this.reader.readInto(this.simpleHeader);
        const magic = h.readUInt32BE(0);
        if (magic === NBD_SIMPLE_REPLY_MAGIC) await this.simpleReply(h);
        else if (magic === NBD_STRUCTURED_REPLY_MAGIC && this.desc.structuredReplies) {
          await this.reader.readInto(this.headerRest);
          await this.structuredChunk(h);
        } else throw new NbdProtocolError(`Protocol error: invalid reply magic 0x${magic.toString(16)}`);
      }
    } catch (e) {
      if (this.closing && this.pending.size === 0) return;
      const err = e instanceof VdiskError ? e
        : new VdiskError('io', 'EIO', `Connection to the NBD server lost: ${(e as Error).message}`, { op: 'nbd', errno: 'EIO' }, e);
      this.socket.destroy();
      this.fail(err);
    }
  }

  private take(handle: number): Pending {
    const p = this.pending.get(handle);
    if (!p) throw new NbdProtocolError(`Protocol error: reply for unknown handle ${this.header.readBigUInt64BE(8)}`);
    return p;
  }

  private async simpleReply(h: Buffer): Promise<void> {
    const handle = replyHandle(h);
    const p = this.take(handle);
    this.pending.delete(handle);
    const error = h.readUInt32BE(4);
    if (error !== 0) return p.reject(replyError(error, OP_NAMES[p.type] ?? 'nbd', p.offset));
    if (p.type === NBD_CMD_BLOCK_STATUS) throw new NbdProtocolError('Protocol error: simple reply to a block status request');
    if (p.type === NBD_CMD_READ && p.buf) await this.reader.readInto(p.buf);
    p.resolve();
  }

  private async structuredChunk(h: Buffer): Promise<void> {
    const flags = h.readUInt16BE(4);
    const type = h.readUInt16BE(6);
    const handle = replyHandle(h);
    const length = h.readUInt32BE(16);
    const p = this.take(handle);
    switch (type) {
      case NBD_REPLY_TYPE_NONE:
        if (length !== 0 || !(flags & NBD_REPLY_FLAG_DONE)) throw new NbdProtocolError('Protocol error: invalid NBD_REPLY_TYPE_NONE chunk');
        break;
      case NBD_REPLY_TYPE_OFFSET_DATA:
        await this.offsetData(p, length);
        break;
      case NBD_REPLY_TYPE_OFFSET_HOLE:
        await this.offsetHole(p, length);
        break;
      case NBD_REPLY_TYPE_BLOCK_STATUS:
        await this.blockStatusChunk(p, length);
        break;
      case NBD_REPLY_TYPE_ERROR:
      case NBD_REPLY_TYPE_ERROR_OFFSET: {
        if (length > MAX_ERROR_CHUNK_BYTES) throw new NbdProtocolError(`Protocol error: error chunk too long (${length} bytes)`);
        const c = decodeErrorChunk(await this.reader.read(length), type === NBD_REPLY_TYPE_ERROR_OFFSET);
        if (c.error === 0) throw new NbdProtocolError('Protocol error: server sent an error chunk with error 0');
        p.error ??= replyError(c.error, OP_NAMES[p.type] ?? 'nbd', p.offset);
        break;
      }
      default:
        throw new NbdProtocolError(`Protocol error: unexpected structured reply chunk type ${type}`);
    }
    if (flags & NBD_REPLY_FLAG_DONE) {
      this.pending.delete(handle);
      if (p.error) p.reject(p.error);
      else if (p.type === NBD_CMD_BLOCK_STATUS && !p.extents) {
        const e = new NbdProtocolError('Protocol error: block status reply without status chunk');
        p.reject(e);
        throw e;
      } else p.resolve();
    }
  }

  private async offsetData(p: Pending, length: number): Promise<void> {
    if (p.type !== NBD_CMD_READ || !p.buf || length < 9 || length - 8 > p.length) {
      throw new NbdProtocolError('Protocol error: invalid NBD_REPLY_TYPE_OFFSET_DATA chunk');
    }
    await this.reader.readInto(this.dataOffset);
    const at = safeU64(this.dataOffset, 0, 'data offset') - p.offset;
    if (at < 0 || at + length - 8 > p.length) throw new NbdProtocolError('Protocol error: data chunk outside the request');
    await this.reader.readInto(p.buf.subarray(at, at + length - 8));
  }

  private async offsetHole(p: Pending, length: number): Promise<void> {
    if (p.type !== NBD_CMD_READ || !p.buf || length !== 12) throw new NbdProtocolError('Protocol error: invalid NBD_REPLY_TYPE_OFFSET_HOLE chunk');
    const b = await this.reader.read(12);
    const at = safeU64(b, 0, 'hole offset') - p.offset;
    const n = b.readUInt32BE(8);
    if (at < 0 || n === 0 || at + n > p.length) throw new NbdProtocolError('Protocol error: hole chunk outside the request');
    p.buf.fill(0, at, at + n);
  }

  private async blockStatusChunk(p: Pending, length: number): Promise<void> {
    if (p.type !== NBD_CMD_BLOCK_STATUS || length > MAX_BLOCK_STATUS_CHUNK_BYTES) {
      throw new NbdProtocolError(`Protocol error: invalid NBD_REPLY_TYPE_BLOCK_STATUS chunk (${length} bytes)`);
    }
    const bs = decodeBlockStatus(await this.reader.read(length));
    if (bs.contextId !== this.desc.metaContextId || p.extents) {
      throw new NbdProtocolError('Protocol error: block status reply for an unexpected meta context');
    }
    if (bs.extents.some((e) => e.length === 0)) throw new NbdProtocolError('Protocol error: block status extent of length 0');
    p.extents = bs.extents;
  }
}

/** The handle of a reply header; a value the client never sends (2^32 and up) matches no request. */
function replyHandle(h: Buffer): number {
  return h.readUInt32BE(8) === 0 ? h.readUInt32BE(12) : -1;
}
