/**
 * A LUKS1 volume: the decoded header, checked as qemu checks it (with qemu's messages), its cipher,
 * `info` data, unlocking, sector encryption with the master key, and creation.
 *
 * Layout vdisk (like qemu) writes, in 512-byte sectors from the header's start:
 *   0 header (592 bytes) | 8 slot 0 key material | 8 + k slot 1 | ... | 8 + 8k payload
 * where k is one slot's key material (key_bytes * 4000 bytes) rounded up to 4 KiB.
 */
import { nodeCrypto } from '../node-crypto.js';
import { VdiskError } from '../../block/errors.js';
import type { JsonObject } from '../../block/driver.js';
import {
  CIPHER_ALGS, CIPHER_MODES, HASH_ALGS, IVGEN_ALGS, SectorCipher, checkCipherAvailable, masterKeyBytes,
  type CipherMode, type CipherSpec, type IvGen,
} from './cipher.js';
import {
  LUKS_DIGEST_BYTES, LUKS_HEADER_BYTES, LUKS_SALT_BYTES, LUKS_SECTOR, LUKS_SLOT_COUNT, LUKS_STRIPES, LUKS_VERSION,
  LUKS_MAGIC, SLOT_ACTIVE, SLOT_DISABLED, decodeLuksHeader, encodeLuksHeader, hasLuksMagic, type LuksHeader,
} from './header.js';
import { splitSectors, storeSlot, trySlot, type LuksIo } from './keyslot.js';
import {
  MAX_LUKS_ITERATIONS, MAX_LUKS_UNLOCK_ITERATIONS, MIN_MASTER_KEY_ITERATIONS, MIN_SLOT_ITERATIONS, derive,
  iterationsPerSecond, scaledIterations,
} from './pbkdf.js';

/** Key material starts after the first 4 KiB (8 sectors), as qemu and cryptsetup place it. */
export const KEY_SLOT_OFFSET_SECTORS = 8;
/** Each slot's material is aligned to 4 KiB. */
const SLOT_ALIGN_SECTORS = 8;

export interface ErrorWhere {
  path: string;
  format: string;
}

function bad(where: ErrorWhere, code: string, msg: string, kind: 'invalid-format' | 'unsupported' | 'limit' = 'invalid-format'): VdiskError {
  return new VdiskError(kind, code, msg, { path: where.path, format: where.format });
}

/** Parse "xts-plain64" / "cbc-essiv:sha256" and the cipher name with qemu's checks and wording. */
export function parseCipher(h: LuksHeader, where: ErrorWhere): CipherSpec {
  const dash = h.cipherMode.indexOf('-');
  if (dash < 0) throw bad(where, 'LUKS_MODE', `Unexpected cipher mode string format '${h.cipherMode}'`, 'unsupported');
  const mode = h.cipherMode.slice(0, dash);
  if (!(CIPHER_MODES as readonly string[]).includes(mode)) throw bad(where, 'LUKS_MODE', `Cipher mode '${mode}' not supported`, 'unsupported');
  const ivPart = h.cipherMode.slice(dash + 1);
  const colon = ivPart.indexOf(':');
  const ivgen = colon < 0 ? ivPart : ivPart.slice(0, colon);
  if (!(IVGEN_ALGS as readonly string[]).includes(ivgen)) throw bad(where, 'LUKS_IVGEN', `IV generator '${ivgen}' not supported`, 'unsupported');
  // qemu reads the hash only for essiv (a ":hash" after plain64 is ignored, and not shown)
  const ivHash = colon < 0 || ivgen !== 'essiv' ? undefined : ivPart.slice(colon + 1);
  if (ivHash !== undefined && !HASH_ALGS.includes(ivHash)) throw bad(where, 'LUKS_HASH', `Hash algorithm '${ivHash}' not supported`, 'unsupported');
  const keyBytes = mode === 'xts' ? Math.floor(h.keyBytes / 2) : h.keyBytes;
  const alg = Object.entries(CIPHER_ALGS).find(([, v]) => v.name === h.cipherName && v.keyBytes === keyBytes);
  if (!alg) throw bad(where, 'LUKS_CIPHER', `Algorithm '${h.cipherName}' with key size ${keyBytes} bytes not supported`, 'unsupported');
  if (!HASH_ALGS.includes(h.hashSpec)) throw bad(where, 'LUKS_HASH', `Hash algorithm '${h.hashSpec}' not supported`, 'unsupported');
  const spec: CipherSpec = { alg: alg[0], mode: mode as CipherMode, ivgen: ivgen as IvGen };
  if (ivHash !== undefined) spec.ivHash = ivHash;
  return spec;
}

