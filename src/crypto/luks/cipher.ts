/**
 * Sector ciphers as LUKS (and qemu's block crypto) name them: a cipher ("aes" with a key size),
 * a chaining mode (xts, cbc, ecb, ctr) and an IV generator (plain: 32-bit little-endian sector
 * number, plain64: 64-bit, essiv: the plain64 IV encrypted with a hash of the key). Every 512-byte
 * sector is encrypted on its own with its own IV.
 *
 * Only AES is available, through Node's OpenSSL: qemu 7.2 (Debian's nettle/gnutls build) also
 * creates serpent, twofish and cast5-128 volumes, which vdisk refuses by name. OpenSSL has no
 * AES-192-XTS, so XTS over 192-bit keys is done here over AES-ECB (IEEE 1619, whole blocks only).
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { VdiskError } from '../../block/errors.js';
import { LUKS_SECTOR } from './header.js';

export type CipherMode = 'xts' | 'cbc' | 'ecb' | 'ctr';
export type IvGen = 'plain' | 'plain64' | 'essiv';

/** qemu's QCryptoCipherAlgorithm names, and the key size (bytes) of each. */
export const CIPHER_ALGS: Readonly<Record<string, { name: string; keyBytes: number }>> = {
  'aes-128': { name: 'aes', keyBytes: 16 }, 'aes-192': { name: 'aes', keyBytes: 24 }, 'aes-256': { name: 'aes', keyBytes: 32 },
  'des': { name: 'des', keyBytes: 8 }, '3des': { name: '3des', keyBytes: 24 }, 'cast5-128': { name: 'cast5', keyBytes: 16 },
  'serpent-128': { name: 'serpent', keyBytes: 16 }, 'serpent-192': { name: 'serpent', keyBytes: 24 }, 'serpent-256': { name: 'serpent', keyBytes: 32 },
  'twofish-128': { name: 'twofish', keyBytes: 16 }, 'twofish-192': { name: 'twofish', keyBytes: 24 }, 'twofish-256': { name: 'twofish', keyBytes: 32 },
};
export const CIPHER_MODES: readonly CipherMode[] = ['ecb', 'cbc', 'xts', 'ctr'];
export const IVGEN_ALGS: readonly IvGen[] = ['plain', 'plain64', 'essiv'];
/** qemu's QCryptoHashAlgorithm names; all are in Node's OpenSSL. */
export const HASH_ALGS: readonly string[] = ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'ripemd160'];

export interface CipherSpec {
  /** qemu's name, e.g. "aes-256". */
  alg: string;
  mode: CipherMode;
  ivgen: IvGen;
  /** The hash ESSIV keys its IV cipher with. */
  ivHash?: string;
}

const AES_BLOCK = 16;

function unsupported(code: string, msg: string): VdiskError {
  return new VdiskError('unsupported', code, msg, { op: 'luks' });
}

/** Key bytes of the whole cipher: XTS holds a data key and a tweak key. */
export function masterKeyBytes(spec: CipherSpec): number {
  const k = CIPHER_ALGS[spec.alg]!.keyBytes;
  return spec.mode === 'xts' ? 2 * k : k;
}

/** The cipher for an ESSIV IV: the same cipher family, keyed by the hash digest (qemu's choice). */
function essivAlg(spec: CipherSpec): string {
  const digest = createHash(spec.ivHash!).digest().length;
  const alg = Object.entries(CIPHER_ALGS).find(([, v]) => v.name === CIPHER_ALGS[spec.alg]!.name && v.keyBytes === digest);
  if (!alg) throw new VdiskError('invalid-argument', 'LUKS_ESSIV', `No AES cipher with key size ${digest} available`, { op: 'luks' });
  return alg[0];
}

/** Refuse what Node cannot do (qemu's build can), before anything is written or read. */
export function checkCipherAvailable(spec: CipherSpec): void {
  const a = CIPHER_ALGS[spec.alg]!;
  if (a.name === 'des' || a.name === '3des') throw new VdiskError('unsupported', 'LUKS_CIPHER', `Algorithm '${spec.alg}' not supported`, { op: 'luks' });
  if (a.name === 'cast5' && spec.mode === 'xts') throw new VdiskError('unsupported', 'LUKS_CIPHER', `Unsupported cipher mode ${spec.mode}`, { op: 'luks' });
  if (a.name !== 'aes') throw unsupported('LUKS_CIPHER_VDISK', `vdisk does not support the LUKS cipher '${spec.alg}'`);
  if (spec.ivgen === 'essiv') essivAlg(spec);
}

