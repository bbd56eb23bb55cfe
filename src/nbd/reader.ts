/**
 * Exact-length reads from a stream socket. NBD is a sequence of fixed headers and length-prefixed
 * payloads, so the client only ever asks "the next n bytes" (into a fresh buffer or straight into
 * the caller's read buffer).
 *
 * The socket reads through `onread`: while a read is waiting, the kernel is handed exactly the
 * rest of the waiting buffer, so a header is read on its own and a payload lands straight in the
 * caller's buffer (a 2 MiB read reply is never copied in JavaScript, and no bytes of it pass
 * through a scratch buffer). Only bytes that arrive while nothing waits go to a scratch buffer and
 * are queued. Unread bytes are bounded: past MAX_UNREAD_BYTES reading stops until the client
 * consumes them, so a server that streams garbage cannot fill memory.
 */
import type { Socket } from 'node:net';
import { MAX_UNREAD_BYTES } from './constants.js';

/** Bytes the kernel may hand over per read when no read is waiting. */
const SCRATCH_BYTES = 64 * 1024;
/**
 * Bytes read when a read has just been satisfied: Node asks for the next buffer before the reader's
 * owner has run and asked for its next bytes, so the kernel gets room for a reply header and a data
 * chunk's offset only, not for the start of the payload that follows (which would be copied).
 */
const BETWEEN_READS_BYTES = 32;

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
  private socket: Socket | undefined;
  private paused = false;
  private scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly small = this.scratch.subarray(0, BETWEEN_READS_BYTES);
  /** The waiter whose buffer the kernel was last given to read into. */
  private lent: Waiter | undefined;
  /** The last callback completed a read (its owner will ask for more as soon as it runs). */
  private satisfied = false;

  constructor(private readonly limit = MAX_UNREAD_BYTES) {}

  /** The `onread` option of net.createConnection for this reader. */
  get onread(): { buffer: () => Uint8Array; callback: (n: number, b: Uint8Array) => boolean } {
    return { buffer: () => this.nextBuffer(), callback: (n, b) => this.received(n, b) };
  }

  /** Listen for the end of the stream (after net.createConnection with `onread`). */
  attach(socket: Socket): void {
    this.socket = socket;
    const eof = (): void => this.end(new StreamClosedError(undefined, 'Unexpected end-of-file before all data were read'));
    socket.on('end', eof);
    socket.on('close', eof);
    socket.on('error', (e: NodeJS.ErrnoException) => this.end(new StreamClosedError(e.code, e.message)));
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

  get isPaused(): boolean {
    return this.paused;
  }

  private nextBuffer(): Uint8Array {
    const w = this.waiter;
    // a few more small reads (a header, then its payload) cost less than copying every payload's
    // first scratch-full out of the scratch buffer
    if (w && this.chunks.length === 0) {
      this.lent = w;
      return w.filled === 0 ? w.dest : w.dest.subarray(w.filled);
    }
    this.lent = undefined;
    const between = this.satisfied;
    this.satisfied = false;
    return between ? this.small : this.scratch;
  }

  private received(n: number, b: Uint8Array): boolean {
    const w = this.waiter;
    if (this.lent && this.lent === w && b.buffer === w.dest.buffer) {
      // the kernel wrote into the waiting buffer itself
      w.filled += n;
    } else {
      const copy = Buffer.from(b.subarray(0, n));
      this.chunks.push(copy);
      this.buffered += n;
      if (w) w.filled = this.drain(w.dest, w.filled);
    }
    this.lent = undefined;
    if (w && w.filled === w.dest.length) {
      this.waiter = undefined;
      this.satisfied = true;
      w.resolve();
    }
    if (this.buffered >= this.limit) {
      this.paused = true;
      return false;
    }
    return true;
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
    if (this.paused && this.buffered < this.limit) {
      this.paused = false;
      this.socket?.resume();
    }
    return at;
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
