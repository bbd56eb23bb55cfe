/**
 * Compressed writes (convert -c): each guest cluster is compressed on its own and packed at byte
 * granularity into host clusters, several compressed clusters sharing one host cluster, each
 * holding a reference to every host cluster its bytes touch (qcow2.txt "Compressed Clusters
 * Descriptor"). Clusters that do not shrink are written plainly by the caller.
 */
import { compressCluster } from './compress.js';
import { L2E_COMPRESSED_HI } from './l1l2.js';
import type { MetadataWriter } from './l2-update.js';
import type { Qcow2Parts } from './layer.js';

export class CompressedWriter {
  /** Next free byte in the host cluster compressed data is being packed into (0: none). */
  private cursor = 0;
  private freedAtCursor = -1;

  constructor(private readonly p: Qcow2Parts) {}

  /**
   * Write one guest cluster compressed; false when it does not compress (write it plainly).
   * `pre` is the cluster already compressed (null: it does not shrink); absent, compress here.
   */
  async write(meta: MetadataWriter, cluster: Uint8Array, offset: number, pre?: Uint8Array | null): Promise<boolean> {
    const g = this.p.map.geo;
    const data = pre === undefined ? compressCluster(this.p.loaded.header.compressionType, cluster) : pre ?? undefined;
    if (!data) return false;
    const cs = g.clusterSize;
    // a cluster freed since the cursor was set may belong to someone else now
    if (this.freedAtCursor !== meta.alloc.freed) this.cursor = 0;
    let host: number;
    if (this.cursor !== 0 && (this.cursor % cs) + data.length <= cs) {
      host = this.cursor;
      await meta.rc.add(Math.floor(host / cs), 1);
    } else {
      host = await meta.alloc.allocate(1);
    }
    this.cursor = host + data.length;
    if (this.cursor % cs === 0) this.cursor = 0;
    this.freedAtCursor = meta.alloc.freed;
    await this.p.proto.pwrite(data, host);

    const cl = Math.floor(offset / cs);
    const l1i = Math.floor(cl / 2 ** g.l2Bits);
    const idx = cl % 2 ** g.l2Bits;
    const l2off = await meta.l2ForWrite(l1i);
    const old = await meta.entry(l2off, idx);
    const x = 62 - (g.clusterBits - 8);
    const extraSectors = Math.ceil((host + data.length) / 512) - Math.floor(host / 512) - 1;
    const entry = (1n << 62n) | (BigInt(extraSectors) << BigInt(x)) | BigInt(host);
    await meta.setEntry(l2off, idx, {
      hi: Number(entry >> 32n) | L2E_COMPRESSED_HI, lo: Number(entry & 0xffffffffn), zeroBits: 0, allocBits: 0,
    });
    meta.releaseEntry(old);
    return true;
  }
}
