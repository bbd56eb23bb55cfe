/**
 * The name qemu-img shows for an image given as a tree of block nodes (json:{...} or --image-opts)
 * when a blkdebug or quorum node is in it: qemu rebuilds a filename from the nodes, and where a
 * node's options cannot be said in a filename it shows the whole tree as `json:{...}` (its QDict
 * order, one line, the values with the types they were given in: image-opts values are strings).
 *
 *   - a file node is its filename; a format node is its file's name;
 *   - blkdebug is `blkdebug:CONFIG:NAME-OF-IMAGE` while it has no rules of its own (its rule lists
 *     print flattened: "inject-error.0.event");
 *   - quorum has no filename: its tree always prints as json, children as full trees.
 * Trees without blkdebug or quorum keep the name they were given (undefined here).
 */
import type { JsonObject, JsonValue } from '../block/driver.js';
import { MAX_JSON_NESTING, qdictOrderDeep } from './qjson.js';

interface Described {
  /** A filename that says everything about the node, if there is one. */
  name?: string;
  full: JsonObject;
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Dotted keys ("file.filename") become nested objects, as qemu merges them. */
function unflatten(obj: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(obj)) {
    const parts = k.split('.');
    let cur = out;
    for (const p of parts.slice(0, -1)) {
      if (!isObject(cur[p])) cur[p] = {};
      cur = cur[p] as JsonObject;
    }
    const last = parts[parts.length - 1]!;
    cur[last] = isObject(v) ? mergeObjects(isObject(cur[last]) ? cur[last] as JsonObject : {}, unflatten(v)) : v;
  }
  return out;
}

function mergeObjects(a: JsonObject, b: JsonObject): JsonObject {
  const out: JsonObject = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObject(v) && isObject(out[k]) ? mergeObjects(out[k] as JsonObject, v) : v;
  return out;
}

/** A list given as an object with index keys ("children.0.driver") reads as the list. */
function asList(v: JsonValue | undefined): JsonValue[] {
  if (Array.isArray(v)) return v;
  if (!isObject(v)) return [];
  return Object.keys(v).filter((k) => /^[0-9]+$/.test(k)).sort((a, b) => Number(a) - Number(b)).map((k) => v[k]!);
}

function flattenInto(out: JsonObject, prefix: string, v: JsonValue): void {
  if (Array.isArray(v)) v.forEach((x, i) => flattenInto(out, `${prefix}.${i}`, x));
  else if (isObject(v)) for (const [k, x] of Object.entries(v)) flattenInto(out, `${prefix}.${k}`, x);
  else out[prefix] = v;
}

function describeNode(node: JsonValue | undefined): Described {
  if (typeof node === 'string') return { name: node, full: { driver: 'file', filename: node } };
  const n = isObject(node) ? node : {};
  const driver = n['driver'];
  if (driver === 'quorum') {
    const full: JsonObject = {};
    for (const [k, v] of Object.entries(n)) full[k] = k === 'children' ? asList(v).map((c) => describeNode(c).full) : v;
    return { full };
  }
  if (driver === 'blkdebug') {
    const image = describeNode(n['image']);
    const full: JsonObject = {};
    let own = false;
    for (const [k, v] of Object.entries(n)) {
      if (k === 'image') full[k] = image.full;
      else if (isObject(v) || Array.isArray(v)) {
        flattenInto(full, k, v);
        own = true;
      } else {
        full[k] = v;
        if (k !== 'driver' && k !== 'config') own = true;
      }
    }
    const config = n['config'];
    if (own || image.name === undefined) return { full };
    return { name: `blkdebug:${typeof config === 'string' ? config : ''}:${image.name}`, full };
  }
  if (driver === undefined || driver === 'file') {
    const full: JsonObject = { driver: 'file', ...n };
    const filename = n['filename'];
    return { ...(typeof filename === 'string' ? { name: filename } : {}), full };
  }
  // a format: named after its file
  const file = describeNode(n['file']);
  const full: JsonObject = {};
  for (const [k, v] of Object.entries(n)) full[k] = k === 'file' ? file.full : v;
  return { ...(file.name !== undefined ? { name: file.name } : {}), full };
}

function mentionsFilters(v: JsonValue): boolean {
  if (Array.isArray(v)) return v.some(mentionsFilters);
  if (!isObject(v)) return false;
  if (v['driver'] === 'blkdebug' || v['driver'] === 'quorum') return true;
  return Object.values(v).some(mentionsFilters);
}

/** qobject_to_json: one line, ", " and ": " between items. */
export function compactJson(v: JsonValue): string {
  if (Array.isArray(v)) return `[${v.map(compactJson).join(', ')}]`;
  if (isObject(v)) return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${compactJson(x)}`).join(', ')}}`;
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function nameOf(d: Described): string {
  return d.name ?? `json:${compactJson(qdictOrderDeep(d.full))}`;
}

/** The name qemu shows for this tree of options, when blkdebug or quorum is in it. */
export function filterTreeName(tree: JsonObject): string | undefined {
  return filterTreeNames(tree)?.name;
}

/**
 * The tree's name and, for a format node, its file node's name (map's "File" column), when
 * blkdebug or quorum is in the tree.
 */
export function filterTreeNames(tree: JsonObject): { name: string; fileName?: string } | undefined {
  // a tree deeper than JSON may nest is left to the opener to refuse; the walks here recurse
  if (Object.keys(tree).some((k) => k.split('.').length > MAX_JSON_NESTING)) return undefined;
  const nested = unflatten(tree);
  if (!mentionsFilters(nested)) return undefined;
  const d = describeNode(nested);
  const driver = nested['driver'];
  const isFormat = driver !== undefined && driver !== 'file' && driver !== 'blkdebug' && driver !== 'quorum';
  return isFormat && nested['file'] !== undefined ? { name: nameOf(d), fileName: nameOf(describeNode(nested['file'])) } : { name: nameOf(d) };
}
