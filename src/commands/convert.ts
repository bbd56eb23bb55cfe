/**
 * qemu-img convert [--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U]
 *   [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]]
 *   [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage]
 *   filename [filename2 [...]] output_filename
 *
 * Plus qemu-img 10.1's long names and its -b for the backing file.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { printHelp } from '../cli/common.js';
import { newImageArgs, openForCommand, wrapOpen, type ImageArgs } from '../cli/imageargs.js';
import { parseImageSpec, parseOptString } from '../cli/optstr.js';
import { parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import { parseSnapshotParam } from '../cli/snapshot-param.js';
import { accumulateOptions, createHelpText, isValidOptionList, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { Progress } from '../cli/progress.js';
import { createImage, loadFormatDriver, noCreate } from '../block/create.js';
import { copyImage, COPY_MAX_IN_FLIGHT, type CopySegment } from '../block/copy.js';
import { VdiskError } from '../block/errors.js';
import { parseCacheMode, type CacheMode } from '../block/open.js';
import type { Image } from '../block/image.js';
import { checkSourceBitmaps, checkTargetBitmaps, copyBitmaps } from './convert-bitmaps.js';
import type { FormatDriver } from '../block/driver.js';

/** -S accepts multiples of 512 up to 16 MiB (qemu-img's limit). */
const MAX_SPARSE_SIZE = 16 << 20;

interface ConvertArgs {
  src: ImageArgs;
  outFmt?: string;
  targetImageOpts: boolean;
  options?: string;
  backing?: string;
  backingFmt?: string;
  compress: boolean;
  noCreate: boolean;
  targetIsZero: boolean;
  sparseSize: number;
  inFlight: number;
  outOfOrder: boolean;
  progress: boolean;
  quiet: boolean;
  /** -l, as snapshot.id / snapshot.name options. */
  snapshot?: Record<string, string>;
  /** -t: the output's cache mode; qemu-img convert's default is unsafe (no flushes). */
  cache: CacheMode;
  bitmaps?: boolean;
  skipBrokenBitmaps?: boolean;
  copyOffload: boolean;
  salvage: boolean;
  /** -S was given (qemu refuses it with -C even at the default value). */
  sparseGiven: boolean;
  /** -r in bytes per second; 0: unlimited. */
  rateLimit: number;
}

const LONG_OPTIONS = [
  { name: 'help', arg: 'none', key: 'h' },
  { name: 'object', arg: 'required', key: 'object' },
  { name: 'image-opts', arg: 'none', key: 'image-opts' },
  { name: 'target-image-opts', arg: 'none', key: 'target-image-opts' },
  { name: 'target-is-zero', arg: 'none', key: 'target-is-zero' },
  { name: 'salvage', arg: 'none', key: 'salvage' },
  { name: 'bitmaps', arg: 'none', key: 'bitmaps' },
  { name: 'skip-broken-bitmaps', arg: 'none', key: 'skip-broken-bitmaps' },
  { name: 'force-share', arg: 'none', key: 'U' },
  // qemu-img 10.1 spellings
  { name: 'source-format', arg: 'required', key: 'f' },
  { name: 'target-format', arg: 'required', key: 'O' },
  { name: 'target-format-options', arg: 'required', key: 'o' },
  { name: 'options', arg: 'required', key: 'o' },
  { name: 'backing', arg: 'required', key: 'B' },
  { name: 'backing-format', arg: 'required', key: 'F' },
  { name: 'compress', arg: 'none', key: 'c' },
  { name: 'copy-range-offloading', arg: 'none', key: 'C' },
  { name: 'snapshot', arg: 'required', key: 'l' },
  { name: 'sparse-size', arg: 'required', key: 'S' },
  { name: 'progress', arg: 'none', key: 'p' },
  { name: 'quiet', arg: 'none', key: 'q' },
  { name: 'no-create', arg: 'none', key: 'n' },
  { name: 'parallel', arg: 'required', key: 'm' },
  { name: 'out-of-order', arg: 'none', key: 'W' },
  { name: 'rate-limit', arg: 'required', key: 'r' },
  { name: 'cache', arg: 'required', key: 't' },
  { name: 'source-cache', arg: 'required', key: 'T' },
] as const;

