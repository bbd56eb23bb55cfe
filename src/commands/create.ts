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
import { Secrets } from '../cli/optstr.js';
import { parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import { accumulateOptions, createHelpText, createSummary, isValidOptionList, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { createImage, loadFormatDriver, noCreate } from '../block/create.js';
import { openImage, openLayer, resolveBackingName } from '../block/open.js';
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

/** Size of the backing image, opened as qemu-img does to validate it (and to print its probed format). */
async function backingSize(filename: string, a: CreateArgs): Promise<number> {
  const path = resolveBackingName(filename, a.backing!);
  // only the size is needed: like qemu, no I/O open (an encrypted backing needs no key here)
  const img = await openImage(path, { readOnly: true, noIo: true, secrets: a.secrets, ...(a.backingFmt !== undefined ? { format: a.backingFmt } : {}) });
  try {
    return img.size;
  } finally {
    await img.close();
  }
}

async function runCreate(cli: Cli, driver: FormatDriver, filename: string, sizeArg: bigint | undefined, a: CreateArgs): Promise<number> {
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
  if (backing !== undefined && bfmt === undefined) {
    let detected = '';
    try {
      const img = await openLayer(resolveBackingName(filename, backing), { readOnly: true });
      detected = `\nDetected format of ${img.format}.`;
      await img.close();
    } catch {
      // an unopenable backing file gets the message alone
    }
    throw new VdiskError('invalid-argument', 'NO_BACKING_FORMAT', `Backing file specified without backing format${detected}`);
  }
  if (backing !== undefined && !a.unsafe) {
    let size: number;
    try {
      size = await backingSize(filename, { ...a, backing, ...(bfmt !== undefined ? { backingFmt: bfmt } : {}) });
    } catch (e) {
      throw new VdiskError('not-found', 'BACKING_OPEN', `${describe(e)}\nCould not open backing image.`, {}, e);
    }
    if (!values.has('size')) values.set('size', String(size));
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
    let driver: FormatDriver;
    try {
      driver = await loadFormatDriver(a.fmt);
    } catch (e) {
      return cli.fail(e);
    }
    cli.out(createHelpText(driver, filename !== undefined));
    return 0;
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
    size = s.value;
  }
  if (r.operands.length > 2) return cli.usageError(`Unexpected argument: ${r.operands[2]}`);
  try {
    const driver = await loadFormatDriver(a.fmt);
    if (!driver.create) throw noCreate(a.fmt);
    return await runCreate(cli, driver, filename, size, a);
  } catch (e) {
    return cli.fail(e, `${filename}: `);
  }
}
