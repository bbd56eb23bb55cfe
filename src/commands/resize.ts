/**
 * qemu-img resize [--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink]
 *   filename [+ | -]size
 *
 * As in qemu-img, the size is taken from the end of the command line before options are parsed, so
 * negative sizes need no `--`.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import type { Preallocation } from '../protocols/types.js';
import type { Image } from '../block/image.js';

const PREALLOC = new Set<Preallocation>(['off', 'metadata', 'falloc', 'full']);

export default async function resizeCommand(argv: string[], cli: Cli): Promise<number> {
  if (argv.length < 2) return cli.usageError('Not enough arguments');
  const sizeArg = argv[argv.length - 1]!;
  const r = getopt(argv.slice(0, -1), ':f:hq', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'preallocation', arg: 'required', key: 'preallocation' },
    { name: 'shrink', arg: 'none', key: 'shrink' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'quiet', arg: 'none', key: 'q' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let quiet = false;
  let shrink = false;
  let prealloc: Preallocation = 'off';
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 'q': quiet = true; break;
      case 'shrink': shrink = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'preallocation':
        if (!PREALLOC.has(v as Preallocation)) {
          cli.error(`Invalid preallocation mode '${v}'`);
          return 1;
        }
        prealloc = v as Preallocation;
        break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting image file name and size');
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  const rel = sizeArg[0] === '+' ? 1 : sizeArg[0] === '-' ? -1 : 0;
  const parsed = parseSize(rel ? sizeArg.slice(1) : sizeArg);
  if (!parsed.ok && parsed.reason === 'invalid') {
    cli.error("Parameter 'size' expects a non-negative number below 2^64");
    cli.errRaw('Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n');
    return 1;
  }
  let img: Image;
  try {
    // with its backing chain, as qemu-img opens it: a missing backing file fails, and growing
    // over a longer backing file zeroes the new area
    img = await openForCommand(r.operands[0]!, args, { readOnly: false, resize: true });
  } catch (e) {
    return cli.fail(e);
  }
  try {
    const n = parsed.ok ? parsed.value : QEMU_MAX_SIZE + 1n;
    const cur = BigInt(img.size);
    const target = rel === 0 ? n : cur + BigInt(rel) * n;
    if (target <= 0n || target > QEMU_MAX_SIZE) {
      cli.error('New image size must be positive');
      return 1;
    }
    if (target < cur && !shrink) {
      cli.error('Use the --shrink option to perform a shrink operation.');
      cli.error("warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
      return 1;
    }
    if (target <= cur && prealloc !== 'off') {
      cli.error('Preallocation can only be used for growing images');
      return 1;
    }
    if (target > BigInt(Number.MAX_SAFE_INTEGER)) {
      cli.error(`Could not resize image: Image size ${target} is too large`);
      return 1;
    }
    try {
      await img.truncate(Number(target), prealloc, shrink);
    } catch (e) {
      return cli.fail(e);
    }
    if (!quiet) cli.out('Image resized.\n');
    return 0;
  } finally {
    await img.close();
  }
}