/** qemu's structural checks of the header, in its order and wording. */
export function checkHeader(h: LuksHeader, where: ErrorWhere): void {
  if (!hasLuksMagic(h.magic)) throw bad(where, 'LUKS_MAGIC', 'Volume is not in LUKS format');
  if (h.version !== LUKS_VERSION) throw bad(where, 'LUKS_VERSION', `LUKS version ${h.version} is not supported`, 'unsupported');
  if (h.payloadOffset < KEY_SLOT_OFFSET_SECTORS) throw bad(where, 'LUKS_PAYLOAD', 'LUKS payload is overlapping with the header');
  if (h.mkDigestIterations === 0) throw bad(where, 'LUKS_ITERATIONS', 'LUKS key iteration count is zero');
  h.slots.forEach((s, i) => {
    if (s.active !== SLOT_ACTIVE && s.active !== SLOT_DISABLED) throw bad(where, 'LUKS_SLOT', `Keyslot ${i} state (active/disable) is corrupted`);
    if (s.active === SLOT_ACTIVE && s.iterations === 0) throw bad(where, 'LUKS_SLOT', `Keyslot ${i} iteration count is zero`);
    if (s.stripes !== LUKS_STRIPES) throw bad(where, 'LUKS_SLOT', `Keyslot ${i} is corrupted (stripes ${s.stripes} != ${LUKS_STRIPES})`);
    if (s.keyMaterialOffset < KEY_SLOT_OFFSET_SECTORS) throw bad(where, 'LUKS_SLOT', `Keyslot ${i} is overlapping with the LUKS header`);
    const n = splitSectors(h.keyBytes, s.stripes);
    if (s.keyMaterialOffset + n > h.payloadOffset) throw bad(where, 'LUKS_SLOT', `Keyslot ${i} is overlapping with the encrypted payload`);
    for (let j = 0; j < i; j++) {
      const o = h.slots[j]!;
      const m = splitSectors(h.keyBytes, o.stripes);
      if (s.keyMaterialOffset < o.keyMaterialOffset + m && o.keyMaterialOffset < s.keyMaterialOffset + n) {
        throw bad(where, 'LUKS_SLOT', `Keyslots ${j} and ${i} are overlapping in the header`);
      }
    }
  });
}

export interface LuksCreateParams {
  spec: CipherSpec;
  hash: string;
  /** PBKDF time per key slot, in milliseconds (qemu's iter-time; u64 as qemu parses it). */
  iterTimeMs: bigint;
}

/** Sectors of the whole header area (up to the payload) for this cipher. */
export function headerSectors(spec: CipherSpec): number {
  const per = Math.ceil(splitSectors(masterKeyBytes(spec), LUKS_STRIPES) / SLOT_ALIGN_SECTORS) * SLOT_ALIGN_SECTORS;
  return KEY_SLOT_OFFSET_SECTORS + LUKS_SLOT_COUNT * per;
}

export class LuksVolume {
  private masterKey: Buffer | undefined;
  private payloadCipher: SectorCipher | undefined;

  constructor(public header: LuksHeader, readonly spec: CipherSpec, private readonly where: ErrorWhere) {}

  /** Read and check the header at the start of `io`. */
  static async read(io: LuksIo, where: ErrorWhere): Promise<LuksVolume> {
    const b = new Uint8Array(LUKS_HEADER_BYTES);
    await io.pread(b, 0);
    const h = decodeLuksHeader(b);
    checkHeader(h, where);
    return new LuksVolume(h, parseCipher(h, where), where);
  }

  get payloadOffsetBytes(): number {
    return this.header.payloadOffset * LUKS_SECTOR;
  }

  get unlocked(): boolean {
    return this.masterKey !== undefined;
  }

  get key(): Buffer | undefined {
    return this.masterKey;
  }

  /** QCryptoBlockInfoLUKS; `format: "luks"` first when embedded in qcow2's encrypt union. */
  info(withFormat: boolean): JsonObject {
    const s = this.spec;
    const o: JsonObject = withFormat ? { format: 'luks' } : {};
    o['cipher-alg'] = s.alg;
    o['cipher-mode'] = s.mode;
    o['ivgen-alg'] = s.ivgen;
    if (s.ivHash !== undefined) o['ivgen-hash-alg'] = s.ivHash;
    o['hash-alg'] = this.header.hashSpec;
    o['payload-offset'] = this.payloadOffsetBytes;
    o['master-key-iters'] = this.header.mkDigestIterations;
    o['uuid'] = this.header.uuid;
    o['slots'] = this.header.slots.map((sl) => {
      const j: JsonObject = { active: sl.active === SLOT_ACTIVE };
      if (sl.active === SLOT_ACTIVE) {
        j['iters'] = sl.iterations;
        j['stripes'] = sl.stripes;
      }
      j['key-offset'] = sl.keyMaterialOffset * LUKS_SECTOR;
      return j;
    });
    return o;
  }

  /** Check the PBKDF2 work a slot asks for before doing it (hostile headers). */
  checkWork(iterations: number, spent: number): void {
    if (iterations > MAX_LUKS_ITERATIONS || this.header.mkDigestIterations > MAX_LUKS_ITERATIONS || spent + iterations > MAX_LUKS_UNLOCK_ITERATIONS) {
      throw bad(this.where, 'LUKS_TOO_MANY_ITERATIONS', `LUKS key slot iteration count exceeds vdisk's limit of ${MAX_LUKS_ITERATIONS}`, 'limit');
    }
  }

