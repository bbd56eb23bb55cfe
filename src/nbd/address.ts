/**
 * Where an NBD export is, from every spelling qemu-img 7.2 accepts: the URIs
 * `nbd[+tcp]://host[:port]/export` and `nbd+unix:///export?socket=PATH`, the legacy
 * `nbd:host:port[:exportname=NAME]` / `nbd:unix:PATH[:exportname=NAME]`, and options (json: or
 * --image-opts: `server.type/path/host/port`, or the legacy `host/port/path`, and `export`), and the
 * name qemu shows for it afterwards.
 */
import { VdiskError } from '../block/errors.js';
import { NBD_DEFAULT_PORT } from './constants.js';

export type NbdServer = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string };

export interface NbdTarget {
  server: NbdServer;
  exportName: string;
  /** x-dirty-bitmap: a meta context read in place of base:allocation. */
  dirtyBitmap?: string;
}

const URI_SCHEMES = new Set(['nbd', 'nbd+tcp', 'nbd+unix']);

function bad(message: string, name: string): VdiskError {
  return new VdiskError('invalid-argument', 'NBD_BAD_ADDRESS', message, { path: name });
}

/** True for names the NBD driver takes (its URI schemes and the legacy `nbd:` form). */
export function isNbdName(name: string): boolean {
  const m = /^([^:/]*):/.exec(name);
  return m !== null && (m[1] === 'nbd' || URI_SCHEMES.has(m[1]!));
}

function decodeComponent(s: string, name: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad('No valid URL specified', name);
  }
}

function parseUri(name: string): NbdTarget {
  const m = /^([a-z+]+):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/.exec(name);
  if (!m || !URI_SCHEMES.has(m[1]!)) throw bad('No valid URL specified', name);
  const [, scheme, authority = '', path = '', query] = m;
  const exportName = decodeComponent(path.replace(/^\//, ''), name);
  if (scheme === 'nbd+unix') {
    const q = query !== undefined && /^socket=([^&]*)$/.exec(query);
    if (authority !== '' || !q) throw bad('No valid URL specified', name);
    return { server: { type: 'unix', path: decodeComponent(q[1]!, name) }, exportName };
  }
  if (query !== undefined) throw bad('No valid URL specified', name);
  const hp = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d*))?$/.exec(authority);
  if (!hp) throw bad('No valid URL specified', name);
  const host = decodeComponent(hp[1] ?? hp[2]!, name);
  const port = hp[3] !== undefined && hp[3] !== '' ? String(Number(hp[3])) : String(NBD_DEFAULT_PORT);
  return { server: { type: 'inet', host, port }, exportName };
}

function parseLegacy(name: string): NbdTarget {
  let rest = name.slice('nbd:'.length);
  let exportName = '';
  const at = rest.indexOf(':exportname=');
  if (at >= 0) {
    exportName = rest.slice(at + ':exportname='.length);
    rest = rest.slice(0, at);
  }
  if (rest === '') throw bad('NBD server address missing', name);
  if (rest.startsWith('unix:')) return { server: { type: 'unix', path: rest.slice(5) }, exportName };
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(rest);
  if (v6) return { server: { type: 'inet', host: v6[1]!, port: v6[2]! }, exportName };
  const colon = rest.indexOf(':');
  if (colon < 0) throw bad(`error parsing address '${rest}'`, name);
  return { server: { type: 'inet', host: rest.slice(0, colon), port: rest.slice(colon + 1) }, exportName };
}

/** The export a filename names. */
export function parseNbdFilename(name: string): NbdTarget {
  return /^[^:/]*:\/\//.test(name) ? parseUri(name) : parseLegacy(name);
}

/** Option keys the NBD driver reads (below its prefix). */
export const NBD_OPTION_KEYS = new Set([
  'server.type', 'server.path', 'server.host', 'server.port', 'server.abstract', 'server.tight', 'server.numeric',
  'server.to', 'server.ipv4', 'server.ipv6', 'server.keep-alive', 'host', 'port', 'path', 'export',
  'x-dirty-bitmap', 'reconnect-delay', 'open-timeout', 'tls-creds', 'tls-hostname',
]);

/** True when options (under `prefix`) describe an NBD server rather than leave it to the filename. */
export function hasNbdServerOptions(options: Readonly<Record<string, string>>, prefix = ''): boolean {
  return ['server.type', 'host', 'port', 'path'].some((k) => options[prefix + k] !== undefined)
    || Object.keys(options).some((k) => k.startsWith(`${prefix}server.`));
}

/** The export named by options under `prefix` (json:/--image-opts), checked as qemu checks them. */
export function targetFromOptions(options: Readonly<Record<string, string>>, prefix = '', name = ''): NbdTarget {
  const o = (k: string): string | undefined => options[prefix + k];
  const legacy = o('host') !== undefined || o('port') !== undefined || o('path') !== undefined;
  const hasServer = Object.keys(options).some((k) => k.startsWith(`${prefix}server.`));
  if (legacy && hasServer) throw bad("Cannot use 'server' and path/host/port at the same time", name);
  let server: NbdServer;
  if (hasServer) {
    const type = o('server.type');
    if (type === undefined) throw bad("Parameter 'type' is missing", name);
    if (type === 'unix') {
      const path = o('server.path');
      if (path === undefined) throw bad("Parameter 'path' is missing", name);
      server = { type: 'unix', path };
    } else if (type === 'inet') {
      const host = o('server.host');
      if (host === undefined) throw bad("Parameter 'host' is missing", name);
      server = { type: 'inet', host, port: o('server.port') ?? String(NBD_DEFAULT_PORT) };
    } else {
      throw bad(`Parameter 'type' does not accept value '${type}'`, name);
    }
  } else if (legacy) {
    const path = o('path');
    if (path !== undefined && o('host') !== undefined) throw bad('path and host may not be used at the same time', name);
    if (path !== undefined && o('port') !== undefined) throw bad('port may not be used without host', name);
    server = path !== undefined ? { type: 'unix', path } : { type: 'inet', host: o('host') ?? '', port: o('port') ?? String(NBD_DEFAULT_PORT) };
    if (server.type === 'inet' && o('host') === undefined) throw bad('NBD server address missing', name);
  } else {
    throw bad('NBD server address missing', name);
  }
  const t: NbdTarget = { server, exportName: o('export') ?? '' };
  const bitmap = o('x-dirty-bitmap');
  if (bitmap !== undefined) t.dirtyBitmap = bitmap;
  return t;
}

/** The name qemu gives the node afterwards (info's "image:", map's "File"). */
export function canonicalNbdName(t: NbdTarget): string {
  if (t.server.type === 'unix') {
    return t.exportName === '' ? `nbd+unix://?socket=${t.server.path}` : `nbd+unix:///${t.exportName}?socket=${t.server.path}`;
  }
  return `nbd://${t.server.host}:${t.server.port}${t.exportName === '' ? '' : `/${t.exportName}`}`;
}
