/**
 * Compressed writes (convert -c): each guest cluster is compressed on its own and placed at byte
 * granularity, back to back, as qemu's byte allocator places them: in the tail of the host
 * cluster the previous one ended in, running on into the next host cluster when that one is
 * allocated right after it ("some of these sectors may reside in the next contiguous host
 * cluster", qcow2.txt "Compressed Clusters Descriptor"). A compressed cluster holds a reference to
 * every host cluster its bytes touch, so a host cluster is shared only while its refcount can
 * grow (refcount_bits=1 gives every compressed cluster clusters of its own, as in qemu).
 *
 * A request's compressed clusters are placed first, then written with one pwrite per run of
 * contiguous bytes (usually one per request: they are packed in the same order), then mapped with
 * one pass over each L2 table they touch. Clusters that do not shrink are written plainly by the
 * caller.
 */
import { L2E_COMPRESSED_HI } from './l1l2.js';
import { maxRefcount } from './refcount.js';
import type { MetadataWriter, RawEntry } from './l2-update.js';
import type { Qcow2Parts } from './layer.js';

/** Lengths of clusters that are not written compressed here (./compress-worker.ts). */
const PLAIN = -1;

export class CompressedWriter {
  /** Next free byte in the host cluster compressed data is being packed into (0: none). */
  private cursor = 0;
  private freedAtCursor = -1;

  constructor(private readonly p: Qcow2Parts) {}

  /**
   * Write the compressed clusters of the `bytes`-long request at guest `offset`, packed as
   * CompressedClusters describes. Returns where in `packed` the clusters to write plainly are.
   */
  async write(meta: MetadataWriter, offset: number, bytes: number, packed: Uint8Array, lengths: Int32Array): Promise<Array<{ index: number; from: number; to: number }>> {
    const cs = this.p.map.geo.clusterSize;
    const plain: Array<{ index: number; from: number; to: number }> = [];
    const placed: Array<{ guest: number; host: number; size: number }> = [];
    const runs: Array<{ host: number; from: number; to: number }> = [];
    let at = 0;
    for (let i = 0; i < lengths.length; i++) {
      const size = lengths[i]!;
      if (size === PLAIN) {
        const n = Math.min(cs, bytes - i * cs);
        plain.push({ index: i, from: at, to: at + n });
        at += n;
      }
      if (size < 0) continue;
      const host = await this.place(meta, size);
      const last = runs[runs.length - 1];
      if (last && last.host + (last.to - last.from) === host && last.to === at) last.to += size;
      else runs.push({ host, from: at, to: at + size });
      placed.push({ guest: offset + i * cs, host, size });
      at += size;
    }
    for (const r of runs) await this.p.proto.pwrite(packed.subarray(r.from, r.to), r.host);
    await this.map(meta, placed);
    return plain;
  }

  /** Host bytes for one compressed cluster of `size` bytes (less than a cluster), referenced. */
  private async place(meta: MetadataWriter, size: number): Promise<number> {
    const cs = this.p.map.geo.clusterSize;
    // a cluster freed since the cursor was set may belong to someone else now
    if (this.freedAtCursor !== meta.alloc.freed) this.cursor = 0;
    let host: number;
    const cur = this.cursor;
    const c = Math.floor(cur / cs);
    if (cur !== 0 && (await meta.rc.get(c)) < maxRefcount(meta.rc.order)) {
      if ((cur % cs) + size <= cs) {
        host = cur;
      } else {
        const next = await meta.alloc.allocate(1);
        host = next === (c + 1) * cs ? cur : next;
      }
      if (host === cur) await meta.rc.add(c, 1);
    } else {
      host = await meta.alloc.allocate(1);
    }
    this.cursor = (host + size) % cs === 0 ? 0 : host + size;
    this.freedAtCursor = meta.alloc.freed;
    return host;
  }

  /** Point each guest cluster's L2 entry at its compressed bytes, one pass per L2 table. */
  private async map(meta: MetadataWriter, placed: ReadonlyArray<{ guest: number; host: number; size: number }>): Promise<void> {
    const g = this.p.map.geo;
    const per = 2 ** g.l2Bits;
    const eb = g.entryBytes;
    // the sector count sits above the host offset: bits x..61 of the entry, x = 62 - (cluster_bits - 8)
    const sectorShift = 62 - (g.clusterBits - 8) - 32;
    for (let k = 0; k < placed.length;) {
      const l1i = Math.floor(placed[k]!.guest / g.clusterSize / per);
      const l2off = await meta.l2ForWrite(l1i);
      const t = await meta.map.l2Cache.get(l2off);
      const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
      const old: RawEntry[] = [];
      for (; k < placed.length; k++) {
        const { guest, host, size } = placed[k]!;
        const cl = Math.floor(guest / g.clusterSize);
        if (Math.floor(cl / per) !== l1i) break;
        const e = (cl % per) * eb;
        const hi = dv.getUint32(e);
        const lo = dv.getUint32(e + 4);
        if (hi !== 0 || lo !== 0) old.push({ hi, lo, zeroBits: 0, allocBits: 0 });
        const extraSectors = Math.ceil((host + size) / 512) - Math.floor(host / 512) - 1;
        dv.setUint32(e, (L2E_COMPRESSED_HI | (extraSectors << sectorShift) | Math.floor(host / 2 ** 32)) >>> 0);
        dv.setUint32(e + 4, host >>> 0);
        // extended L2: a compressed cluster's bitmap is all zero
        if (eb === 16) dv.setBigUint64(e + 8, 0n);
      }
      meta.map.l2Cache.markDirty(l2off, t);
      for (const e of old) meta.releaseEntry(e);
    }
  }
}
