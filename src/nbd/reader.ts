/**
 * Exact-length reads from a stream socket. NBD is a sequence of fixed headers and length-prefixed
 * payloads, so the client only ever asks "the next n bytes" (into a fresh buffer or straight into
 * the caller's read buffer). Unread bytes are bounded: past MAX_UNREAD_BYTES the socket is paused
 * until the client consumes them, so a server that streams garbage cannot fill memory.
 */
import type { Socket } from 'node:net';
import { MAX_UNREAD_BYTES } from './constants.js';

export class StreamClosedError extends Error {
  constructor(readonly errno: string | undefined, message: string) {
    super(message);
  }
}

interface Waiter {
  dest: Uint8Array;
  filled: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: Waiter | undefined;
  private ended: StreamClosedError | undefined;

  constructor(private readonly socket: Socket, private readonly limit = MAX_UNREAD_BYTES) {
    socket.on('data', (b: Buffer) => this.push(b));
    socket.on('end', () => this.end(new StreamClosedError(undefined, 'Unexpected end-of-file before all data were read')));
    socket.on('error', (e: NodeJS.ErrnoException) => this.end(new StreamClosedError(e.code, e.message)));
    socket.on('close', () => this.end(new StreamClosedError(undefined, 'Unexpected end-of-file before all data were read')));
  }

  /** The next `n` bytes in a new buffer. */
  async read(n: number): Promise<Buffer> {
    const b = Buffer.allocUnsafe(n);
    await this.readInto(b);
    return b;
  }

  /** Fill `dest` with the next dest.length bytes. */
  readInto(dest: Uint8Array): Promise<void> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent reads'));
    const filled = this.drain(dest, 0);
    if (filled === dest.length) return Promise.resolve();
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiter = { dest, filled, resolve, reject };
    });
  }

  /** Bytes that arrived and are not read yet (a test hook for the memory bound). */
  get pending(): number {
    return this.buffered;
  }

  private drain(dest: Uint8Array, at: number): number {
    while (at < dest.length && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const n = Math.min(c.length, dest.length - at);
      dest.set(n === c.length ? c : c.subarray(0, n), at);
      at += n;
      this.buffered -= n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    if (this.buffered < this.limit && this.socket.isPaused()) this.socket.resume();
    return at;
  }

  private push(b: Buffer): void {
    const w = this.waiter;
    if (w && this.chunks.length === 0) {
      // straight into the waiting buffer: large read replies are copied once
      const n = Math.min(b.length, w.dest.length - w.filled);
      w.dest.set(n === b.length ? b : b.subarray(0, n), w.filled);
      w.filled += n;
      if (n < b.length) {
        this.chunks.push(b.subarray(n));
        this.buffered += b.length - n;
      }
    } else {
      this.chunks.push(b);
      this.buffered += b.length;
      if (w) w.filled = this.drain(w.dest, w.filled);
    }
    if (w && w.filled === w.dest.length) {
      this.waiter = undefined;
      w.resolve();
    }
    if (this.buffered >= this.limit) this.socket.pause();
  }

  private end(e: StreamClosedError): void {
    if (this.ended) return;
    this.ended = e;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      w.reject(e);
    }
  }
}
