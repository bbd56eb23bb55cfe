/**
 * qemu-img commit [--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename
 *
 * Writes what the top image (and the images between it and the base) define into the base, grows
 * the base when the top is larger, and empties the top afterwards when the base is its immediate
 * backing file and -d was not given, as qemu-img does.
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import type { Cli } from '../cli/context.js';
import { realpathOf, statPath } from '../block/host-fs.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { Progress } from '../cli/progress.js';
import { parseSize } from '../cli/units.js';
import { VdiskError, strerror } from '../block/errors.js';
import { parseCacheMode, type CacheMode } from '../block/open.js';
import type { ChainStatus, Image } from '../block/image.js';
import { InOrder } from '../block/in-order.js';
import { AlignedPool } from '../block/aligned.js';

/**
 * Bytes copied per request, at most (a run the top defines is copied in one request up to this):
 * the base's writes go one at a time, so fewer, larger ones finish sooner.
 */
const COMMIT_CHUNK = 4 << 20;

async function identity(path: string): Promise<string> {
  try {
    const st = await statPath(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return await realpathOf(path).catch(() => resolve(path));
  }
}

/** Whether a backing file being opened (by resolved path, below `overlay`) is the commit's base. */
function isBase(baseName: string | undefined): (path: string, depth: number, overlay: string) => Promise<boolean> {
  let found = false;
  return async (path, depth, overlay) => {
    if (found) return false;
    if (baseName === undefined) found = depth === 1;
    else found = (await identity(path)) === (await identity(isAbsolute(baseName) ? baseName : join(dirname(overlay), baseName)));
    return found;
  };
}

/**
 * qemu opens the chain read-only and then reopens the base for writing; a lock refused to that
 * reopen is printed bare, without "Could not open". If the base was refused its write lock and a
 * read-only chain opens, that is what happened in qemu; else qemu failed in the first open.
 */
async function baseLockError(e: unknown, openReadOnlyChain: () => Promise<Image>): Promise<unknown> {
  let inner: unknown = e;
  while (inner instanceof VdiskError && inner.cause instanceof VdiskError) inner = inner.cause;
  if (!(inner instanceof VdiskError) || inner.code !== 'IMAGE_LOCKED' || inner === e) return e;
  try {
    await (await openReadOnlyChain()).close();
  } catch (e2) {
    return e2;
  }
  return inner;
}

/** The chain from the top down, and the index of the base in it. */
async function findBase(top: Image, baseName: string | undefined): Promise<{ chain: Image[]; base: number }> {
  const chain: Image[] = [];
  for (let img: Image | null = top; img; img = img.backing) chain.push(img);
  if (chain.length < 2) throw new VdiskError('invalid-argument', 'NO_BACKING', 'Image does not have a backing file');
  if (baseName === undefined) return { chain, base: 1 };
  // as qemu, a relative base name is relative to the overlay that names it, not to the working directory
  for (let i = 1; i < chain.length; i++) {
    const want = await identity(isAbsolute(baseName) ? baseName : join(dirname(chain[i - 1]!.filename), baseName));
    if ((await identity(chain[i]!.filename)) === want) return { chain, base: i };
  }
  throw new VdiskError('not-found', 'BASE_NOT_IN_CHAIN', `Did not find '${baseName}' in the backing chain of '${top.filename}'`);
}

/** Requests of a commit in flight at once: reads of the top overlap writes into the base. */
const COMMIT_IN_FLIGHT = 8;

/**
 * Copy everything the layers above `base` define into it (zeros included). Ranges are planned in
 * order and copied up to COMMIT_IN_FLIGHT at a time (they never overlap) through page-aligned
 * buffers; progress follows the planned order, so it reads as the serial copy's did. On an error
 * the requests in flight are waited for before the first error is thrown, so nothing writes into
 * the base after it.
 */
async function commitData(top: Image, base: Image, baseDepth: number, progress: Progress): Promise<void> {
  const pool = new AlignedPool(COMMIT_IN_FLIGHT, COMMIT_CHUNK);
  const jobs = new InOrder<number>(COMMIT_IN_FLIGHT, (end) => progress.update(end, top.size));
  // the reads overlap; the writes go in planned order (the base's layout is the serial copy's),
  // and none starts once one before it failed
  let turn: Promise<void> = Promise.resolve();
  let failed = false;
  const inTurn = (prev: Promise<void>, write: () => Promise<void>) => async (): Promise<void> => {
    await prev;
    if (!failed) await write();
  };
  for (let off = 0; off < top.size;) {
    let st: ChainStatus;
    try {
      st = await top.chainStatus(off, Math.min(top.size - off, 1 << 30), 0, false);
    } catch (e) {
      return jobs.fail(e);
    }
    let n = st.length;
    let run: Promise<void> = Promise.resolve();
    const prev = turn;
    if (st.depth < baseDepth) {
      const at = off;
      if (st.zero) {
        // qemu-img commit runs as an active mirror with unmap: zeroed ranges free base clusters
        const len = n;
        run = inTurn(prev, () => base.writeZeroes(at, len, true))();
      } else {
        n = Math.min(n, COMMIT_CHUNK);
        const whole = pool.take();
        const buf = whole.subarray(0, n);
        run = top.read(buf, at).then(inTurn(prev, () => base.write(buf, at))).finally(() => pool.give(whole));
      }
    }
    const mine = run;
    turn = prev.then(() => mine).catch(() => { failed = true; });
    const end = off + n;
    await jobs.add(run.then(() => end));
    off = end;
  }
  await jobs.finish();
}

export default async function commitCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':f:ht:b:dpqr:', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'cache', arg: 'required', key: 't' },
    { name: 'base', arg: 'required', key: 'b' },
    { name: 'drop', arg: 'none', key: 'd' },
    { name: 'progress', arg: 'none', key: 'p' },
    { name: 'quiet', arg: 'none', key: 'q' },
    { name: 'rate-limit', arg: 'required', key: 'r' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let baseName: string | undefined;
  let keepTop = false;
  /** -t; qemu-img commit flushes by default (writeback). */
  let cache: CacheMode = 'writeback';
  let progressOn = false;
  let quiet = false;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 't': {
        const mode = parseCacheMode(v);
        if (mode === undefined) { cli.error(`Invalid cache option: ${v}`); return 1; }
        cache = mode;
        break;
      }
      case 'b': baseName = v; break;
      case 'd': keepTop = true; break;
      case 'p': progressOn = true; break;
      case 'q': quiet = true; break;
      case 'r':
        if (!parseSize(v).ok) {
          cli.error('Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for');
          cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
          return 1;
        }
        break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  if (quiet) progressOn = false;
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  if (args.imageOpts && args.format !== undefined) {
    cli.error(IMAGE_OPTS_AND_FORMAT);
    return 1;
  }
  let top: Image;
  try {
    // only the base is written, so only it is opened (and locked) for writing, as in qemu
    top = await openForCommand(r.operands[0]!, args, { readOnly: false, backingWritable: isBase(baseName), cache });
  } catch (e) {
    return cli.fail(await baseLockError(e, () => openForCommand(r.operands[0]!, args, { readOnly: false, cache })));
  }
  const progress = new Progress(progressOn, (s) => cli.out(s));
  try {
    const { chain, base } = await findBase(top, baseName);
    const baseImg = chain[base]!;
    if (top.size > baseImg.size) await baseImg.truncate(top.size, 'off', false);
    try {
      await commitData(top, baseImg, base, progress);
      await baseImg.flush();
    } catch (e) {
      // qemu copies in a block job; an I/O error ends it with the job's message
      if (!(e instanceof VdiskError) || e.kind !== 'io') throw e;
      const why = e.context.errno !== undefined ? strerror(e.context.errno) : e.message;
      throw new VdiskError('io', 'COMMIT_JOB', `Block job failed: ${why}`, e.context, e);
    }
    // qemu empties the top only when it was committed into its immediate backing file
    if (!keepTop && baseName === undefined) {
      await top.makeEmpty();
      await top.flush();
    }
    progress.finish();
    if (!quiet) cli.out('Image committed.\n');
    return 0;
  } catch (e) {
    progress.finish();
    return cli.fail(e);
  } finally {
    await top.close();
  }
}
