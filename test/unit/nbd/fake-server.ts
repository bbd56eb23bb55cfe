/**
 * An in-process NBD server for the client's tests: a correct fixed-newstyle server over a unix
 * socket, serving a Buffer, whose every step can be replaced to send what a hostile server sends.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MAGIC = {
  init: 0x4e42444d41474943n, opts: 0x49484156454f5054n, rep: 0x0003e889045565a9n,
  request: 0x25609513, simple: 0x67446698, structured: 0x668e33ef,
};

/** Exact reads from the client side of a connection. */
export class Peer {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  readonly sock: Socket;
  constructor(sock: Socket) {
    this.sock = sock;
    sock.on('data', (b) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error('client went away');
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  write(b: Uint8Array): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }
}

export function optionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0), length = data.length): Buffer {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(MAGIC.rep, 0);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(length, 16);
  return Buffer.concat([h, data]);
}

export function greeting(flags = 3): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(MAGIC.init, 0);
  b.writeBigUInt64BE(MAGIC.opts, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

export function structuredHeader(flags: number, type: number, handle: bigint, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(MAGIC.structured, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

export interface Request {
  flags: number;
  type: number;
  handle: bigint;
  offset: number;
  length: number;
}

export interface ServeOptions {
  /** Transmission flags (default: HAS_FLAGS|SEND_FLUSH|SEND_TRIM|SEND_WRITE_ZEROES). */
  flags?: number;
  /** NBD_INFO_BLOCK_SIZE to send, [min, preferred, max]. */
  blockSize?: [number, number, number];
  /** Offer base:allocation (context id 1). */
  metaContext?: boolean;
  /** Replace the reply to one request. Return true when handled. */
  reply?: (peer: Peer, req: Request, data: Buffer) => boolean | Promise<boolean>;
  /** Every request the server saw. */
  log?: Request[];
}

/** A correct option phase: ACK structured replies, base:allocation as id 1, GO with export info. */
export async function negotiate(peer: Peer, disk: Buffer, o: ServeOptions): Promise<void> {
  peer.write(greeting());
  await peer.read(4);
  for (;;) {
    const h = await peer.read(16);
    const opt = h.readUInt32BE(8);
    const data = await peer.read(h.readUInt32BE(12));
    if (opt === 8) peer.write(optionReply(8, 1));
    else if (opt === 10) {
      if (o.metaContext !== false) {
        const ctx = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from('base:allocation')]);
        peer.write(optionReply(10, 4, ctx));
      }
      peer.write(optionReply(10, 1));
    } else if (opt === 7) {
      const info = Buffer.alloc(12);
      info.writeUInt16BE(0, 0);
      info.writeBigUInt64BE(BigInt(disk.length), 2);
      info.writeUInt16BE(o.flags ?? (1 | 4 | 32 | 64), 10);
      peer.write(optionReply(7, 3, info));
      if (o.blockSize) {
        const bs = Buffer.alloc(14);
        bs.writeUInt16BE(3, 0);
        o.blockSize.forEach((v, i) => bs.writeUInt32BE(v, 2 + 4 * i));
        peer.write(optionReply(7, 3, bs));
      }
      peer.write(optionReply(7, 1));
      return;
    } else {
      void data;
      peer.write(optionReply(opt, 0x80000001));
    }
  }
}

/** Serve requests from `disk` with structured replies until the client disconnects. */
export async function transmit(peer: Peer, disk: Buffer, o: ServeOptions): Promise<void> {
  for (;;) {
    const h = await peer.read(28);
    const req: Request = {
      flags: h.readUInt16BE(4), type: h.readUInt16BE(6), handle: h.readBigUInt64BE(8),
      offset: Number(h.readBigUInt64BE(16)), length: h.readUInt32BE(24),
    };
    o.log?.push(req);
    const data = req.type === 1 ? await peer.read(req.length) : Buffer.alloc(0);
    if (req.type === 2) return;
    if (o.reply && (await o.reply(peer, req, data))) continue;
    if (req.type === 0) {
      const off = Buffer.alloc(8);
      off.writeBigUInt64BE(BigInt(req.offset));
      peer.write(Buffer.concat([structuredHeader(1, 1, req.handle, 8 + req.length), off, disk.subarray(req.offset, req.offset + req.length)]));
    } else if (req.type === 7) {
      const p = Buffer.alloc(12);
      p.writeUInt32BE(1, 0);
      p.writeUInt32BE(req.length, 4);
      p.writeUInt32BE(0, 8);
      peer.write(Buffer.concat([structuredHeader(1, 5, req.handle, 12), p]));
    } else {
      if (req.type === 1) data.copy(disk, req.offset);
      if (req.type === 6) disk.fill(0, req.offset, req.offset + req.length);
      peer.write(structuredHeader(1, 0, req.handle, 0));
    }
  }
}

export interface FakeServer {
  path: string;
  close(): Promise<void>;
}

/** Listen on a fresh unix socket; `session` runs once per connection. */
export async function fakeServer(session: (peer: Peer) => Promise<void>): Promise<FakeServer> {
  const dir = mkdtempSync(join(tmpdir(), 'vdisk-nbd-'));
  const path = join(dir, 's.sock');
  const socks = new Set<Socket>();
  const server: Server = createServer((sock) => {
    socks.add(sock);
    const peer = new Peer(sock);
    session(peer).catch(() => undefined).finally(() => sock.end());
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A well-behaved server over `disk`. */
export function goodServer(disk: Buffer, o: ServeOptions = {}): Promise<FakeServer> {
  return fakeServer(async (peer) => {
    await negotiate(peer, disk, o);
    await transmit(peer, disk, o);
  });
}
