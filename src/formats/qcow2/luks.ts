/**
 * LUKS1 inside qcow2 (qcow2.txt "Full disk encryption header pointer"; cryptsetup's LUKS1
 * on-disk format): the header sits in clusters named by the crypto extension, key material offsets
 * are relative to it, and payload sectors are encrypted with the host (physical) sector number as
 * IV. Only what qemu-img creates by default and its common variants: AES in XTS or CBC mode with
 * plain/plain64 IVs, PBKDF2 over sha1/sha256/sha512.
 *
 *   0 magic "LUKS\xba\xbe" | 6 version u16 | 8 cipher_name[32] | 40 cipher_mode[32] | 72 hash_spec[32]
 * 104 payload_offset u32 (sectors) | 108 key_bytes u32 | 112 mk_digest[20] | 132 mk_digest_salt[32]
 * 164 mk_digest_iter u32 | 168 uuid[40] | 208 8 key slots of 48 bytes:
 *     0 active u32 | 4 iterations u32 | 8 salt[32] | 40 key_material_offset u32 (sectors) | 44 stripes u32
 */
import { createCipheriv, createDecipheriv, createHash, pbkdf2, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { VdiskError } from '../../block/errors.js';
import type { JsonObject } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';

const pbkdf2Async = promisify(pbkdf2);
export const LUKS_HEADER_BYTES = 592;
const SLOT_ACTIVE = 0x00ac71f3;
const SECTOR = 512;
/** Key material per slot is key_bytes * stripes; qemu writes 4000 stripes. Bound it against crafted headers. */
export const MAX_LUKS_STRIPES = 64000;
/** PBKDF2 iterations beyond this would make a crafted header hang the opener for minutes. */
export const MAX_LUKS_ITERATIONS = 100_000_000;

export interface LuksSlot {
  active: boolean;
  iterations: number;
  salt: Uint8Array;
  keyOffset: number;
  stripes: number;
}

function cstr(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return new TextDecoder('latin1').decode(nul < 0 ? b : b.subarray(0, nul));
}

export class LuksVolume {
  private masterKey: Buffer | undefined;

  private constructor(
    readonly cipherName: string,
    readonly cipherMode: string,
    readonly hashSpec: string,
    readonly payloadOffset: number,
    readonly keyBytes: number,
    readonly mkDigest: Uint8Array,
    readonly mkSalt: Uint8Array,
    readonly mkIterations: number,
    readonly uuid: string,
    readonly slots: LuksSlot[],
    private readonly path: string,
  ) {}

  static async read(proto: Protocol, offset: number, path: string): Promise<LuksVolume> {
    const b = new Uint8Array(LUKS_HEADER_BYTES);
    await proto.pread(b, offset);
    const dv = new DataView(b.buffer);
    const magic = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe];
    if (!magic.every((m, i) => b[i] === m)) {
      throw new VdiskError('invalid-format', 'LUKS_MAGIC', 'Volume is not in LUKS format', { path, format: 'qcow2' });
    }
    if (dv.getUint16(6) !== 1) {
      throw new VdiskError('unsupported', 'LUKS_VERSION', `Unsupported LUKS version ${dv.getUint16(6)}`, { path, format: 'qcow2' });
    }
    const slots: LuksSlot[] = [];
    for (let i = 0; i < 8; i++) {
      const o = 208 + i * 48;
      slots.push({
        active: dv.getUint32(o) === SLOT_ACTIVE,
        iterations: dv.getUint32(o + 4),
        salt: b.slice(o + 8, o + 40),
        keyOffset: dv.getUint32(o + 40) * SECTOR,
        stripes: dv.getUint32(o + 44),
      });
    }
    return new LuksVolume(cstr(b.subarray(8, 40)), cstr(b.subarray(40, 72)), cstr(b.subarray(72, 104)),
      dv.getUint32(104) * SECTOR, dv.getUint32(108), b.slice(112, 132), b.slice(132, 164), dv.getUint32(164),
      cstr(b.subarray(168, 208)), slots, path);
  }

  private get mode(): { chain: string; ivgen: string; ivHash?: string } {
    const [chain = '', iv = ''] = this.cipherMode.split('-');
    const [ivgen = '', ivHash] = iv.split(':');
    return ivHash !== undefined ? { chain, ivgen, ivHash } : { chain, ivgen };
  }

  /** Bits of the cipher key; XTS keys hold two AES keys. */
  private get aesBits(): number {
    return (this.mode.chain === 'xts' ? this.keyBytes / 2 : this.keyBytes) * 8;
  }

  /** QCryptoBlockInfoLUKS for `info`, in QAPI order (format first, as the union's base). */
  info(): JsonObject {
    const m = this.mode;
    const o: JsonObject = { format: 'luks', 'cipher-alg': `${this.cipherName}-${this.aesBits}`, 'cipher-mode': m.chain, 'ivgen-alg': m.ivgen };
    if (m.ivHash !== undefined) o['ivgen-hash-alg'] = m.ivHash;
    o['hash-alg'] = this.hashSpec;
    o['payload-offset'] = this.payloadOffset;
    o['master-key-iters'] = this.mkIterations;
    o['uuid'] = this.uuid;
    o['slots'] = this.slots.map((s) => {
      const j: JsonObject = { active: s.active };
      if (s.active) {
        j['iters'] = s.iterations;
        j['stripes'] = s.stripes;
      }
      j['key-offset'] = s.keyOffset;
      return j;
    });
    return o;
  }

  private algorithm(): string {
    const m = this.mode;
    if (this.cipherName !== 'aes' || (m.chain !== 'xts' && m.chain !== 'cbc') || (m.ivgen !== 'plain64' && m.ivgen !== 'plain')) {
      throw new VdiskError('unsupported', 'LUKS_CIPHER', `Unsupported LUKS cipher ${this.cipherName}-${this.cipherMode}`, { path: this.path, format: 'qcow2' });
    }
    return `aes-${this.aesBits}-${m.chain}`;
  }

  private hashName(): string {
    if (!['sha1', 'sha256', 'sha512', 'sha384', 'sha224'].includes(this.hashSpec)) {
      throw new VdiskError('unsupported', 'LUKS_HASH', `Unsupported LUKS hash ${this.hashSpec}`, { path: this.path, format: 'qcow2' });
    }
    return this.hashSpec;
  }

  /** Try every active slot with the passphrase; the master key is kept for decryption. */
  async unlock(proto: Protocol, headerOffset: number, secret: Uint8Array): Promise<void> {
    const alg = this.algorithm();
    const hash = this.hashName();
    for (const s of this.slots) {
      if (!s.active) continue;
      if (s.stripes === 0 || s.stripes > MAX_LUKS_STRIPES || s.iterations > MAX_LUKS_ITERATIONS || this.keyBytes === 0 || this.keyBytes > 128) {
        throw new VdiskError('limit', 'LUKS_SLOT', 'LUKS key slot parameters out of range', { path: this.path, format: 'qcow2' });
      }
      const slotKey = await pbkdf2Async(secret, s.salt, s.iterations, this.keyBytes, hash);
      const material = new Uint8Array(this.keyBytes * s.stripes);
      await proto.pread(material, headerOffset + s.keyOffset);
      decryptSectors(alg, slotKey, this.mode.ivgen, material, 0);
      const candidate = afMerge(material, this.keyBytes, s.stripes, hash);
      const digest = await pbkdf2Async(candidate, this.mkSalt, this.mkIterations, 20, hash);
      if (timingSafeEqual(digest, this.mkDigest)) {
        this.masterKey = candidate;
        return;
      }
    }
    throw new VdiskError('permission', 'LUKS_BAD_PASSWORD', 'Invalid password, cannot unlock any keyslot', { path: this.path, format: 'qcow2' });
  }

  get unlocked(): boolean {
    return this.masterKey !== undefined;
  }

  /** Encrypt whole sectors in place; `hostOffset` (sector aligned) gives the IV. */
  encrypt(buf: Uint8Array, hostOffset: number): void {
    cryptSectors(this.algorithm(), this.masterKey!, this.mode.ivgen, buf, hostOffset / SECTOR, true);
  }

  /** Decrypt whole sectors in place; `hostOffset` (sector aligned) gives the IV. */
  decrypt(buf: Uint8Array, hostOffset: number): void {
    decryptSectors(this.algorithm(), this.masterKey!, this.mode.ivgen, buf, hostOffset / SECTOR);
  }
}

