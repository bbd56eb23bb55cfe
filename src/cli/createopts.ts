/**
 * `-o` option lists of create, convert, amend and measure: accumulation of repeated -o, validity,
 * `-o help`, typed checking against a driver's option specs, and the "Formatting ..." summary line,
 * all worded as qemu-img words them.
 */
import { VdiskError } from '../block/errors.js';
import type { CreateOptionSpec, FormatDriver } from '../block/driver.js';
import { noCreate, PROTOCOL_CREATE_OPTIONS, PROTOCOL_CREATE_SUMMARY } from '../block/create.js';
import { optListWantsHelp, parseOptString } from './optstr.js';
import { protocolPrefix } from '../block/filenames.js';
import { strtosz } from './units.js';

/** qemu's check on one -o argument: not empty, no leading comma, an even run of commas at the end. */
export function isValidOptionList(list: string): boolean {
  if (list.length === 0 || list.startsWith(',')) return false;
  const trailing = list.length - list.replace(/,+$/, '').length;
  return trailing % 2 === 0;
}

/** Repeated -o arguments are joined with commas, as qemu-img does. */
export function accumulateOptions(prev: string | undefined, next: string): string {
  return prev === undefined ? next : `${prev},${next}`;
}

/** `-o help` or `-o ?` anywhere in the list asks for the option list. */
export function wantsHelp(list: string | undefined): boolean {
  return list !== undefined && optListWantsHelp(list);
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

const SIZE_SPEC: CreateOptionSpec = { name: 'size', type: 'size', help: 'Virtual disk size' };
const SIMPLE_CREATE: readonly CreateOptionSpec[] = [
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off)' }, SIZE_SPEC,
];
const GLUSTER_CREATE: readonly CreateOptionSpec[] = [
  { name: 'debug', type: 'number', help: 'Gluster log level, valid range is 0-9' },
  { name: 'logfile', type: 'string', help: 'Logfile path of libgfapi' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)' }, SIZE_SPEC,
];
const RBD_CREATE: readonly CreateOptionSpec[] = [
  { name: 'cluster_size', type: 'size', help: 'RBD object size' },
  { name: 'encrypt.cipher-alg', type: 'string', help: 'Name of encryption cipher algorithm (allowed values: aes-128, aes-256)' },
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'luks', 'luks2'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of secret providing LUKS passphrase' },
  { name: 'password-secret', type: 'string', help: 'ID of secret providing the password' }, SIZE_SPEC,
];

/**
 * The protocol drivers of qemu 7.2 other than file, by filename prefix: their driver name and the
 * create options `-o help` merges in (null: the driver cannot create images). Only `-o help` needs
 * this; vdisk itself creates on files only.
 */
const PROTOCOL_HELP: Record<string, { driver: string; opts: readonly CreateOptionSpec[] | null }> = {
  host_device: { driver: 'host_device', opts: SIMPLE_CREATE },
  host_cdrom: { driver: 'host_cdrom', opts: SIMPLE_CREATE },
  nbd: { driver: 'nbd', opts: SIMPLE_CREATE },
  'nbd+tcp': { driver: 'nbd', opts: SIMPLE_CREATE },
  'nbd+unix': { driver: 'nbd', opts: SIMPLE_CREATE },
  iscsi: { driver: 'iscsi', opts: SIMPLE_CREATE },
  iser: { driver: 'iser', opts: SIMPLE_CREATE },
  ssh: { driver: 'ssh', opts: [SIZE_SPEC] },
  nfs: { driver: 'nfs', opts: [SIZE_SPEC] },
  gluster: { driver: 'gluster', opts: GLUSTER_CREATE },
  'gluster+tcp': { driver: 'gluster', opts: GLUSTER_CREATE },
  'gluster+unix': { driver: 'gluster', opts: GLUSTER_CREATE },
  'gluster+rdma': { driver: 'gluster', opts: GLUSTER_CREATE },
  rbd: { driver: 'rbd', opts: RBD_CREATE },
  http: { driver: 'http', opts: null },
  https: { driver: 'https', opts: null },
  ftp: { driver: 'ftp', opts: null },
  ftps: { driver: 'ftps', opts: null },
  fat: { driver: 'vvfat', opts: null },
  'null-co': { driver: 'null-co', opts: null },
  'null-aio': { driver: 'null-aio', opts: null },
  blkdebug: { driver: 'blkdebug', opts: null },
  blkverify: { driver: 'blkverify', opts: null },
};

/** The create options of the protocol a target filename names, worded as qemu's refusals. */
function protocolCreateOptions(filename: string): readonly CreateOptionSpec[] {
  const prefix = protocolPrefix(filename);
  if (prefix === undefined || prefix === 'file') return PROTOCOL_CREATE_OPTIONS;
  const p = PROTOCOL_HELP[prefix];
  // json: is read when an image is opened, not a protocol qemu can look up by prefix
  if (!p) throw new VdiskError('invalid-argument', 'UNKNOWN_PROTOCOL', `Unknown protocol '${prefix}'`);
  if (!p.opts) throw new VdiskError('unsupported', 'CREATE_UNSUPPORTED', `Protocol driver '${p.driver}' does not support image creation`);
  return p.opts;
}

/**
 * The `-o help` text: without a filename, the format's own options and the note about the protocol
 * level; with one, the merged list of format and protocol options (the format's entry wins).
 */
export function createHelpText(driver: FormatDriver, filename: string | undefined): string {
  if (!driver.create) throw noCreate(driver.name);
  const own = driver.createOptions ?? [];
  if (filename === undefined) {
    return `Supported ${driver.name} options:\n${optionHelpLines(own)}\n` +
      'The protocol level may support further options.\nSpecify the target filename to include those options.\n';
  }
  const merged = new Map<string, CreateOptionSpec>();
  for (const s of [...own, ...protocolCreateOptions(filename)]) if (!merged.has(s.name)) merged.set(s.name, s);
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
    case 'number': {
      // qemu parses numbers with strtoull semantics: a leading '-' wraps around (-1 is 2^64-1)
      const m = /^(-?)(0[xX][0-9a-fA-F]+|[0-9]+)$/.exec(value);
      if (!m) throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter '${spec.name}' expects a number`);
      if (BigInt(m[2]!) >= 1n << 64n) throw new VdiskError('invalid-argument', 'BAD_OPTION', `Value '${value}' is too large for parameter '${spec.name}'`);
      const n = BigInt(m[2]!);
      return (m[1] && n !== 0n ? (1n << 64n) - n : n).toString();
    }
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
    // qemu prints option values escaped as an option list would need them (a comma doubled)
    if (v !== undefined) parts.push(`${name}=${String(v).replaceAll(',', ',,')}`);
  }
  return parts.join(' ');
}
