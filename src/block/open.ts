/**
 * Opening images: protocol, format (given or probed), and the backing chain below, with a depth
 * budget and loop detection by host file identity.
 */
import { dirname, isAbsolute, join } from 'node:path';
import { VdiskError, fromSystemError } from './errors.js';
import { realpathOf, statPath } from './host-fs.js';
import { combinePaths, hostPath } from './filenames.js';
import type { FormatDriver, OpenContext, SecretStore } from './driver.js';
import { Image, MutableBackingReader, setProbedRawGuard } from './image.js';
import { MAX_BACKING_CHAIN_DEPTH, PROBE_BYTES } from './limits.js';
import { FORMATS, findFormat, type FormatEntry } from '../formats/index.js';
import { FileProtocol } from '../protocols/file.js';
import type { CacheMode, Protocol } from '../protocols/types.js';

export { parseCacheMode, type CacheMode } from '../protocols/types.js';
import { NULL_PROTOCOLS, NullProtocol } from '../protocols/null.js';
import { BlkdebugProtocol, BlkdebugRules, loadConfigRules, parseBlkdebugName, rulesFromOptions } from '../protocols/blkdebug.js';
import { BlkdebugLayer, blkdebugParts } from './blkdebug-layer.js';
import { isNbdName, NBD_OPTION_KEYS } from '../nbd/address.js';

export { canonicalNbdName, targetFromOptions as nbdTargetFromOptions } from '../nbd/address.js';
import { openQuorum } from './quorum-open.js';
import { parseLockingMode, type LockingMode } from '../protocols/file-lock.js';
import { filePerms } from './perms.js';

export const noSecrets: SecretStore = { get: () => undefined };

export interface OpenOptions {
  /** Format name; probed from content when absent. */
  format?: string;
  readOnly?: boolean;
  /** Do not open the backing chain (qemu-img info does this: BDRV_O_NO_BACKING). */
  noBacking?: boolean;
  /** Driver options (dotted keys, from --image-opts/json:). */
  options?: Record<string, string>;
  secrets?: SecretStore;
  /** Force the format of the backing file (qemu: -F / backing.driver). */
  backingFormat?: string;
  /**
   * Open backing images read-write too (commit writes into a lower image): all of them, or those
   * the function picks (by resolved path and depth below the top). Default: read-only.
   */
  backingWritable?: boolean | ((path: string, depth: number, overlay: string) => boolean | Promise<boolean>);
  /** Receives warnings qemu-img prints to stderr (e.g. a raw format guessed by probing for writing). */
  warn?: (text: string) => void;
  /** Only metadata will be read (qemu-img info): keys and data files are not required. */
  noIo?: boolean;
  /** Opened for `check` (qemu's BDRV_O_CHECK); only the top image. */
  check?: boolean;
  /** Cache mode of the top image and the files it names (-t); default writeback. */
  cache?: CacheMode;
  /** The name qemu shows for the top image when it is not the filename (blkdebug/quorum trees). */
  displayName?: string;
  /** The name qemu shows for the top image's file node then (map's "File" column). */
  fileDisplayName?: string;
  /** -U / force-share=on: let other openers write (read-only opens only). Also for the backing chain. */
  forceShare?: boolean;
  /** The command resizes the image (qemu's BDRV_O_RESIZE): the resize permission is taken. */
  resize?: boolean;
  /** Others may not write or resize while it is open (qemu-img convert's sources). */
  noShare?: boolean;
  /** Opened as a backing file of another image (set by openImage). */
  asBacking?: boolean;
}

/** The file's `locking=` option (file.locking through a format, locking on the file driver). */
function lockingMode(options: Record<string, string>, protocolName: string | undefined): LockingMode {
  const v = protocolName === 'file' ? options['locking'] ?? options['file.locking'] : options['file.locking'];
  if (v === undefined) return 'auto';
  const mode = parseLockingMode(v);
  if (mode === undefined) throw new VdiskError('invalid-argument', 'BAD_LOCKING', `invalid parameter value: ${v}`);
  return mode;
}

