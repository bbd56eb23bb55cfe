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
import { newImageArgs, openForCommand, type ImageArgs } from '../cli/imageargs.js';
import { parseImageSpec, parseOptString } from '../cli/optstr.js';
import { parseSize } from '../cli/units.js';
import { accumulateOptions, createHelpText, isValidOptionList, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { Progress } from '../cli/progress.js';
import { createImage, loadFormatDriver, noCreate } from '../block/create.js';
import { copyImage, COPY_MAX_IN_FLIGHT, type CopySegment } from '../block/copy.js';
import { VdiskError } from '../block/errors.js';
import type { Image } from '../block/image.js';

const CACHE_MODES = new Set(['none', 'writeback', 'writethrough', 'directsync', 'unsafe', 'off']);
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
  snapshot?: string;
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
    targetIsZero: false, sparseSize: 4096, inFlight: 8, outOfOrder: false, progress: false, quiet: false,
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
      case 'C': break; // copy offloading is an optimisation; plain copies give the same result
      case 'o':
        if (!isValidOptionList(v)) { cli.error(`Invalid option list: ${v}`); return 1; }
        a.options = accumulateOptions(a.options, v);
        break;
      case 'l': a.snapshot = v; break;
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
        break;
      }
      case 'p': a.progress = true; break;
      case 't': case 'T':
        if (!CACHE_MODES.has(v)) { cli.error(`Invalid cache option: ${v}`); return 1; }
        break;
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
        if (!s.ok) { cli.error('Invalid rate limit specified'); return 1; }
        break;
      }
      case 'object':
        try { a.src.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 'image-opts': a.src.imageOpts = true; break;
      case 'target-image-opts': a.targetImageOpts = true; break;
      case 'target-is-zero': a.targetIsZero = true; break;
      case 'salvage': case 'bitmaps': case 'skip-broken-bitmaps': break;
    }
  }
  if (a.quiet) a.progress = false;
  return { a, files: r.operands };
}

/** -l snapshot_param: "snapshot.id=..,snapshot.name=.." or a bare id-or-name. */
function snapshotOptions(param: string): Record<string, string> {
  if (!param.includes('=')) return { 'snapshot.name': param };
  const out: Record<string, string> = {};
  for (const [k, v] of parseOptString(param)) out[k] = v;
  return out;
}

async function openSources(files: string[], a: ConvertArgs): Promise<Image[]> {
  const out: Image[] = [];
  try {
    for (const f of files) {
      const extra = a.snapshot !== undefined ? { options: snapshotOptions(a.snapshot) } : {};
      out.push(await openForCommand(f, a.src, { readOnly: true, ...extra }));
    }
  } catch (e) {
    for (const img of out) await img.close().catch(() => undefined);
    throw e;
  }
  return out;
}

async function runConvert(cli: Cli, a: ConvertArgs, files: string[]): Promise<number> {
  const outName = files[files.length - 1]!;
  const outFmt = a.outFmt ?? 'raw';
  // qemu-img opens the sources before it looks at the output format
  const sources = await openSources(files.slice(0, -1), a);
  let driver;
  try {
    driver = await loadFormatDriver(outFmt);
    if (!driver.create && !a.noCreate) throw noCreate(outFmt);
    if (a.compress && !driver.supportsCompression) {
      throw new VdiskError('unsupported', 'NO_COMPRESSION', 'Compression not supported for this file format');
    }
    if (a.backing !== undefined && a.backingFmt === undefined && !a.noCreate) {
      throw new VdiskError('invalid-argument', 'NO_BACKING_FORMAT', 'Use of backing file requires explicit backing format');
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
      const values = parseCreateOptions(driver, a.options);
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
    const targetArgs: ImageArgs = { ...a.src, imageOpts: a.targetImageOpts };
    delete targetArgs.format;
    delete targetArgs.warn;
    const tfmt = tspec?.format ?? (a.noCreate ? a.outFmt : outFmt);
    target = await openForCommand(outName, targetArgs, {
      readOnly: false, noBacking: true, ...(tfmt !== undefined ? { format: tfmt } : {}), ...(Object.keys(keySecrets).length ? { options: keySecrets } : {}),
    });
    if (target.size < total) {
      throw new VdiskError('invalid-argument', 'TARGET_TOO_SMALL', `Output image is too small (${target.size} < ${total})`);
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
      });
    } finally {
      progress.finish();
    }
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
  if (wantsHelp(a.options)) {
    try {
      const driver = await loadFormatDriver(a.outFmt ?? 'raw');
      cli.out(createHelpText(driver, false));
      return 0;
    } catch (e) {
      return cli.fail(e);
    }
  }
  if (files.length < 2) {
    cli.error('Must specify image file name');
    return 1;
  }
  if (a.targetIsZero && !a.noCreate) {
    cli.error('--target-is-zero requires use of -n flag');
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
