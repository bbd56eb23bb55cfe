/**
 * qemu-img dd [--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks]
 *   if=input of=output
 *
 * Like qemu-img, count limits the input before skip is applied (so `count=1 skip=1` copies nothing),
 * and a skip beyond the input is reported but does not fail the command.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { parseSize } from '../cli/units.js';
import { createImage, loadFormatDriver, noCreate } from '../block/create.js';
import { VdiskError } from '../block/errors.js';
import type { Image } from '../block/image.js';

/** qemu-img dd's largest block size. */
const MAX_BS = 2 ** 31 - 1;
/** Bytes copied per request, whatever bs is (a bs of 2 GiB must not mean a 2 GiB buffer). */
const DD_CHUNK = 4 << 20;

interface DdArgs {
  bs: number;
  count?: bigint;
  skip: bigint;
  input?: string;
  output?: string;
}

function sizeError(cli: Cli, what: string): number {
  cli.error(`Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for`);
  cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
  return 1;
}

/** Parse the dd operands (key=value words); returns an exit code on error. */
function parseOperands(words: string[], cli: Cli): DdArgs | number {
  const d: DdArgs = { bs: 512, skip: 0n };
  for (const w of words) {
    const eq = w.indexOf('=');
    const key = eq < 0 ? w : w.slice(0, eq);
    const val = eq < 0 ? '' : w.slice(eq + 1);
    switch (eq < 0 ? '' : key) {
      case 'bs': {
        const s = parseSize(val);
        if (!s.ok) return sizeError(cli, 'bs');
        if (s.value < 1n || s.value > BigInt(MAX_BS)) {
          cli.error(`Invalid bs specified. Must be between 1 and ${MAX_BS}.`);
          return 1;
        }
        d.bs = Number(s.value);
        break;
      }
      case 'count': {
        const s = parseSize(val);
        if (!s.ok) return sizeError(cli, 'count');
        d.count = s.value;
        break;
      }
      case 'skip': {
        const s = parseSize(val);
        if (!s.ok) return sizeError(cli, 'skip');
        d.skip = s.value;
        break;
      }
      case 'if': d.input = val; break;
      case 'of': d.output = val; break;
      default:
        cli.error(`unrecognized operand ${key}`);
        return 1;
    }
  }
  return d;
}

async function copyBlocks(src: Image, dst: Image, from: number, length: number): Promise<void> {
  const buf = new Uint8Array(Math.min(DD_CHUNK, Math.max(length, 1)));
  for (let done = 0; done < length;) {
    const n = Math.min(buf.length, length - done);
    const b = buf.subarray(0, n);
    await src.read(b, from + done);
    await dst.write(b, done);
    done += n;
  }
}

export default async function ddCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hf:O:U', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'output-format', arg: 'required', key: 'O' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs();
  let outFmt = 'raw';
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 'O': outFmt = v; break;
      case 'U': args.forceShare = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  const d = parseOperands(r.operands, cli);
  if (typeof d === 'number') return d;
  if (d.input === undefined || d.output === undefined) {
    cli.error('Must specify both input and output files');
    return 1;
  }
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  let src: Image | undefined;
  let dst: Image | undefined;
  try {
    src = await openForCommand(d.input, args, { readOnly: true });
    await loadFormatDriver(outFmt).catch(() => {
      throw new VdiskError('invalid-argument', 'UNKNOWN_FORMAT', 'Unknown file format');
    });
    let size = BigInt(src.size);
    const bs = BigInt(d.bs);
    if (d.count !== undefined && d.count * bs < size) size = d.count * bs;
    const skipBytes = d.skip * bs;
    let outSize = size - skipBytes;
    if (outSize < 0n) {
      cli.error(`${d.input}: cannot skip to specified offset`);
      outSize = 0n;
    }
    await createImage({ format: outFmt, filename: d.output, size: Number(outSize), secrets: args.secrets });
    dst = await openForCommand(d.output, { ...newImageArgs(), format: outFmt }, { readOnly: false, noBacking: true });
    if (outSize > 0n) await copyBlocks(src, dst, Number(skipBytes), Number(outSize));
    await dst.flush();
    return 0;
  } catch (e) {
    return cli.fail(e);
  } finally {
    await dst?.close();
    await src?.close();
  }
}
