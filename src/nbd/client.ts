/**
 * An NBD client: connects, negotiates (handshake.ts), and runs requests over one connection or,
 * when a read-only server advertises NBD_FLAG_CAN_MULTI_CONN and the client is kept busy, over up
 * to MAX_CONNECTIONS. Requests larger than the server's maximum are split; block status replies
 * are kept so a walk over the disk asks once per reply rather than once per extent.
 */
import type { Socket } from 'node:net';
import { VdiskError, strerror } from '../block/errors.js';
import type { NbdTarget } from './address.js';
import {
  BASE_ALLOCATION, MAX_CONNECTIONS, MAX_NBD_REQUEST_BYTES, NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_NO_HOLE, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE, NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_FAST_ZERO, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './constants.js';
import { handshake, type ExportDescription, type HandshakeRequest } from './handshake.js';
import { SocketReader } from './reader.js';
import { NbdConnection } from './transmission.js';
import type { BlockDescriptor } from './wire.js';

/** Largest block-status or zero/trim request (lengths are 32-bit on the wire). */
const MAX_NON_DATA_REQUEST = 0x80000000;

/** Requests waiting on the busiest connection before a multi-conn server gets more connections. */
const MULTI_CONN_LOAD = 4;

const EAI_MESSAGES: Record<string, string> = {
  ENOTFOUND: 'Name or service not known',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EAI_FAIL: 'Non-recoverable failure in name resolution',
};

function addressText(t: NbdTarget): string {
  return t.server.type === 'unix' ? t.server.path : `${t.server.host}:${t.server.port}`;
}

async function openSocket(t: NbdTarget, reader: SocketReader): Promise<Socket> {
  // node:net and node:dns/promises (8 builtin modules with their dependencies) load on the first
  // connection: imported at the top, a one-file bundle would load them for every command
  const { createConnection } = process.getBuiltinModule('node:net');
  const s = t.server;
  const where = addressText(t);
  let opts: { path: string } | { host: string; port: number };
  if (s.type === 'unix') {
    opts = { path: s.path };
  } else {
    if (!/^\d+$/.test(s.port) || Number(s.port) > 65535) {
      throw new VdiskError('invalid-argument', 'EAI_SERVICE', `address resolution failed for ${where}: Servname not supported for ai_socktype`);
    }
    try {
      await process.getBuiltinModule('node:dns/promises').lookup(s.host);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? 'ENOTFOUND';
      throw new VdiskError('not-found', 'EAI_NONAME', `address resolution failed for ${where}: ${EAI_MESSAGES[code] ?? EAI_MESSAGES['ENOTFOUND']!}`);
    }
    opts = { host: s.host, port: Number(s.port) };
  }
  return new Promise((resolve, reject) => {
    const sock = createConnection({ ...opts, onread: reader.onread });
    reader.attach(sock);
    const onError = (e: NodeJS.ErrnoException): void => {
      const errno = e.code && /^E[A-Z]+$/.test(e.code) ? e.code : 'ECONNREFUSED';
      reject(new VdiskError('io', errno, `Failed to connect to '${where}': ${strerror(errno)}`, { errno }));
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      sock.setNoDelay(true);
      resolve(sock);
    });
  });
}

async function connectOne(t: NbdTarget, req: HandshakeRequest, track?: Set<Socket>): Promise<NbdConnection> {
  const reader = new SocketReader();
  const sock = await openSocket(t, reader);
  track?.add(sock);
  // errors surface through the reader; this keeps a late 'error' event from being unhandled
  sock.on('error', () => undefined);
  try {
    const desc = await handshake({
      reader,
      write: (b) => new Promise<void>((res, rej) => sock.write(b, (e) => (e ? rej(e) : res()))),
    }, req);
    return new NbdConnection(sock, reader, desc);
  } catch (e) {
    sock.destroy();
    throw e;
  } finally {
    track?.delete(sock);
  }
}

export interface NbdOpenOptions {
  readOnly: boolean;
}

