/**
 * The snapshot table as a check sees it: version 3 entries must carry at least the VM state size
 * and the guest disk size in their extra data (qcow2.txt "Snapshots"). With error repair the
 * table is written anew, as qemu does: every entry with at least the 24 bytes of known extra data
 * (the disk size of a short entry is the image's current size), in clusters allocated first-fit
 * from the stored refcounts; the header is switched to it only once it is on disk, then the old
 * table's clusters are freed.
 */
import type { CheckResult } from '../../block/driver.js';
import type { Qcow2Parts } from './layer.js';
import { CheckAbort, type CheckCtx, type Fix } from './check-context.js';
import { overlapOk, snapshotTableBytes } from './check-overlap.js';
import { StoredRefError } from './check-stored.js';
import type { Snapshot } from './snapshot.js';

/** Bytes of extra data qemu writes at least: VM state size, disk size, icount. */
const KNOWN_EXTRA = 24;
const TWO32 = 0x100000000;

export function checkSnapshotTable(p: Qcow2Parts, res: CheckResult, fix: Fix, out: string[]): void {
  if (p.loaded.header.version < 3) return;
  p.loaded.snapshots.forEach((s, i) => {
    if (s.extra.length < 16) {
      res.corruptions++;
      out.push(`${fix.errors ? 'Repairing' : 'ERROR'} snapshot table entry ${i} is incomplete`);
    }
  });
}

/** qemu's qcow2_check_fix_snapshot_table: rewrite the table when it had findings and errors may be repaired. */
export async function fixSnapshotTable(c: CheckCtx, res: CheckResult, fix: Fix): Promise<void> {
  if (!res.corruptions || !fix.errors) return;
  try {
    await rewriteTable(c);
  } catch (e) {
    if (!(e instanceof StoredRefError)) throw e;
    res.checkErrors++;
    c.msg(`ERROR failed to update snapshot table: ${e.message}`);
    throw new CheckAbort(e.message);
  }
  res.corruptionsFixed += res.corruptions;
  res.corruptions = 0;
}

/** qemu keeps ids and names as C strings: a NUL byte read from the table ends them. */
function cString(t: string): string {
  const z = t.indexOf('\0');
  return z < 0 ? t : t.slice(0, z);
}

/** One entry as qemu writes it (no padding after it). */
export function encodeEntry(s: Snapshot): Uint8Array {
  const enc = new TextEncoder();
  const id = enc.encode(cString(s.id));
  const name = enc.encode(cString(s.name));
  const extraLen = Math.max(KNOWN_EXTRA, s.extra.length);
  const e = new Uint8Array(40 + extraLen + id.length + name.length);
  const dv = new DataView(e.buffer);
  dv.setBigUint64(0, s.l1TableOffset);
  dv.setUint32(8, s.l1Size);
  dv.setUint16(12, id.length);
  dv.setUint16(14, name.length);
  dv.setUint32(16, s.dateSec);
  dv.setUint32(20, s.dateNsec);
  dv.setBigUint64(24, s.vmClockNsec);
  if (s.vmStateSize <= 0xffffffffn) dv.setUint32(32, Number(s.vmStateSize));
  dv.setUint32(36, extraLen);
  if (s.extra.length > KNOWN_EXTRA) e.set(s.extra.subarray(KNOWN_EXTRA), 40 + KNOWN_EXTRA);
  dv.setBigUint64(40, s.vmStateSize);
  dv.setBigUint64(48, s.diskSize ?? 0n);
  dv.setBigInt64(56, s.icount);
  e.set(id, 40 + extraLen);
  e.set(name, 40 + extraLen + id.length);
  return e;
}

async function rewriteTable(c: CheckCtx): Promise<void> {
  const p = c.p;
  const l = p.loaded;
  const h = l.header;
  const oldOffset = Number(h.snapshotsOffset);
  const oldBytes = snapshotTableBytes(c);
  // short entries get what qemu assumes for them: the current guest size, no instruction count
  for (const s of l.snapshots) {
    if (s.extra.length < 16) s.diskSize = BigInt(Math.floor(l.size / 512) * 512);
    if (s.extra.length < 24) s.icount = -1n;
  }
  const entries = l.snapshots.map(encodeEntry);
  let size = 0;
  const at: number[] = [];
  for (const e of entries) {
    size = Math.ceil(size / 8) * 8;
    at.push(size);
    size += e.length;
  }
  const n = Math.ceil(size / c.cs);
  const first = await firstFree(c, n);
  for (let k = first; k < first + n; k++) await c.stored.set(k, 1);
  await c.stored.flush();
  const offset = first * c.cs;
  if (!(await overlapOk(c, 0, offset, size))) throw new StoredRefError('Input/output error');
  for (let i = 0; i < entries.length; i++) await p.proto.pwrite(entries[i]!, offset + at[i]!);
  await p.proto.flush();
  const ptr = new Uint8Array(12);
  const pv = new DataView(ptr.buffer);
  pv.setUint32(0, l.snapshots.length);
  pv.setUint32(4, Math.floor(offset / TWO32));
  pv.setUint32(8, offset >>> 0);
  await p.proto.pwrite(ptr, 60);
  await p.proto.flush();
  h.snapshotsOffset = BigInt(offset);
  for (const s of l.snapshots) {
    const e = encodeEntry(s);
    s.id = cString(s.id);
    s.name = cString(s.name);
    s.extra = e.slice(40, 40 + new DataView(e.buffer).getUint32(36));
  }
  await freeOld(c, oldOffset, oldBytes);
}

/** qemu's allocator: the first run of `n` clusters whose stored refcount is zero. */
async function firstFree(c: CheckCtx, n: number): Promise<number> {
  let run = 0;
  for (let k = 0; ; k++) {
    run = (await c.stored.get(k)) === 0 ? run + 1 : 0;
    if (run === n) return k - n + 1;
  }
}

/** Drop the old table's references; clusters nothing uses any more go back to the host. */
async function freeOld(c: CheckCtx, offset: number, bytes: number): Promise<void> {
  if (bytes <= 0) return;
  const freed: number[] = [];
  for (let k = Math.floor(offset / c.cs); k * c.cs < offset + bytes; k++) {
    const v = await c.stored.get(k);
    if (v === 0) continue;
    await c.stored.set(k, v - 1);
    if (v === 1) freed.push(k);
  }
  await c.stored.flush();
  const len = await c.p.proto.size();
  for (const k of freed) if (k * c.cs < len && c.p.proto.discard) await c.p.proto.discard(k * c.cs, Math.min(c.cs, len - k * c.cs));
}
