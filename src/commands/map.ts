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
import { RUN_ALLOCATED, RUN_COMPRESSED, RUN_DATA, RUN_HOST, RUN_ZERO, StatusRuns } from '../block/status-runs.js';

/** Block status is asked for at most this much at a time, so a query never spans the whole disk. */
const MAP_WINDOW_BYTES = 1 << 30;
/** Chain runs asked for at a time (Image.chainStatusRunsSync). */
const MAP_RUNS = 4096;
/** Complete 4096-byte stdout blocks are written 16 at a time (StdoutStream's heldBytes). */
const STDOUT_HELD_BYTES = 1 << 16;
/** Bytes one entry takes at most in either format, its file name aside. */
const ENTRY_BYTES = 256;

/** An entry's flags: RUN_ALLOCATED (present), RUN_ZERO, RUN_DATA, and RUN_HOST when it shows an offset. */
const ENTRY_FLAGS = RUN_ALLOCATED | RUN_ZERO | RUN_DATA;

const ascii = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const J_START = ascii('{ "start": ');
const J_LENGTH = ascii(', "length": ');
const J_END = ascii('}');
const J_NEXT = ascii('},\n');
/** Depths with a ready-made middle part (jsonMiddle); deeper chains build theirs. */
const J_DEPTHS = 16;
const J_MIDDLE: Uint8Array[] = [];

/** `, "depth": …, "present": …, "zero": …, "data": …` and `, "offset": ` when the entry has one. */
function jsonMiddle(depth: number, flags: number): Uint8Array {
  // an entry's flags are ENTRY_FLAGS and RUN_HOST: below 32
  const key = depth * 32 + flags;
  const ready = depth < J_DEPTHS ? J_MIDDLE[key] : undefined;
  if (ready) return ready;
  const b = ascii(`, "depth": ${depth}, "present": ${(flags & RUN_ALLOCATED) !== 0}, "zero": ${(flags & RUN_ZERO) !== 0}, `
    + `"data": ${(flags & RUN_DATA) !== 0}${flags & RUN_HOST ? ', "offset": ' : ''}`);
  if (depth < J_DEPTHS) J_MIDDLE[key] = b;
  return b;
}

function put(buf: Uint8Array, at: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[at + i] = bytes[i]!;
  return at + bytes.length;
}

/** `n` (a safe integer >= 0) in decimal at `at`; returns the end. Integer arithmetic below 1e9 (float `%` is slow). */
function putDecimal(buf: Uint8Array, at: number, n: number): number {
  if (n < 1e9) return putDigits(buf, at, n, decimalDigits(n));
  const hi = Math.floor(n / 1e9);
  return putDigits(buf, putDecimal(buf, at, hi), n - hi * 1e9, 9);
}

function decimalDigits(n: number): number {
  let d = 1;
  for (let t = 10; t <= n; t *= 10) d++;
  return d;
}

/** "00".."99" as byte pairs: digits go out two per division. */
const DIGIT_PAIRS = Uint8Array.from({ length: 200 }, (_, i) => 48 + (i & 1 ? (i >> 1) % 10 : Math.floor((i >> 1) / 10)));

/** `n` < 1e9 as exactly `digits` decimal digits. */
function putDigits(buf: Uint8Array, at: number, n: number, digits: number): number {
  let t = n | 0;
  let p = at + digits;
  while (p - at >= 2) {
    const q = (t / 100) | 0;
    const r = 2 * (t - q * 100);
    buf[--p] = DIGIT_PAIRS[r + 1]!;
    buf[--p] = DIGIT_PAIRS[r]!;
    t = q;
  }
  if (p > at) buf[--p] = 48 + t;
  return at + digits;
}

/** `n` (a safe integer > 0) in lowercase hexadecimal, no leading zeros. */
function putHex(buf: Uint8Array, at: number, n: number): number {
  if (n >= 0x10000000) {
    const hi = Math.floor(n / 0x10000000);
    return putHexDigits(buf, putHex(buf, at, hi), n - hi * 0x10000000, 7);
  }
  let digits = 1;
  while (digits < 7 && n >>> (4 * digits) !== 0) digits++;
  return putHexDigits(buf, at, n, digits);
}

function putHexDigits(buf: Uint8Array, at: number, n: number, digits: number): number {
  for (let i = digits - 1, p = at; i >= 0; i--, p++) {
    const d = (n >>> (4 * i)) & 15;
    buf[p] = d < 10 ? 48 + d : 87 + d;
  }
  return at + digits;
}

/** `0x…` (`0` for zero) padded with spaces to 16 columns, as qemu's "%-16s" of it. */
function putHexColumn(buf: Uint8Array, at: number, n: number): number {
  let p = at;
  if (n === 0) buf[p++] = 48;
  else {
    buf[p++] = 48;
    buf[p++] = 120;
    p = putHex(buf, p, n);
  }
  while (p < at + 16) buf[p++] = 32;
  return p;
}

/**
 * The entry being merged and the output: runs merge into an entry when depth, presence, zero and
 * data flags match and their host offsets (if any) continue each other in the same file.
 */
class MapWriter {
  private has = false;
  private start = 0;
  private length = 0;
  private depth = 0;
  private flags = 0;
  private offset = 0;
  private file: string | undefined;
  private first = true;

  constructor(private readonly fmt: OutputFormat, private readonly stdout: StdoutStream) {}

  /** Add the run at `start`; true when it began a new entry (the one before went out). */
  add(start: number, length: number, flags: number, host: number, depth: number, file: string | undefined): boolean {
    if (this.has && depth === this.depth && flags === this.flags
      && (!(flags & RUN_HOST) || (this.offset + this.length === host && file === this.file))) {
      this.length += length;
      return false;
    }
    // qemu writes an entry's separator as soon as the next entry is known, so output cut short by
    // an error ends with ",\n" as qemu's does
    if (this.has) this.emit(false);
    this.has = true;
    this.start = start;
    this.length = length;
    this.depth = depth;
    this.flags = flags;
    this.offset = host;
    this.file = file;
    return true;
  }

