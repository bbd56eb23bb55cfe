/**
 * qemu-img compare [--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U]
 *   filename1 filename2
 *
 * Exit codes as qemu-img documents them: 0 identical, 1 different, 2 an image could not be opened,
 * 3 block status failed, 4 a read failed.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { Progress } from '../cli/progress.js';
import { StdoutStream } from '../cli/stdio.js';
import type { ChainStatus, Image } from '../block/image.js';
import { VdiskError, strerror } from '../block/errors.js';
import { firstDifference, firstNonZero } from '../block/bytes.js';
import { InOrder } from '../block/in-order.js';
import { AlignedPool } from '../block/aligned.js';

export const EXIT_IDENTICAL = 0;
export const EXIT_DIFFERENT = 1;
export const EXIT_OPEN_ERROR = 2;
export const EXIT_STATUS_ERROR = 3;
export const EXIT_IO_ERROR = 4;

/** A block-status failure, told apart from read failures for the exit code. */
class StatusError {
  constructor(readonly cause: unknown, readonly filename: string) {}
}

async function status(img: Image, off: number, len: number): Promise<ChainStatus> {
  try {
    return await img.chainStatus(off, len);
  } catch (e) {
    throw new StatusError(e, img.filename);
  }
}

/** An I/O error reading a chunk: qemu names the chunk's start and the image. */
async function readChunk(img: Image, buf: Uint8Array, off: number): Promise<void> {
  try {
    await img.read(buf, off);
  } catch (e) {
    if (!(e instanceof VdiskError) || e.kind !== 'io') throw e;
    const why = e.context.errno !== undefined ? strerror(e.context.errno) : e.message;
    throw new VdiskError('io', 'COMPARE_READ', `Error while reading offset ${off} of ${img.filename}: ${why}`, { path: img.filename, offset: off, op: 'read' }, e);
  }
}

/** Bytes compared at a time (qemu's chunks: its read errors name their starts). */
const COMPARE_CHUNK = 2 << 20;
/** Chunks in flight: both images' reads of several chunks overlap each other and the comparisons. */
const COMPARE_IN_FLIGHT = 4;
/** qemu compares (and finds nonzero data) in 512-byte sectors and names the first differing sector's start. */
const SECTOR = 512;

class Mismatch {
  constructor(readonly message: string) {}
}

function contentMismatch(off: number, d: number): Mismatch {
  return new Mismatch(`Content mismatch at offset ${off + d - (d % SECTOR)}!`);
}

/** The block status flags qemu compares in strict mode. */
function flags(st: ChainStatus, offset: number, size: number): string {
  return [st.data, st.zero, st.present, st.hostOffset !== undefined, offset + st.length >= size].map(Number).join('');
}

/**
 * One chunk of both images: each side that is not known to be zero is read (both at once); a
 * failed read of the first image is reported before one of the second, as qemu reads them in turn.
 */
async function compareChunk(i1: Image, z1: boolean, i2: Image, z2: boolean, off: number, n: number, pool: AlignedPool): Promise<void> {
  const b1 = z1 ? undefined : pool.take();
  const b2 = z2 ? undefined : pool.take();
  try {
    const x = b1?.subarray(0, n);
    const y = b2?.subarray(0, n);
    const [r1, r2] = await Promise.allSettled([x && readChunk(i1, x, off), y && readChunk(i2, y, off)]);
    if (r1.status === 'rejected') throw r1.reason;
    if (r2.status === 'rejected') throw r2.reason;
    const d = x && y ? firstDifference(x, y) : firstNonZero((x ?? y)!);
    if (d >= 0) throw contentMismatch(off, d);
  } finally {
    if (b1) pool.give(b1);
    if (b2) pool.give(b2);
  }
}

async function compareRange(i1: Image, i2: Image, strict: boolean, end: number, progress: Progress, total: number): Promise<void> {
  const pool = new AlignedPool(2 * COMPARE_IN_FLIGHT, Math.min(COMPARE_CHUNK, end)); // a pair per chunk in flight
  const jobs = new InOrder<number>(COMPARE_IN_FLIGHT, (at) => progress.update(at, total));
  for (let off = 0; off < end;) {
    let s1: ChainStatus;
    let s2: ChainStatus;
    try {
      s1 = await status(i1, off, end - off);
      s2 = await status(i2, off, end - off);
    } catch (e) {
      return jobs.fail(e);
    }
    let chunk = Math.min(s1.length, s2.length);
    if (strict && flags(s1, off, i1.size) !== flags(s2, off, i2.size)) {
      return jobs.fail(new Mismatch(`Strict mode: Offset ${off} block status mismatch!`));
    }
    if (s1.zero && s2.zero) {
      await jobs.add(Promise.resolve(off + chunk));
    } else {
      // a run longer than a chunk is compared chunk by chunk: its status is not asked again
      for (const stop = off + chunk; off < stop;) {
        const n = Math.min(stop - off, COMPARE_CHUNK);
        const at = off;
        await jobs.add(compareChunk(i1, s1.zero, i2, s2.zero, at, n, pool).then(() => at + n));
        off += n;
      }
      continue;
    }
    off += chunk;
  }
  await jobs.finish();
}

