/**
 * The `nbd` protocol: an image's bytes served by an NBD server (src/nbd/ speaks the protocol).
 * What qemu's nbd driver shows is kept: the node is named by its canonical URI, has no "disk size",
 * cannot grow, reads block status from base:allocation (or the x-dirty-bitmap context, through the
 * same two bits), and writes are refused up front on a read-only export.
 *
 * Requests smaller than the server's minimum block size are widened (reads) or read-modify-written
 * (writes), as qemu's block layer does for the alignment a driver declares.
 */
import { VdiskError } from '../block/errors.js';
import { canonicalNbdName, parseNbdFilename, targetFromOptions, hasNbdServerOptions, type NbdTarget } from '../nbd/address.js';
import { NbdClient } from '../nbd/client.js';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../nbd/constants.js';
import type { Preallocation, Protocol, ProtocolExtent } from './types.js';

export { isNbdName } from '../nbd/address.js';

/** The export an open names: options under `prefix` win over the filename (json:/--image-opts). */
export function nbdTarget(filename: string, options: Readonly<Record<string, string>> = {}, prefix = ''): NbdTarget {
  if (hasNbdServerOptions(options, prefix)) return targetFromOptions(options, prefix, filename);
  const t = parseNbdFilename(filename);
  const bitmap = options[`${prefix}x-dirty-bitmap`];
  if (bitmap !== undefined) t.dirtyBitmap = bitmap;
  if (options[`${prefix}export`] !== undefined) t.exportName = options[`${prefix}export`]!;
  return t;
}

export class NbdProtocol implements Protocol {
  readonly protocol = 'nbd';
  /** An export keeps whatever it held: qemu's nbd driver has no zero-init either. */
  readonly zeroInit = false;

  private constructor(readonly filename: string, private readonly client: NbdClient, readonly readOnly: boolean) {}

  static async open(filename: string, readOnly: boolean, options: Readonly<Record<string, string>> = {}, prefix = ''): Promise<NbdProtocol> {
    const target = nbdTarget(filename, options, prefix);
    const client = await NbdClient.connect(target, { readOnly });
    return new NbdProtocol(canonicalNbdName(target), client, client.readOnly);
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    const size = this.client.size;
    const n = Math.max(0, Math.min(buf.length, size - offset));
    if (n < buf.length) buf.fill(0, n);
    if (n === 0) return;
    const min = this.client.minBlock;
    const start = Math.floor(offset / min) * min;
    const end = Math.min(size, Math.ceil((offset + n) / min) * min);
    if (start === offset && end === offset + n) {
      await this.client.read(buf.subarray(0, n), offset);
      return;
    }
    const tmp = new Uint8Array(end - start);
    await this.client.read(tmp, start);
    buf.set(tmp.subarray(offset - start, offset - start + n));
  }

  async pwrite(buf: Uint8Array, offset: number): Promise<void> {
    this.checkWritable();
    if (offset + buf.length > this.client.size) throw growError();
    const min = this.client.minBlock;
    const start = Math.floor(offset / min) * min;
    const end = Math.ceil((offset + buf.length) / min) * min;
    if (start === offset && end === offset + buf.length) {
      await this.client.write(buf, offset);
      return;
    }
    const tmp = new Uint8Array(end - start);
    await this.client.read(tmp.subarray(0, min), start);
    if (end - min > start) await this.client.read(tmp.subarray(tmp.length - min), end - min);
    tmp.set(buf, offset - start);
    await this.client.write(tmp, start);
  }

  async size(): Promise<number> {
    return this.client.size;
  }

  async truncate(size: number, prealloc: Preallocation = 'off', exact = false): Promise<void> {
    if (exact && size !== this.client.size) {
      throw new VdiskError('unsupported', 'NBD_RESIZE', 'Cannot resize NBD nodes', { op: 'truncate', path: this.filename });
    }
    if (prealloc !== 'off') {
      throw new VdiskError('unsupported', 'NBD_PREALLOC', `Unsupported preallocation mode '${prealloc}'`, { path: this.filename });
    }
    // qemu's nbd driver accepts any size up to the export's (the export does not change)
    if (size > this.client.size) throw growError();
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.client.flush();
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  async allocatedSize(): Promise<number | undefined> {
    return undefined;
  }

  async extent(offset: number, length: number): Promise<ProtocolExtent> {
    const st = await this.client.blockStatus(offset, length);
    return { length: st.length, data: (st.flags & NBD_STATE_HOLE) === 0, zero: (st.flags & NBD_STATE_ZERO) !== 0 };
  }

  async writeZeroes(offset: number, length: number, punch: boolean): Promise<void> {
    this.checkWritable();
    if (await this.client.writeZeroes(offset, length, { mayTrim: punch })) return;
    const chunk = new Uint8Array(Math.min(length, this.client.maxRequest));
    for (let at = 0; at < length; at += chunk.length) {
      await this.pwrite(chunk.subarray(0, Math.min(chunk.length, length - at)), offset + at);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.checkWritable();
    await this.client.trim(offset, length);
  }

  private checkWritable(): void {
    if (this.readOnly) throw new VdiskError('permission', 'EPERM', 'Operation not permitted', { path: this.filename, errno: 'EPERM' });
  }
}

function growError(): VdiskError {
  return new VdiskError('unsupported', 'NBD_GROW', 'Cannot grow NBD nodes', { op: 'truncate' });
}
