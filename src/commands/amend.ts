/**
 * qemu-img amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { accumulateOptions, isValidOptionList, optionHelpLines, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { parseOptString } from '../cli/optstr.js';
import { loadFormatDriver } from '../block/create.js';
import { VdiskError } from '../block/errors.js';
import type { FormatDriver } from '../block/driver.js';
import type { Image } from '../block/image.js';

/** Formats whose options qemu-img amend can change. */
const QEMU_AMENDABLE = new Set(['qcow2', 'luks']);

/** Check the -o list against the format's amend options, with qemu's wording for create-only ones. */
function amendValues(driver: FormatDriver, list: string): Record<string, string> {
  const allowed = new Set((driver.amendOptions ?? []).map((s) => s.name));
  for (const [k] of parseOptString(list)) {
    if (!allowed.has(k)) {
      const createOnly = (driver.createOptions ?? []).some((s) => s.name === k);
      throw new VdiskError('invalid-argument', 'BAD_OPTION',
        createOnly ? `Invalid parameter '${k}'\nThis option is only supported for image creation` : `Invalid parameter '${k}'`);
    }
  }
  // typed against the amend list: some amend options (encrypt.state...) are no create options
  return Object.fromEntries(parseCreateOptions({ ...driver, createOptions: driver.amendOptions ?? [] }, list, []));
}

export default async function amendCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':ho:f:t:pq', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force', arg: 'none', key: 'force' },
    { name: 'options', arg: 'required', key: 'o' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'cache', arg: 'required', key: 't' },
    { name: 'progress', arg: 'none', key: 'p' },
    { name: 'quiet', arg: 'none', key: 'q' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let options: string | undefined;
  let force = false;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'o':
        if (!isValidOptionList(v)) { cli.error(`Invalid option list: ${v}`); return 1; }
        options = accumulateOptions(options, v);
        break;
      case 'f': args.format = v; break;
      case 'force': force = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 't': case 'p': case 'q': break;
    }
  }
  if (options === undefined) return cli.usageError('Must specify options (-o)');
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  const filename = r.operands[0];
  if (wantsHelp(options) && filename === undefined && args.format !== undefined) {
    try {
      const driver = await loadFormatDriver(args.format);
      if (!driver.amendOptions) throw new VdiskError('unsupported', 'NO_AMEND', `Format driver '${driver.name}' does not support option amendment`);
      cli.out(`Amend options for '${driver.name}':\n${optionHelpLines(driver.amendOptions)}`);
      return 0;
    } catch (e) {
      return cli.fail(e);
    }
  }
  if (filename === undefined || r.operands.length > 1) {
    cli.error('Expecting one image file name');
    return 1;
  }
  let img: Image;
  try {
    img = await openForCommand(filename, args, { readOnly: false });
  } catch (e) {
    return cli.fail(e);
  }
  try {
    const driver = await loadFormatDriver(img.format);
    if (!driver.amendOptions || !img.layer.amend) {
      // qemu can amend these; vdisk says it is vdisk that cannot, not the format
      if (QEMU_AMENDABLE.has(img.format)) {
        throw new VdiskError('unsupported', 'AMEND_NOT_YET', `vdisk cannot amend '${img.format}' images yet`);
      }
      throw new VdiskError('unsupported', 'NO_AMEND', `Format driver '${img.format}' does not support option amendment`);
    }
    if (wantsHelp(options)) {
      cli.out(`Amend options for '${driver.name}':\n${optionHelpLines(driver.amendOptions)}`);
      return 0;
    }
    await img.layer.amend(amendValues(driver, options), force);
    return 0;
  } catch (e) {
    return cli.fail(e);
  } finally {
    await img.close();
  }
}
