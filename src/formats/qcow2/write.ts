/**
 * The qcow2 FormatLayer: the read side (./layer.ts) plus writes.
 */
import type { FormatLayer } from '../../block/driver.js';
import { Qcow2Reader } from './layer.js';

export class Qcow2Layer extends Qcow2Reader implements FormatLayer {
  get granularity(): number {
    return this.p.map.geo.clusterSize;
  }

  get backing(): { filename: string; format?: string } | undefined {
    return this.p.loaded.backing;
  }

  /** Called once after open, read-write images only: mark the image dirty when lazy refcounts apply. */
  async prepareWrites(): Promise<void> {
    // writes are wired in a later step
  }

  async close(): Promise<void> {
    if (this.p.data && this.p.data !== this.p.proto) await this.p.data.close();
  }
}
