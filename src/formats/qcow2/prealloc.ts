/**
 * Growing with preallocation=falloc or full in the image file itself, laid out as qemu lays it
 * out (iotest 125 checks that later writes need no more host space): behind the last used
 * cluster come new refcount structures sized for the growth (ClusterAllocator.refcountArea), then
 * every new data cluster in one contiguous run that the file is grown over in one preallocating
 * truncate, then (wherever the allocator finds room) the L2 tables that map them. The cluster the
 * old end falls in gets a new data cluster too, filled first with its old guest content.
 */
import type { Preallocation } from '../../protocols/types.js';
import type { Qcow2Parts } from './layer.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';
import { L2E_COPIED_HI } from './l1l2.js';

export interface PreallocContext {
  p: Qcow2Parts;
  meta: MetadataWriter;
  /** Guest content of [from, to) as it reads now (through the backing chain). */
  current(from: number, to: number): Promise<Uint8Array>;
}

/** Refcounts are set a block's worth at a time: one lookup a block, not one a cluster. */
async function countRun(meta: MetadataWriter, first: number, n: number): Promise<void> {
  const per = 2 ** meta.rc.blockBits;
  for (let c = first; c < first + n;) {
    const k = Math.min(first + n, (Math.floor(c / per) + 1) * per) - c;
    await meta.rc.addRun(c, k, 1);
    c += k;
  }
}

export async function preallocateInFile(c: PreallocContext, from: number, to: number, mode: Preallocation): Promise<void> {
  const { p, meta } = c;
  const g = p.map.geo;
  const cs = g.clusterSize;
  await meta.flush();
  const last = await meta.rc.lastUsedCluster();
  const oldEnd = last >= 0 ? last + 1 : Math.ceil((await p.proto.size()) / cs);
  const firstGuest = Math.floor(from / cs);
  const count = Math.ceil(to / cs) - firstGuest;
  // one more L2 table than the clusters fill, for a range that does not start on a table boundary
  const tables = Math.ceil(count / 2 ** g.l2Bits) + 1;
  const dataStart = await meta.alloc.refcountArea(oldEnd, count + tables);
  await countRun(meta, dataStart, count);
  meta.alloc.endCluster = Math.max(meta.alloc.endCluster, dataStart + count);
  await meta.rc.flush();
  // the file normally ends where the new refcount table does; bytes already past it are zeroed
  const [a, b, cur] = [dataStart * cs, (dataStart + count) * cs, await p.proto.size()];
  if (cur > a) await p.proto.writeZeroes?.(a, Math.min(cur, b) - a, false);
  if (b > cur) await p.proto.truncate(b, mode);
  const head = from % cs !== 0 ? await c.current(firstGuest * cs, from) : undefined;
  if (head) await p.proto.pwrite(head, dataStart * cs);
  const replaced: RawEntry[] = [];
  const per = 2 ** g.l2Bits;
  for (let k = 0; k < count;) {
    const cl = firstGuest + k;
    const l1i = Math.floor(cl / per);
    const l2off = await meta.l2ForWrite(l1i);
    const stop = Math.min(count, (l1i + 1) * per - firstGuest);
    for (; k < stop; k++) {
      const idx = (firstGuest + k) % per;
      const host = (dataStart + k) * cs;
      const e = await meta.entry(l2off, idx);
      if (e.hi !== 0 || e.lo !== 0) replaced.push(e);
      // extended L2: the subcluster bitmaps stay as they were (qemu links without touching them)
      await meta.setEntry(l2off, idx, { hi: (Math.floor(host / 0x100000000) | L2E_COPIED_HI) >>> 0, lo: host >>> 0, zeroBits: e.zeroBits, allocBits: e.allocBits });
    }
  }
  await meta.flush();
  // the cluster the old end was in leaves its old host cluster unused (freed, not punched)
  for (const e of replaced) for (const [off, bytes] of meta.hostRanges(e)) await meta.alloc.release(off, bytes, false);
  await meta.rc.flush();
}