  finish(start: number): void {
    // qemu prints one empty entry when the range is empty
    if (!this.has && this.fmt === 'json') this.add(start, 0, 0, -1, 0, undefined);
    if (this.has) this.emit(true);
    if (this.fmt === 'json') this.stdout.write(']\n');
  }

  private emit(last: boolean): void {
    if (this.fmt === 'json') this.json(last);
    else this.human();
    this.first = false;
  }

  private json(last: boolean): void {
    const buf = this.stdout.reserve(ENTRY_BYTES + 16 * this.depth);
    let p = put(buf, this.stdout.at(), J_START);
    p = putDecimal(buf, p, this.start);
    p = put(buf, p, J_LENGTH);
    p = putDecimal(buf, p, this.length);
    const middle = jsonMiddle(this.depth, this.flags);
    buf.set(middle, p);
    p += middle.length;
    if (this.flags & RUN_HOST) p = putDecimal(buf, p, this.offset);
    this.stdout.commit(put(buf, p, last ? J_END : J_NEXT));
  }

  /**
   * One line of the human format: only data that does not read as zeros. qemu folds every entry it
   * does not print into "zero, no data" before looking at it, so a zeroed data run without a host
   * offset is an error only as the first entry.
   */
  private human(): void {
    const f = this.flags;
    const data = (f & RUN_DATA) !== 0;
    const zero = (f & RUN_ZERO) !== 0;
    const mapped = (f & RUN_HOST) !== 0;
    if (data && !mapped && (this.first || !zero)) {
      throw new VdiskError('unsupported', 'MAP_UNMAPPABLE', 'File contains external, encrypted or compressed clusters.');
    }
    // qemu 7.2 leaves zeroed data (stored in holes of a preallocated image) out of this format
    if (!data || zero || !mapped) return;
    const file = this.file ?? '';
    const buf = this.stdout.reserve(ENTRY_BYTES + 3 * file.length);
    let p = putHexColumn(buf, this.stdout.at(), this.start);
    p = putHexColumn(buf, p, this.length);
    p = putHexColumn(buf, p, this.offset);
    if (file.length > 0) p += buf.write(file, p, 'utf8');
    buf[p++] = 10;
    this.stdout.commit(p);
  }
}

/** The chain's status at `off` through the per-call path, as a map error when it fails. */
async function statusAt(img: Image, off: number, len: number): Promise<ChainStatus> {
  try {
    return img.chainStatusSync(off, len) ?? await img.chainStatus(off, len);
  } catch (e) {
    if (!(e instanceof VdiskError) || e.kind !== 'io') throw e;
    const why = e.context.errno !== undefined ? strerror(e.context.errno) : e.message;
    throw new VdiskError('io', 'MAP_STATUS', `Could not read file metadata: ${why}`, { ...e.context, offset: off }, e);
  }
}

async function printMap(img: Image, start: number, end: number, fmt: OutputFormat, stdout: StdoutStream): Promise<void> {
  const w = new MapWriter(fmt, stdout);
  const runs = new StatusRuns(MAP_RUNS);
  let batch = true;
  stdout.write(fmt === 'json' ? '[' : 'Offset          Length          Mapped to       File\n');
  for (let off = start; off < end;) {
    const len = Math.min(end - off, MAP_WINDOW_BYTES);
    runs.count = 0;
    let covered = 0;
    if (batch) {
      try {
        covered = img.chainStatusRunsSync(off, len, runs);
      } catch {
        // the per-call path meets the failure again, after the entries before it went out
        batch = false;
        covered = 0;
      }
    }
    if (covered === 0) {
      const st = await statusAt(img, off, len);
      runs.count = 0;
      runs.files[st.depth] = st.hostFile;
      runs.push(st.length, chainFlags(st), st.hostOffset ?? -1, st.depth);
      covered = st.length;
    }
    const { lengths, flags, hosts, depths, files } = runs;
    let pos = off;
    for (let i = 0; i < runs.count; i++) {
      const f = flags[i]!;
      const d = depths[i]!;
      const entryFlags = (f & ENTRY_FLAGS) | ((f & (RUN_HOST | RUN_COMPRESSED)) === RUN_HOST ? RUN_HOST : 0);
      // a slow reader (a pipe) holds back the walk instead of the output piling up in memory
      if (w.add(pos, lengths[i]!, entryFlags, hosts[i]!, d, files[d]) && stdout.mustDrain) await stdout.drain();
      pos += lengths[i]!;
    }
    off += covered;
  }
  w.finish(start);
}

/** A ChainStatus as StatusRuns flags. */
function chainFlags(st: ChainStatus): number {
  return (st.present ? RUN_ALLOCATED : 0) | (st.zero ? RUN_ZERO : 0) | (st.data ? RUN_DATA : 0)
    | (st.compressed ? RUN_COMPRESSED : 0) | (st.hostOffset !== undefined ? RUN_HOST : 0);
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
  const stdout = new StdoutStream(cli, STDOUT_HELD_BYTES);
  try {
    const end = Math.min(img.size, start + Math.min(maxLength, Number.MAX_SAFE_INTEGER - start));
    await printMap(img, start, end, fmt, stdout);
    return 0;
  } catch (e) {
    // the blocks qemu's stdio would have written before the error
    stdout.flushBlocks();
    return cli.fail(e);
  } finally {
    await img.close();
    stdout.end();
  }
}