/** Lock the top file of a layer for what this open takes and shares (qemu's file-posix locks). */
function lockLayer(proto: Protocol, opts: OpenOptions, readOnly: boolean, metadata: boolean, mode: LockingMode): void {
  const role = opts.asBacking && readOnly ? 'backing' : 'image';
  proto.lock?.(filePerms({
    role, readOnly, metadata, noIo: opts.noIo === true, resize: opts.resize === true,
    noShare: opts.noShare === true, forceShare: opts.forceShare === true,
  }), mode, opts.warn);
}

/** Result of probing: the best-scoring format for a head of bytes. */
export function probeFormat(head: Uint8Array, filename: string): FormatEntry {
  let best: FormatEntry | undefined;
  let bestScore = 0;
  for (const f of FORMATS) {
    if (!f.probe) continue;
    let score = 0;
    try {
      score = f.probe(head, filename);
    } catch {
      score = 0;
    }
    if (score > bestScore) {
      best = f;
      bestScore = score;
    }
  }
  return best ?? (findFormat('raw') as FormatEntry);
}

/**
 * A raw image whose format was guessed must not get a block 0 that probes as another format: a
 * guest could otherwise turn its disk into, say, a qcow2 naming a host file as backing file.
 */
setProbedRawGuard((img, buf, offset) => {
  if (offset !== 0 || buf.length === 0) return;
  const head = buf.subarray(0, Math.min(buf.length, PROBE_BYTES));
  if (probeFormat(head, img.filename).name !== 'raw') {
    throw new VdiskError('permission', 'PROBED_RAW_BLOCK0',
      `Could not write to '${img.filename}': Operation not permitted (writing a format header to a raw image whose format was guessed)`,
      { path: img.filename, offset: 0, op: 'write' });
  }
});

export async function openProtocol(filename: string, readOnly: boolean, cache?: CacheMode): Promise<Protocol> {
  const c = cache !== undefined ? { cache } : {};
  if (isNbdName(filename)) return (await nbdProtocol()).open(filename, readOnly);
  const bd = parseBlkdebugName(filename);
  if (bd) {
    const rules = new BlkdebugRules(await loadConfigRules(bd.config));
    return new BlkdebugProtocol(await FileProtocol.open(bd.file, { readOnly, ...c }), rules, filename);
  }
  return FileProtocol.open(filename, { readOnly, ...c });
}

/** `driver=blkdebug` with an `image` child: the image below opened whole, behind the filter. */
async function openBlkdebugFilter(filename: string, opts: OpenOptions): Promise<Image> {
  const parts = await blkdebugParts(opts.options ?? {});
  const inner = await openImage(filename, {
    ...opts,
    options: parts.inner,
    ...(parts.innerFormat !== undefined ? { format: parts.innerFormat } : { format: undefined }),
  });
  const readOnly = opts.readOnly ?? true;
  // the filter's own node reports no disk usage, as qemu's blkdebug ("disk size: unavailable")
  const node = new BlkdebugProtocol(inner.protocol, new BlkdebugRules([]), filename);
  return new Image(new BlkdebugLayer(inner, parts.rules), node, {
    filename, format: 'blkdebug', probed: false, readOnly, ...(opts.displayName !== undefined ? { displayName: opts.displayName } : {}),
  }, new MutableBackingReader());
}

async function loadDriver(entry: FormatEntry): Promise<FormatDriver> {
  return entry.load();
}

/** How `json:{...}` names are read (registered by the CLI, which owns qemu's option syntax). */
export interface JsonNameSpec {
  filename: string;
  format?: string;
  options: Record<string, string>;
}
let jsonNames: ((name: string) => JsonNameSpec) | undefined;
export function setJsonNameParser(fn: (name: string) => JsonNameSpec): void {
  jsonNames = fn;
}

