/**
 * qemu's "key=value,key2=value2" option strings (QemuOpts): `,,` is a literal comma, a bare first
 * item may stand for an implied key (`--object secret,id=...` means qom-type=secret), later bare
 * items are `key=on`. Also `json:{...}` filenames and `--image-opts` strings flattened to dotted keys.
 */
import { readFileSync } from 'node:fs';
import { VdiskError } from '../block/errors.js';
import type { JsonObject, SecretStore } from '../block/driver.js';
import { canonicalNbdName, nbdTargetFromOptions, setJsonNameParser } from '../block/open.js';
import { filterTreeNames } from './nodename.js';
import { MAX_JSON_NESTING } from './qjson.js';

export { MAX_JSON_NESTING };

export type OptPairs = Array<[string, string]>;

/** Split on single commas; `,,` stands for a comma inside a value. */
export function splitOptString(s: string): string[] {
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === ',') {
      if (s[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      items.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  items.push(cur);
  return items;
}

/**
 * qemu's reading of an option list: a name runs to the first '=' or ',' (no escapes in names), a
 * value to the first single ',' (`,,` is a comma in it); an item without '=' is a flag (`key=on`,
 * `nokey` is `key=off`), or the value of `impliedKey` when it comes first.
 */
export function parseOptString(s: string, impliedKey?: string): OptPairs {
  return readOptItems(s, impliedKey).map((it) => [it.name, it.value]);
}

interface OptItem { name: string; value: string; flag: boolean }

function readValue(s: string, p: number): { value: string; next: number } {
  let value = '';
  for (; p < s.length; p++) {
    if (s[p] === ',') {
      if (s[p + 1] !== ',') break;
      p++;
    }
    value += s[p];
  }
  return { value, next: p };
}

function readOptItems(s: string, impliedKey?: string): OptItem[] {
  const out: OptItem[] = [];
  for (let p = 0; p < s.length;) {
    let len = 0;
    while (p + len < s.length && s[p + len] !== '=' && s[p + len] !== ',') len++;
    const name = s.slice(p, p + len);
    let next: number;
    if (s[p + len] === '=') {
      const v = readValue(s, p + len + 1);
      out.push({ name, value: v.value, flag: false });
      next = v.next;
    } else if (p === 0 && impliedKey) {
      const v = readValue(s, p);
      out.push({ name: impliedKey, value: v.value, flag: false });
      next = v.next;
    } else {
      out.push(name.startsWith('no') ? { name: name.slice(2), value: 'off', flag: true } : { name, value: 'on', flag: true });
      next = p + len;
    }
    p = next < s.length ? next + 1 : next; // past the separating comma
  }
  return out;
}

/** `help` or `?` given as a flag item (qemu's help_wanted; `help=x` and `nohelp` are not). */
export function optListWantsHelp(s: string): boolean {
  return readOptItems(s).some((it) => it.flag && it.value === 'on' && (it.name === 'help' || it.name === '?'));
}

/** Flatten a json: object to qemu's dotted keys ({"file":{"filename":"x"}} -> file.filename=x). */
export function flattenJson(v: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) flattenJson(val, prefix ? `${prefix}.${k}` : k, out);
  } else if (Array.isArray(v)) {
    v.forEach((val, i) => flattenJson(val, `${prefix}.${i}`, out));
  } else {
    out[prefix] = v === null ? 'null' : String(v);
  }
  return out;
}

/**
 * qemu's JSON parser also takes 'single-quoted' strings (its test suite relies on it); convert them
 * to standard JSON strings outside of double-quoted ones, then parse.
 */

export function parseQemuJson(text: string): unknown {
  let out = '';
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '{' || c === '[') {
      if (++depth > MAX_JSON_NESTING) throw new Error('JSON nesting depth limit exceeded');
    } else if (c === '}' || c === ']') depth--;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "'") {
      let j = i + 1;
      let str = '';
      while (j < text.length && text[j] !== "'") {
        if (text[j] === '\\' && j + 1 < text.length) {
          str += text[j + 1] === "'" ? "'" : text.slice(j, j + 2);
          j += 2;
        } else {
          str += text[j] === '"' ? '\\"' : text[j];
          j++;
        }
      }
      out += `"${str}"`;
      i = j;
    } else {
      out += c;
    }
  }
  return JSON.parse(out);
}

/** A filename as a user can give it: plain, `json:{...}`, or (with --image-opts) an option string. */
export interface ImageSpec {
  filename: string;
  format?: string;
  options: Record<string, string>;
  /** The name "Could not open" shows when it is not `filename` (an NBD node built from json: options). */
  openName?: string;
  /** The name qemu shows for the image when it differs from what was given (blkdebug/quorum trees). */
  displayName?: string;
  /** The name qemu shows for the image's file node then (map's "File" column). */
  fileDisplayName?: string;
}

