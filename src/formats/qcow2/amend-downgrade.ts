/**
 * amend compat=0.10: what stops a downgrade (qemu's checks, in qemu's order, with its messages),
 * and turning v3 zero clusters into what v2 can express. A plain zero cluster with nothing below
 * the image becomes unallocated (reads as zeros in v2 too); with a backing file it gets a new
 * cluster of zeros; a preallocated zero cluster keeps its cluster, now holding zeros. Every L1
 * table is walked, the active one first, then each snapshot's; an L2 table shared with snapshots
 * is changed in place (the change means the same to all of them) and a new cluster in it takes the
 * table's refcount. The version changes last, in one header write, after all of it is on disk.
 */
import { VdiskError } from '../../block/errors.js';
import type { AmendHooks } from '../../block/driver.js';
import { INCOMPAT_COMPRESSION, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY } from './header.js';
import { snapshotL1Problem } from './load.js';
import { writeWholeHeader } from './header-write.js';
import { L2E_COMPRESSED_HI, L2E_COPIED_HI, entryOffset } from './l1l2.js';
import type { MetadataWriter } from './l2-update.js';
import type { AmendContext } from './amend.js';

const UINT32_MAX = 0xffffffffn;

function refuse(c: AmendContext, code: string, message: string): VdiskError {
  return new VdiskError('unsupported', code, message, { path: c.p.path, format: 'qcow2', op: 'amend' });
}

function checkDowngrade(c: AmendContext): void {
  const l = c.p.loaded;
  const h = l.header;
  if (h.refcountOrder !== 4) throw refuse(c, 'QCOW2_DOWNGRADE_REFCOUNT', 'compat=0.10 requires refcount_bits=16');
  if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) throw refuse(c, 'QCOW2_DOWNGRADE_DATA_FILE', 'Cannot downgrade an image with a data file');
  // v2 readers would not know that a snapshot's own size or a large VM state matters
  for (const s of l.snapshots) {
    if (s.vmStateSize > UINT32_MAX || (s.diskSize !== undefined && s.diskSize !== BigInt(l.size))) {
      throw refuse(c, 'QCOW2_DOWNGRADE_SNAPSHOTS', 'Internal snapshots prevent downgrade of image');
    }
  }
  const left = h.incompatibleFeatures & ~(INCOMPAT_COMPRESSION | INCOMPAT_DIRTY);
  if (left) throw refuse(c, 'QCOW2_DOWNGRADE_FEATURES', `Cannot downgrade an image with incompatible features 0x${left.toString(16)} set`);
}

/** L1 tables to walk: the active one, then each snapshot's (read from the file). */
async function l1Tables(c: AmendContext): Promise<Uint8Array[]> {
  const p = c.p;
  const out = [p.map.l1];
  for (const s of p.loaded.snapshots) {
    const t = new Uint8Array(s.l1Size * 8);
    await p.proto.pread(t, Number(s.l1TableOffset));
    out.push(t);
  }
  return out;
}

const EXPAND_FAILED = 'Failed to turn zero into data clusters';

/**
 * qemu checks each snapshot's L1 table when the expansion reaches it; vdisk checks them all before
 * changing anything, with the same messages.
 */
function checkSnapshotTables(c: AmendContext, hooks: AmendHooks): void {
  for (const s of c.p.loaded.snapshots) {
    const bad = snapshotL1Problem(s, c.p.map.geo.clusterSize);
    if (bad) {
      hooks.error?.(bad.message);
      throw new VdiskError('invalid-format', 'QCOW2_DOWNGRADE_SNAPSHOT_L1', `${EXPAND_FAILED}: ${bad.tooLarge ? 'File too large' : 'Invalid argument'}`, { path: c.p.path, format: 'qcow2', op: 'amend' });
    }
  }
}

/** qemu's corruption event: the corrupt bit is set (v3), the event printed, the amend fails with EIO. */
async function corruption(c: AmendContext, hooks: AmendHooks, what: string): Promise<VdiskError> {
  const h = c.p.loaded.header;
  hooks.message?.(`qcow2: Marking image as corrupt: ${what}; further corruption events will be suppressed`);
  h.incompatibleFeatures |= INCOMPAT_CORRUPT;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, h.incompatibleFeatures);
  await c.p.proto.pwrite(b, 72);
  await c.p.proto.flush();
  return new VdiskError('corrupt', 'QCOW2_DOWNGRADE_CORRUPT', `${EXPAND_FAILED}: Input/output error`, { path: c.p.path, format: 'qcow2', op: 'amend' });
}

