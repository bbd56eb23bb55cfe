/**
 * blkdebug: qemu's error-injection filter, the part its test suite uses to make reads fail.
 *
 * Two spellings open it, as in qemu:
 *   - `blkdebug:CONFIG:FILE` — a filter under the format (a protocol), rules from an INI file of
 *     `[inject-error]` sections (event, iotype, errno, sector, once, immediately);
 *   - `json:{"driver":"blkdebug","image":{...},"inject-error":[...]}` — a filter above the format
 *     (src/block/blkdebug-layer.ts), rules as an option list;
 *   - `json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{...},"inject-error":[...]}}` —
 *     the protocol again, from options (src/block/open.ts), as iotest 020 names a backing file.
 *
 * Rules are inject-error and set-state rules, from `[inject-error]`/`[set-state]` sections or
 * `inject-error.N.*`/`set-state.N.*` options, with qemu's state machine (BlkdebugRules). Events
 * come from the format above through `Protocol.debugEvent`: vdisk's formats signal "read_aio" and
 * "write_aio" before guest data requests, qcow2 "cluster_free" when it gives clusters back. A rule naming an event no vdisk format signals is
 * refused by name rather than silently never firing.
 */
import { constants as fsConstants } from 'node:fs';
import { VdiskError } from '../block/errors.js';
import { closeFd, openFd, readFd } from '../block/host-fs.js';
import type { Preallocation, Protocol, ProtocolExtent } from './types.js';

export type BlkdebugIoType = 'read' | 'write' | 'write-zeroes' | 'discard' | 'flush' | 'block-status';
const IO_TYPES: readonly BlkdebugIoType[] = ['read', 'write', 'write-zeroes', 'discard', 'flush', 'block-status'];
/** qemu's default iotype mask: everything but block-status. */
const DEFAULT_IO_TYPES: readonly BlkdebugIoType[] = ['read', 'write', 'write-zeroes', 'discard', 'flush'];

/** Every event name qemu's blkdebug knows (BlkdebugEvent); only SUPPORTED_EVENTS can fire here. */
const KNOWN_EVENTS = new Set([
  'l1_update', 'l1_grow_alloc_table', 'l1_grow_write_table', 'l1_grow_activate_table', 'l2_load', 'l2_update',
  'l2_update_compressed', 'l2_alloc_cow_read', 'l2_alloc_write', 'read_aio', 'read_backing_aio', 'read_compressed',
  'write_aio', 'write_compressed', 'vmstate_load', 'vmstate_save', 'cow_read', 'cow_write', 'reftable_load',
  'reftable_grow', 'reftable_update', 'refblock_load', 'refblock_update', 'refblock_update_part', 'refblock_alloc',
  'refblock_alloc_hookup', 'refblock_alloc_write', 'refblock_alloc_write_blocks', 'refblock_alloc_write_table',
  'refblock_alloc_switch_table', 'cluster_alloc', 'cluster_alloc_bytes', 'cluster_free', 'flush_to_os',
  'flush_to_disk', 'pwritev_rmw_head', 'pwritev_rmw_after_head', 'pwritev_rmw_tail', 'pwritev_rmw_after_tail',
  'pwritev', 'pwritev_zero', 'pwritev_done', 'empty_image_prepare', 'l1_shrink_write_table',
  'l1_shrink_free_l2_clusters', 'cor_write', 'cluster_alloc_space', 'none',
]);
const SUPPORTED_EVENTS = new Set(['none', 'read_aio', 'write_aio', 'cluster_free']);

/** errno numbers a rule may name, with the names vdisk's errors carry (Linux numbering). */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 5: 'EIO', 6: 'ENXIO', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 16: 'EBUSY', 22: 'EINVAL',
  27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 95: 'EOPNOTSUPP', 110: 'ETIMEDOUT',
};
const STRERROR_BY_NUMBER: Record<number, string> = {
  1: 'Operation not permitted', 2: 'No such file or directory', 5: 'Input/output error', 6: 'No such device or address',
  11: 'Resource temporarily unavailable', 12: 'Cannot allocate memory', 13: 'Permission denied',
  16: 'Device or resource busy', 22: 'Invalid argument', 27: 'File too large', 28: 'No space left on device',
  30: 'Read-only file system', 95: 'Operation not supported', 110: 'Connection timed out',
};

