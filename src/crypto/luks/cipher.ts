/**
 * Sector ciphers as LUKS (and qemu's block crypto) name them: a cipher ("aes" with a key size),
 * a chaining mode (xts, cbc, ecb, ctr) and an IV generator (plain: 32-bit little-endian sector
 * number, plain64: 64-bit, essiv: the plain64 IV encrypted with a hash of the key). Every 512-byte
 * sector is encrypted on its own with its own IV.
 *
 * Only AES is available, through Node's OpenSSL: qemu 7.2 (Debian's nettle/gnutls build) also
 * creates serpent, twofish and cast5-128 volumes, which vdisk refuses by name. Every mode is
 * built here over AES-ECB (XTS as IEEE 1619 with whole blocks, which also gives AES-192-XTS
 * that OpenSSL lacks); unit tests compare each against OpenSSL's own mode.
 */
import type { Cipheriv, Decipheriv } from 'node:crypto';
import { nodeCrypto } from '../node-crypto.js';
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
  const digest = nodeCrypto().createHash(spec.ivHash!).digest().length;
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
  const c = encrypt ? nodeCrypto().createCipheriv(`${alg}-ecb`, key, null) : nodeCrypto().createDecipheriv(`${alg}-ecb`, key, null);
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
export function xtsOverEcb(alg: string, key: Uint8Array, iv: Uint8Array, data: Uint8Array, encrypt: boolean): Buffer {
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

/** One ECB context per key and direction, reused for every call (creating contexts is costly). */
class Ecb {
  private enc: Cipheriv | undefined;
  private dec: Decipheriv | undefined;
  constructor(private readonly alg: string, private readonly key: Uint8Array) {}
  run(data: Uint8Array, encrypt: boolean): Buffer {
    if (encrypt) {
      this.enc ??= nodeCrypto().createCipheriv(`${this.alg}-ecb`, this.key, null).setAutoPadding(false);
      return this.enc.update(data);
    }
    this.dec ??= nodeCrypto().createDecipheriv(`${this.alg}-ecb`, this.key, null).setAutoPadding(false);
    return this.dec.update(data);
  }
}

function xorInto(dst: Uint8Array, src: Uint8Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

const BLOCKS_PER_SECTOR = LUKS_SECTOR / AES_BLOCK;

/**
 * Encrypts and decrypts whole sectors with one key; sector numbers give the IVs. Every mode is
 * built over batched ECB (one call for a whole request, or one per block position for CBC
 * encryption), since a cipher context per 512-byte sector costs far more than the AES itself.
 */
export class SectorCipher {
  private readonly essiv?: Ecb;
  private readonly data: Ecb;
  private readonly tweak?: Ecb;

  constructor(readonly spec: CipherSpec, key: Uint8Array) {
    checkCipherAvailable(spec);
    const bits = CIPHER_ALGS[spec.alg]!.keyBytes * 8;
    const half = key.length / 2;
    this.data = new Ecb(`aes-${bits}`, spec.mode === 'xts' ? key.subarray(0, half) : key);
    if (spec.mode === 'xts') this.tweak = new Ecb(`aes-${bits}`, key.subarray(half));
    if (spec.ivgen === 'essiv') {
      this.essiv = new Ecb(`aes-${CIPHER_ALGS[essivAlg(spec)]!.keyBytes * 8}`, nodeCrypto().createHash(spec.ivHash!).update(key).digest());
    }
  }

  /** The IVs of `n` sectors from `first`, 16 bytes each. */
  private ivs(first: number, n: number): Buffer {
    const iv = Buffer.alloc(n * AES_BLOCK);
    for (let i = 0; i < n; i++) {
      if (this.spec.ivgen === 'plain') iv.writeUInt32LE((first + i) % 2 ** 32, i * AES_BLOCK);
      else iv.writeBigUInt64LE(BigInt(first + i), i * AES_BLOCK);
    }
    return this.essiv ? this.essiv.run(iv, true) : iv;
  }

  private xts(buf: Buffer, first: number, n: number, encrypt: boolean): void {
    const t = this.tweak!.run(this.ivs(first, n), true);
    // the tweaks as little-endian 32-bit words, doubled in GF(2^128) word-wise
    const mask = Buffer.alloc(buf.length);
    const dv = new DataView(mask.buffer, mask.byteOffset, mask.length);
    const tv = new DataView(t.buffer, t.byteOffset, t.length);
    for (let s = 0; s < n; s++) {
      let w0 = tv.getUint32(s * 16, true), w1 = tv.getUint32(s * 16 + 4, true);
      let w2 = tv.getUint32(s * 16 + 8, true), w3 = tv.getUint32(s * 16 + 12, true);
      for (let j = 0, at = s * LUKS_SECTOR; j < BLOCKS_PER_SECTOR; j++, at += AES_BLOCK) {
        dv.setUint32(at, w0, true);
        dv.setUint32(at + 4, w1, true);
        dv.setUint32(at + 8, w2, true);
        dv.setUint32(at + 12, w3, true);
        const carry = w3 >>> 31;
        w3 = ((w3 << 1) | (w2 >>> 31)) >>> 0;
        w2 = ((w2 << 1) | (w1 >>> 31)) >>> 0;
        w1 = ((w1 << 1) | (w0 >>> 31)) >>> 0;
        w0 = (((w0 << 1) >>> 0) ^ (carry ? 0x87 : 0)) >>> 0;
      }
    }
    xorInto(buf, mask);
    const y = this.data.run(buf, encrypt);
    xorInto(y, mask);
    buf.set(y);
  }

  private cbc(buf: Buffer, first: number, n: number, encrypt: boolean): void {
    const iv = this.ivs(first, n);
    if (!encrypt) {
      const d = this.data.run(buf, false);
      for (let s = 0; s < n; s++) {
        const at = s * LUKS_SECTOR;
        for (let k = 0; k < AES_BLOCK; k++) d[at + k]! ^= iv[s * AES_BLOCK + k]!;
        for (let k = AES_BLOCK; k < LUKS_SECTOR; k++) d[at + k]! ^= buf[at + k - AES_BLOCK]!;
      }
      buf.set(d);
      return;
    }
    // chaining runs inside a sector: encrypt block j of every sector at once, j = 0..31
    const x = Buffer.alloc(n * AES_BLOCK);
    for (let j = 0; j < BLOCKS_PER_SECTOR; j++) {
      for (let s = 0; s < n; s++) {
        const at = s * LUKS_SECTOR + j * AES_BLOCK;
        const prev = j === 0 ? iv.subarray(s * AES_BLOCK, (s + 1) * AES_BLOCK) : buf.subarray(at - AES_BLOCK, at);
        for (let k = 0; k < AES_BLOCK; k++) x[s * AES_BLOCK + k] = buf[at + k]! ^ prev[k]!;
      }
      const c = this.data.run(x, true);
      for (let s = 0; s < n; s++) c.copy(buf, s * LUKS_SECTOR + j * AES_BLOCK, s * AES_BLOCK, (s + 1) * AES_BLOCK);
    }
  }

  /** CTR: the IV is a 128-bit big-endian counter, incremented per block within the sector. */
  private ctr(buf: Buffer, first: number, n: number): void {
    const iv = this.ivs(first, n);
    const counters = Buffer.alloc(buf.length);
    for (let s = 0; s < n; s++) {
      const c = Buffer.from(iv.subarray(s * AES_BLOCK, (s + 1) * AES_BLOCK));
      for (let j = 0; j < BLOCKS_PER_SECTOR; j++) {
        c.copy(counters, s * LUKS_SECTOR + j * AES_BLOCK);
        for (let k = AES_BLOCK - 1; k >= 0; k--) {
          c[k] = (c[k]! + 1) & 0xff;
          if (c[k] !== 0) break;
        }
      }
    }
    xorInto(buf, this.data.run(counters, true));
  }

  private crypt(data: Uint8Array, firstSector: number, encrypt: boolean): void {
    const n = Math.ceil(data.length / LUKS_SECTOR);
    // whole sectors only; a short tail (never from vdisk's callers) is padded and cut back
    const whole = data.length === n * LUKS_SECTOR;
    const buf = whole ? Buffer.from(data.buffer, data.byteOffset, data.length) : Buffer.alloc(n * LUKS_SECTOR);
    if (!whole) buf.set(data);
    switch (this.spec.mode) {
      case 'ecb': buf.set(this.data.run(buf, encrypt)); break;
      case 'xts': this.xts(buf, firstSector, n, encrypt); break;
      case 'cbc': this.cbc(buf, firstSector, n, encrypt); break;
      case 'ctr': this.ctr(buf, firstSector, n); break;
    }
    if (!whole) data.set(buf.subarray(0, data.length));
  }

  /** Encrypt in place; `buf` is whole sectors starting at sector `firstSector`. */
  encrypt(buf: Uint8Array, firstSector: number): void {
    this.crypt(buf, firstSector, true);
  }

  decrypt(buf: Uint8Array, firstSector: number): void {
    this.crypt(buf, firstSector, false);
  }
}
