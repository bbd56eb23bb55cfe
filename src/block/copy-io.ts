/**
 * The copy engine's I/O edges, kept apart from its scheduling (copy.ts): qemu-img's wording of
 * read and block-status failures, `--salvage` (keep going past them), the `-r` rate limit and the
 * `-C` copy offloading through copy_file_range.
 */
import { VdiskError, strerror } from './errors.js';
import type { Image } from './image.js';
import { native } from '../protocols/native.js';

/** --salvage re-reads a failed request one sector at a time and zero-fills the sectors that fail. */
export const SALVAGE_SECTOR = 512;

/** The strerror text of an I/O failure (qemu's messages end in it). */
function causeText(e: unknown): string {
  if (e instanceof VdiskError) return e.context.errno !== undefined ? strerror(e.context.errno) : e.message;
  return e instanceof Error ? e.message : String(e);
}

/** Failures --salvage may skip and whose message becomes qemu's "error while reading ...": OS-level I/O errors. */
export function isIoFailure(e: unknown): boolean {
  return e instanceof VdiskError && e.kind === 'io';
}

export function statusError(offset: number, e: unknown): VdiskError {
  return new VdiskError('io', 'BLOCK_STATUS_FAILED', `error while reading block status at offset ${offset}: ${causeText(e)}`,
    { offset, op: 'block-status' }, e);
}

export function statusWarning(offset: number, e: unknown): string {
  return `error while reading block status at offset ${offset}: ${causeText(e)}`;
}

/**
 * Read one request of the copy. A failure is reported at `reportOffset` (qemu names the start of
 * the request in the target); under salvage the request is read again sector by sector, failing
 * sectors read as zeros and each adds a warning.
 */
export async function readForCopy(src: Image, buf: Uint8Array, offset: number, reportOffset: number,
  salvage: boolean, warnings: string[]): Promise<void> {
  try {
    await src.read(buf, offset);
    return;
  } catch (e) {
    if (!isIoFailure(e)) throw e;
    if (!salvage) {
      throw new VdiskError('io', 'READ_FAILED', `error while reading at byte ${reportOffset}: ${causeText(e)}`,
        { offset: reportOffset, op: 'read' }, e);
    }
  }
  for (let p = 0; p < buf.length; p += SALVAGE_SECTOR) {
    const s = buf.subarray(p, Math.min(buf.length, p + SALVAGE_SECTOR));
    try {
      await src.read(s, offset + p);
    } catch (e) {
      if (!isIoFailure(e)) throw e;
      s.fill(0);
      warnings.push(`error while reading offset ${offset + p}: ${causeText(e)}`);
    }
  }
}

/**
 * -r: bytes per second. As qemu's rate limiter, the first request goes at once and each later one
 * waits until the bytes sent before it have taken their time.
 */
export class RateLimiter {
  private start = -1;
  private dispatched = 0;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly now: () => number = () => performance.now(),
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  /** Milliseconds a request of n bytes must wait now (and accounts for it). */
  delayFor(n: number): number {
    const t = this.now();
    if (this.start < 0) this.start = t;
    const due = this.start + (this.dispatched * 1000) / this.bytesPerSecond;
    this.dispatched += n;
    return Math.max(0, due - t);
  }

  async wait(n: number): Promise<void> {
    if (this.bytesPerSecond <= 0) return;
    const ms = this.delayFor(n);
    if (ms > 0) await this.sleep(ms);
  }
}

interface HasFd {
  readonly fd: number;
}

function fdOf(img: Image): number | undefined {
  const p = img.protocol as unknown as Partial<HasFd> & { protocol: string };
  return p.protocol === 'file' && typeof p.fd === 'number' ? p.fd : undefined;
}

/**
 * -C: copy [offset, offset+length) of src to dst at dstOffset inside the kernel, when both ends are
 * plain file bytes (the source's data stored uncompressed in its own file, a raw target). Returns
 * false, having copied nothing, when that is not the case or the kernel cannot do it; the caller
 * then reads and writes.
 */
export async function copyRange(src: Image, offset: number, length: number, dst: Image, dstOffset: number): Promise<boolean> {
  if (!native?.copyFileRange || dst.format !== 'raw' || dst.meta.probed) return false;
  const st = await src.chainStatus(offset, length);
  if (st.length < length || !st.data || st.zero || st.compressed || st.hostOffset === undefined) return false;
  let holder: Image | null = src;
  for (let d = 0; d < st.depth && holder; d++) holder = holder.backing;
  if (!holder || (st.hostFile !== undefined && st.hostFile !== holder.filename)) return false;
  const tst = await dst.layerStatus(dstOffset, length);
  const inFd = fdOf(holder);
  const outFd = fdOf(dst);
  if (inFd === undefined || outFd === undefined || tst.hostOffset === undefined || tst.length < length) return false;
  let done = 0;
  try {
    while (done < length) {
      const n = native.copyFileRange(inFd, st.hostOffset + done, outFd, tst.hostOffset + done, length - done);
      if (n <= 0) break;
      done += n;
    }
  } catch {
    // EXDEV, ENOSYS, EOPNOTSUPP...: read and write the rest
  }
  if (done === length) return true;
  const rest = new Uint8Array(length - done);
  await src.read(rest, offset + done);
  await dst.write(rest, dstOffset + done);
  return true;
}