function ecb(alg: string, key: Uint8Array, data: Uint8Array, encrypt: boolean): Buffer {
  const c = encrypt ? createCipheriv(`${alg}-ecb`, key, null) : createDecipheriv(`${alg}-ecb`, key, null);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** Multiply the XTS tweak by x in GF(2^128) (little-endian block, as IEEE 1619). */
function xtsDouble(t: Buffer): void {
  let carry = 0;
  for (let i = 0; i < 16; i++) {
    const b = t[i]!;
    t[i] = ((b << 1) | carry) & 0xff;
    carry = b >> 7;
  }
  if (carry) t[0]! ^= 0x87;
}

/** XTS for key sizes OpenSSL lacks, over ECB: whole 16-byte blocks (a sector is 32 of them). */
function xtsOverEcb(alg: string, key: Uint8Array, iv: Uint8Array, data: Uint8Array, encrypt: boolean): Buffer {
  const half = key.length / 2;
  const tweak = ecb(alg, key.subarray(half), iv, true);
  const mask = Buffer.alloc(data.length);
  for (let off = 0; off < data.length; off += AES_BLOCK) {
    tweak.copy(mask, off);
    xtsDouble(tweak);
  }
  const x = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) x[i] = data[i]! ^ mask[i]!;
  const y = ecb(alg, key.subarray(0, half), x, encrypt);
  for (let i = 0; i < y.length; i++) y[i]! ^= mask[i]!;
  return y;
}

/** Encrypts and decrypts whole sectors with one key; sector numbers give the IVs. */
export class SectorCipher {
  private readonly essivKey?: Buffer;
  private readonly essivCipher?: string;
  private readonly openssl: string;

  constructor(readonly spec: CipherSpec, private readonly key: Uint8Array) {
    checkCipherAvailable(spec);
    const bits = CIPHER_ALGS[spec.alg]!.keyBytes * 8;
    this.openssl = `aes-${bits}`;
    if (spec.ivgen === 'essiv') {
      this.essivCipher = `aes-${CIPHER_ALGS[essivAlg(spec)]!.keyBytes * 8}`;
      this.essivKey = createHash(spec.ivHash!).update(key).digest();
    }
  }

  private iv(sector: number): Buffer {
    const iv = Buffer.alloc(AES_BLOCK);
    if (this.spec.ivgen === 'plain') iv.writeUInt32LE(sector % 2 ** 32, 0);
    else iv.writeBigUInt64LE(BigInt(sector), 0);
    return this.essivKey ? ecb(this.essivCipher!, this.essivKey, iv, true) : iv;
  }

  private crypt(buf: Uint8Array, firstSector: number, encrypt: boolean): void {
    const mode = this.spec.mode;
    if (mode === 'ecb') {
      buf.set(ecb(this.openssl, this.key, buf, encrypt));
      return;
    }
    const nativeXts = mode !== 'xts' || this.openssl !== 'aes-192';
    for (let off = 0, sector = firstSector; off < buf.length; off += LUKS_SECTOR, sector++) {
      const chunk = buf.subarray(off, Math.min(buf.length, off + LUKS_SECTOR));
      const iv = this.iv(sector);
      if (!nativeXts) {
        chunk.set(xtsOverEcb(this.openssl, this.key, iv, chunk, encrypt));
        continue;
      }
      const alg = `${this.openssl}-${mode}`;
      const c = encrypt ? createCipheriv(alg, this.key, iv) : createDecipheriv(alg, this.key, iv);
      c.setAutoPadding(false);
      const out = c.update(chunk);
      c.final();
      chunk.set(out);
    }
  }

  /** Encrypt in place; `buf` is whole sectors starting at sector `firstSector`. */
  encrypt(buf: Uint8Array, firstSector: number): void {
    this.crypt(buf, firstSector, true);
  }

  decrypt(buf: Uint8Array, firstSector: number): void {
    this.crypt(buf, firstSector, false);
  }
}