/** The L2 table offset of L1 entry `i` (0: none); unaligned ones are a corruption event. */
async function l2At(c: AmendContext, l1: Uint8Array, i: number, hooks?: AmendHooks): Promise<number> {
  const dv = new DataView(l1.buffer, l1.byteOffset, l1.byteLength);
  const off = entryOffset(dv.getUint32(i * 8), dv.getUint32(i * 8 + 4), c.p.path, 'L2 table');
  if (off % c.p.map.geo.clusterSize === 0) return off;
  if (!hooks) return off - (off % c.p.map.geo.clusterSize);
  throw await corruption(c, hooks, `L2 table offset ${hx(off)} unaligned (L1 index: ${hx0(i)})`);
}

function hx(n: number): string {
  return `0x${n.toString(16)}`;
}

/** C's %#x: no 0x before zero. */
function hx0(n: number): string {
  return n === 0 ? '0' : hx(n);
}

async function hasCompressedClusters(c: AmendContext, meta: MetadataWriter): Promise<boolean> {
  const l1 = c.p.map.l1;
  const per = 2 ** c.p.map.geo.l2Bits;
  for (let i = 0; i < l1.length / 8; i++) {
    const l2 = await l2At(c, l1, i);
    if (l2 === 0) continue;
    for (let j = 0; j < per; j++) if ((await meta.entry(l2, j)).hi & L2E_COMPRESSED_HI) return true;
  }
  return false;
}

async function expandTable(c: AmendContext, meta: MetadataWriter, l2: number, zeros: Uint8Array, hooks: AmendHooks): Promise<void> {
  const p = c.p;
  const cs = p.map.geo.clusterSize;
  const per = 2 ** p.map.geo.l2Bits;
  const tableRefs = await meta.rc.get(l2 / cs);
  for (let j = 0; j < per; j++) {
    const e = await meta.entry(l2, j);
    if (e.hi & L2E_COMPRESSED_HI || !(e.lo & 1)) continue;
    let host = entryOffset(e.hi, e.lo, p.path, 'Cluster allocation');
    if (host % cs !== 0) {
      throw await corruption(c, hooks, `Cluster allocation offset ${hx(host)} unaligned (L2 offset: ${hx(l2)}, L2 index: ${hx0(j)})`);
    }
    if (host === 0) {
      if (!p.backingReader.present) {
        await meta.setEntry(l2, j, { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 });
        continue;
      }
      host = await meta.alloc.allocate(1);
      if (tableRefs > 1) await meta.rc.add(host / cs, tableRefs - 1);
    }
    meta.alloc.guard(host, cs);
    await p.proto.pwrite(zeros, host);
    const hi = Math.floor(host / 0x100000000);
    await meta.setEntry(l2, j, { hi: (tableRefs === 1 ? hi | L2E_COPIED_HI : hi) >>> 0, lo: host >>> 0, zeroBits: 0, allocBits: 0 });
  }
}

/** Zero clusters in every L1 table's L2 tables, reporting progress per L1 entry as qemu does. */
async function expandZeroClusters(c: AmendContext, meta: MetadataWriter, report: (done: number, total: number) => void, hooks: AmendHooks): Promise<void> {
  const tables = await l1Tables(c);
  const total = tables.reduce((n, t) => n + t.length / 8, 0);
  const zeros = new Uint8Array(c.p.map.geo.clusterSize);
  let visited = 0;
  for (const l1 of tables) {
    for (let i = 0; i < l1.length / 8; i++) {
      const l2 = await l2At(c, l1, i, hooks);
      if (l2 !== 0) await expandTable(c, meta, l2, zeros, hooks);
      report(++visited, total);
    }
    if (meta.mustFlush) await meta.flush();
  }
  await meta.flush();
}

export async function downgradeToV2(c: AmendContext, report: (done: number, total: number) => void, hooks: AmendHooks): Promise<void> {
  checkDowngrade(c);
  checkSnapshotTables(c, hooks);
  const meta = await c.writer();
  const h = c.p.loaded.header;
  if (h.compressionType !== 0 && await hasCompressedClusters(c, meta)) {
    throw refuse(c, 'QCOW2_DOWNGRADE_ZSTD', 'Cannot downgrade an image with zstd compression type and existing compressed clusters');
  }
  await expandZeroClusters(c, meta, report, hooks);
  await c.resetWriter();
  await c.p.proto.flush();
  await writeWholeHeader(c.p, {
    ...h, version: 2, incompatibleFeatures: 0n, compatibleFeatures: 0n, autoclearFeatures: 0n, compressionType: 0,
  });
}