/** blkdebug named as the protocol in options (`file.driver=blkdebug`): the file below it, behind its rules. */
async function blkdebugFileProtocol(filename: string, readOnly: boolean, options: Record<string, string>): Promise<Protocol> {
  const rules = new BlkdebugRules([
    ...(options['file.config'] !== undefined ? await loadConfigRules(options['file.config']) : []),
    ...rulesFromOptions(options, 'file.'),
  ]);
  for (const k of Object.keys(options)) if (k.startsWith('file.')) delete options[k];
  return new BlkdebugProtocol(await FileProtocol.open(filename, { readOnly }), rules, filename);
}

/** qemu's host_device driver takes block and character devices only. */
async function requireDevice(filename: string): Promise<void> {
  const st = await statPath(filename);
  if (!st.isBlockDevice() && !st.isCharacterDevice()) {
    throw new VdiskError('invalid-argument', 'NOT_A_DEVICE', `'host_device' driver requires '${filename}' to be either a character or block device`, { path: filename });
  }
}

/** The NBD client (node:net, node:dns) is loaded only for an NBD name: start-up of every other open skips it. */
export async function nbdProtocol(): Promise<typeof import('../protocols/nbd.js').NbdProtocol> {
  return (await import('../protocols/nbd.js')).NbdProtocol;
}

/** Options every block node takes, whatever its driver. */
const BLOCK_NODE_KEYS = new Set(['node-name', 'read-only', 'auto-read-only', 'cache.direct', 'cache.no-flush', 'discard', 'detect-zeroes', 'force-share']);

/** NBD named in options (driver=nbd, or file.driver=nbd below a format): its keys are consumed here. */
async function nbdFileProtocol(filename: string, readOnly: boolean, options: Record<string, string>, prefix: string): Promise<Protocol> {
  const proto = await (await nbdProtocol()).open(filename, readOnly, options, prefix);
  for (const k of Object.keys(options)) {
    if (k === `${prefix}driver` || (k.startsWith(prefix) && NBD_OPTION_KEYS.has(k.slice(prefix.length)))) delete options[k];
  }
  // driver=nbd: every other key is the NBD driver's to refuse (qemu checks after connecting)
  const unknown = prefix === '' ? Object.keys(options).find((k) => !BLOCK_NODE_KEYS.has(k)) : undefined;
  if (unknown !== undefined) {
    await proto.close();
    throw new VdiskError('invalid-argument', 'UNKNOWN_OPTION', `Block protocol 'nbd' doesn't support the option '${unknown}'`, { path: filename });
  }
  return proto;
}

