/**
 * qemu-img's stdout as C stdio keeps it: line by line on a terminal, otherwise in blocks of 4096
 * bytes (a pipe's or a file's block size) and the rest at exit. With stderr unbuffered, a message
 * qemu-img prints on stderr after some stdout lines comes out before them when both go to one
 * pipe (iotests 074, map over a failing image); commands whose output interleaves with errors
 * write through this to keep that order.
 */
import type { Cli } from './context.js';

const STDIO_BLOCK_BYTES = 4096;

export class StdoutStream {
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly cli: Cli) {}

  write(s: string): void {
    if (this.cli.isTTY) {
      this.cli.out(s);
      return;
    }
    const b = Buffer.from(s, 'utf8');
    this.parts.push(b);
    this.bytes += b.length;
    if (this.bytes < STDIO_BLOCK_BYTES) return;
    const all = Buffer.concat(this.parts);
    let cut = all.length - (all.length % STDIO_BLOCK_BYTES);
    // never split a UTF-8 sequence (stdio would; the bytes would still arrive in order)
    while (cut > 0 && cut < all.length && (all[cut]! & 0xc0) === 0x80) cut--;
    this.cli.out(all.subarray(0, cut).toString('utf8'));
    const rest = all.subarray(cut);
    this.parts = rest.length > 0 ? [rest] : [];
    this.bytes = rest.length;
  }

  /** What exit would flush. */
  end(): void {
    if (this.bytes > 0) this.cli.out(Buffer.concat(this.parts).toString('utf8'));
    this.parts = [];
    this.bytes = 0;
  }
}
