/**
 * One LUKS1 key slot: the master key, anti-forensically split into 4000 stripes and encrypted
 * with a key derived from a passphrase by PBKDF2 with the slot's salt and iteration count.
 * Unlocking derives, decrypts, merges and compares the result against the master key digest.
 */
import { nodeCrypto } from '../node-crypto.js';
import { afMerge, afSplit } from './afsplit.js';
import { SectorCipher, type CipherSpec } from './cipher.js';
import { LUKS_DIGEST_BYTES, LUKS_SALT_BYTES, LUKS_SECTOR, LUKS_STRIPES, SLOT_ACTIVE, SLOT_DISABLED, type LuksHeader, type LuksSlot } from './header.js';
import { derive } from './pbkdf.js';

/** Reads and writes relative to the start of the LUKS header. */
export interface LuksIo {
  pread(buf: Uint8Array, offset: number): Promise<void>;
  pwrite(buf: Uint8Array, offset: number): Promise<void>;
}

/** Sectors of one slot's key material (whole sectors: qemu and cryptsetup encrypt whole sectors). */
export function splitSectors(keyBytes: number, stripes: number): number {
  return Math.ceil((keyBytes * stripes) / LUKS_SECTOR);
}

/** The master key digest as stored in the header. */
export function masterKeyDigest(h: LuksHeader, key: Uint8Array): Promise<Buffer> {
  return derive(key, h.mkDigestSalt, h.mkDigestIterations, LUKS_DIGEST_BYTES, h.hashSpec);
}

/** The master key if `secret` opens this (active) slot, else undefined. */
export async function trySlot(io: LuksIo, h: LuksHeader, spec: CipherSpec, slot: LuksSlot, secret: Uint8Array): Promise<Buffer | undefined> {
  const slotKey = await derive(secret, slot.salt, slot.iterations, h.keyBytes, h.hashSpec);
  const material = new Uint8Array(splitSectors(h.keyBytes, slot.stripes) * LUKS_SECTOR);
  await io.pread(material, slot.keyMaterialOffset * LUKS_SECTOR);
  new SectorCipher(spec, slotKey).decrypt(material, 0);
  const candidate = afMerge(material, h.keyBytes, slot.stripes, h.hashSpec);
  const digest = await masterKeyDigest(h, candidate);
  return nodeCrypto().timingSafeEqual(digest, h.mkDigest) ? candidate : undefined;
}

/** Fill `slot` for `secret` and write its key material; the caller writes the header after. */
export async function storeSlot(io: LuksIo, h: LuksHeader, spec: CipherSpec, slot: LuksSlot, masterKey: Uint8Array, secret: Uint8Array, iterations: number, salt: Uint8Array): Promise<void> {
  const slotKey = await derive(secret, salt, iterations, h.keyBytes, h.hashSpec);
  const split = afSplit(masterKey, LUKS_STRIPES, h.hashSpec);
  const material = new Uint8Array(splitSectors(h.keyBytes, LUKS_STRIPES) * LUKS_SECTOR);
  material.set(split);
  new SectorCipher(spec, slotKey).encrypt(material, 0);
  await io.pwrite(material, slot.keyMaterialOffset * LUKS_SECTOR);
  slot.active = SLOT_ACTIVE;
  slot.iterations = iterations;
  slot.salt = salt;
  slot.stripes = LUKS_STRIPES;
}

/** Overwrite a slot's key material with random bytes and mark it disabled (as qemu erases keys). */
export async function eraseSlot(io: LuksIo, h: LuksHeader, slot: LuksSlot): Promise<void> {
  await io.pwrite(nodeCrypto().randomBytes(splitSectors(h.keyBytes, slot.stripes) * LUKS_SECTOR), slot.keyMaterialOffset * LUKS_SECTOR);
  slot.active = SLOT_DISABLED;
  slot.iterations = 0;
  slot.salt = new Uint8Array(LUKS_SALT_BYTES);
}
