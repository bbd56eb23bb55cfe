/**
 * qemu's "key=value,key2=value2" option strings (QemuOpts): `,,` is a literal comma, a bare first
 * item may stand for an implied key (`--object secret,id=...` means qom-type=secret), later bare
 * items are `key=on`. Also `json:{...}` filenames and `--image-opts` strings flattened to dotted keys.
 */
import { readFileSync } from 'node:fs';
import { VdiskError } from '../block/errors.js';
import type { JsonObject, SecretStore } from '../block/driver.js';
import { filterTreeNames } from './nodename.js';
import { MAX_JSON_NESTING } from './qjson.js';

export { MAX_JSON_NESTING };
import { setJsonNameParser } from '../block/open.js';

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

export function parseOptString(s: string, impliedKey?: string): OptPairs {
  const out: OptPairs = [];
  const items = splitOptString(s);
  items.forEach((item, idx) => {
    if (item === '' && idx === items.length - 1 && idx > 0) return; // trailing comma
    const eq = item.indexOf('=');
    if (eq < 0) {
      if (idx === 0 && impliedKey) out.push([impliedKey, item]);
      else if (item.startsWith('no')) out.push([item.slice(2), 'off']);
      else out.push([item, 'on']);
    } else {
      out.push([item.slice(0, eq), item.slice(eq + 1)]);
    }
  });
  return out;
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