export interface ZeroOptions {
  /** The range may become a hole (without it: NBD_CMD_FLAG_NO_HOLE). */
  mayTrim: boolean;
  /** Fail with ENOTSUP rather than write zeroes slowly (NBD_CMD_FLAG_FAST_ZERO). */
  fast?: boolean;
}

export class NbdClient {
  private readonly conns: NbdConnection[];
  private extra = false;
  /** Sockets of extra connections still in their handshake (destroyed by close). */
  private readonly connecting = new Set<Socket>();
  private closed = false;
  /** The descriptors of the last block status reply from `start`, with the end offset of each. */
  private status: { start: number; extents: BlockDescriptor[]; ends: number[] } | undefined;

  private constructor(private readonly target: NbdTarget, private readonly req: HandshakeRequest, first: NbdConnection, readonly readOnly: boolean) {
    this.conns = [first];
  }

  static async connect(target: NbdTarget, opts: NbdOpenOptions): Promise<NbdClient> {
    const req: HandshakeRequest = { exportName: target.exportName, metaContext: target.dirtyBitmap ?? BASE_ALLOCATION };
    if (target.dirtyBitmap !== undefined) req.metaContextRequired = true;
    const first = await connectOne(target, req);
    const d = first.desc;
    if (!opts.readOnly && d.flags & NBD_FLAG_READ_ONLY) {
      await first.close();
      throw new VdiskError('permission', 'EPERM', 'Could not open image: Permission denied', { errno: 'EPERM' });
    }
    return new NbdClient(target, req, first, opts.readOnly || (d.flags & NBD_FLAG_READ_ONLY) !== 0);
  }

  get desc(): ExportDescription {
    return this.conns[0]!.desc;
  }

  get size(): number {
    return this.desc.size;
  }

  /** Largest data request: the server's maximum, at most MAX_NBD_REQUEST_BYTES. */
  get maxRequest(): number {
    const max = this.desc.maxBlock;
    return max > 0 ? Math.min(max, MAX_NBD_REQUEST_BYTES) : MAX_NBD_REQUEST_BYTES;
  }

  get minBlock(): number {
    return this.desc.minBlock;
  }

  has(flag: number): boolean {
    return (this.desc.flags & flag) !== 0;
  }

  /** The least loaded connection; a busy read-only client opens more when the server allows it. */
  private conn(): NbdConnection {
    let best = this.conns[0]!;
    for (const c of this.conns) if (c.load < best.load) best = c;
    if (best.load >= MULTI_CONN_LOAD && this.readOnly && this.has(NBD_FLAG_CAN_MULTI_CONN) && !this.extra && !this.closed) {
      this.extra = true;
      this.openExtra();
    }
    return best;
  }

  private openExtra(): void {
    // never awaited by a request: a server that accepts no more clients just leaves these pending
    for (let i = this.conns.length; i < MAX_CONNECTIONS; i++) {
      void connectOne(this.target, this.req, this.connecting).then((c) => {
        if (this.closed) void c.close();
        else if (c.desc.size === this.size && c.desc.metaContextId === this.desc.metaContextId) this.conns.push(c);
        else void c.close();
      }, () => undefined);
    }
  }

  /** Split [offset, offset+length) into pieces of at most `max` and run them concurrently. */
  private async split(offset: number, length: number, max: number, fn: (off: number, len: number, at: number) => Promise<unknown>): Promise<void> {
    if (length <= max) {
      await fn(offset, length, 0);
      return;
    }
    const parts: Promise<unknown>[] = [];
    for (let at = 0; at < length; at += max) parts.push(fn(offset + at, Math.min(max, length - at), at));
    await Promise.all(parts);
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    await this.split(offset, buf.length, this.maxRequest, (off, len, at) =>
      this.conn().request(NBD_CMD_READ, 0, off, len, undefined, buf.subarray(at, at + len)));
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.status = undefined;
    await this.split(offset, buf.length, this.maxRequest, (off, len, at) =>
      this.conn().request(NBD_CMD_WRITE, 0, off, len, buf.subarray(at, at + len)));
  }

