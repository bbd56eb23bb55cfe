/**
 * JSON as qemu-img prints it. qemu builds its output in QDicts, hash tables of 512 buckets whose
 * iteration order is the bucket order (and, within a bucket, newest first); scripts diff this
 * text, so vdisk reproduces the order by computing the same bucket for each key. Pretty-printing
 * follows qemu's qobject_to_json_pretty (4-space indent, "key": value).
 */
import type { JsonObject, JsonValue } from '../block/driver.js';

const QDICT_BUCKET_MAX = 512;

/**
 * Deepest nesting of objects and arrays a JSON text may have, as qemu's JSON parser allows: a
 * deeper json:{...} name is refused before any recursion over it could exhaust the stack.
 */
export const MAX_JSON_NESTING = 1024;

/** The string hash qemu's qdict uses (from tdb), reduced to a bucket index. */
export function qdictBucket(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  const h = (Math.imul(1103515243, value) + 12345) >>> 0;
  return h % QDICT_BUCKET_MAX;
}

/** Reorder an object's keys (given in qemu's insertion order) into qemu's QDict iteration order. */
export function qdictOrder(obj: JsonObject): JsonObject {
  const keys = Object.keys(obj);
  const indexed = keys.map((k, i) => ({ k, i, b: qdictBucket(k) }));
  indexed.sort((x, y) => x.b - y.b || y.i - x.i);
  const out: JsonObject = {};
  for (const { k } of indexed) out[k] = obj[k]!;
  return out;
}

/** Recursively apply qdictOrder to every object (arrays keep their order). */
export function qdictOrderDeep(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(qdictOrderDeep);
  if (v !== null && typeof v === 'object') {
    const ordered = qdictOrder(v);
    for (const k of Object.keys(ordered)) ordered[k] = qdictOrderDeep(ordered[k]!);
    return ordered;
  }
  return v;
}

function str(s: string): string {
  // qemu escapes like JSON but also \u-escapes non-ASCII? It emits UTF-8 as is except control chars.
  return JSON.stringify(s);
}

/**
 * Collects output text in bounded pieces: a hostile image's info can hold 65536 snapshots, and
 * building the text by nested joins kept every level's intermediate strings alive at once
 * (over 100 MiB of heap for 14 MB of JSON).
 */
class TextSink {
  private parts: string[] = [];
  private readonly chunks: string[] = [];

  add(s: string): void {
    this.parts.push(s);
    if (this.parts.length >= 8192) {
      this.chunks.push(this.parts.join(''));
      this.parts = [];
    }
  }

  text(): string {
    this.chunks.push(this.parts.join(''));
    this.parts = [];
    return this.chunks.join('');
  }
}

function pretty(v: JsonValue, indent: number, out: TextSink): void {
  const pad = '    '.repeat(indent + 1);
  const end = '    '.repeat(indent);
  if (Array.isArray(v)) {
    if (v.length === 0) return out.add(`[\n${end}]`);
    out.add('[\n');
    v.forEach((x, i) => {
      out.add(i === 0 ? pad : `,\n${pad}`);
      pretty(x, indent + 1, out);
    });
    return out.add(`\n${end}]`);
  }
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 0) return out.add(`{\n${end}}`);
    out.add('{\n');
    keys.forEach((k, i) => {
      out.add(`${i === 0 ? '' : ',\n'}${pad}${str(k)}: `);
      pretty(v[k]!, indent + 1, out);
    });
    return out.add(`\n${end}}`);
  }
  out.add(typeof v === 'string' ? str(v) : typeof v === 'number' ? num(v) : String(v));
}

/** qemu prints 64-bit integers exactly; String() would round 8070450532247928832 to ...929000. */
function num(n: number): string {
  return Number.isInteger(n) && !Number.isSafeInteger(n) ? BigInt(n).toString() : String(n);
}

/** qobject_to_json_pretty: 4-space indentation; empty containers print as "{\n}" / "[\n]". */
export function qjsonPretty(v: JsonValue, indent = 0): string {
  const out = new TextSink();
  pretty(v, indent, out);
  return out.text();
}

/** qobject_to_json: one line, `"key": value` pairs separated by ", " (qemu's json: filenames). */
export function qjsonCompact(v: JsonValue): string {
  if (Array.isArray(v)) return `[${v.map(qjsonCompact).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.keys(v).map((k) => `${str(k)}: ${qjsonCompact(v[k]!)}`).join(', ')}}`;
  return typeof v === 'string' ? str(v) : typeof v === 'number' ? num(v) : String(v);
}
