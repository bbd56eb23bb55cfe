/**
 * qemu-img amend [--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { accumulateOptions, isValidOptionList, optionHelpLines, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { Progress } from '../cli/progress.js';
import { loadFormatDriver } from '../block/create.js';
import { VdiskError } from '../block/errors.js';
import type { FormatDriver } from '../block/driver.js';
import type { Image } from '../block/image.js';

/** Formats whose options qemu-img amend can change. */
const QEMU_AMENDABLE = new Set(['qcow2', 'luks']);

/**
 * Check the -o list against the format's amend options as qemu parses it: option by option, the
 * first unknown name or bad value fails; an unknown name gets qemu's hint when the whole list
 * would parse as create options.
 */
function amendValues(driver: FormatDriver, list: string): Record<string, string> {
  const amendOnly: FormatDriver = { ...driver, createOptions: driver.amendOptions ?? [] };
  try {
    return Object.fromEntries(parseCreateOptions(amendOnly, list, []));
  } catch (e) {
    if (!(e instanceof VdiskError) || !e.message.startsWith('Invalid parameter')) throw e;
    const both: FormatDriver = { ...driver, createOptions: [...(driver.amendOptions ?? []), ...(driver.createOptions ?? [])] };
    let createOnly = false;
    try {
      parseCreateOptions(both, list, []);
      createOnly = true;
    } catch {
      createOnly = false;
    }
    if (!createOnly) throw e;
    throw new VdiskError('invalid-argument', 'BAD_OPTION', `${e.message}\nThis option is only supported for image creation`);
  }
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
  let progress = false;
  let quiet = false;
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
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 't': break;
    }
  }
  if (options === undefined) return cli.usageError('Must specify options (-o)');
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  // qemu-img's -p ends every run past this point with a newline, whatever happened
  const bar = { shown: progress && !quiet, started: undefined as Progress | undefined };
  try {
    return await amendImage(cli, args, r.operands, options, force, bar);
  } finally {
    if (bar.started) bar.started.end();
    else if (bar.shown) cli.out('\n');
  }
}

async function amendImage(
  cli: Cli, args: ReturnType<typeof newImageArgs>, operands: readonly string[], options: string, force: boolean,
  bar: { shown: boolean; started: Progress | undefined },
): Promise<number> {
  const filename = operands[0];
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
  if (filename === undefined || operands.length > 1) {
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
    const values = amendValues(driver, options);
    const progress = new Progress(bar.shown, (t) => cli.out(t), true);
    bar.started = progress;
    await img.layer.amend(values, force, {
      progress: (done, total) => progress.update(done, total),
      message: (t) => cli.errRaw(`${t}\n`),
      error: (t) => cli.error(t),
    });
    return 0;
  } catch (e) {
    // qemu prints the closing 100 % before the error, and the newline after it
    bar.started?.end(false);
    bar.started = undefined;
    return cli.fail(e);
  } finally {
    await img.close();
  }
}