  /** False when the server cannot do it (no NBD_FLAG_SEND_WRITE_ZEROES, or no fast zero when asked). */
  async writeZeroes(offset: number, length: number, o: ZeroOptions): Promise<boolean> {
    if (!this.has(NBD_FLAG_SEND_WRITE_ZEROES) || (o.fast && !this.has(NBD_FLAG_SEND_FAST_ZERO))) return false;
    this.status = undefined;
    const flags = (o.mayTrim ? 0 : NBD_CMD_FLAG_NO_HOLE) | (o.fast ? NBD_CMD_FLAG_FAST_ZERO : 0);
    await this.split(offset, length, this.nonDataMax(), (off, len) => this.conn().request(NBD_CMD_WRITE_ZEROES, flags, off, len));
    return true;
  }

  async trim(offset: number, length: number): Promise<void> {
    if (!this.has(NBD_FLAG_SEND_TRIM)) return;
    this.status = undefined;
    await this.split(offset, length, this.nonDataMax(), (off, len) => this.conn().request(NBD_CMD_TRIM, 0, off, len));
  }

  async flush(): Promise<void> {
    if (!this.has(NBD_FLAG_SEND_FLUSH)) return;
    // with multi-conn a flush on one connection covers writes completed on all of them
    await Promise.all(this.conns.map((c) => c.request(NBD_CMD_FLUSH, 0, 0, 0)));
  }

  private nonDataMax(): number {
    return MAX_NON_DATA_REQUEST - this.minBlock;
  }

  /**
   * The status of the run at `offset` (at most `length` bytes): NBD_STATE_* bits of the negotiated
   * context, 0 ("data") when the server has no block status.
   */
  async blockStatus(offset: number, length: number): Promise<BlockDescriptor> {
    if (this.desc.metaContextId === undefined) return { length, flags: 0 };
    let d = this.fromCache(offset, length);
    if (!d) {
      const len = Math.min(length, this.nonDataMax());
      const extents = await this.conn().request(NBD_CMD_BLOCK_STATUS, 0, offset, len);
      if (!extents || extents.length === 0) throw new VdiskError('io', 'NBD_PROTOCOL', 'Protocol error: block status reply without extents');
      const ends: number[] = [];
      let end = offset;
      for (const e of extents) ends.push(end += e.length);
      this.status = { start: offset, extents, ends };
      d = this.fromCache(offset, length) ?? { length, flags: extents[0]!.flags };
    }
    return this.alignToMinBlock(offset, d);
  }

  /**
   * Runs end on the server's minimum block, as qemu's client makes them: a run is cut back to a
   * block boundary, and a block split between runs is data unless every part is a hole, zero
   * only if every part is (a 1000-byte file served in 512-byte blocks maps as 1024 bytes of data).
   */
  private alignToMinBlock(offset: number, d: BlockDescriptor): BlockDescriptor {
    const min = this.minBlock;
    const end = offset + d.length;
    if (min <= 1 || end % min === 0 || end >= this.size) return d;
    const down = Math.floor(end / min) * min;
    if (down > offset) return { length: down - offset, flags: d.flags };
    const up = Math.min(this.size, Math.ceil(end / min) * min);
    let flags = d.flags;
    for (let at = end; at < up;) {
      const next = this.fromCache(at, up - at) ?? { length: up - at, flags: 0 };
      flags &= next.flags;
      at += next.length;
    }
    return { length: up - offset, flags };
  }

  /** A walk asks once per descriptor of a reply that may hold thousands: binary search, not a scan. */
  private fromCache(offset: number, length: number): BlockDescriptor | undefined {
    const s = this.status;
    if (!s || offset < s.start || offset >= s.ends[s.ends.length - 1]!) return undefined;
    let lo = 0;
    let hi = s.ends.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s.ends[mid]! > offset) hi = mid;
      else lo = mid + 1;
    }
    return { length: Math.min(s.ends[lo]! - offset, length), flags: s.extents[lo]!.flags };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.connecting) s.destroy();
    await Promise.all(this.conns.map((c) => c.close()));
  }
}
