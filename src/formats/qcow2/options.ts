/**
 * The qcow2 `-o` option specs of create and amend, as data only: the driver table lists them when
 * it loads, and keeping them apart from create.ts and amend.ts keeps those (and the LUKS code they
 * pull in) out of the start-up of commands that only read images.
 */
import type { CreateOptionSpec } from '../../block/driver.js';
import { luksAmendSpecs } from '../../crypto/luks/specs.js';

export const qcow2CreateOptions: readonly CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  { name: 'compat', type: 'string', help: 'Compatibility level (v2 [0.10] or v3 [1.1])' },
  { name: 'backing_file', type: 'string', help: 'File name of a base image' },
  { name: 'backing_fmt', type: 'string', help: 'Image format of the base image' },
  { name: 'data_file', type: 'string', help: 'File name of an external data file' },
  { name: 'data_file_raw', type: 'bool', help: 'The external data file must stay valid as a raw image' },
  { name: 'encryption', type: 'bool', help: "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)" },
  { name: 'encrypt.format', type: 'string', help: "Encrypt the image, format choices: 'aes', 'luks'" },
  { name: 'encrypt.key-secret', type: 'string', help: 'ID of secret providing qcow AES key or LUKS passphrase' },
  { name: 'encrypt.cipher-alg', type: 'string', help: 'Name of encryption cipher algorithm' },
  { name: 'encrypt.cipher-mode', type: 'string', help: 'Name of encryption cipher mode' },
  { name: 'encrypt.ivgen-alg', type: 'string', help: 'Name of IV generator algorithm' },
  { name: 'encrypt.ivgen-hash-alg', type: 'string', help: 'Name of IV generator hash algorithm' },
  { name: 'encrypt.hash-alg', type: 'string', help: 'Name of encryption hash algorithm' },
  { name: 'encrypt.iter-time', type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
  { name: 'cluster_size', type: 'size', help: 'qcow2 cluster size', def: '65536' },
  { name: 'extended_l2', type: 'bool', help: 'Extended L2 tables', def: 'off' },
  { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off, metadata, falloc, full)' },
  { name: 'compression_type', type: 'string', help: 'Compression method used for image cluster compression', def: 'zlib' },
  { name: 'lazy_refcounts', type: 'bool', help: 'Postpone refcount updates', def: 'off' },
  { name: 'refcount_bits', type: 'number', help: 'Width of a reference count entry in bits', def: '16' },
];

/** The order of qemu-img's "Formatting ..." line. */
export const qcow2CreateSummary: readonly string[] = [
  'encryption', 'encrypt.format', 'encrypt.key-secret', 'encrypt.cipher-alg', 'encrypt.cipher-mode', 'encrypt.ivgen-alg',
  'encrypt.ivgen-hash-alg', 'encrypt.hash-alg', 'encrypt.iter-time', 'cluster_size', 'extended_l2', 'preallocation',
  'compression_type', 'size', 'backing_file', 'backing_fmt', 'compat', 'data_file', 'data_file_raw', 'lazy_refcounts',
  'refcount_bits',
];

/** The prefix of the LUKS key-slot options amend takes on qcow2. */
export const ENCRYPT_AMEND_PREFIX = 'encrypt.';

/** Create options amend can change; qemu's amend `-o help` shows no defaults. */
const AMENDABLE_CREATE_OPTIONS = ['size', 'compat', 'backing_file', 'backing_fmt', 'data_file', 'data_file_raw', 'lazy_refcounts', 'refcount_bits'];

/** `-o` options qemu-img amend accepts for qcow2 (`-o help` sorts them). */
export const qcow2AmendOptions: readonly CreateOptionSpec[] = [
  ...luksAmendSpecs(ENCRYPT_AMEND_PREFIX),
  ...qcow2CreateOptions.filter((o) => AMENDABLE_CREATE_OPTIONS.includes(o.name)).map(({ name, type, help }) => ({ name, type, help })),
];
