/**
 * qemu-img map [--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len]
 *   [--output=ofmt] [-U] filename
 *
 * Walks the chain's block status from the top image and prints merged runs, as qemu-img does: runs
 * merge when depth, presence, zero and data flags match and their host offsets (if any) continue
 * each other in the same file.
 */
import { StdoutStream } from '../cli/stdio.js';
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { parseOutputFormat, printHelp, type OutputFormat } from '../cli/common.js';
import { parseSize } from '../cli/units.js';
import type { ChainStatus, Image } from '../block/image.js';
import { VdiskError, strerror } from '../block/errors.js';

/** Block status is asked for at most this much at a time, so a query never spans the whole disk. */
const MAP_WINDOW_BYTES = 1 << 30;

interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
  filename?: string;
}

function toEntry(start: number, st: ChainStatus): MapEntry {
  const e: MapEntry = { start, length: st.length, depth: st.depth, present: st.present, zero: st.zero, data: st.data };
  if (st.hostOffset !== undefined && !st.compressed) {
    e.offset = st.hostOffset;
    if (st.hostFile !== undefined) e.filename = st.hostFile;
  }
  return e;
}

function mergeable(a: MapEntry, b: MapEntry): boolean {
  if (a.depth !== b.depth || a.present !== b.present || a.zero !== b.zero || a.data !== b.data) return false;
  if ((a.offset === undefined) !== (b.offset === undefined)) return false;
  if (a.offset !== undefined && (a.offset + a.length !== b.offset || a.filename !== b.filename)) return false;
  return true;
}

function jsonEntry(e: MapEntry): string {
  let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
  return s + '}';
}

function hex(n: number): string {
  return n === 0 ? '0' : `0x${n.toString(16)}`;
}

/**
 * One line of the human format: only data that does not read as zeros. qemu folds every entry it
 * does not print into "zero, no data" before looking at it, so a zeroed data run without a host
 * offset is an error only as the first entry.
 */
function humanEntry(e: MapEntry, first: boolean): string {
  if (e.data && e.offset === undefined && (first || !e.zero)) {
    throw new VdiskError('unsupported', 'MAP_UNMAPPABLE', 'File contains external, encrypted or compressed clusters.');
  }
  // qemu 7.2 leaves zeroed data (stored in holes of a preallocated image) out of this format
  if (!e.data || e.zero || e.offset === undefined) return '';
  return `${hex(e.start).padEnd(16)}${hex(e.length).padEnd(16)}${hex(e.offset).padEnd(16)}${e.filename ?? ''}\n`;
}

async function printMap(img: Image, start: number, end: number, fmt: OutputFormat, stdout: StdoutStream): Promise<void> {
  let cur: MapEntry | undefined;
  let first = true;
  // qemu writes an entry's separator as soon as the next entry is known, so output cut short by
  // an error ends with ",\n" as qemu's does
  const emit = (e: MapEntry, last: boolean): void => {
    if (fmt === 'json') stdout.write(last ? jsonEntry(e) : `${jsonEntry(e)},\n`);
    else stdout.write(humanEntry(e, first));
    first = false;
  };
  stdout.write(fmt === 'json' ? '[' : 'Offset          Length          Mapped to       File\n');
  for (let off = start; off < end;) {
    let st: ChainStatus;
    try {
      const len = Math.min(end - off, MAP_WINDOW_BYTES);
      st = img.chainStatusSync(off, len) ?? await img.chainStatus(off, len);
    } catch (e) {
      if (!(e instanceof VdiskError) || e.kind !== 'io') throw e;
      const why = e.context.errno !== undefined ? strerror(e.context.errno) : e.message;
      throw new VdiskError('io', 'MAP_STATUS', `Could not read file metadata: ${why}`, { ...e.context, offset: off }, e);
    }
    const e = toEntry(off, st);
    if (cur && mergeable(cur, e)) cur.length += e.length;
    else {
      if (cur) emit(cur, false);
      cur = e;
      // a slow reader (a pipe) holds back the walk instead of the output piling up in memory
      if (stdout.mustDrain) await stdout.drain();
    }
    off += st.length;
  }
  // qemu prints one empty entry when the range is empty
  if (!cur && fmt === 'json') cur = { start, length: 0, depth: 0, present: false, zero: false, data: false };
  if (cur) emit(cur, true);
  if (fmt === 'json') stdout.write(']\n');
}

function parseOffset(v: string, what: string, cli: Cli): number | undefined {
  const s = parseSize(v);
  if (!s.ok) {
    cli.error(`Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for`);
    cli.error('kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.');
    return undefined;
  }
  return Number(s.value > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : s.value);
}

export default async function mapCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':f:hU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'output', arg: 'required', key: 'output' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'start-offset', arg: 'required', key: 'start-offset' },
    { name: 'max-length', arg: 'required', key: 'max-length' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs();
  let output = 'human';
  let start = 0;
  let maxLength = Number.MAX_SAFE_INTEGER;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 'output': output = v; break;
      case 'U': args.forceShare = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
      case 'start-offset': {
        const n = parseOffset(v, 'start offset', cli);
        if (n === undefined) return 1;
        start = n;
        break;
      }
      case 'max-length': {
        const n = parseOffset(v, 'max length', cli);
        if (n === undefined) return 1;
        maxLength = n;
        break;
      }
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  const fmt = parseOutputFormat(output);
  if (!fmt) {
    cli.error('--output must be used with human or json as argument.');
    return 1;
  }
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  let img: Image;
  try {
    img = await openForCommand(r.operands[0]!, args, { readOnly: true });
  } catch (e) {
    return cli.fail(e);
  }
  const stdout = new StdoutStream(cli);
  try {
    const end = Math.min(img.size, start + Math.min(maxLength, Number.MAX_SAFE_INTEGER - start));
    await printMap(img, start, end, fmt, stdout);
    return 0;
  } catch (e) {
    return cli.fail(e);
  } finally {
    await img.close();
    stdout.end();
  }
}
