/**
 * qemu-img's stdout as C stdio keeps it: line by line on a terminal, otherwise in blocks of 4096
 * bytes (a pipe's or a file's block size) and the rest at exit. With stderr unbuffered, a message
 * qemu-img prints on stderr after some stdout lines comes out before them when both go to one
 * pipe (iotests 074, map over a failing image); commands whose output interleaves with errors
 * write through this to keep that order.
 *
 * Text is encoded straight into a large slab and each completed block goes out as a view of it,
 * so a long output (map of a fragmented image: megabytes in ~100-byte entries) costs one encode
 * per entry and one write per block, and no copies. Bytes that went out are never written over
 * (a pipe may still hold the view): text goes after them, and a full slab is replaced, not reused.
 */
import { TextDecoder } from 'node:util';
import type { Cli } from './context.js';

const STDIO_BLOCK_BYTES = 4096;
/** Bytes of one slab: many blocks, so a new one (and the copy of a partial block) is rare. */
const SLAB_BYTES = 1 << 18;

export class StdoutStream {
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  /** First byte not yet written out. */
  private start = 0;
  /** End of the text held. */
  private pos = 0;
  private blocked = false;
  private decoder: TextDecoder | undefined;

  /**
   * `heldBytes`: complete blocks may wait until this many bytes are held, and go out in one write
   * (a long output costs a write per block otherwise); a caller that uses it calls
   * `flushBlocks()` before it prints an error, so the order stays stdio's.
   */
  constructor(private readonly cli: Cli, private readonly heldBytes = 0) {}

  write(s: string): void {
    if (this.cli.isTTY) {
      this.cli.out(s);
      return;
    }
    // UTF-8 takes at most 3 bytes per UTF-16 unit
    if (this.pos + 3 * s.length > this.slab.length) this.newSlab(3 * s.length);
    this.pos += this.slab.write(s, this.pos, 'utf8');
    if (this.pos - this.start > this.heldBytes) this.flushBlocks();
  }

  /** Write out the complete blocks held (what stdio would have written by now). */
  flushBlocks(): void {
    const full = this.pos - this.start - ((this.pos - this.start) % STDIO_BLOCK_BYTES);
    if (full > 0) {
      this.emit(this.slab.subarray(this.start, this.start + full));
      this.start += full;
    }
  }

  /**
   * For text encoded in place: the slab, with room for `n` more bytes from `at()`; write them
   * there and call `commit(end)`. UTF-8 only, as write() would encode it.
   */
  reserve(n: number): Buffer {
    if (this.pos + n > this.slab.length) this.newSlab(n);
    return this.slab;
  }

  /** Where reserve()'s bytes go. */
  at(): number {
    return this.pos;
  }

  /** The bytes from at() to `end` of the slab reserve() returned are text now (as write() of them). */
  commit(end: number): void {
    if (this.cli.isTTY) {
      // a terminal gets what it is given at once, as write() does
      this.decoder ??= new TextDecoder('utf-8');
      this.cli.out(this.decoder.decode(this.slab.subarray(this.pos, end), { stream: true }));
      return;
    }
    this.pos = end;
    if (this.pos - this.start > this.heldBytes) this.flushBlocks();
  }

  /** stdout holds more than it wants: wait for `drain()` before writing much more. */
  get mustDrain(): boolean {
    return this.blocked;
  }

  async drain(): Promise<void> {
    if (!this.blocked) return;
    this.blocked = false;
    await this.cli.drain?.();
  }

  /** What exit would flush. */
  end(): void {
    if (this.pos > this.start) this.emit(this.slab.subarray(this.start, this.pos));
    this.start = this.pos;
    if (this.decoder) {
      const rest = this.decoder.decode();
      if (rest) this.cli.out(rest);
    }
  }

  /** Move the partial block to a fresh slab that has room for `need` more bytes. */
  private newSlab(need: number): void {
    const held = this.slab.subarray(this.start, this.pos);
    const next = Buffer.allocUnsafe(Math.max(SLAB_BYTES, held.length + need));
    held.copy(next, 0);
    this.slab = next;
    this.pos = held.length;
    this.start = 0;
  }

  private emit(b: Uint8Array): void {
    if (this.cli.outBytes) {
      if (!this.cli.outBytes(b)) this.blocked = true;
      return;
    }
    // text only: a block may end inside a UTF-8 sequence, which the decoder keeps for the next one
    this.decoder ??= new TextDecoder('utf-8');
    this.cli.out(this.decoder.decode(b, { stream: true }));
  }
}
