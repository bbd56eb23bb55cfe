/**
 * Persistent dirty bitmaps (qcow2.txt "Bitmaps"): the directory, read for `info`; changes are in
 * ./bitmap-store.ts.
 *
 *   0 bitmap_table_offset u64 | 8 bitmap_table_size u32 | 12 flags u32 (0 in_use, 1 auto)
 *  16 type u8 | 17 granularity_bits u8 | 18 name_size u16 | 20 extra_data_size u32 | extra | name | pad 8
 */
import type { JsonObject } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';
import type { BitmapsExt } from './extensions.js';
import { invalid, toSafe } from './header.js';

export interface BitmapEntry {
  name: string;
  granularityBits: number;
  flags: number;
  tableOffset: bigint;
  tableSize: number;
  /** 1: dirty tracking bitmap, the only type the spec defines. */
  type: number;
  /** Extra data, kept as found (writers that do not know it keep it only with extra_data_compatible). */
  extra: Uint8Array;
}

export const ENTRY_FIXED = 24;
export const FLAG_IN_USE = 1;
export const FLAG_AUTO = 2;

export async function readBitmapDirectory(proto: Protocol, ext: BitmapsExt, path: string): Promise<BitmapEntry[]> {
  const size = toSafe(ext.directorySize, 'Bitmap directory', path);
  const dir = new Uint8Array(size);
  await proto.pread(dir, toSafe(ext.directoryOffset, 'Bitmap directory', path));
  const dv = new DataView(dir.buffer);
  const out: BitmapEntry[] = [];
  let off = 0;
  const utf8 = new TextDecoder('utf-8');
  for (let i = 0; i < ext.nbBitmaps; i++) {
    if (off + ENTRY_FIXED > size) throw invalid('QCOW2_BITMAP_DIR', 'Bitmap directory is truncated', path, 'corrupt');
    const nameSize = dv.getUint16(off + 18);
    const extra = dv.getUint32(off + 20);
    const end = off + ENTRY_FIXED + extra + nameSize;
    if (end > size) throw invalid('QCOW2_BITMAP_DIR', 'Bitmap directory is truncated', path, 'corrupt');
    out.push({
      tableOffset: dv.getBigUint64(off),
      tableSize: dv.getUint32(off + 8),
      flags: dv.getUint32(off + 12),
      granularityBits: dv.getUint8(off + 17),
      type: dv.getUint8(off + 16),
      extra: dir.slice(off + ENTRY_FIXED, off + ENTRY_FIXED + extra),
      name: utf8.decode(dir.subarray(off + ENTRY_FIXED + extra, end)),
    });
    off = Math.ceil(end / 8) * 8;
  }
  return out;
}

/** One element of info's `bitmaps` list (QAPI Qcow2BitmapInfo order: name, granularity, flags). */
export function bitmapInfo(b: BitmapEntry): JsonObject {
  const flags: string[] = [];
  if (b.flags & FLAG_IN_USE) flags.push('in-use');
  if (b.flags & FLAG_AUTO) flags.push('auto');
  return { name: b.name, granularity: 2 ** b.granularityBits, flags };
}
