/**
 * qemu-img measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef]
 *   [--image-opts] [-f fmt] [-l snapshot_param] filename]
 *
 * The size a new image of the output format needs for the given content. The format answers
 * through its `measure` hook; raw needs exactly the virtual size.
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { parseOutputFormat, printHelp } from '../cli/common.js';
import { parseSnapshotParam } from '../cli/snapshot-param.js';
import { parseSize, QEMU_MAX_SIZE } from '../cli/units.js';
import { accumulateOptions, createHelpText, isValidOptionList, parseCreateOptions, wantsHelp } from '../cli/createopts.js';
import { qdictOrder, qjsonPretty } from '../cli/qjson.js';
import { loadFormatDriver } from '../block/create.js';
import { VdiskError } from '../block/errors.js';
import type { FormatDriver, JsonObject, MeasureInput, MeasureResult } from '../block/driver.js';
import type { Image } from '../block/image.js';

/** Allocation runs of the source, one block-status window at a time. */
async function* extentsOf(img: Image): AsyncGenerator<{ offset: number; length: number; data: boolean; zero: boolean }> {
  for (let off = 0; off < img.size;) {
    const st = await img.chainStatus(off, Math.min(img.size - off, 1 << 30), 0, false);
    yield { offset: off, length: st.length, data: st.data && !st.zero, zero: st.zero };
    off += st.length;
  }
}

async function measureWith(driver: FormatDriver, input: MeasureInput): Promise<MeasureResult> {
  if (driver.name === 'raw') return { required: input.size, fullyAllocated: input.size };
  if (!driver.measure) {
    throw new VdiskError('unsupported', 'NO_MEASURE', `Format driver '${driver.name}' does not support size measurement`);
  }
  return driver.measure(input);
}

/** Persistent bitmaps of a source that can carry them (qcow2 v3: "bitmaps size" is printed). */
function sourceBitmaps(img: Image): Pick<MeasureInput, 'sourceBitmapBytes' | 'sourceBitmaps'> {
  if (!img.layer.bitmaps?.supported) return {};
  const list = img.layer.bitmaps.list();
  return { sourceBitmapBytes: 0, sourceBitmaps: list.map((b) => ({ name: b.name, granularity: b.granularity })) };
}

export default async function measureCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hf:O:o:l:', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'output', arg: 'required', key: 'output' },
    { name: 'size', arg: 'required', key: 'size' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'target-format', arg: 'required', key: 'O' },
    { name: 'options', arg: 'required', key: 'o' },
    { name: 'snapshot', arg: 'required', key: 'l' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs();
  let outFmt = 'raw';
  let options: string | undefined;
  let snapshot: Record<string, string> | undefined;
  let output = 'human';
  let size: bigint | undefined;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 'O': outFmt = v; break;
      case 'o':
        if (!isValidOptionList(v)) { cli.error(`Invalid option list: ${v}`); return 1; }
        options = accumulateOptions(options, v);
        break;
      case 'l': {
        const sp = parseSnapshotParam(v);
        if (!sp.ok) { for (const e of sp.errors) cli.error(e); return 1; }
        snapshot = sp.options;
        break;
      }
      case 'output': output = v; break;
      case 'U': args.forceShare = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 'size': {
        const s = parseSize(v);
        if (!s.ok) {
          if (s.reason === 'range') cli.error(`Invalid image size specified. Must be between 0 and ${QEMU_MAX_SIZE}.`);
          else {
            cli.error('Invalid image size specified. You may use k, M, G, T, P or E suffixes for');
            cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
          }
          return 1;
        }
        size = s.value;
        break;
      }
    }
  }
  const fmt = parseOutputFormat(output);
  if (!fmt) {
    cli.error('--output must be used with human or json as argument.');
    return 1;
  }
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  if (r.operands.length > 1) {
    cli.error('At most one filename argument is allowed.');
    return 1;
  }
  const filename = r.operands[0];
  if (filename === undefined && (args.imageOpts || args.format !== undefined || snapshot !== undefined)) {
    cli.error('--image-opts, -f, and -l require a filename argument.');
    return 1;
  }
  if (size !== undefined && filename !== undefined) {
    cli.error('--size N cannot be used together with a filename.');
    return 1;
  }
  if (size === undefined && filename === undefined) {
    cli.error('Either --size N or one filename must be specified.');
    return 1;
  }
  let img: Image | undefined;
  try {
    const driver = await loadFormatDriver(outFmt);
    if (wantsHelp(options)) {
      cli.out(createHelpText(driver, undefined));
      return 0;
    }
    const values = Object.fromEntries(parseCreateOptions(driver, options));
    let input: MeasureInput;
    if (filename !== undefined) {
      const extra = snapshot !== undefined ? { options: snapshot } : {};
      img = await openForCommand(filename, args, { readOnly: true, ...extra });
      input = { size: img.size, options: values, extents: extentsOf(img), ...sourceBitmaps(img) };
    } else {
      input = { size: Number(size), options: values };
    }
    const res = await measureWith(driver, input);
    if (fmt === 'json') {
      const o: JsonObject = { required: res.required, 'fully-allocated': res.fullyAllocated };
      if (res.bitmaps !== undefined) o['bitmaps'] = res.bitmaps;
      cli.out(qjsonPretty(qdictOrder(o)) + '\n');
    } else {
      // BigInt prints a double's exact integer value (8070450532247928832, not ...929000)
      cli.out(`required size: ${BigInt(res.required)}\nfully allocated size: ${BigInt(res.fullyAllocated)}\n`);
      if (res.bitmaps !== undefined) cli.out(`bitmaps size: ${BigInt(res.bitmaps)}\n`);
    }
    return 0;
  } catch (e) {
    return cli.fail(e);
  } finally {
    await img?.close();
  }
}