/** Parse argv into ConvertArgs; returns an exit code when the command line itself is wrong. */
function parseArgs(argv: string[], cli: Cli): { a: ConvertArgs; files: string[] } | number {
  const r = getopt(argv, ':hf:O:B:b:CcF:o:l:S:pt:T:qnm:WUr:', LONG_OPTIONS);
  if (!r.ok) return cli.usageError(r.message);
  const a: ConvertArgs = {
    src: newImageArgs((t) => cli.errRaw(t)), targetImageOpts: false, compress: false, noCreate: false,
    targetIsZero: false, sparseSize: 4096, inFlight: 8, outOfOrder: false, progress: false, quiet: false, cache: 'unsafe',
    copyOffload: false, salvage: false, sparseGiven: false, rateLimit: 0,
  };
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': a.src.format = v; break;
      case 'O': a.outFmt = v; break;
      case 'B': case 'b': a.backing = v; break;
      case 'F': a.backingFmt = v; break;
      case 'c': a.compress = true; break;
      case 'C': a.copyOffload = true; break;
      case 'o':
        if (!isValidOptionList(v)) { cli.error(`Invalid option list: ${v}`); return 1; }
        a.options = accumulateOptions(a.options, v);
        break;
      case 'l': {
        const sp = parseSnapshotParam(v);
        if (!sp.ok) { for (const e of sp.errors) cli.error(e); return 1; }
        a.snapshot = sp.options;
        break;
      }
      case 'S': {
        const s = parseSize(v);
        if (!s.ok) {
          cli.error('Invalid buffer size for sparse output specified. You may use k, M, G, T, P or E suffixes for');
          cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
          return 1;
        }
        if (s.value % 512n !== 0n || s.value > BigInt(MAX_SPARSE_SIZE)) {
          cli.error(`Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to ${MAX_SPARSE_SIZE}. Select 0 to disable sparse detection (fully allocates output).`);
          return 1;
        }
        a.sparseSize = Number(s.value);
        a.sparseGiven = true;
        break;
      }
      case 'p': a.progress = true; break;
      case 't': case 'T': {
        const mode = parseCacheMode(v);
        if (mode === undefined) { cli.error(`Invalid cache option: ${v}`); return 1; }
        if (o.key === 't') a.cache = mode;
        break;
      }
      case 'q': a.quiet = true; break;
      case 'n': a.noCreate = true; break;
      case 'm': {
        const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
        if (!(n >= 1 && n <= COPY_MAX_IN_FLIGHT)) {
          cli.error(`Invalid number of coroutines. Allowed number of coroutines is between 1 and ${COPY_MAX_IN_FLIGHT}`);
          return 1;
        }
        a.inFlight = n;
        break;
      }
      case 'W': a.outOfOrder = true; break;
      case 'U': a.src.forceShare = true; break;
      case 'r': {
        const s = parseSize(v);
        if (!s.ok && s.reason === 'range') {
          cli.error(`Invalid rate limit specified. Must be between 0 and ${QEMU_MAX_SIZE}.`);
          return 1;
        }
        if (!s.ok) {
          cli.error('Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for');
          cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
          return 1;
        }
        a.rateLimit = Number(s.value);
        break;
      }
      case 'object':
        try { a.src.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 'image-opts': a.src.imageOpts = true; break;
      case 'target-image-opts': a.targetImageOpts = true; break;
      case 'target-is-zero': a.targetIsZero = true; break;
      case 'bitmaps': a.bitmaps = true; break;
      case 'skip-broken-bitmaps': a.skipBrokenBitmaps = true; break;
      case 'salvage': a.salvage = true; break;
    }
  }
  if (a.quiet) a.progress = false;
  // qemu-img checks these after the whole command line, before anything is opened
  if (a.skipBrokenBitmaps && !a.bitmaps) { cli.error('Use of --skip-broken-bitmaps requires --bitmaps'); return 1; }
  if (a.copyOffload && a.compress) { cli.error('Cannot enable copy offloading when -c is used'); return 1; }
  if (a.copyOffload && a.sparseGiven) { cli.error('Cannot enable copy offloading when -S is used'); return 1; }
  if (a.copyOffload && a.salvage) { cli.error('Cannot use copy offloading in salvaging mode'); return 1; }
  return { a, files: r.operands };
}

