/**
 * amend compat=1.1 from v2: v3 wants every snapshot table entry to carry at least the 64-bit VM
 * state size and the disk size in its extra data, so a table with shorter entries is rewritten
 * first (as qemu's snapshot writer lays it out: entries 8-aligned, the known extra data filled in
 * with what qemu assumes for missing fields), in new clusters; the header names it once it is on
 * disk, and the old table is freed after. Then the header becomes v3.
 */
import { writeWholeHeader } from './header-write.js';
import { encodeEntry } from './check-snapshots.js';
import { diskTableBytes } from './snapshot.js';
import type { AmendContext } from './amend.js';

/** Extra data a v3 snapshot entry needs: vm_state_size (u64) and disk_size (u64). */
const V3_MIN_EXTRA = 16;

async function rewriteSnapshotTable(c: AmendContext): Promise<void> {
  const p = c.p;
  const l = p.loaded;
  const h = l.header;
  const meta = await c.writer();
  const cs = p.map.geo.clusterSize;
  const old = { offset: Number(h.snapshotsOffset), bytes: diskTableBytes(l.snapshots) };
  for (const s of l.snapshots) {
    if (s.extra.length < 16) s.diskSize = BigInt(l.size);
    if (s.extra.length < 24) s.icount = -1n;
  }
  const entries = l.snapshots.map(encodeEntry);
  const at: number[] = [];
  let size = 0;
  for (const e of entries) {
    size = Math.ceil(size / 8) * 8;
    at.push(size);
    size += e.length;
  }
  const offset = await meta.alloc.allocateMeta(Math.ceil(size / cs));
  await meta.flush();
  const table = new Uint8Array(size);
  entries.forEach((e, i) => table.set(e, at[i]!));
  await p.proto.pwrite(table, offset);
  await p.proto.flush();
  const ptr = new Uint8Array(12);
  const dv = new DataView(ptr.buffer);
  dv.setUint32(0, l.snapshots.length);
  dv.setBigUint64(4, BigInt(offset));
  await p.proto.pwrite(ptr, 60);
  await p.proto.flush();
  h.snapshotsOffset = BigInt(offset);
  entries.forEach((e, i) => {
    l.snapshots[i]!.extra = e.slice(40, 40 + new DataView(e.buffer).getUint32(36));
  });
  if (old.bytes > 0) await meta.alloc.release(old.offset, old.bytes, true);
  await meta.flush();
}

export async function upgradeToV3(c: AmendContext, report: (done: number, total: number) => void): Promise<void> {
  report(0, 2);
  if (c.p.loaded.snapshots.some((s) => s.extra.length < V3_MIN_EXTRA)) await rewriteSnapshotTable(c);
  report(1, 2);
  await c.resetWriter();
  await writeWholeHeader(c.p, { ...c.p.loaded.header, version: 3 });
  report(2, 2);
}