/** Open one layer (no backing chain linked yet). */
export async function openLayer(name: string, opts: OpenOptions = {}): Promise<Image> {
  if (name.startsWith('json:') && jsonNames) {
    const spec = jsonNames(name);
    const format = opts.format ?? spec.format;
    return openLayer(spec.filename, { ...opts, options: { ...spec.options, ...(opts.options ?? {}) }, ...(format !== undefined ? { format } : {}) });
  }
  if (opts.format === 'blkdebug') return openBlkdebugFilter(name, opts);
  if (opts.format === 'quorum' || opts.options?.['file.driver'] === 'quorum') return openQuorum(name, opts, openImage);
  // a driver named as the format (driver=null-co) needs no host path
  const filename = opts.format !== undefined && NULL_PROTOCOLS.has(opts.format) ? name : hostPath(name);
  const readOnly = opts.readOnly ?? true;
  let entry: FormatEntry | undefined;
  // protocol drivers named as the format (driver=file, driver=null-co): raw bytes, reported under that name
  let protocolName: string | undefined;
  if (opts.format !== undefined && (opts.format === 'file' || opts.format === 'host_device' || opts.format === 'nbd' || NULL_PROTOCOLS.has(opts.format))) {
    protocolName = opts.format;
    entry = findFormat('raw');
  } else if (opts.format !== undefined) {
    entry = findFormat(opts.format);
    if (!entry) {
      throw new VdiskError('invalid-argument', 'UNKNOWN_DRIVER', `Unknown driver '${opts.format}'`, { path: filename, format: opts.format });
    }
  }
  const options = { ...(opts.options ?? {}) };
  const nbdPrefix = protocolName === 'nbd' ? '' : options['file.driver'] === 'nbd' ? 'file.' : undefined;
  if (opts.forceShare && !readOnly) {
    throw new VdiskError('invalid-argument', 'FORCE_SHARE_RW', 'force-share=on can only be used with read-only images', { path: filename });
  }
  const locking = lockingMode(options, protocolName);
  const proto = protocolName !== undefined && NULL_PROTOCOLS.has(protocolName)
    ? NullProtocol.open(protocolName, opts.options ?? {})
    : nbdPrefix !== undefined ? await nbdFileProtocol(filename, readOnly, options, nbdPrefix)
      : options['file.driver'] === 'blkdebug' ? await blkdebugFileProtocol(filename, readOnly, options)
        : await openProtocol(filename, readOnly, opts.cache);
  try {
    if (protocolName === 'host_device') await requireDevice(filename);
    let probed = false;
    if (!entry) {
      const size = await proto.size();
      const head = new Uint8Array(Math.min(PROBE_BYTES, size));
      await proto.pread(head, 0);
      entry = probeFormat(head, filename);
      probed = true;
    }
    lockLayer(proto, opts, readOnly, protocolName === undefined && entry.name !== 'raw', locking);
    const driver = await loadDriver(entry);
    const backing = new MutableBackingReader();
    const dir = dirname(filename);
    const ctx: OpenContext = {
      filename,
      readOnly,
      options,
      secrets: opts.secrets ?? noSecrets,
      backing,
      openFile: async (name, ro) => {
        const p = await openProtocol(isAbsolute(name) ? name : join(dir, name), ro, opts.cache);
        try {
          p.lock?.(filePerms({ role: 'data', readOnly: ro, metadata: false, noIo: opts.noIo === true,
            noShare: opts.noShare === true, forceShare: opts.forceShare === true }), locking, opts.warn);
        } catch (e) {
          await p.close().catch(() => undefined);
          throw e;
        }
        return p;
      },
      ...(opts.noIo ? { noIo: true } : {}),
      ...(opts.check ? { check: true } : {}),
    };
    const layer = await driver.open(proto, ctx);
    if (probed && entry.name === 'raw' && !readOnly) {
      opts.warn?.(`WARNING: Image format was not specified for '${filename}' and probing guessed raw.\n` +
        '         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n' +
        "         Specify the 'raw' format explicitly to remove the restrictions.\n");
    }
    // a network node is named as its driver names it (nbd's canonical URI), not as it was typed
    const shownName = proto.protocol === 'nbd' ? proto.filename : filename;
    return new Image(layer, proto, {
      filename: shownName, format: protocolName ?? entry.name, probed, readOnly, ...(opts.displayName !== undefined ? { displayName: opts.displayName } : {}),
      ...(opts.fileDisplayName !== undefined ? { fileDisplayName: opts.fileDisplayName } : {}),
    }, backing);
  } catch (e) {
    await proto.close().catch(() => undefined);
    throw e;
  }
}

/**
 * Resolve a backing file name as qemu does: relative names are relative to the directory of the
 * image that names them; protocol-style names (json:, nbd:) are not supported as backing files.
 */
export function resolveBackingName(overlayFilename: string, backing: string): string {
  // protocol names (nbd://host/x, json:{...}) are not paths: combinePaths keeps them as written
  return combinePaths(overlayFilename, backing);
}

async function fileIdentity(filename: string): Promise<string> {
  try {
    const st = await statPath(filename);
    return `${st.dev}:${st.ino}`;
  } catch {
    return await realpathOf(filename).catch(() => filename);
  }
}