async function openSources(files: string[], a: ConvertArgs): Promise<Image[]> {
  const out: Image[] = [];
  try {
    for (const f of files) {
      const extra = a.snapshot !== undefined ? { options: a.snapshot } : {};
      out.push(await openForCommand(f, a.src, { readOnly: true, noShare: true, ...extra }));
    }
  } catch (e) {
    for (const img of out) await img.close().catch(() => undefined);
    throw e;
  }
  return out;
}

/**
 * The output format's driver and -o values, after qemu-img's checks of the target options, in its
 * order: -o parse errors, backing files the format cannot have, -B with several sources, -c, a
 * backing file without a format, a format without a backing file.
 */
async function checkTarget(a: ConvertArgs, sourceCount: number, outName: string, outFmt: string):
  Promise<{ driver: FormatDriver; values: Map<string, string> }> {
  const driver = await loadFormatDriver(outFmt);
  if (!driver.create && !a.noCreate) throw noCreate(outFmt);
  let values = new Map<string, string>();
  if (!a.noCreate) {
    values = parseCreateOptions(driver, a.options);
    // -o backing_file/backing_fmt count as -B/-F (-B wins over -o backing_file)
    if (a.backing === undefined && values.has('backing_file')) a.backing = values.get('backing_file')!;
    if (a.backingFmt === undefined && values.has('backing_fmt')) a.backingFmt = values.get('backing_fmt')!;
    if (a.backing !== undefined && !driver.createOptions?.some((o) => o.name === 'backing_file')) {
      throw new VdiskError('invalid-argument', 'NO_BACKING', `Backing file not supported for file format '${outFmt}'`);
    }
  }
  if (a.backing !== undefined && sourceCount > 1) {
    throw new VdiskError('invalid-argument', 'BACKING_CONCAT', 'Having a backing file for the target makes no sense when concatenating multiple input images');
  }
  if (a.compress && !driver.supportsCompression) {
    throw new VdiskError('unsupported', 'NO_COMPRESSION', 'Compression not supported for this file format');
  }
  if (a.backing !== undefined && a.backingFmt === undefined && !a.noCreate) {
    throw new VdiskError('invalid-argument', 'NO_BACKING_FORMAT', 'Use of backing file requires explicit backing format');
  }
  if (a.backing === undefined && a.backingFmt !== undefined && !a.noCreate) {
    throw new VdiskError('invalid-argument', 'BACKING_FMT_ALONE',
      `${outName}: error while converting ${outFmt}: Backing format cannot be used without backing file`);
  }
  return { driver, values };
}

