/**
 * `-l snapshot_param` of convert and measure, read as qemu-img reads it: a parameter starting with
 * "snapshot." is an option list of snapshot.id and snapshot.name; anything else (even with '=' in
 * it) is a snapshot id or name.
 */
import { parseOptString } from './optstr.js';

const SNAPSHOT_OPT_PREFIX = 'snapshot.';
const SNAPSHOT_KEYS: ReadonlySet<string> = new Set(['snapshot.id', 'snapshot.name']);

export type SnapshotParam = { ok: true; options: Record<string, string> } | { ok: false; errors: string[] };

export function parseSnapshotParam(param: string): SnapshotParam {
  if (!param.startsWith(SNAPSHOT_OPT_PREFIX)) return { ok: true, options: { 'snapshot.name': param } };
  const options: Record<string, string> = {};
  for (const [k, v] of parseOptString(param)) {
    if (!SNAPSHOT_KEYS.has(k)) return { ok: false, errors: [`Invalid parameter '${k}'`, `Failed in parsing snapshot param '${param}'`] };
    options[k] = v;
  }
  return { ok: true, options };
}