/** Options for one image split from those its backing file gets (`backing.*`, prefix removed), as qemu hands them down. */
function splitBackingOptions(options: Record<string, string> | undefined): { own: Record<string, string>; backing: Record<string, string> } {
  const own: Record<string, string> = {};
  const backing: Record<string, string> = {};
  for (const [k, v] of Object.entries(options ?? {})) {
    if (k.startsWith('backing.')) backing[k.slice(8)] = v;
    else own[k] = v;
  }
  return { own, backing };
}

/** What `backing.*` options say about opening one backing file: its file, driver and own options. */
function backingOpenSpec(child: Record<string, string>): { file?: string; format?: string; options: Record<string, string> } {
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(child)) {
    if (k !== 'driver' && k !== 'file' && k !== 'file.filename' && !(k === 'file.driver' && v === 'file')) options[k] = v;
  }
  const file = child['file.filename'] ?? child['file'];
  return { ...(file !== undefined ? { file } : {}), ...(child['driver'] !== undefined ? { format: child['driver'] } : {}), options };
}

/** Open an image and its whole backing chain (read-only below the top). */
export async function openImage(filename: string, opts: OpenOptions = {}): Promise<Image> {
  if (filename.startsWith('json:') && jsonNames) {
    // read here rather than in openLayer, so its backing.* options reach the backing file
    const spec = jsonNames(filename);
    const format = opts.format ?? spec.format;
    return openImage(spec.filename, { ...opts, options: { ...spec.options, ...(opts.options ?? {}) }, ...(format !== undefined ? { format } : {}) });
  }
  const split = splitBackingOptions(opts.options);
  const top = await openLayer(filename, opts.options ? { ...opts, options: split.own } : opts);
  if (opts.noBacking) return top;
  let childOptions = split.backing;
  try {
    const seen = new Set<string>([await fileIdentity(filename)]);
    let cur = top;
    let forcedFormat = opts.backingFormat;
    for (let depth = 1; cur.layer.backing; depth++) {
      const named = cur.layer.backing;
      const path = resolveBackingName(cur.filename, named.filename);
      if (depth > MAX_BACKING_CHAIN_DEPTH) {
        throw new VdiskError('limit', 'CHAIN_TOO_DEEP',
          `Could not open backing file: backing chain of '${filename}' is deeper than ${MAX_BACKING_CHAIN_DEPTH}`, { path: filename });
      }
      const id = await fileIdentity(path);
      if (seen.has(id)) {
        throw new VdiskError('limit', 'BACKING_LOOP', `Backing file '${named.filename}' creates an infinite loop.`, { path: cur.filename });
      }
      seen.add(id);
      let below: Image;
      const child = splitBackingOptions(childOptions);
      const given = backingOpenSpec(child.own);
      childOptions = child.backing;
      try {
        const fmt = forcedFormat ?? given.format ?? named.format;
        const bw = opts.backingWritable;
        const target = given.file ?? path;
        const writable = typeof bw === 'function' ? await bw(target, depth, cur.filename) : bw === true;
        below = await openLayer(target, {
          readOnly: !writable, ...(fmt !== undefined ? { format: fmt } : {}), secrets: opts.secrets ?? noSecrets,
          ...(opts.cache !== undefined ? { cache: opts.cache } : {}), options: given.options,
          asBacking: true, ...(opts.forceShare ? { forceShare: true } : {}),
        });
      } catch (e) {
        const err = e instanceof VdiskError ? e : fromSystemError(e, `Could not open '${path}'`, { path });
        throw new VdiskError(err.kind, err.code, `Could not open backing file: ${err.message}`, { ...err.context, path: cur.filename }, err);
      }
      forcedFormat = undefined;
      cur.linkBacking(below);
      cur = below;
    }
  } catch (e) {
    await top.close().catch(() => undefined);
    throw e;
  }
  return top;
}
