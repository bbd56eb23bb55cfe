/**
 * Reads the persistent bitmaps of a qcow2 file straight from its bytes (qcow2.txt "Bitmaps"), for
 * tests that compare what vdisk and qemu-img stored: names, flags, granularity and the set bits,
 * whatever clusters each tool chose for the tables. Independent of vdisk's own reader on purpose.
 */
import { readFileSync, writeFileSync } from 'node:fs';

export interface StoredBitmap {
  name: string;
  flags: number;
  granularityBits: number;
  tableSize: number;
  extraDataSize: number;
  /** Indexes of the set bits (first 64), and how many are set. */
  setBits: number[];
  setCount: number;
}

export function readBitmaps(path: string): { autoclear: bigint; bitmaps: StoredBitmap[] } {
  const b = readFileSync(path);
  const size = Number(b.readBigUInt64BE(24));
  const cs = 2 ** b.readUInt32BE(20);
  const autoclear = b.readBigUInt64BE(88);
  const out: StoredBitmap[] = [];
  for (let off = b.readUInt32BE(100); off + 8 <= cs;) {
    const type = b.readUInt32BE(off);
    const len = b.readUInt32BE(off + 4);
    if (type === 0) break;
    if (type === 0x23852875 && autoclear & 1n) {
      const nb = b.readUInt32BE(off + 8);
      let p = Number(b.readBigUInt64BE(off + 24));
      for (let i = 0; i < nb; i++) {
        const table = Number(b.readBigUInt64BE(p));
        const tableSize = b.readUInt32BE(p + 8);
        const gbits = b[p + 17]!;
        const nameSize = b.readUInt16BE(p + 18);
        const extra = b.readUInt32BE(p + 20);
        const bytes = Math.ceil(Math.ceil(size / 2 ** gbits) / 8);
        const data = Buffer.alloc(tableSize * cs);
        for (let j = 0; j < tableSize; j++) {
          const e = b.readBigUInt64BE(table + 8 * j);
          const host = Number(e & 0x00fffffffffffe00n);
          if (host) b.copy(data, j * cs, host, host + cs);
          else if (e & 1n) data.fill(0xff, j * cs, (j + 1) * cs);
        }
        const setBits: number[] = [];
        let setCount = 0;
        for (let k = 0; k < bytes; k++) {
          const v = data[k]!;
          for (let bit = 0; v && bit < 8; bit++) {
            if (v & (1 << bit)) {
              setCount++;
              if (setBits.length < 64) setBits.push(k * 8 + bit);
            }
          }
        }
        out.push({
          name: b.subarray(p + 24 + extra, p + 24 + extra + nameSize).toString('utf8'),
          flags: b.readUInt32BE(p + 12), granularityBits: gbits, tableSize, extraDataSize: extra, setBits, setCount,
        });
        p += Math.ceil((24 + extra + nameSize) / 8) * 8;
      }
    }
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return { autoclear, bitmaps: out };
}

/** Set the in-use flag of the named bitmaps in place (what a crash while qemu ran leaves). */
export function markInUse(path: string, names: readonly string[]): void {
  const b = readFileSync(path);
  for (let off = b.readUInt32BE(100); ;) {
    const type = b.readUInt32BE(off);
    const len = b.readUInt32BE(off + 4);
    if (type === 0) throw new Error('no bitmaps extension');
    if (type === 0x23852875) {
      let p = Number(b.readBigUInt64BE(off + 24));
      for (let i = 0; i < b.readUInt32BE(off + 8); i++) {
        const nameSize = b.readUInt16BE(p + 18);
        const extra = b.readUInt32BE(p + 20);
        const name = b.subarray(p + 24 + extra, p + 24 + extra + nameSize).toString('utf8');
        if (names.includes(name)) b.writeUInt32BE(b.readUInt32BE(p + 12) | 1, p + 12);
        p += Math.ceil((24 + extra + nameSize) / 8) * 8;
      }
      break;
    }
    off += 8 + Math.ceil(len / 8) * 8;
  }
  writeFileSync(path, b);
}