async function runConvert(cli: Cli, a: ConvertArgs, files: string[]): Promise<number> {
  const outName = files[files.length - 1]!;
  const outFmt = a.outFmt ?? 'raw';
  // qemu-img opens the sources before it looks at the output format
  const sources = await openSources(files.slice(0, -1), a);
  let driver: FormatDriver;
  let values: Map<string, string>;
  try {
    if (a.bitmaps) checkSourceBitmaps(sources[0]!, a.skipBrokenBitmaps === true);
    ({ driver, values } = await checkTarget(a, sources.length, outName, outFmt));
    if (a.bitmaps && sources.length > 1) {
      throw new VdiskError('invalid-argument', 'BITMAPS_CONCAT', 'Copying bitmaps only possible with single source');
    }
  } catch (e) {
    for (const s of sources) await s.close();
    throw e;
  }
  let target: Image | undefined;
  try {
    const total = sources.reduce((s, i) => s + i.size, 0);
    let fresh = false;
    /** As qemu-img, the new target is opened with the -o options naming key secrets (encrypted targets). */
    const keySecrets: Record<string, string> = {};
    if (!a.noCreate) {
      values.delete('size');
      if (a.backing !== undefined) {
        values.set('backing_file', a.backing);
        values.set('backing_fmt', a.backingFmt!);
      }
      const opts: Record<string, string> = {};
      for (const [k, v] of values) opts[k] = v;
      for (const [k, v] of values) if (k.endsWith('key-secret')) keySecrets[k] = v;
      await createImage({ format: outFmt, filename: outName, size: total, options: opts, secrets: a.src.secrets });
      fresh = true;
    }
    const tspec = a.targetImageOpts ? parseImageSpec(outName, true) : undefined;
    const targetArgs: ImageArgs = { ...a.src, imageOpts: a.targetImageOpts, forceShare: false };
    delete targetArgs.format;
    delete targetArgs.warn;
    const tfmt = tspec?.format ?? (a.noCreate ? a.outFmt : outFmt);
    try {
      // with its backing chain, as qemu opens it: a missing backing file fails here
      target = await openForCommand(outName, targetArgs, { readOnly: false, noBacking: a.backing === undefined, cache: a.cache,
        ...(tfmt !== undefined ? { format: tfmt } : {}), ...(Object.keys(keySecrets).length ? { options: keySecrets } : {}),
      });
    } catch (e) {
      // qemu names an option-string target by the whole string
      if (!a.targetImageOpts || !(e instanceof VdiskError) || !(e.cause instanceof VdiskError)) throw e;
      throw wrapOpen(outName, e.cause);
    }
    if (a.bitmaps) checkTargetBitmaps(target);
    if (target.size < total) {
      throw new VdiskError('invalid-argument', 'TARGET_TOO_SMALL', 'output file is smaller than input file');
    }
    const segments: CopySegment[] = [];
    let off = 0;
    for (const s of sources) {
      segments.push({ image: s, targetOffset: off });
      off += s.size;
    }
    const progress = new Progress(a.progress, (s) => cli.out(s));
    try {
      await copyImage(segments, {
        target,
        sparseSize: a.sparseSize,
        targetIsZero: (fresh && a.backing === undefined && target.layer.zeroInit !== false) || a.targetIsZero,
        topOnly: a.backing !== undefined,
        inFlight: a.inFlight,
        outOfOrder: a.outOfOrder,
        compressed: a.compress,
        onProgress: (d, t) => progress.update(d, t),
        salvage: a.salvage,
        // qemu-img -q silences salvage's warnings too
        warn: (t) => { if (!a.quiet) cli.error(`warning: ${t}`); },
        rateLimit: a.rateLimit,
        copyOffload: a.copyOffload,
      });
    } finally {
      progress.finish();
    }
    if (a.bitmaps) await copyBitmaps(sources[0]!, target, a.skipBrokenBitmaps === true, (m) => cli.error(`warning: ${m}`));
    await target.flush();
    return 0;
  } finally {
    if (target) await target.close();
    for (const s of sources) await s.close();
  }
}

export default async function convertCommand(argv: string[], cli: Cli): Promise<number> {
  const parsed = parseArgs(argv, cli);
  if (typeof parsed === 'number') return parsed;
  const { a, files } = parsed;
  // qemu-img's order: these command-line checks, then -o help, then the file count
  if (a.targetImageOpts && !a.noCreate) {
    cli.error('--target-image-opts requires use of -n flag');
    return 1;
  }
  if (a.targetIsZero && !a.noCreate) {
    cli.error('--target-is-zero requires use of -n flag');
    return 1;
  }
  if (a.noCreate && a.options !== undefined) {
    cli.error('-o has no effect when skipping image creation');
    return 1;
  }
  if (wantsHelp(a.options)) {
    try {
      // the target's protocol options are listed when a source and a target are named
      cli.out(createHelpText(await loadFormatDriver(a.outFmt ?? 'raw'), files.length >= 2 ? files[files.length - 1] : undefined));
      return 0;
    } catch (e) {
      return cli.fail(e);
    }
  }
  if (files.length < 2) {
    cli.error('Must specify image file name');
    return 1;
  }
  if (a.src.imageOpts && a.src.format !== undefined) {
    cli.error('--image-opts and --format are mutually exclusive');
    return 1;
  }
  try {
    return await runConvert(cli, a, files);
  } catch (e) {
    return cli.fail(e);
  }
}