function decryptSectors(alg: string, key: Uint8Array, ivgen: string, buf: Uint8Array, firstSector: number): void {
  cryptSectors(alg, key, ivgen, buf, firstSector, false);
}

function cryptSectors(alg: string, key: Uint8Array, ivgen: string, buf: Uint8Array, firstSector: number, encrypt: boolean): void {
  const iv = Buffer.alloc(16);
  for (let off = 0, sector = firstSector; off < buf.length; off += SECTOR, sector++) {
    iv.fill(0);
    if (ivgen === 'plain') iv.writeUInt32LE(sector % 2 ** 32, 0);
    else iv.writeBigUInt64LE(BigInt(sector), 0);
    const d = encrypt ? createCipheriv(alg, key, iv) : createDecipheriv(alg, key, iv);
    d.setAutoPadding(false);
    const chunk = buf.subarray(off, off + SECTOR);
    const out = d.update(chunk);
    d.final();
    chunk.set(out);
  }
}

/** LUKS1 anti-forensic merge: XOR-and-diffuse every stripe but the last, then XOR the last. */
function afMerge(material: Uint8Array, keyBytes: number, stripes: number, hash: string): Buffer {
  const d = Buffer.alloc(keyBytes);
  for (let i = 0; i < stripes - 1; i++) {
    for (let j = 0; j < keyBytes; j++) d[j]! ^= material[i * keyBytes + j]!;
    diffuse(d, hash);
  }
  const last = (stripes - 1) * keyBytes;
  for (let j = 0; j < keyBytes; j++) d[j]! ^= material[last + j]!;
  return d;
}

function diffuse(d: Buffer, hash: string): void {
  const ds = createHash(hash).digest().length;
  const iv = Buffer.alloc(4);
  for (let j = 0, off = 0; off < d.length; j++, off += ds) {
    const n = Math.min(ds, d.length - off);
    iv.writeUInt32BE(j);
    const h = createHash(hash).update(iv).update(d.subarray(off, off + n)).digest();
    h.copy(d, off, 0, n);
  }
}