export interface BlkdebugRule {
  action: 'inject-error' | 'set-state';
  event: string;
  /** The state the filter must be in for the rule to apply; 0 for every state. */
  state: number;
  ioTypes: ReadonlySet<BlkdebugIoType>;
  errno: number;
  /** The 512-byte sector a request must cover, or -1 for every request. */
  sector: number;
  once: boolean;
  /** set-state: the state the event moves the filter to. */
  newState: number;
}

const INJECT_KEYS = new Set(['event', 'state', 'iotype', 'errno', 'sector', 'once', 'immediately']);
const SET_STATE_KEYS = new Set(['event', 'state', 'new_state']);

function invalidValue(v: string): VdiskError {
  return new VdiskError('invalid-argument', 'BLKDEBUG_BAD_VALUE', `invalid parameter value: ${v}`);
}

function parseBool(v: string): boolean {
  if (v === 'on' || v === 'true' || v === 'yes') return true;
  if (v === 'off' || v === 'false' || v === 'no') return false;
  throw new VdiskError('invalid-argument', 'BLKDEBUG_BAD_VALUE', `Parameter 'once' expects 'on' or 'off'`);
}

function parseInt64(key: string, v: string): number {
  if (!/^-?[0-9]+$/.test(v)) throw new VdiskError('invalid-argument', 'BLKDEBUG_BAD_VALUE', `Parameter '${key}' expects a number`);
  return Number(v);
}

/** One rule from its key/value pairs (config-file section or `inject-error.N.*`/`set-state.N.*` options). */
export function parseRule(kv: ReadonlyMap<string, string>, action: BlkdebugRule['action'] = 'inject-error'): BlkdebugRule {
  const keys = action === 'inject-error' ? INJECT_KEYS : SET_STATE_KEYS;
  for (const k of kv.keys()) {
    if (!keys.has(k)) throw new VdiskError('invalid-argument', 'BLKDEBUG_BAD_KEY', `Invalid parameter '${k}'`);
  }
  const event = kv.get('event');
  if (event === undefined) throw new VdiskError('invalid-argument', 'BLKDEBUG_NO_EVENT', "Missing event name for rule");
  if (!KNOWN_EVENTS.has(event)) throw invalidValue(event);
  if (!SUPPORTED_EVENTS.has(event)) {
    throw new VdiskError('unsupported', 'BLKDEBUG_EVENT', `vdisk's blkdebug does not support the event '${event}' yet`);
  }
  const state = kv.has('state') ? parseInt64('state', kv.get('state')!) : 0;
  const iotype = kv.get('iotype');
  let ioTypes: Set<BlkdebugIoType>;
  if (iotype === undefined) ioTypes = new Set(DEFAULT_IO_TYPES);
  else if ((IO_TYPES as readonly string[]).includes(iotype)) ioTypes = new Set([iotype as BlkdebugIoType]);
  else throw invalidValue(iotype);
  const errno = kv.has('errno') ? parseInt64('errno', kv.get('errno')!) : 5;
  const sector = kv.has('sector') ? parseInt64('sector', kv.get('sector')!) : -1;
  const once = kv.has('once') ? parseBool(kv.get('once')!) : false;
  const newState = kv.has('new_state') ? parseInt64('new_state', kv.get('new_state')!) : 0;
  return { action, event, state, ioTypes, errno, sector, once, newState };
}