  /** Slot index whose key `secret` opens, and the master key (undefined: none). */
  async findSlot(io: LuksIo, secret: Uint8Array): Promise<{ slot: number; key: Buffer } | undefined> {
    checkCipherAvailable(this.spec);
    let spent = 0;
    for (let i = 0; i < this.header.slots.length; i++) {
      const s = this.header.slots[i]!;
      if (s.active !== SLOT_ACTIVE) continue;
      this.checkWork(s.iterations, spent);
      spent += s.iterations + this.header.mkDigestIterations;
      const key = await trySlot(io, this.header, this.spec, s, secret);
      if (key) return { slot: i, key };
    }
    return undefined;
  }

  /** Try every active slot with the passphrase; the master key is kept for the payload. */
  async unlock(io: LuksIo, secret: Uint8Array): Promise<void> {
    const found = await this.findSlot(io, secret);
    if (!found) throw new VdiskError('permission', 'LUKS_BAD_PASSWORD', 'Invalid password, cannot unlock any keyslot', { path: this.where.path, format: this.where.format });
    this.setKey(found.key);
  }

  setKey(key: Buffer): void {
    this.masterKey = key;
    this.payloadCipher = new SectorCipher(this.spec, key);
  }

  /** Encrypt whole sectors in place; `sector` numbers the first for the IV. */
  encrypt(buf: Uint8Array, sector: number): void {
    this.payloadCipher!.encrypt(buf, sector);
  }

  decrypt(buf: Uint8Array, sector: number): void {
    this.payloadCipher!.decrypt(buf, sector);
  }

  async writeHeader(io: LuksIo): Promise<void> {
    await io.pwrite(encodeLuksHeader(this.header), 0);
  }

  /**
   * A new volume: random master key, digest and slot 0 for `secret`, iteration counts from a
   * PBKDF2 benchmark scaled to `iterTimeMs` as qemu does. Writes slot 0's material, then the header.
   */
  static async create(io: LuksIo, p: LuksCreateParams, secret: Uint8Array, where: ErrorWhere): Promise<LuksVolume> {
    checkCipherAvailable(p.spec);
    const keyBytes = masterKeyBytes(p.spec);
    const masterKey = nodeCrypto().randomBytes(keyBytes);
    const mkSalt = nodeCrypto().randomBytes(LUKS_SALT_BYTES);
    const mkRate = iterationsPerSecond(masterKey, mkSalt, LUKS_DIGEST_BYTES, p.hash);
    const mkIterations = scaledIterations(mkRate, p.iterTimeMs, 8, MIN_MASTER_KEY_ITERATIONS);
    const per = Math.ceil(splitSectors(keyBytes, LUKS_STRIPES) / SLOT_ALIGN_SECTORS) * SLOT_ALIGN_SECTORS;
    const h: LuksHeader = {
      magic: LUKS_MAGIC, version: LUKS_VERSION, cipherName: CIPHER_ALGS[p.spec.alg]!.name,
      cipherMode: `${p.spec.mode}-${p.spec.ivgen}${p.spec.ivHash !== undefined ? `:${p.spec.ivHash}` : ''}`,
      hashSpec: p.hash, payloadOffset: headerSectors(p.spec), keyBytes,
      mkDigest: new Uint8Array(LUKS_DIGEST_BYTES), mkDigestSalt: mkSalt, mkDigestIterations: mkIterations,
      uuid: nodeCrypto().randomUUID(),
      slots: Array.from({ length: LUKS_SLOT_COUNT }, (_, i) => ({
        active: SLOT_DISABLED, iterations: 0, salt: new Uint8Array(LUKS_SALT_BYTES),
        keyMaterialOffset: KEY_SLOT_OFFSET_SECTORS + i * per, stripes: LUKS_STRIPES,
      })),
    };
    h.mkDigest = await derive(masterKey, mkSalt, mkIterations, LUKS_DIGEST_BYTES, p.hash);
    const v = new LuksVolume(h, p.spec, where);
    await v.addKey(io, 0, masterKey, secret, p.iterTimeMs);
    await v.writeHeader(io);
    v.setKey(masterKey);
    return v;
  }

  /** Put `secret` into slot `i` (benchmarked iterations); the header is written by the caller. */
  async addKey(io: LuksIo, i: number, masterKey: Buffer, secret: Uint8Array, iterTimeMs: bigint): Promise<void> {
    const salt = nodeCrypto().randomBytes(LUKS_SALT_BYTES);
    const rate = iterationsPerSecond(secret, salt, this.header.keyBytes, this.header.hashSpec);
    const iterations = scaledIterations(rate, iterTimeMs, 1, MIN_SLOT_ITERATIONS);
    await storeSlot(io, this.header, this.spec, this.header.slots[i]!, masterKey, secret, iterations, salt);
  }
}
