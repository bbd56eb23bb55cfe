/**
 * qemu-img info [--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { imageInfo, printInfoHuman, infoJson } from '../cli/infoprint.js';
import { qdictOrder, qjsonCompact, qjsonPretty } from '../cli/qjson.js';
import { parseImageSpec } from '../cli/optstr.js';
import { resolveBackingName } from '../block/open.js';
import { VdiskError } from '../block/errors.js';
import { statPath } from '../block/host-fs.js';
import type { JsonValue } from '../block/driver.js';
import { MAX_BACKING_CHAIN_DEPTH } from '../block/limits.js';
import { parseOutputFormat, printHelp } from '../cli/common.js';

/**
 * Options that change what an image reads as (qemu's strong runtime options, here the key
 * secrets): an image opened with one cannot be named by its file alone.
 */
const STRONG_OPTIONS: Record<string, readonly string[]> = { qcow2: ['encrypt.key-secret'], luks: ['key-secret'] };

/**
 * The name qemu prints for an image opened from options: its file name, or when a strong option
 * was given, the json: name qemu builds from the driver, those options and the file.
 */
function openedName(arg: string, imageOpts: boolean, format: string, plain: string): string {
  if (!imageOpts && !arg.startsWith('json:')) return plain;
  let spec;
  try {
    spec = parseImageSpec(arg, imageOpts);
  } catch {
    return plain;
  }
  const strong = (STRONG_OPTIONS[format] ?? []).filter((k) => spec.options[k] !== undefined);
  // other children or file options would need their own json: parts; qemu's full rules are not modelled
  const other = Object.keys(spec.options).filter((k) => !strong.includes(k) && !(k === 'file.driver' && spec.options[k] === 'file'));
  if (strong.length === 0 || other.length > 0) return plain;
  const top: Record<string, JsonValue> = { driver: format };
  for (const k of strong) top[k] = spec.options[k]!;
  top['file'] = qdictOrder({ driver: 'file', filename: spec.filename });
  return `json:${qjsonCompact(qdictOrder(top))}`;
}

export default async function info(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':f:hU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'output', arg: 'required', key: 'output' },
    { name: 'backing-chain', arg: 'none', key: 'backing-chain' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'limits', arg: 'none', key: 'limits' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs();
  let output = 'human';
  let chain = false;
  for (const o of r.options) {
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = o.value!; break;
      case 'output': output = o.value!; break;
      case 'backing-chain': chain = true; break;
      case 'object':
        try { args.secrets.add(o.value!); } catch (e) { return cli.fail(e); }
        break;
      case 'image-opts': args.imageOpts = true; break;
      case 'U': args.forceShare = true; break;
      case 'limits': break;
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  const fmt = parseOutputFormat(output);
  if (!fmt) {
    cli.error('--output must be used with human or json as argument.');
    return 1;
  }
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  const filename = r.operands[0]!;

  const infos: JsonValue[] = [];
  const human: string[] = [];
  const seen = new Set<string>();
  let name = filename;
  let format = args.format;
  let imageOpts = args.imageOpts;
  for (let depth = 0; ; depth++) {
    if (depth > MAX_BACKING_CHAIN_DEPTH) {
      cli.error(`Backing chain of '${filename}' is deeper than ${MAX_BACKING_CHAIN_DEPTH} images`);
      return 1;
    }
    let img;
    try {
      img = await openForCommand(name, { ...args, imageOpts, ...(format !== undefined ? { format } : {}) }, { noBacking: true, readOnly: true, noIo: true });
    } catch (e) {
      return cli.fail(e);
    }
    let id = '';
    try {
      const st = await statPath(img.filename);
      id = `${st.dev}:${st.ino}`;
    } catch {
      id = img.filename;
    }
    if (chain && seen.has(id)) {
      await img.close();
      cli.error(`Backing file '${name}' creates an infinite loop.`);
      return 1;
    }
    seen.add(id);
    let data;
    try {
      data = await imageInfo(img);
    } catch (e) {
      await img.close();
      return cli.fail(e instanceof VdiskError ? e : e);
    }
    await img.close();
    if (depth === 0) data.filename = openedName(name, imageOpts, data.format, data.filename);
    if (fmt === 'json') infos.push(infoJson(data));
    else human.push(printInfoHuman(data));
    if (!chain || data.backingFilename === undefined) break;
    name = data.fullBackingFilename ?? resolveBackingName(img.filename, data.backingFilename);
    format = data.backingFormat;
    imageOpts = false;
  }
  if (fmt === 'json') {
    cli.out(qjsonPretty(chain ? infos : infos[0]!) + '\n');
  } else {
    cli.out(human.join('\n'));
  }
  return 0;
}