/** The `[inject-error]` and `[set-state]` sections of a blkdebug config file (other sections are refused). */
export function parseConfig(text: string): BlkdebugRule[] {
  const rules: BlkdebugRule[] = [];
  let cur: Map<string, string> | undefined;
  let action: BlkdebugRule['action'] = 'inject-error';
  const flush = (): void => {
    if (cur) rules.push(parseRule(cur, action));
    cur = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sec = /^\[([^\]]*)\]$/.exec(line);
    if (sec) {
      flush();
      if (sec[1] !== 'inject-error' && sec[1] !== 'set-state') {
        throw new VdiskError('invalid-argument', 'BLKDEBUG_SECTION', `There is no option group '${sec[1]}'`);
      }
      action = sec[1];
      cur = new Map();
      continue;
    }
    const kv = /^([^=\s]+)\s*=\s*"(.*)"$/.exec(line);
    if (!kv || !cur) throw new VdiskError('invalid-argument', 'BLKDEBUG_SYNTAX', 'Could not read blkdebug config file: Invalid argument');
    cur.set(kv[1]!, kv[2]!);
  }
  flush();
  return rules;
}

function rulesWithPrefix(options: Readonly<Record<string, string>>, prefix: string, action: BlkdebugRule['action']): BlkdebugRule[] {
  const byIndex = new Map<number, Map<string, string>>();
  for (const [k, v] of Object.entries(options)) {
    if (!k.startsWith(prefix)) continue;
    const m = /^([0-9]+)\.(.+)$/.exec(k.slice(prefix.length));
    if (!m) throw new VdiskError('invalid-argument', 'BLKDEBUG_BAD_KEY', `Invalid parameter '${k}'`);
    const idx = Number(m[1]);
    if (!byIndex.has(idx)) byIndex.set(idx, new Map());
    byIndex.get(idx)!.set(m[2]!, v);
  }
  return [...byIndex.keys()].sort((a, b) => a - b).map((i) => parseRule(byIndex.get(i)!, action));
}

/**
 * Rules from flattened options: `inject-error.0.event=none`, `set-state.0.new_state=2`, ...
 * `prefix` is where the filter's own options start (`file.` when it is an image's protocol).
 */
export function rulesFromOptions(options: Readonly<Record<string, string>>, prefix = ''): BlkdebugRule[] {
  return [
    ...rulesWithPrefix(options, `${prefix}inject-error.`, 'inject-error'),
    ...rulesWithPrefix(options, `${prefix}set-state.`, 'set-state'),
  ];
}

/** The error a rule injects: an I/O error with the rule's errno, worded as strerror. */
export function injectedError(errno: number, op: string, offset: number): VdiskError {
  const name = ERRNO_NAMES[errno];
  return new VdiskError('io', 'BLKDEBUG_INJECTED', STRERROR_BY_NUMBER[errno] ?? `Unknown error ${errno}`,
    { op, offset, ...(name ? { errno: name } : {}) });
}

/**
 * The filter's rules and state machine, as qemu documents blkdebug: the filter starts in state 1;
 * when a format signals an event, the inject-error rules of that event (for the current state)
 * become the active ones, replacing those armed before, and set-state rules move the state once
 * every rule of the event was looked at. A request fails with the first active rule that covers
 * it; a `once` rule is then forgotten. "none" rules are active from the start.
 */
export class BlkdebugRules {
  private rules: BlkdebugRule[];
  private active: BlkdebugRule[];
  private state = 1;

  constructor(rules: readonly BlkdebugRule[]) {
    this.rules = [...rules];
    this.active = this.rules.filter((r) => r.action === 'inject-error' && r.event === 'none' && r.state === 0);
  }

  /** The current state (set-state rules change it). */
  get currentState(): number {
    return this.state;
  }

  event(name: string): void {
    let next = this.state;
    let armed: BlkdebugRule[] | undefined;
    for (const r of this.rules) {
      if (r.event !== name || (r.state !== 0 && r.state !== this.state)) continue;
      if (r.action === 'set-state') next = r.newState;
      else (armed ??= []).push(r);
    }
    if (armed) this.active = armed;
    this.state = next;
  }

  check(type: BlkdebugIoType, offset: number, length: number): void {
    for (let i = 0; i < this.active.length; i++) {
      const r = this.active[i]!;
      if (!r.ioTypes.has(type)) continue;
      const at = r.sector * 512;
      if (r.sector >= 0 && !(length > 0 && at >= offset && at < offset + length)) continue;
      if (r.once) {
        this.active.splice(i, 1);
        this.rules = this.rules.filter((x) => x !== r);
      }
      throw injectedError(r.errno, type, offset);
    }
  }
}

