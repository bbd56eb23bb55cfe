/**
 * The `null-co` / `null-aio` protocols: a device of a given size that reads zeros (with
 * read-zeroes=on; qemu leaves the buffer untouched otherwise, vdisk always zeroes it) and discards
 * writes. qemu's test suite uses it as a cheap source of any size.
 */
import { VdiskError } from '../block/errors.js';
import type { Protocol } from './types.js';

export const NULL_PROTOCOLS = new Set(['null-co', 'null-aio']);

/** qemu's default size for a null device: 1 GiB. */
const NULL_DEFAULT_SIZE = 1 << 30;

export class NullProtocol implements Protocol {
  readonly readOnly = false;
  private constructor(
    readonly protocol: string,
    readonly filename: string,
    private length: number,
  ) {}

  static open(driver: string, options: Readonly<Record<string, string>>): NullProtocol {
    const raw = options['size'];
    const size = raw === undefined ? NULL_DEFAULT_SIZE : Number(raw);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter 'size' expects a non-negative number below 2^64`);
    }
    return new NullProtocol(driver, `${driver}://`, size);
  }

  async pread(buf: Uint8Array): Promise<void> {
    buf.fill(0);
  }
  async pwrite(): Promise<void> {}
  async size(): Promise<number> {
    return this.length;
  }
  async truncate(size: number): Promise<void> {
    this.length = size;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
  /** qemu's info says "disk size: 0 B" (actual-size 0) for null-co. */
  async allocatedSize(): Promise<number | undefined> {
    return 0;
  }
  async extent(_offset: number, length: number): Promise<{ length: number; data: boolean }> {
    return { length, data: false };
  }
}
