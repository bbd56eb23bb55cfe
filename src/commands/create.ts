/**
 * qemu-img create [--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
 *
 * Also qemu-img 10.1's long names (--format, --backing, --backing-format, --backing-unsafe, --options,
 * --quiet) and its -B for the backing file.
 */
import type { Cli } from '../cli/context.js';
import { describe } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { printHelp } from '../cli/common.js';
import { parseImageSpec, Secrets } from '../cli/optstr.js';
import { hexSuffixWarning, parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import { accumulateOptions, createHelpText, createSummary, isValidOptionList, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { createImage, loadFormatDriver, noCreate } from '../block/create.js';
import { openImage, resolveBackingName } from '../block/open.js';
import { hostPath } from '../block/filenames.js';
import { VdiskError, errnoOf } from '../block/errors.js';
import type { FormatDriver } from '../block/driver.js';

export const INVALID_SIZE_LINES = [
  'Invalid image size specified. You may use k, M, G, T, P or E suffixes for',
  'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
];

interface CreateArgs {
  fmt: string;
  backing?: string;
  backingFmt?: string;
  unsafe: boolean;
  options?: string;
  quiet: boolean;
  secrets: Secrets;
}

async function runCreate(cli: Cli, driver: FormatDriver, filename: string, sizeArg: bigint | undefined, a: CreateArgs): Promise<number> {
  hostPath(filename, true); // an unknown protocol prefix fails before the options are looked at, as in qemu
  const values = parseCreateOptions(driver, a.options);
  if (sizeArg !== undefined && values.has('size')) throw new VdiskError('invalid-argument', 'SIZE_TWICE', 'The image size must be specified only once');
  if (sizeArg !== undefined) values.set('size', sizeArg.toString());
  const hasBackingOpt = (driver.createOptions ?? []).some((s) => s.name === 'backing_file');
  if (a.backing !== undefined) {
    if (!hasBackingOpt) throw new VdiskError('invalid-argument', 'NO_BACKING', `Backing file not supported for file format '${driver.name}'`);
    values.set('backing_file', a.backing);
  }
  if (a.backingFmt !== undefined) {
    if (!hasBackingOpt) throw new VdiskError('invalid-argument', 'NO_BACKING', `Backing file format not supported for file format '${driver.name}'`);
    values.set('backing_fmt', a.backingFmt);
  }
  const backing = values.get('backing_file');
  const bfmt = values.get('backing_fmt');
  if (backing === filename) {
    throw new VdiskError('invalid-argument', 'BACKING_IS_SELF', 'Error: Trying to create an image with the same filename as the backing file');
  }
  if (backing === '') throw new VdiskError('invalid-argument', 'EMPTY_BACKING', 'Expected backing file name, got empty string');
  // qemu opens the backing image first (unless -u): its open error wins over a missing -F, and
  // the probed format is named in a hint that has no newline of its own
  if (backing !== undefined && !a.unsafe) {
    let img;
    try {
      // a json: backing name is an option set, opened as the CLI opens one
      const spec = parseImageSpec(resolveBackingName(filename, backing), false);
      const format = bfmt ?? spec.format;
      // only the size is needed: like qemu, no I/O open (an encrypted backing needs no key here)
      // qemu opens the backing file force-shared: an overlay can be made while a guest writes its base
      img = await openImage(spec.filename, { readOnly: true, noIo: true, forceShare: true, secrets: a.secrets, options: spec.options, ...(format !== undefined ? { format } : {}) });
    } catch (e) {
      throw new VdiskError('not-found', 'BACKING_OPEN', `${describe(e)}\nCould not open backing image.`, {}, e);
    }
    try {
      if (bfmt === undefined) {
        throw new VdiskError('invalid-argument', 'NO_BACKING_FORMAT_DETECTED', `Backing file specified without backing format\nDetected format of ${img.format}.`);
      }
      if (!values.has('size')) values.set('size', String(img.size));
    } finally {
      await img.close();
    }
  } else if (backing !== undefined && bfmt === undefined) {
    throw new VdiskError('invalid-argument', 'NO_BACKING_FORMAT', 'Backing file specified without backing format');
  }
  if (!values.has('size')) throw new VdiskError('invalid-argument', 'NO_SIZE', 'Image creation needs a size parameter');
  if (!a.quiet) cli.out(`Formatting '${filename}', ${createSummary(driver, values)}\n`);
  if (bfmt !== undefined && backing === undefined) {
    throw new VdiskError('invalid-argument', 'BACKING_FMT_ALONE', 'Backing format cannot be used without backing file');
  }
  const size = Number(values.get('size'));
  const opts: Record<string, string> = {};
  for (const [k, v] of values) if (k !== 'size') opts[k] = v;
  try {
    await createImage({ format: driver.name, filename, size, options: opts, secrets: a.secrets });
  } catch (e) {
    if (errnoOf((e as { cause?: unknown }).cause) === 'EFBIG' || (e instanceof VdiskError && e.context.errno === 'EFBIG')) {
      throw new VdiskError('invalid-argument', 'TOO_LARGE', `The image size is too large for file format '${driver.name}'`, {}, e);
    }
    throw e;
  }
  return 0;
}

export default async function createCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':F:b:B:f:ho:qu', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'backing', arg: 'required', key: 'b' },
    { name: 'backing-format', arg: 'required', key: 'F' },
    { name: 'backing-unsafe', arg: 'none', key: 'u' },
    { name: 'options', arg: 'required', key: 'o' },
    { name: 'quiet', arg: 'none', key: 'q' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const a: CreateArgs = { fmt: 'raw', unsafe: false, quiet: false, secrets: new Secrets() };
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': a.fmt = v; break;
      case 'b': case 'B': a.backing = v; break;
      case 'F': a.backingFmt = v; break;
      case 'u': a.unsafe = true; break;
      case 'q': a.quiet = true; break;
      case 'o':
        if (!isValidOptionList(v)) {
          cli.error(`Invalid option list: ${v}`);
          return 1;
        }
        a.options = accumulateOptions(a.options, v);
        break;
      case 'object':
        try { a.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  const filename = r.operands[0];
  if (wantsHelp(a.options)) {
    try {
      cli.out(createHelpText(await loadFormatDriver(a.fmt), filename));
      return 0;
    } catch (e) {
      return cli.fail(e);
    }
  }
  if (filename === undefined) return cli.usageError('Expecting image file name');
  let size: bigint | undefined;
  if (r.operands.length >= 2) {
    const s = parseSize(r.operands[1]!);
    if (!s.ok) {
      if (s.reason === 'range') cli.error(`Invalid image size specified. Must be between 0 and ${QEMU_MAX_SIZE}.`);
      else for (const l of INVALID_SIZE_LINES) cli.error(l);
      return 1;
    }
    if (s.hexSuffix) cli.error(hexSuffixWarning(r.operands[1]!));
    size = s.value;
  }
  if (r.operands.length > 2) return cli.usageError(`Unexpected argument: ${r.operands[2]}`);
  try {
    const driver = await loadFormatDriver(a.fmt);
    if (!driver.create) throw noCreate(a.fmt);
    return await runCreate(cli, driver, filename, size, a);
  } catch (e) {
    if (e instanceof VdiskError && e.code === 'NO_BACKING_FORMAT_DETECTED') {
      cli.errRaw(`${cli.prog}: ${filename}: ${e.message}`);
      return 1;
    }
    return cli.fail(e, `${filename}: `);
  }
}
