/**
 * L2 tables for a check, read several at a time: an L1 table usually names its L2 tables in file
 * order, one after the other (qemu allocates them so, and preallocated images are laid out so),
 * and with small clusters one request per table is most of a check's time (iotest 044: a million
 * 512-byte tables). The walk asks for the table at an L1 index; the reader reads the run of
 * contiguous tables the following L1 entries name, up to TABLE_RUN_BYTES, in one request, and
 * hands out views of it. Repairs change a table through its view, so the buffer stays what the
 * file holds.
 */
import type { Protocol } from '../../protocols/types.js';
import { readMeta } from './l2-cache.js';

/** Most bytes of contiguous tables read at once (bounded memory whatever the image). */
export const TABLE_RUN_BYTES = 1 << 20;
const TWO32 = 0x100000000;

export class L2TableReader {
  private readonly buf: Uint8Array;
  private start = -1;
  private end = -1;

  constructor(
    private readonly proto: Protocol,
    private readonly cs: number,
    /** The L1 table being walked (big-endian entries). */
    private readonly l1: DataView,
    private readonly entries: number,
    private readonly fileLen: number,
  ) {
    this.buf = new Uint8Array(Math.max(cs, Math.floor(TABLE_RUN_BYTES / cs) * cs));
  }

  /** Host offset of L1 entry `i` when it is a JS number, else -1. */
  private offsetAt(i: number): number {
    const hi = this.l1.getUint32(i * 8);
    const lo = this.l1.getUint32(i * 8 + 4);
    if ((hi & 0xffffff) >= 0x200000) return -1;
    return (hi & 0xffffff) * TWO32 + ((lo & 0xfffffe00) >>> 0);
  }

  /**
   * The table at host offset `off` named by L1 entry `i`, when it lies whole inside the file
   * (callers read other tables their own way); undefined otherwise.
   */
  async table(i: number, off: number): Promise<Uint8Array | undefined> {
    const cs = this.cs;
    if (off % cs !== 0 || off + cs > this.fileLen) return undefined;
    if (off < this.start || off + cs > this.end) {
      let n = cs;
      for (let j = i + 1; j < this.entries && n + cs <= this.buf.length; j++) {
        if (this.offsetAt(j) !== off + n || off + n + cs > this.fileLen) break;
        n += cs;
      }
      await readMeta(this.proto, this.buf.subarray(0, n), off);
      this.start = off;
      this.end = off + n;
    }
    return this.buf.subarray(off - this.start, off - this.start + cs);
  }
}
