/**
 * quorum: qemu's voting filter over several children holding the same data, as its QAPI schema
 * documents it (BlockdevOptionsQuorum) and as qemu-img 7.2 behaves with it:
 *   - `vote-threshold`: how many children must return the same bytes for a read to succeed, and
 *     how many writes must succeed for a write to;
 *   - `read-pattern`: `quorum` (read every child and vote, the default) or `fifo` (the first child
 *     that reads without error answers);
 *   - `rewrite-corrupted`: after a successful vote, write the winning bytes over the children that
 *     returned something else (needs a writable node);
 *   - `blkverify`: two children and a threshold of two; a mismatch prints where the contents differ
 *     and ends the process, as qemu does.
 * A vote between versions with as many votes each goes to the version seen last for the first
 * time (observed: children [A, B, B, A] read as B).
 *
 * It sits where a protocol sits (`driver=raw,file.driver=quorum,...`), or reported as the format
 * (`driver=quorum`). Block status is data where any child has data, zero only where all read zero.
 */
import { VdiskError } from './errors.js';
import type { Image } from './image.js';
import type { Preallocation, Protocol, ProtocolExtent } from '../protocols/types.js';

/**
 * Most children a quorum may name: every read holds one buffer per distinct child version, so a
 * hostile option string with thousands of children would multiply each request's memory.
 */
export const MAX_QUORUM_CHILDREN = 32;

export type QuorumReadPattern = 'quorum' | 'fifo';

export interface QuorumSettings {
  threshold: number;
  readPattern: QuorumReadPattern;
  rewriteCorrupted: boolean;
  blkverify: boolean;
}

const OWN_KEYS = new Set(['vote-threshold', 'read-pattern', 'rewrite-corrupted', 'blkverify', 'driver']);

function bad(code: string, msg: string): VdiskError {
  return new VdiskError('invalid-argument', code, msg);
}

function parseOnOff(key: string, v: string | undefined): boolean {
  if (v === undefined) return false;
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw bad('QUORUM_BAD_VALUE', `Parameter '${key}' expects 'on' or 'off'`);
}

/** One child's options (prefix removed), in index order. */
export interface QuorumChildSpec {
  driver?: string;
  filename?: string;
  options: Record<string, string>;
}

/**
 * The quorum's settings and children from its flattened options (`prefix` = where its own keys
 * start: `file.` under a format, '' as the format). Checks in qemu's order.
 */
export function quorumOptions(options: Readonly<Record<string, string>>, prefix: string): { settings: QuorumSettings; children: QuorumChildSpec[] } {
  const own: Record<string, string> = {};
  const byIndex = new Map<number, Record<string, string>>();
  for (const [k, v] of Object.entries(options)) {
    if (!k.startsWith(prefix)) continue;
    const key = k.slice(prefix.length);
    const m = /^children\.([0-9]+)\.(.+)$/.exec(key);
    if (m) {
      const i = Number(m[1]);
      if (!byIndex.has(i)) {
        if (byIndex.size >= MAX_QUORUM_CHILDREN) {
          throw new VdiskError('limit', 'QUORUM_TOO_MANY_CHILDREN', `vdisk's quorum takes at most ${MAX_QUORUM_CHILDREN} children`);
        }
        byIndex.set(i, {});
      }
      byIndex.get(i)![m[2]!] = v;
      continue;
    }
    if (!OWN_KEYS.has(key)) throw bad('QUORUM_BAD_OPTION', `Block format 'quorum' does not support the option '${key}'`);
    own[key] = v;
  }
  const children = [...byIndex.keys()].sort((a, b) => a - b).map((i) => childSpec(byIndex.get(i)!));
  if (children.length < 1) throw bad('QUORUM_NO_CHILDREN', 'Number of provided children must be 1 or more');
  const t = own['vote-threshold'];
  if (t !== undefined && !/^-?[0-9]+$/.test(t)) throw bad('QUORUM_BAD_VALUE', "Parameter 'vote-threshold' expects a number");
  const threshold = t === undefined ? 0 : Number(t);
  if (threshold < 1) throw bad('QUORUM_BAD_THRESHOLD', "Parameter 'vote-threshold' expects a value >= 1");
  if (threshold > children.length) throw bad('QUORUM_BAD_THRESHOLD', 'threshold may not exceed children count');
  const rp = own['read-pattern'] ?? 'quorum';
  if (rp !== 'quorum' && rp !== 'fifo') throw bad('QUORUM_BAD_PATTERN', 'Please set read-pattern as fifo or quorum');
  const blkverify = parseOnOff('blkverify', own['blkverify']);
  if (blkverify && (children.length !== 2 || threshold !== 2)) {
    throw bad('QUORUM_BLKVERIFY', 'blkverify=on can only be set if there are exactly two files and vote-threshold is 2');
  }
  const rewriteCorrupted = parseOnOff('rewrite-corrupted', own['rewrite-corrupted']);
  return { settings: { threshold, readPattern: rp, rewriteCorrupted, blkverify }, children };
}