/** The part of the larger image past the smaller one must read as zeros. */
async function checkTail(big: Image, from: number, progress: Progress, total: number): Promise<void> {
  const pool = new AlignedPool(2 * COMPARE_IN_FLIGHT, Math.min(COMPARE_CHUNK, big.size - from));
  const jobs = new InOrder<number>(COMPARE_IN_FLIGHT, (at) => progress.update(at, total));
  for (let off = from; off < big.size;) {
    let st: ChainStatus;
    try {
      st = await status(big, off, big.size - off);
    } catch (e) {
      return jobs.fail(e);
    }
    if (st.zero) {
      off += st.length;
      await jobs.add(Promise.resolve(off));
      continue;
    }
    for (const stop = off + st.length; off < stop;) {
      const n = Math.min(stop - off, COMPARE_CHUNK);
      const at = off;
      await jobs.add(compareChunk(big, false, big, true, at, n, pool).then(() => at + n));
      off += n;
    }
  }
  await jobs.finish();
}

export default async function compareCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hf:F:T:pqsU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    // qemu-img 10.1 spellings
    { name: 'a-format', arg: 'required', key: 'f' },
    { name: 'b-format', arg: 'required', key: 'F' },
    { name: 'progress', arg: 'none', key: 'p' },
    { name: 'quiet', arg: 'none', key: 'q' },
    { name: 'strict', arg: 'none', key: 's' },
    { name: 'source-cache', arg: 'required', key: 'T' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const a1 = newImageArgs();
  let fmt2: string | undefined;
  let progressOn = false;
  let quiet = false;
  let strict = false;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': a1.format = v; break;
      case 'F': fmt2 = v; break;
      case 'p': progressOn = true; break;
      case 'q': quiet = true; break;
      case 's': strict = true; break;
      case 'U': a1.forceShare = true; break;
      case 'T': break;
      case 'image-opts': a1.imageOpts = true; break;
      case 'object':
        try { a1.secrets.add(v); } catch (e) { cli.fail(e); return EXIT_OPEN_ERROR; }
        break;
    }
  }
  if (quiet) progressOn = false;
  if (r.operands.length !== 2) return cli.usageError('Expecting two image file names');
  if (a1.imageOpts && (a1.format !== undefined || fmt2 !== undefined)) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  const a2 = { ...a1, ...(fmt2 !== undefined ? { format: fmt2 } : {}) };
  if (fmt2 === undefined) delete a2.format;
  let i1: Image | undefined;
  let i2: Image | undefined;
  try {
    i1 = await openForCommand(r.operands[0]!, a1, { readOnly: true });
    i2 = await openForCommand(r.operands[1]!, a2, { readOnly: true });
  } catch (e) {
    await i1?.close();
    cli.fail(e);
    return EXIT_OPEN_ERROR;
  }
  // its few lines reach a pipe at exit, after any error already written to stderr (iotest 074)
  const stdout = new StdoutStream(cli);
  const say = (s: string): void => {
    if (!quiet) stdout.write(s);
  };
  const total = Math.max(i1.size, i2.size);
  // qemu fflush()es stdout after each progress line
  const progress = new Progress(progressOn, (s) => {
    stdout.write(s);
    stdout.end();
  });
  try {
    if (i1.size !== i2.size && strict) throw new Mismatch('Strict mode: Image size mismatch!');
    const common = Math.min(i1.size, i2.size);
    await compareRange(i1, i2, strict, common, progress, total);
    if (i1.size !== i2.size) {
      // qemu warns only once the common part has compared equal
      say('Warning: Image size mismatch!\n');
      await checkTail(i1.size > i2.size ? i1 : i2, common, progress, total);
    }
    say('Images are identical.\n');
    return EXIT_IDENTICAL;
  } catch (e) {
    if (e instanceof Mismatch) {
      say(`${e.message}\n`);
      return EXIT_DIFFERENT;
    }
    if (e instanceof StatusError) {
      if (e.cause instanceof VdiskError && e.cause.kind === 'io') cli.error(`Sector allocation test failed for ${e.filename}`);
      else cli.fail(e.cause);
      return EXIT_STATUS_ERROR;
    }
    cli.fail(e);
    return EXIT_IO_ERROR;
  } finally {
    // compare's progress ends with a bare newline after the result line (no closing 100 %)
    if (progressOn) progress.detach();
    else progress.finish();
    await i1.close();
    await i2.close();
    if (progressOn) stdout.write('\n');
    stdout.end();
  }
}
