/**
 * The metadata overlap check a repair runs before each write (qemu's default "cached" mode):
 * a repair never writes over the header, an L1 or L2 table, the refcount structures, the snapshot
 * table or the bitmap directory. A write that would is refused and, as in qemu, the image is
 * marked corrupt.
 */
import type { CheckCtx } from './check-context.js';
import { AUTOCLEAR_BITMAPS } from './header.js';

export const OL_ACTIVE_L2 = 1 << 2;
export const OL_INACTIVE_L2 = 1 << 7;

const TWO32 = 0x100000000;

/** Which metadata [offset, offset+size) would overwrite, in qemu's order and names; undefined: none. */
async function overlapping(c: CheckCtx, ign: number, offset: number, size: number): Promise<string | undefined> {
  if (size === 0) return undefined;
  const cs = c.cs;
  const p = c.p;
  const l = p.loaded;
  const h = l.header;
  if (offset < cs) return 'qcow2_header';
  const start = offset - (offset % cs);
  const end = Math.ceil((offset + size) / cs) * cs;
  const hits = (o: number | bigint, n: number): boolean => n > 0 && Number(o) < end && start < Number(o) + n;
  if (hits(l.l1Offset, p.map.l1Entries * 8)) return 'active L1 table';
  if (hits(h.refcountTableOffset, h.refcountTableClusters * cs)) return 'refcount table';
  if (l.snapshots.length && hits(h.snapshotsOffset, snapshotTableBytes(c))) return 'snapshot table';
  for (const s of l.snapshots) if (hits(s.l1TableOffset, s.l1Size * 8)) return 'inactive L1 table';
  if (!(ign & OL_ACTIVE_L2)) {
    const dv = p.map.l1View;
    for (let i = 0; i < p.map.l1Entries; i++) {
      const off = (dv.getUint32(i * 8) & 0xffffff) * TWO32 + ((dv.getUint32(i * 8 + 4) & 0xfffffe00) >>> 0);
      if (off && hits(off, cs)) return 'active L2 table';
    }
  }
  const st = c.stored;
  for (let i = 0; i < st.entries; i++) {
    const off = st.blockOffset(i);
    if (off && hits(off, cs)) return 'refcount block';
  }
  const b = l.ext.bitmaps;
  if (b && h.autoclearFeatures & AUTOCLEAR_BITMAPS && hits(b.directoryOffset, Number(b.directorySize))) return 'bitmap directory';
  return undefined;
}

/** qemu's snapshots_size: the table up to the end of its last entry (no padding after it). */
export function snapshotTableBytes(c: CheckCtx): number {
  const enc = new TextEncoder();
  let n = 0;
  for (const s of c.p.loaded.snapshots) {
    n = Math.ceil(n / 8) * 8;
    n += 40 + s.extra.length + enc.encode(s.id).length + enc.encode(s.name).length;
  }
  return n;
}

/** False (after marking the image corrupt) when the write would hit metadata. */
export async function overlapOk(c: CheckCtx, ign: number, offset: number, size: number): Promise<boolean> {
  const what = await overlapping(c, ign, offset, size);
  if (what === undefined) return true;
  await c.signalCorruption(`Preventing invalid write on metadata (overlaps with ${what})`);
  return false;
}