function childSpec(kv: Record<string, string>): QuorumChildSpec {
  const options: Record<string, string> = {};
  let filename: string | undefined;
  for (const [k, v] of Object.entries(kv)) {
    if (k === 'driver') continue;
    if (k === 'filename' || k === 'file.filename' || k === 'file') filename = v;
    else if (k === 'file.driver' && v === 'file') continue;
    else options[k] = v;
  }
  // blkdebug as the child's protocol names its file inside its image (the opener wraps it)
  if (options['file.driver'] === 'blkdebug' && options['file.image.filename'] !== undefined) {
    filename = options['file.image.filename'];
    delete options['file.image.filename'];
    if (options['file.image.driver'] === 'file') delete options['file.image.driver'];
  }
  const driver = kv['driver'];
  if (driver === undefined && options['file.driver'] === undefined) {
    throw bad('QUORUM_CHILD_DRIVER', 'Must specify either driver or file');
  }
  return { ...(driver !== undefined ? { driver } : {}), ...(filename !== undefined ? { filename } : {}), options };
}

/** Where two buffers first differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function quorumIoError(op: string, offset: number): VdiskError {
  return new VdiskError('io', 'QUORUM_NOT_REACHED', 'Input/output error', { op, offset });
}

/**
 * One child as the quorum uses it: a protocol node (driver=file) is its protocol, which grows
 * when written past its end; any other child is its whole image, of fixed size.
 */
class QuorumChild {
  constructor(readonly img: Image) {}

  private get proto(): Protocol | undefined {
    return this.img.format === 'file' ? this.img.protocol : undefined;
  }

  size(): Promise<number> {
    return this.proto ? this.proto.size() : Promise.resolve(this.img.size);
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.proto ? this.proto.pread(buf, offset) : this.img.read(buf, offset);
  }

  write(buf: Uint8Array, offset: number): Promise<void> {
    return this.proto ? this.proto.pwrite(buf, offset) : this.img.write(buf, offset);
  }

  async writeZeroes(offset: number, length: number, punch: boolean): Promise<void> {
    const p = this.proto;
    if (!p) return this.img.writeZeroes(offset, length, punch);
    if (p.writeZeroes) return p.writeZeroes(offset, length, punch);
    return p.pwrite(new Uint8Array(length), offset);
  }

  async discard(offset: number, length: number): Promise<void> {
    const p = this.proto;
    if (!p) return this.img.discard(offset, length);
    await p.discard?.(offset, length);
  }

  flush(): Promise<void> {
    return this.proto ? this.proto.flush() : this.img.flush();
  }

  /** Data and zero flags of a run from `offset`; a protocol child ends at its current size. */
  async status(offset: number, length: number): Promise<{ length: number; data: boolean }> {
    const p = this.proto;
    if (!p) {
      const st = await this.img.chainStatus(offset, length);
      return { length: st.length, data: st.data || !st.zero };
    }
    const size = await p.size();
    if (offset >= size) return { length, data: false };
    const ext = p.extent ? await p.extent(offset, Math.min(length, size - offset)) : { length: Math.min(length, size - offset), data: true };
    return ext;
  }
}

export class QuorumProtocol implements Protocol {
  readonly protocol = 'quorum';
  readonly hostOffsets = false;

  private readonly children: readonly QuorumChild[];
  private length = 0;

  private constructor(
    private readonly images: readonly Image[],
    private readonly settings: QuorumSettings,
    readonly filename: string,
    readonly readOnly: boolean,
    /** blkverify's mismatch ends the process (injected so tests can observe it). */
    private readonly abort: (message: string) => never,
  ) {
    this.children = images.map((i) => new QuorumChild(i));
  }