export function parseImageSpec(arg: string, imageOpts: boolean): ImageSpec {
  let flat: Record<string, string>;
  let tree: JsonObject;
  if (imageOpts) {
    flat = Object.fromEntries(parseOptString(arg));
    tree = flat;
  } else if (arg.startsWith('json:')) {
    let parsed: unknown;
    try {
      parsed = parseQemuJson(arg.slice(5));
    } catch (e) {
      throw new VdiskError('invalid-argument', 'BAD_JSON', `Could not parse the JSON options: ${(e as Error).message}`, { path: arg });
    }
    flat = flattenJson(parsed);
    tree = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as JsonObject : {};
  } else {
    return { filename: arg, options: {} };
  }
  const names = filterTreeNames(tree);
  const spec = imageSpecFromFlat(flat, arg);
  if (!names) return spec;
  return { ...spec, displayName: names.name, ...(names.fileName !== undefined ? { fileDisplayName: names.fileName } : {}) };
}

function imageSpecFromFlat(flat: Record<string, string>, arg: string): ImageSpec {
  const driver = flat['driver'];
  const nbd = nbdSpec(arg, flat);
  if (nbd) return nbd;
  // quorum has no file of its own: its children are opened from the options it keeps
  if (driver === 'quorum' || flat['file.driver'] === 'quorum') {
    const options: Record<string, string> = {};
    for (const [k, v] of Object.entries(flat)) if (k !== 'driver') options[k] = v;
    return driver !== undefined ? { filename: '', format: driver, options } : { filename: '', options };
  }
  const protocolOnly = driver === 'null-co' || driver === 'null-aio';
  // a filter above a format (blkdebug) names its file inside its `image` child
  const childFile = driver === 'blkdebug' ? flat['image.file.filename'] ?? flat['image.filename']
    : flat['file.driver'] === 'blkdebug' ? flat['file.image.filename'] : undefined;
  const filename = childFile ?? flat['file.filename'] ?? flat['file'] ?? flat['filename'] ?? (protocolOnly ? `${driver}://` : undefined);
  if (filename === undefined) {
    throw new VdiskError('invalid-argument', 'NO_FILENAME', `A block device must be specified for "file"`, { path: arg });
  }
  const options: Record<string, string> = {};
  let format: string | undefined;
  // blkdebug as the protocol: its options go down to the opener, which wraps the file in it
  if (flat['file.driver'] === 'blkdebug') options['file.driver'] = 'blkdebug';
  for (const [k, v] of Object.entries(flat)) {
    if (k === 'driver') format = v;
    else if (k === 'file.filename' || k === 'file' || k === 'filename' || k === 'file.driver') continue;
    else options[k] = v;
  }
  return format !== undefined ? { filename, format, options } : { filename, options };
}

/**
 * driver=nbd (or file.driver=nbd below a format) with the server in options: the node is named by
 * its canonical URI, and the options go down to the NBD driver as they are.
 */
function nbdSpec(arg: string, flat: Record<string, string>): ImageSpec | undefined {
  const prefix = flat['driver'] === 'nbd' ? '' : flat['file.driver'] === 'nbd' ? 'file.' : undefined;
  if (prefix === undefined || flat[`${prefix}filename`] !== undefined) return undefined;
  const filename = canonicalNbdName(nbdTargetFromOptions(flat, prefix, arg));
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(flat)) if (k !== 'driver') options[k] = v;
  const format = flat['driver'];
  return format !== undefined ? { filename, format, options, openName: arg } : { filename, options, openName: arg };
}

// backing files named json:{...} are opened by the block layer with this reading of them
setJsonNameParser((name) => parseImageSpec(name, false));

/** Secrets from `--object secret,id=ID,data=...|file=...[,format=raw|base64]`. */
export class Secrets implements SecretStore {
  private readonly map = new Map<string, Uint8Array>();

  get(id: string): Uint8Array | undefined {
    return this.map.get(id);
  }

  /** Add one --object definition; only `secret` objects are meaningful to qemu-img. */
  add(def: string): void {
    const pairs = Object.fromEntries(parseOptString(def, 'qom-type'));
    const type = pairs['qom-type'];
    if (type !== 'secret') {
      throw new VdiskError('invalid-argument', 'BAD_OBJECT', `Parameter 'qom-type' does not accept value '${type ?? ''}'`);
    }
    const id = pairs['id'];
    if (!id) throw new VdiskError('invalid-argument', 'BAD_OBJECT', `Parameter 'id' is missing`);
    if (this.map.has(id)) throw new VdiskError('invalid-argument', 'BAD_OBJECT', `attempt to add duplicate property '${id}' to object (type 'container')`);
    let bytes: Uint8Array;
    if (pairs['data'] !== undefined) bytes = new TextEncoder().encode(pairs['data']);
    else if (pairs['file'] !== undefined) {
      try {
        bytes = readFileSync(pairs['file']);
      } catch (e) {
        throw new VdiskError('not-found', 'SECRET_FILE', `Unable to read ${pairs['file']}: ${(e as Error).message}`);
      }
    } else throw new VdiskError('invalid-argument', 'BAD_OBJECT', 'Either data or file must be provided');
    if (pairs['format'] === 'base64') bytes = Buffer.from(new TextDecoder().decode(bytes), 'base64');
    this.map.set(id, bytes);
  }
}
