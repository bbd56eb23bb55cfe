/**
 * Creating an image of any format: look the driver up, check the size, and let the driver write
 * the file. Commands (create, convert) call this; they never touch a format's bytes.
 */
import { VdiskError } from './errors.js';
import type { CreateContext, CreateOptionSpec, CreateOptionValues, FormatDriver, SecretStore } from './driver.js';
import { findFormat, type FormatEntry } from '../formats/index.js';
import { FileProtocol } from '../protocols/file.js';
import { hostPath } from './filenames.js';
import { isNbdName } from '../nbd/address.js';
import type { Protocol } from '../protocols/types.js';

/** qemu creates nothing on an NBD export: it opens it, and says so when that fails. */
async function openNbdForCreate(name: string): Promise<Protocol> {
  try {
    return await (await nbdProtocol()).open(name, false);
  } catch (e) {
    if (!(e instanceof VdiskError)) throw e;
    throw new VdiskError(e.kind, e.code, `Protocol driver 'nbd' does not support image creation, and opening the image failed: ${e.message}`, e.context, e);
  }
}
import { nbdProtocol, noSecrets } from './open.js';
import { CREATE_PERMS } from './perms.js';

/**
 * Options of the file protocol that `create` accepts for every format (qemu merges them with the
 * format's own), and the order the "Formatting" line shows them in.
 */
export const PROTOCOL_CREATE_OPTIONS: readonly CreateOptionSpec[] = [
  { name: 'extent_size_hint', type: 'size', help: 'Extent size hint for the image file, 0 to disable' },
  { name: 'nocow', type: 'bool', help: 'Turn off copy-on-write (valid only on btrfs)' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, falloc, full)' },
  { name: 'size', type: 'size', help: 'Virtual disk size' },
];
export const PROTOCOL_CREATE_SUMMARY: readonly string[] = ['size', 'nocow', 'preallocation', 'extent_size_hint'];

/** on/yes/true/y, as qemu reads a bool option. */
export function optionIsTrue(v: string | undefined): boolean {
  return v !== undefined && ['on', 'yes', 'true', 'y'].includes(v);
}

/** Formats qemu knows but cannot create images of: qemu-img says so rather than "unknown". */
const QEMU_READ_ONLY_FORMATS = new Set(['bochs', 'cloop', 'dmg', 'vvfat']);

export async function loadFormatDriver(format: string): Promise<FormatDriver> {
  // the file protocol named as the format (-f file): a plain file, reported under that name
  if (format === 'file') return { ...(await (findFormat('raw') as FormatEntry).load()), name: 'file', createOptions: PROTOCOL_CREATE_OPTIONS };
  const entry = findFormat(format);
  if (!entry) {
    if (QEMU_READ_ONLY_FORMATS.has(format)) throw noCreate(format);
    throw new VdiskError('invalid-argument', 'UNKNOWN_FORMAT', `Unknown file format '${format}'`, { format });
  }
  return entry.load();
}

export function noCreate(format: string): VdiskError {
  const entry = findFormat(format);
  if (entry && !entry.readable && !QEMU_READ_ONLY_FORMATS.has(format)) {
    // qemu can create these; vdisk cannot yet, and says so rather than blaming the format
    return new VdiskError('unsupported', 'FORMAT_UNSUPPORTED', `vdisk does not support the '${format}' format yet`, { format });
  }
  return new VdiskError('unsupported', 'CREATE_UNSUPPORTED', `Format driver '${format}' does not support image creation`, { format });
}

export interface CreateRequest {
  format: string;
  filename: string;
  size: number;
  options?: CreateOptionValues;
  secrets?: SecretStore;
}

export async function createImage(req: CreateRequest): Promise<void> {
  const driver = await loadFormatDriver(req.format);
  if (!driver.create) throw noCreate(req.format);
  const ctx: CreateContext = {
    filename: hostPath(req.filename, true),
    size: req.size,
    options: req.options ?? {},
    secrets: req.secrets ?? noSecrets,
    createFile: (name) => isNbdName(name) ? openNbdForCreate(name) : FileProtocol.open(name, { readOnly: false, create: true, lock: { perms: CREATE_PERMS, mode: 'auto' } }),
    reopenFile: (name) => isNbdName(name) ? nbdProtocol().then((p) => p.open(name, false)) : FileProtocol.open(name, { readOnly: false }),
  };
  await driver.create(ctx);
}
