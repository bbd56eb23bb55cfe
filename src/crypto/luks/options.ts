/**
 * LUKS creation options as qemu-img takes them: `key-secret`, `cipher-alg`, `cipher-mode`,
 * `ivgen-alg`, `ivgen-hash-alg`, `hash-alg`, `iter-time` (with an `encrypt.` prefix inside qcow2),
 * their defaults (aes-256, xts, plain64, sha256, 2000 ms) and qemu's messages for bad values.
 */
import { VdiskError } from '../../block/errors.js';
import type { SecretStore } from '../../block/driver.js';
import { CIPHER_ALGS, CIPHER_MODES, HASH_ALGS, IVGEN_ALGS, checkCipherAvailable, masterKeyBytes, type CipherMode, type CipherSpec, type IvGen } from './cipher.js';
import type { LuksCreateParams } from './volume.js';
import { LUKS_SECTOR, LUKS_STRIPES } from './header.js';

export { luksOptionSpecs } from './specs.js';

export const DEFAULT_ITER_TIME_MS = 2000n;


function badValue(name: string, v: string): VdiskError {
  return new VdiskError('invalid-argument', 'LUKS_OPTION', `Parameter '${name}' does not accept value '${v}'`);
}

/** qemu parses iter-time as an unsigned 64-bit number (so -1 wraps to 2^64-1). */
export function parseIterTime(v: string | undefined, name: string): bigint {
  if (v === undefined) return DEFAULT_ITER_TIME_MS;
  const t = v.trim();
  if (!/^-?(0x[0-9a-f]+|[0-9]+)$/i.test(t)) throw new VdiskError('invalid-argument', 'LUKS_OPTION', `Parameter '${name}' expects a number`);
  const n = BigInt(t.replace(/^-/, ''));
  const U64 = 1n << 64n;
  if (n >= U64) throw new VdiskError('invalid-argument', 'LUKS_OPTION', `Parameter '${name}' expects a number`);
  return t.startsWith('-') ? (U64 - n) % U64 : n;
}

/** Option names as qemu's messages print them (the QAPI member, without any prefix). */
export function luksCreateParams(o: Readonly<Record<string, string>>, prefix: string): LuksCreateParams {
  const get = (k: string): string | undefined => o[prefix + k];
  const alg = get('cipher-alg') ?? 'aes-256';
  if (CIPHER_ALGS[alg] === undefined) throw badValue('cipher-alg', alg);
  const mode = get('cipher-mode') ?? 'xts';
  if (!(CIPHER_MODES as readonly string[]).includes(mode)) throw badValue('cipher-mode', mode);
  const ivgen = get('ivgen-alg') ?? 'plain64';
  if (!(IVGEN_ALGS as readonly string[]).includes(ivgen)) throw badValue('ivgen-alg', ivgen);
  const ivHash = get('ivgen-hash-alg');
  if (ivHash !== undefined && !HASH_ALGS.includes(ivHash)) throw badValue('ivgen-hash-alg', ivHash);
  const hash = get('hash-alg') ?? 'sha256';
  if (!HASH_ALGS.includes(hash)) throw badValue('hash-alg', hash);
  const spec: CipherSpec = { alg, mode: mode as CipherMode, ivgen: ivgen as IvGen };
  // qemu names the ESSIV hash in the header only for essiv, defaulting to sha256
  if (ivgen === 'essiv') spec.ivHash = ivHash ?? 'sha256';
  checkCipherAvailable(spec);
  if ((masterKeyBytes(spec) * LUKS_STRIPES) % LUKS_SECTOR !== 0) {
    // qemu 7.2 aborts on an assertion here (aes-192 outside XTS); vdisk refuses instead
    throw new VdiskError('unsupported', 'LUKS_PARTIAL_SECTOR',
      `vdisk does not create '${alg}' LUKS volumes in mode '${mode}': their key material is not whole sectors (qemu-img 7.2 aborts on them)`);
  }
  return { spec, hash, iterTimeMs: parseIterTime(get('iter-time'), 'iter-time') };
}

/** The passphrase named by key-secret, with qemu's messages. */
export function luksSecret(o: Readonly<Record<string, string>>, key: string, secrets: SecretStore): Uint8Array {
  const id = o[key];
  if (id === undefined) throw new VdiskError('invalid-argument', 'LUKS_NO_KEY', `Parameter '${key}' is required for cipher`);
  const s = secrets.get(id);
  if (!s) throw new VdiskError('not-found', 'NO_SECRET', `No secret with id '${id}'`);
  // LUKS passphrases are text: qemu refuses secrets that are not UTF-8
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(s);
  } catch {
    throw new VdiskError('invalid-argument', 'LUKS_SECRET_UTF8', `Data from secret ${id} is not valid UTF-8`);
  }
  return s;
}
