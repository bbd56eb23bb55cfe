/**
 * Opening images: protocol, format (given or probed), and the backing chain below, with a depth
 * budget and loop detection by host file identity.
 */
import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { VdiskError, fromSystemError } from './errors.js';
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
  return new Image(new BlkdebugLayer(inner, parts.rules), inner.protocol,
    { filename, format: 'blkdebug', probed: false, readOnly }, new MutableBackingReader());
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
    ...rulesFromOptions(options, 'file.inject-error.'),
  ]);
  for (const k of Object.keys(options)) if (k.startsWith('file.')) delete options[k];
  return new BlkdebugProtocol(await FileProtocol.open(filename, { readOnly }), rules, filename);
}

/** Open one layer (no backing chain linked yet). */
export async function openLayer(name: string, opts: OpenOptions = {}): Promise<Image> {
  if (name.startsWith('json:') && jsonNames) {
    const spec = jsonNames(name);
    const format = opts.format ?? spec.format;
    return openLayer(spec.filename, { ...opts, options: { ...spec.options, ...(opts.options ?? {}) }, ...(format !== undefined ? { format } : {}) });
  }
  if (opts.format === 'blkdebug') return openBlkdebugFilter(name, opts);
  // a driver named as the format (driver=null-co) needs no host path
  const filename = opts.format !== undefined && NULL_PROTOCOLS.has(opts.format) ? name : hostPath(name);
  const readOnly = opts.readOnly ?? true;
  let entry: FormatEntry | undefined;
  // protocol drivers named as the format (driver=file, driver=null-co): raw bytes, reported under that name
  let protocolName: string | undefined;
  if (opts.format !== undefined && (opts.format === 'file' || NULL_PROTOCOLS.has(opts.format))) {
    protocolName = opts.format;
    entry = findFormat('raw');
  } else if (opts.format !== undefined) {
    entry = findFormat(opts.format);
    if (!entry) {
      throw new VdiskError('invalid-argument', 'UNKNOWN_DRIVER', `Unknown driver '${opts.format}'`, { path: filename, format: opts.format });
    }
  }
  const options = { ...(opts.options ?? {}) };
  if (opts.forceShare && !readOnly) {
    throw new VdiskError('invalid-argument', 'FORCE_SHARE_RW', 'force-share=on can only be used with read-only images', { path: filename });
  }
  const locking = lockingMode(options, protocolName);
  const proto = protocolName !== undefined && NULL_PROTOCOLS.has(protocolName)
    ? NullProtocol.open(protocolName, opts.options ?? {})
    : options['file.driver'] === 'blkdebug' ? await blkdebugFileProtocol(filename, readOnly, options)
      : await openProtocol(filename, readOnly, opts.cache);
  try {
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
    return new Image(layer, proto, { filename, format: protocolName ?? entry.name, probed, readOnly }, backing);
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
    const st = await stat(filename);
    return `${st.dev}:${st.ino}`;
  } catch {
    return await realpath(filename).catch(() => filename);
  }
}

/** Open an image and its whole backing chain (read-only below the top). */
export async function openImage(filename: string, opts: OpenOptions = {}): Promise<Image> {
  const top = await openLayer(filename, opts);
  if (opts.noBacking) return top;
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
      try {
        const fmt = forcedFormat ?? named.format;
        const bw = opts.backingWritable;
        const writable = typeof bw === 'function' ? await bw(path, depth, cur.filename) : bw === true;
        below = await openLayer(path, {
          readOnly: !writable, ...(fmt !== undefined ? { format: fmt } : {}), secrets: opts.secrets ?? noSecrets,
          ...(opts.cache !== undefined ? { cache: opts.cache } : {}),
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
