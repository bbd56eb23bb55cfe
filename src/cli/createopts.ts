/**
 * `-o` option lists of create, convert, amend and measure: accumulation of repeated -o, validity,
 * `-o help`, typed checking against a driver's option specs, and the "Formatting ..." summary line,
 * all worded as qemu-img words them.
 */
import { VdiskError } from '../block/errors.js';
import type { CreateOptionSpec, FormatDriver } from '../block/driver.js';
import { PROTOCOL_CREATE_OPTIONS, PROTOCOL_CREATE_SUMMARY } from '../block/create.js';
import { parseOptString, splitOptString } from './optstr.js';
import { strtosz } from './units.js';

/** qemu's check on one -o argument: no empty list, no dangling single comma at the end. */
export function isValidOptionList(list: string): boolean {
  if (list.length === 0 || list.startsWith(',')) return false;
  const items = splitOptString(list);
  return items.every((it) => it.length > 0);
}

/** Repeated -o arguments are joined with commas, as qemu-img does. */
export function accumulateOptions(prev: string | undefined, next: string): string {
  return prev === undefined ? next : `${prev},${next}`;
}

/** `-o help` or `-o ?` anywhere in the list asks for the option list. */
export function wantsHelp(list: string | undefined): boolean {
  if (list === undefined) return false;
  return splitOptString(list).some((it) => it === 'help' || it === '?');
}

function typeLabel(t: CreateOptionSpec['type']): string {
  switch (t) {
    case 'size': return '<size>';
    case 'bool': return '<bool (on/off)>';
    case 'number': return '<num>';
    default: return '<str>';
  }
}

export function optionHelpLines(specs: readonly CreateOptionSpec[]): string {
  return [...specs]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((s) => `  ${`${s.name}=${typeLabel(s.type)}`.padEnd(22)} - ${s.help}\n`)
    .join('');
}

/**
 * The `-o help` text: without a filename, the format's own options and the note about the protocol
 * level; with one, the merged list of format and protocol options.
 */
export function createHelpText(driver: FormatDriver, withProtocol: boolean): string {
  const own = driver.createOptions ?? [];
  if (!withProtocol) {
    return `Supported ${driver.name} options:\n${optionHelpLines(own)}\n` +
      'The protocol level may support further options.\nSpecify the target filename to include those options.\n';
  }
  const merged = new Map<string, CreateOptionSpec>();
  for (const s of [...own, ...PROTOCOL_CREATE_OPTIONS]) if (!merged.has(s.name)) merged.set(s.name, s);
  return `Supported options:\n${optionHelpLines([...merged.values()])}`;
}

const SIZE_OPTION_HINT = 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.';

export const TRUE_WORDS = new Set(['on', 'yes', 'true', 'y']);
const FALSE_WORDS = new Set(['off', 'no', 'false', 'n']);

/** Check one value against its spec; returns the normalized value. */
function checkValue(spec: CreateOptionSpec, value: string): string {
  switch (spec.type) {
    case 'bool':
      // kept as typed: qemu's summary line shows bools as the user wrote them
      if (TRUE_WORDS.has(value) || FALSE_WORDS.has(value)) return value;
      throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter '${spec.name}' expects 'on' or 'off'`);
    case 'size': {
      // qemu's parse_option_size: any uint64 is taken here, range errors are worded apart
      const r = strtosz(value);
      if (!r.ok && r.reason === 'range') {
        throw new VdiskError('invalid-argument', 'BAD_OPTION', `Value '${value}' is out of range for parameter '${spec.name}'`);
      }
      if (!r.ok) {
        throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter '${spec.name}' expects a non-negative number below 2^64\n${SIZE_OPTION_HINT}`);
      }
      return r.value.toString();
    }
    case 'number':
      if (!/^(0[xX][0-9a-fA-F]+|[0-9]+)$/.test(value)) {
        throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter '${spec.name}' expects a non-negative number`);
      }
      return BigInt(value).toString();
    default:
      return value;
  }
}

/**
 * Parse an accumulated -o list against a driver's create options (plus the file protocol's).
 * Sizes and numbers are normalized to byte counts; bools stay as typed (on/yes/true...).
 */
export function parseCreateOptions(driver: FormatDriver, list: string | undefined, extra: readonly CreateOptionSpec[] = PROTOCOL_CREATE_OPTIONS): Map<string, string> {
  const out = new Map<string, string>();
  if (list === undefined) return out;
  const specs = new Map<string, CreateOptionSpec>();
  for (const s of [...(driver.createOptions ?? []), ...extra]) if (!specs.has(s.name)) specs.set(s.name, s);
  for (const [k, v] of parseOptString(list)) {
    const spec = specs.get(k);
    if (!spec) throw new VdiskError('invalid-argument', 'BAD_OPTION', `Invalid parameter '${k}'`);
    out.set(k, checkValue(spec, v));
  }
  return out;
}

/** The "fmt=raw size=1048576 ..." part of qemu-img's "Formatting 'x', ..." line. */
export function createSummary(driver: FormatDriver, values: ReadonlyMap<string, string>): string {
  const parts = [`fmt=${driver.name}`];
  const order = [...(driver.createSummary ?? ['size'])];
  for (const n of PROTOCOL_CREATE_SUMMARY) if (!order.includes(n)) order.push(n);
  const specs = new Map<string, CreateOptionSpec>();
  for (const s of [...(driver.createOptions ?? []), ...PROTOCOL_CREATE_OPTIONS]) if (!specs.has(s.name)) specs.set(s.name, s);
  for (const name of order) {
    const v = values.get(name) ?? specs.get(name)?.def;
    // qemu prints string values escaped as they would be typed in an option list
    if (v !== undefined) parts.push(`${name}=${specs.get(name)?.type === 'string' ? v.replaceAll(',', ',,') : v}`);
  }
  return parts.join(' ');
}