/** Split `blkdebug:CONFIG:FILE` (CONFIG may be empty); undefined for other names. */
export function parseBlkdebugName(name: string): { config: string; file: string } | undefined {
  if (!name.startsWith('blkdebug:')) return undefined;
  const rest = name.slice('blkdebug:'.length);
  const colon = rest.indexOf(':');
  if (colon < 0) return { config: '', file: rest };
  return { config: rest.slice(0, colon), file: rest.slice(colon + 1) };
}

/**
 * Largest blkdebug config file read: real ones hold a few rules (well under a KiB), and a name
 * like /dev/zero would otherwise be read without end.
 */
export const MAX_BLKDEBUG_CONFIG_BYTES = 1 << 20;

async function readBounded(path: string): Promise<string> {
  const fd = await openFd(path, fsConstants.O_RDONLY, 0o666);
  try {
    const buf = Buffer.alloc(MAX_BLKDEBUG_CONFIG_BYTES + 1);
    let n = 0;
    while (n < buf.length) {
      const bytesRead = await readFd(fd, buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > MAX_BLKDEBUG_CONFIG_BYTES) {
      throw new VdiskError('limit', 'BLKDEBUG_CONFIG_TOO_LARGE',
        `Could not read blkdebug config file: larger than ${MAX_BLKDEBUG_CONFIG_BYTES} bytes`, { path });
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    await closeFd(fd);
  }
}

export async function loadConfigRules(config: string): Promise<BlkdebugRule[]> {
  if (config === '') return [];
  let text: string;
  try {
    text = await readBounded(config);
  } catch (e) {
    if (e instanceof VdiskError) throw e;
    const code = (e as { code?: string }).code;
    const why = code === 'ENOENT' ? 'No such file or directory' : code === 'EACCES' ? 'Permission denied' : 'Input/output error';
    throw new VdiskError(code === 'ENOENT' ? 'not-found' : 'io', 'BLKDEBUG_CONFIG', `Could not read blkdebug config file: ${why}`);
  }
  return parseConfig(text);
}

/** blkdebug under a format: every request to the file below is checked against the rules first. */
export class BlkdebugProtocol implements Protocol {
  readonly protocol = 'blkdebug';

  constructor(
    private readonly inner: Protocol,
    private readonly rules: BlkdebugRules,
    readonly filename: string,
  ) {}

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** A format above signals an event (qemu's BLKDBG_EVENT): it may arm rules or change the state. */
  debugEvent(event: string): void {
    this.rules.event(event);
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    this.rules.check('read', offset, buf.length);
    await this.inner.pread(buf, offset);
  }

  async pwrite(buf: Uint8Array, offset: number): Promise<void> {
    this.rules.check('write', offset, buf.length);
    await this.inner.pwrite(buf, offset);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  truncate(size: number, prealloc?: Preallocation): Promise<void> {
    return this.inner.truncate(size, prealloc);
  }

  async flush(): Promise<void> {
    this.rules.check('flush', 0, 0);
    await this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** qemu's blkdebug reports no allocation of its own ("disk size: unavailable"). */
  async allocatedSize(): Promise<number | undefined> {
    return undefined;
  }

  async extent(offset: number, length: number): Promise<ProtocolExtent> {
    this.rules.check('block-status', offset, length);
    return this.inner.extent ? this.inner.extent(offset, length) : { length, data: true };
  }

  async writeZeroes(offset: number, length: number, punch: boolean): Promise<void> {
    this.rules.check('write-zeroes', offset, length);
    if (this.inner.writeZeroes) return this.inner.writeZeroes(offset, length, punch);
    const chunk = new Uint8Array(Math.min(length, 1 << 20));
    for (let p = offset; p < offset + length; p += chunk.length) {
      await this.inner.pwrite(chunk.subarray(0, Math.min(chunk.length, offset + length - p)), p);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    this.rules.check('discard', offset, length);
    await this.inner.discard?.(offset, length);
  }
}
