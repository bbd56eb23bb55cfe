/**
 * qemu-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain]
 *   [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename
 *
 * Issues `count` requests of `buffer_size` bytes, `depth` at a time, at offset, offset+step, ... (wrapping
 * at the image size), as qemu-img does, and prints the same two report lines. Unlike qemu-img 7.2,
 * a queue depth of 0 is refused instead of hanging forever.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { parseSize } from '../cli/units.js';
import { strerror } from '../block/errors.js';
import type { Image } from '../block/image.js';

const SIZE_HINT = 'You may use k, M, G, T, P or E suffixes for\n';
const CACHE_MODES = new Set(['none', 'writeback', 'writethrough', 'directsync', 'unsafe', 'off']);
const AIO_MODES = new Set(['threads', 'native', 'io_uring']);

interface BenchParams {
  count: number;
  depth: number;
  bufSize: number;
  offset: number;
  step: number;
  write: boolean;
  pattern: number;
  flushInterval: number;
  drain: boolean;
}

function intArg(v: string): number | undefined {
  if (!/^\s*-?[0-9]+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 ? n : undefined;
}

/** Run the requests; resolves with the elapsed seconds, rejects on the first failed request. */
async function runBench(img: Image, p: BenchParams): Promise<number> {
  const buf = new Uint8Array(p.bufSize);
  if (p.write) buf.fill(p.pattern);
  const size = img.size;
  let next = p.offset;
  let issued = 0;
  let completed = 0;
  let sinceFlush = 0;
  let failure: unknown;
  const start = process.hrtime.bigint();

  const one = async (off: number): Promise<void> => {
    if (p.write) await img.write(buf, off);
    else await img.read(p.depth > 1 ? new Uint8Array(p.bufSize) : buf, off);
  };
  // Workers share the offset sequence; a flush barrier drains everyone unless --no-drain.
  let barrier: Promise<void> | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && issued < p.count) {
      if (barrier) await barrier;
      if (issued >= p.count) break;
      const off = next;
      issued++;
      next = size > 0 ? (next + p.step) % size : next + p.step;
      try {
        await one(off);
      } catch (e) {
        failure ??= e;
        return;
      }
      completed++;
      if (p.flushInterval > 0 && ++sinceFlush >= p.flushInterval) {
        sinceFlush = 0;
        if (p.drain) {
          barrier ??= (async () => {
            await img.flush();
          })().finally(() => {
            barrier = undefined;
          });
          await barrier;
        } else {
          await img.flush();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(p.depth, Math.max(p.count, 1)) }, worker));
  if (failure !== undefined) throw failure;
  void completed;
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export default async function benchCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hc:d:f:ni:o:qs:S:t:wU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'flush-interval', arg: 'required', key: 'flush-interval' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'pattern', arg: 'required', key: 'pattern' },
    { name: 'no-drain', arg: 'none', key: 'no-drain' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'object', arg: 'required', key: 'object' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  const p: BenchParams = { count: 75000, depth: 64, bufSize: 4096, offset: 0, step: 0, write: false, pattern: 0, flushInterval: 0, drain: true };
  let nativeAio = false;
  let cacheNone = false;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'c': {
        const n = intArg(v);
        if (n === undefined || n < 0) { cli.error('Invalid request count specified'); return 1; }
        p.count = n;
        break;
      }
      case 'd': {
        const n = intArg(v);
        if (n === undefined || n <= 0) { cli.error('Invalid queue depth specified'); return 1; }
        p.depth = n;
        break;
      }
      case 'f': args.format = v; break;
      case 'n': nativeAio = true; break;
      case 'i':
        if (!AIO_MODES.has(v)) { cli.error(`Invalid aio option: ${v}`); return 1; }
        nativeAio = v === 'native';
        break;
      case 'o': case 's': case 'S': {
        const s = parseSize(v);
        const what = o.key === 'o' ? 'offset' : o.key === 's' ? 'buffer size' : 'step_size';
        if (!s.ok || s.value > BigInt(o.key === 'o' ? Number.MAX_SAFE_INTEGER : 2 ** 31 - 1)) {
          cli.error(`Invalid ${what} specified. ${SIZE_HINT.trimEnd()}`);
          cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
          return 1;
        }
        if (o.key === 'o') p.offset = Number(s.value);
        else if (o.key === 's') p.bufSize = Number(s.value);
        else p.step = Number(s.value);
        break;
      }
      case 'q': break; // qemu-img bench prints its report even with -q
      case 't':
        if (!CACHE_MODES.has(v)) { cli.error('Invalid cache mode'); return 1; }
        cacheNone = v === 'none' || v === 'directsync';
        break;
      case 'w': p.write = true; break;
      case 'U': args.forceShare = true; break;
      case 'flush-interval': {
        const n = intArg(v);
        if (n === undefined || n < 0) { cli.error('Invalid flush interval specified'); return 1; }
        p.flushInterval = n;
        break;
      }
      case 'pattern': {
        const n = intArg(v);
        if (n === undefined || n < 0 || n > 0xff) { cli.error('Invalid pattern byte specified'); return 1; }
        p.pattern = n;
        break;
      }
      case 'no-drain': p.drain = false; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  if (p.flushInterval && p.flushInterval < p.depth) { cli.error("Flush interval can't be smaller than depth"); return 1; }
  if (p.flushInterval && !p.write) { cli.error('--flush-interval is only available in write tests'); return 1; }
  const filename = r.operands[0]!;
  if (args.forceShare && p.write) {
    cli.error(`Could not open '${filename}': force-share=on can only be used with read-only images`);
    return 1;
  }
  if (nativeAio && !cacheNone) {
    cli.error(`Could not open '${filename}': aio=native was specified, but it requires cache.direct=on, which was not specified.`);
    return 1;
  }
  if (p.step === 0) p.step = p.bufSize;

  let img: Image;
  try {
    img = await openForCommand(filename, args, { readOnly: !p.write });
  } catch (e) {
    return cli.fail(e);
  }
  try {
    cli.out(`Sending ${p.count} ${p.write ? 'write' : 'read'} requests, ${p.bufSize} bytes each, ${p.depth} in parallel ` +
      `(starting at offset ${p.offset}, step size ${p.step})\n`);
    if (p.flushInterval) cli.out(`Sending flush every ${p.flushInterval} requests\n`);
    let secs: number;
    try {
      secs = await runBench(img, p);
    } catch (e) {
      const errno = e && typeof e === 'object' && 'context' in e ? (e as { context: { errno?: string } }).context.errno : undefined;
      cli.error(`Failed request: ${strerror(errno ?? 'EIO')}`);
      return 1;
    }
    cli.out(`Run completed in ${secs.toFixed(3)} seconds.\n`);
    return 0;
  } finally {
    await img.close();
  }
}
