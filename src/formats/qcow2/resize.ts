/**
 * Resizing a qcow2 image: growing (moving the L1 table when it needs more entries, optionally
 * preallocating the new area), and shrinking (dropping every cluster past the new end, then the
 * L2 tables left empty, then trimming the file after its last used cluster), as qemu does.
 */
import { VdiskError } from '../../block/errors.js';
import type { Preallocation } from '../../protocols/types.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';
import { L2E_COMPRESSED_HI, L2E_COPIED_HI, entryOffset } from './l1l2.js';

const ALL_SUBCLUSTERS = 0xffffffff;

export interface ResizeContext {
  p: Qcow2Parts;
  meta: MetadataWriter;
}

async function writeHeaderSize(c: ResizeContext, size: number): Promise<void> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(size));
  await c.p.proto.pwrite(b, 24);
  c.p.loaded.header.size = BigInt(size);
  c.p.loaded.size = size;
}

export async function growImage(c: ResizeContext, size: number, prealloc: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const h = p.loaded.header;
  const old = p.loaded.size;
  const needed = Math.ceil(size / 2 ** (g.l2Bits + g.clusterBits));
  if (needed > p.map.l1Entries) {
    await meta.growL1(needed, async (offset, entries) => {
      const b = new Uint8Array(12);
      const dv = new DataView(b.buffer);
      dv.setUint32(0, entries);
      dv.setBigUint64(4, BigInt(offset));
      await p.proto.pwrite(b, 36);
      h.l1Size = entries;
      h.l1TableOffset = BigInt(offset);
    });
  }
  if (p.data !== p.proto) await p.data!.truncate(size, prealloc === 'metadata' ? 'off' : prealloc);
  if (prealloc !== 'off') await preallocate(c, old, size, prealloc);
  await meta.flush();
  await writeHeaderSize(c, size);
}

/** Give every cluster of [from, to) a host cluster that reads as zeros (qemu's preallocation). */
async function preallocate(c: ResizeContext, from: number, to: number, mode: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const external = p.data !== p.proto;
  const fileEnd = await p.proto.size();
  for (let cl = Math.floor(from / g.clusterSize); cl * g.clusterSize < to; cl++) {
    const l1i = Math.floor(cl / 2 ** g.l2Bits);
    const idx = cl % 2 ** g.l2Bits;
    const l2off = await meta.l2ForWrite(l1i);
    const e = await meta.entry(l2off, idx);
    if (e.hi & L2E_COMPRESSED_HI || entryOffset(e.hi, e.lo, p.path, 'Cluster allocation') !== 0 || (external && e.hi & L2E_COPIED_HI)) continue;
    const host = external ? cl * g.clusterSize : await meta.alloc.allocate(1);
    // a reused cluster inside the file still holds old bytes
    if (!external && host < fileEnd) await p.proto.writeZeroes?.(host, g.clusterSize, mode === 'metadata');
    const entry: RawEntry = {
      hi: (Math.floor(host / 0x100000000) | L2E_COPIED_HI) >>> 0, lo: host >>> 0,
      zeroBits: 0, allocBits: g.extL2 ? ALL_SUBCLUSTERS : 0,
    };
    await meta.setEntry(l2off, idx, entry);
  }
  if (!external) {
    const end = meta.alloc.endCluster * g.clusterSize;
    if (end > fileEnd) await p.proto.truncate(end, mode === 'metadata' ? 'off' : mode);
  }
}

export async function shrinkImage(c: ResizeContext, size: number): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const per = 2 ** g.l2Bits;
  const firstDropped = Math.ceil(size / g.clusterSize);
  for (let l1i = Math.floor(firstDropped / per); l1i < p.map.l1Entries; l1i++) {
    if (p.map.l2Offset(l1i) === 0) continue;
    const l2off = await meta.l2ForWrite(l1i);
    for (let idx = Math.max(0, firstDropped - l1i * per); idx < per; idx++) {
      const e = await meta.entry(l2off, idx);
      if (e.hi === 0 && e.lo === 0 && e.zeroBits === 0 && e.allocBits === 0) continue;
      await meta.setEntry(l2off, idx, { hi: 0, lo: 0, zeroBits: 0, allocBits: 0 });
      meta.releaseEntry(e);
    }
    if (l1i * per >= firstDropped) {
      meta.clearL1(l1i);
      meta.map.l2Cache.drop(l2off);
      meta.queueFree(l2off, g.clusterSize);
    }
  }
  await meta.flush();
  await writeHeaderSize(c, size);
  if (p.data !== p.proto) await p.data!.truncate(size);
  const last = await meta.rc.lastUsedCluster();
  const end = (last + 1) * g.clusterSize;
  if (end < (await p.proto.size())) {
    await p.proto.truncate(end);
    meta.alloc.endCluster = last + 1;
  }
}