  static async open(children: readonly Image[], settings: QuorumSettings, filename: string, readOnly: boolean,
    abort: (message: string) => never = defaultAbort): Promise<QuorumProtocol> {
    if (settings.rewriteCorrupted && readOnly) {
      throw new VdiskError('permission', 'QUORUM_READ_ONLY', 'Block node is read-only');
    }
    const q = new QuorumProtocol(children, settings, filename, readOnly, abort);
    await q.size();
    return q;
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    await this.size();
    const end = Math.min(buf.length, Math.max(0, this.length - offset));
    buf.fill(0, end);
    if (end === 0) return;
    const want = buf.subarray(0, end);
    if (this.settings.readPattern === 'fifo') return this.readFifo(want, offset);
    return this.readVote(want, offset);
  }

  private async readFifo(buf: Uint8Array, offset: number): Promise<void> {
    let last: unknown;
    for (const c of this.children) {
      try {
        await c.read(buf, offset);
        return;
      } catch (e) {
        last = e;
      }
    }
    throw last;
  }

  private async readVote(buf: Uint8Array, offset: number): Promise<void> {
    const versions: Array<{ data: Uint8Array; members: number[] }> = [];
    let failed: unknown;
    let ok = 0;
    for (let i = 0; i < this.children.length; i++) {
      const data = new Uint8Array(buf.length);
      try {
        await this.children[i]!.read(data, offset);
      } catch (e) {
        failed = e;
        continue;
      }
      ok++;
      const same = versions.find((v) => firstDifference(v.data, data) < 0);
      if (same) same.members.push(i);
      else versions.push({ data, members: [i] });
    }
    if (ok < this.settings.threshold && failed !== undefined) throw failed;
    if (this.settings.blkverify && versions.length > 1) {
      const at = firstDifference(versions[0]!.data, versions[1]!.data);
      this.abort(`quorum: offset=${offset} bytes=${buf.length} contents mismatch at offset ${offset + at}\n`);
    }
    let winner = versions[0];
    for (const v of versions) if (v.members.length >= winner!.members.length) winner = v;
    if (!winner || winner.members.length < this.settings.threshold) throw quorumIoError('read', offset);
    buf.set(winner.data);
    if (this.settings.rewriteCorrupted && !this.readOnly) {
      for (const v of versions) {
        if (v === winner) continue;
        for (const i of v.members) await this.children[i]!.write(winner.data, offset);
      }
    }
  }

  /** Every child is written; the write succeeds when at least the threshold of them did. */
  private async each(op: string, offset: number, fn: (c: QuorumChild) => Promise<void>): Promise<void> {
    let ok = 0;
    let failed: unknown;
    for (const c of this.children) {
      try {
        await fn(c);
        ok++;
      } catch (e) {
        failed = e;
      }
    }
    if (ok < this.settings.threshold) throw failed ?? quorumIoError(op, offset);
  }

  pwrite(buf: Uint8Array, offset: number): Promise<void> {
    return this.each('write', offset, (c) => c.write(buf, offset));
  }

  async writeZeroes(offset: number, length: number, punch: boolean): Promise<void> {
    return this.each('write', offset, (c) => c.writeZeroes(offset, length, punch));
  }

  async discard(offset: number, length: number): Promise<void> {
    return this.each('discard', offset, (c) => c.discard(offset, length));
  }

  /** Every child must have the same length (files grow as they are written). */
  async size(): Promise<number> {
    const sizes = await Promise.all(this.children.map((c) => c.size()));
    if (sizes.some((n) => n !== sizes[0])) {
      throw new VdiskError('io', 'QUORUM_SIZES', 'Could not refresh total sector count: Input/output error');
    }
    this.length = sizes[0]!;
    return this.length;
  }

  async truncate(_size: number, _prealloc?: Preallocation): Promise<void> {
    throw new VdiskError('unsupported', 'QUORUM_TRUNCATE', 'Image format driver does not support resize');
  }

  async flush(): Promise<void> {
    return this.each('flush', 0, (c) => c.flush());
  }

  async close(): Promise<void> {
    for (const c of this.images) await c.close().catch(() => undefined);
  }

  /** qemu sums its children's usage. */
  async allocatedSize(): Promise<number | undefined> {
    let sum = 0;
    for (const c of this.images) {
      const n = await c.allocatedSize();
      if (n === undefined) return undefined;
      sum += n;
    }
    return sum;
  }

  async extent(offset: number, length: number): Promise<ProtocolExtent> {
    let len = length;
    let data = false;
    for (const c of this.children) {
      const st = await c.status(offset, len);
      len = Math.min(len, st.length);
      if (st.data) data = true;
    }
    return { length: len, data };
  }
}

function defaultAbort(message: string): never {
  process.stderr.write(message);
  process.exit(1);
}
