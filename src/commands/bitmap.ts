/**
 * qemu-img bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)...
 *   [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | -f fmt]
 *   filename bitmap
 *
 * The actions apply in command-line order; the first failure stops the command (exit 1) and
 * what the earlier actions did stays, as in qemu-img.
 */
import type { Cli } from '../cli/context.js';
import { describe } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand, type ImageArgs } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import type { Image } from '../block/image.js';
import { addBitmap, clearBitmap, enableBitmap, mergeBitmap, removeBitmap } from '../block/bitmaps.js';

type Op = 'add' | 'remove' | 'clear' | 'enable' | 'disable' | 'merge';
interface Action {
  op: Op;
  source?: string;
}

interface Parsed {
  actions: Action[];
  args: ImageArgs;
  granularity?: bigint;
  srcFile?: string;
  srcFmt?: string;
  operands: string[];
}

const LONG_OPTIONS = [
  { name: 'help', arg: 'none', key: 'h' },
  { name: 'object', arg: 'required', key: 'object' },
  { name: 'image-opts', arg: 'none', key: 'image-opts' },
  { name: 'add', arg: 'none', key: 'add' },
  { name: 'remove', arg: 'none', key: 'remove' },
  { name: 'clear', arg: 'none', key: 'clear' },
  { name: 'enable', arg: 'none', key: 'enable' },
  { name: 'disable', arg: 'none', key: 'disable' },
  { name: 'merge', arg: 'required', key: 'merge' },
] as const;

const INVALID_GRANULARITY = [
  'Invalid granularity specified. You may use k, M, G, T, P or E suffixes for',
  'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.',
];

function parse(argv: string[], cli: Cli): Parsed | number {
  const r = getopt(argv, ':b:f:F:g:h', LONG_OPTIONS);
  if (!r.ok) return cli.usageError(r.message);
  const p: Parsed = { actions: [], args: newImageArgs((t) => cli.errRaw(t)), operands: r.operands };
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'b': p.srcFile = v; break;
      case 'f': p.args.format = v; break;
      case 'F': p.srcFmt = v; break;
      case 'g': {
        const s = parseSize(v);
        if (!s.ok) {
          if (s.reason === 'range') cli.error(`Invalid granularity specified. Must be between 0 and ${QEMU_MAX_SIZE}.`);
          else for (const l of INVALID_GRANULARITY) cli.error(l);
          return 1;
        }
        p.granularity = s.value;
        break;
      }
      case 'object':
        try { p.args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 'image-opts': p.args.imageOpts = true; break;
      case 'merge': p.actions.push({ op: 'merge', source: v }); break;
      default: p.actions.push({ op: o.key as Op }); break;
    }
  }
  return p;
}

/** qemu-img's checks of the combination, in its order (plain errors, no usage hint). */
function checkCombination(p: Parsed, cli: Cli): number | undefined {
  const fail = (msg: string): number => {
    cli.error(msg);
    return 1;
  };
  if (p.args.imageOpts && p.args.format !== undefined) return fail(IMAGE_OPTS_AND_FORMAT);
  if (p.actions.length === 0) return fail('Need at least one of --add, --remove, --clear, --enable, --disable, or --merge');
  if (p.granularity && !p.actions.some((a) => a.op === 'add')) return fail('granularity only supported with --add');
  if (p.srcFmt !== undefined && p.srcFile === undefined) return fail('-F only supported with -b');
  if (p.srcFile !== undefined && !p.actions.some((a) => a.op === 'merge')) return fail('Merge bitmap source file only supported with --merge');
  if (p.operands.length !== 2) return fail('Expecting filename and bitmap name');
  return undefined;
}

async function perform(img: Image, a: Action, name: string, granularity: number | undefined): Promise<void> {
  switch (a.op) {
    case 'add': return addBitmap(img, name, granularity, true);
    case 'remove': return removeBitmap(img, name);
    case 'clear': return clearBitmap(img, name);
    case 'enable': return enableBitmap(img, name, true);
    case 'disable': return enableBitmap(img, name, false);
    case 'merge': return mergeBitmap(img, name, img, a.source!);
  }
}

/** --merge with -b: the source image is opened (read-only, without --image-opts) for each merge. */
async function mergeFrom(img: Image, name: string, a: Action, p: Parsed, cli: Cli): Promise<boolean> {
  const srcArgs: ImageArgs = { ...newImageArgs((t) => cli.errRaw(t)), secrets: p.args.secrets };
  if (p.srcFmt !== undefined) srcArgs.format = p.srcFmt;
  let src: Image;
  try {
    src = await openForCommand(p.srcFile!, srcArgs, { readOnly: true, noBacking: true });
  } catch (e) {
    cli.fail(e);
    return false;
  }
  try {
    await mergeBitmap(img, name, src, a.source!);
    return true;
  } catch (e) {
    cli.error(`Operation merge on bitmap ${name} failed: ${describe(e)}`);
    return false;
  } finally {
    await src.close();
  }
}

export default async function bitmapCommand(argv: string[], cli: Cli): Promise<number> {
  const p = parse(argv, cli);
  if (typeof p === 'number') return p;
  const bad = checkCombination(p, cli);
  if (bad !== undefined) return bad;
  const [filename, name] = p.operands as [string, string];
  // the granularity is a 32-bit value in qemu's QMP command: larger values wrap
  const granularity = p.granularity ? Number(p.granularity & 0xffffffffn) : undefined;
  let img: Image;
  try {
    // qemu-img bitmap opens neither image's backing chain (a missing backing file is no error)
    img = await openForCommand(filename, p.args, { readOnly: false, noBacking: true });
  } catch (e) {
    return cli.fail(e);
  }
  try {
    for (let i = 0; i < p.actions.length; i++) {
      const a = p.actions[i]!;
      if (a.op === 'merge' && p.srcFile !== undefined) {
        if (!(await mergeFrom(img, name, a, p, cli))) return 1;
        continue;
      }
      try {
        await perform(img, a, name, granularity);
      } catch (e) {
        cli.error(`Operation ${a.op} on bitmap ${name} failed: ${describe(e)}`);
        return 1;
      }
    }
    return 0;
  } finally {
    await img.close();
  }
}
