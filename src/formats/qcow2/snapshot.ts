/**
 * The qcow2 snapshot table (qcow2.txt "Snapshots"): variable-length entries, each padded to 8.
 *
 *   0 l1_table_offset u64 | 8 l1_size u32 | 12 id_size u16 | 14 name_size u16 | 16 date_sec u32
 *  20 date_nsec u32 | 24 vm_clock_nsec u64 | 32 vm_state_size u32 | 36 extra_size u32
 *  40 extra: [0 vm_state_size u64 | 8 disk_size u64 | 16 icount i64] | id | name | padding
 */
import type { SnapshotInfo } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';
import { invalid } from './header.js';
import { MAX_SNAPSHOT_EXTRA_BYTES, MAX_SNAPSHOT_TABLE_BYTES } from './limits.js';

export interface Snapshot {
  l1TableOffset: bigint;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: bigint;
  vmStateSize: bigint;
  /** Guest size when the snapshot was taken (undefined: the entry has no such extra field). */
  diskSize?: bigint;
  /** -1 when not recorded. */
  icount: bigint;
  /** Extra data beyond the fields vdisk knows, kept for rewriting the table. */
  extra: Uint8Array;
}

const FIXED_BYTES = 40;
const utf8 = new TextDecoder('utf-8');

/** Reads a contiguous table front to back through a bounded buffer. */
/**
 * Sequential reads over the snapshot table through one 64 KiB window. Entries are decoded in
 * place (no per-entry views or copies): a hostile header may claim MAX_SNAPSHOTS entries, and
 * per-entry garbage alone then cost over 100 MiB of peak memory.
 */
class TableReader {
  buf = new Uint8Array(0);
  dv = new DataView(this.buf.buffer);
  private bufStart = 0;
  pos: number;

  constructor(private readonly proto: Protocol, start: number) {
    this.pos = start;
  }

  /** Make the next `n` bytes available; returns their index in `buf` and moves past them. */
  async take(n: number): Promise<number> {
    const end = this.pos + n;
    if (this.pos < this.bufStart || end > this.bufStart + this.buf.length) {
      this.buf = new Uint8Array(Math.max(n, 64 << 10));
      this.dv = new DataView(this.buf.buffer);
      this.bufStart = this.pos;
      await this.proto.pread(this.buf, this.pos);
    }
    const at = this.pos - this.bufStart;
    this.pos = end;
    return at;
  }

  async text(n: number): Promise<string> {
    if (n === 0) return '';
    const at = await this.take(n);
    return utf8.decode(this.buf.subarray(at, at + n));
  }
}

const NO_EXTRA = new Uint8Array(0);

export async function readSnapshots(proto: Protocol, offset: number, count: number, path: string): Promise<Snapshot[]> {
  const r = new TableReader(proto, offset);
  const list: Snapshot[] = [];
  for (let i = 0; i < count; i++) {
    const f = await r.take(FIXED_BYTES);
    const dv = r.dv;
    const idSize = dv.getUint16(f + 12);
    const nameSize = dv.getUint16(f + 14);
    const extraSize = dv.getUint32(f + 36);
    if (extraSize > MAX_SNAPSHOT_EXTRA_BYTES) {
      throw invalid('QCOW2_SNAPSHOT_EXTRA', `Too much extra metadata in snapshot table entry ${i}\n` +
        'You can force-remove this extra metadata with qemu-img check -r all', path, 'limit');
    }
    const s: Snapshot = {
      l1TableOffset: dv.getBigUint64(f),
      l1Size: dv.getUint32(f + 8),
      id: '',
      name: '',
      dateSec: dv.getUint32(f + 16),
      dateNsec: dv.getUint32(f + 20),
      vmClockNsec: dv.getBigUint64(f + 24),
      vmStateSize: BigInt(dv.getUint32(f + 32)),
      icount: -1n,
      extra: NO_EXTRA,
    };
    if (extraSize > 0) {
      const e = await r.take(extraSize);
      const extra = r.buf.slice(e, e + extraSize);
      const ev = new DataView(extra.buffer);
      if (extraSize >= 8) s.vmStateSize = ev.getBigUint64(0);
      if (extraSize >= 16) s.diskSize = ev.getBigUint64(8);
      if (extraSize >= 24) s.icount = ev.getBigInt64(16);
      s.extra = extra;
    }
    s.id = await r.text(idSize);
    s.name = await r.text(nameSize);
    const used = r.pos - offset;
    r.pos = offset + Math.ceil(used / 8) * 8;
    if (r.pos - offset > MAX_SNAPSHOT_TABLE_BYTES) {
      throw invalid('QCOW2_SNAPSHOT_TABLE', `Snapshot table is too big\nYou can force-remove all ${count - i} overhanging snapshots with qemu-img check -r all`, path, 'limit');
    }
    list.push(s);
  }
  return list;
}

export function snapshotInfo(s: Snapshot): SnapshotInfo {
  const info: SnapshotInfo = {
    id: s.id,
    name: s.name,
    vmStateSize: Number(s.vmStateSize),
    dateSec: s.dateSec,
    dateNsec: s.dateNsec,
    vmClockNsec: Number(s.vmClockNsec),
  };
  if (s.icount !== -1n) info.icount = Number(s.icount);
  return info;
}

/** Find a snapshot as qemu does for `-l`: by id first, then by name. */
export function findSnapshot(list: readonly Snapshot[], idOrName: string): Snapshot | undefined {
  return list.find((s) => s.id === idOrName) ?? list.find((s) => s.name === idOrName);
}

/** Bytes the table of these entries occupies on disk (each entry as read, padded to 8). */
export function diskTableBytes(list: readonly Snapshot[]): number {
  const enc = new TextEncoder();
  return list.reduce((n, s) => n + Math.ceil((FIXED_BYTES + s.extra.length + enc.encode(s.id).length + enc.encode(s.name).length) / 8) * 8, 0);
}

/** Encode the whole table (each entry with the three known extra fields, plus unknown extra bytes). */
export function encodeSnapshots(list: readonly Snapshot[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const s of list) {
    const id = enc.encode(s.id);
    const name = enc.encode(s.name);
    const extra = new Uint8Array(Math.max(24, s.extra.length));
    extra.set(s.extra);
    const ev = new DataView(extra.buffer);
    ev.setBigUint64(0, s.vmStateSize);
    ev.setBigUint64(8, s.diskSize ?? 0n);
    ev.setBigInt64(16, s.icount);
    const len = Math.ceil((FIXED_BYTES + extra.length + id.length + name.length) / 8) * 8;
    const e = new Uint8Array(len);
    const dv = new DataView(e.buffer);
    dv.setBigUint64(0, s.l1TableOffset);
    dv.setUint32(8, s.l1Size);
    dv.setUint16(12, id.length);
    dv.setUint16(14, name.length);
    dv.setUint32(16, s.dateSec);
    dv.setUint32(20, s.dateNsec);
    dv.setBigUint64(24, s.vmClockNsec);
    dv.setUint32(32, Number(s.vmStateSize > 0xffffffffn ? 0n : s.vmStateSize));
    dv.setUint32(36, extra.length);
    e.set(extra, FIXED_BYTES);
    e.set(id, FIXED_BYTES + extra.length);
    e.set(name, FIXED_BYTES + extra.length + id.length);
    parts.push(e);
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
