/** An in-memory LUKS volume made with cheap iteration counts (no benchmark), for unit tests. */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  LUKS_MAGIC, LUKS_SLOT_COUNT, LUKS_STRIPES, SLOT_DISABLED, encodeLuksHeader,
} from '../../../../dist/crypto/luks/header.js';
import { masterKeyBytes, type CipherSpec } from '../../../../dist/crypto/luks/cipher.js';
import { headerSectors, KEY_SLOT_OFFSET_SECTORS } from '../../../../dist/crypto/luks/volume.js';
import { storeSlot, splitSectors } from '../../../../dist/crypto/luks/keyslot.js';
import { derive } from '../../../../dist/crypto/luks/pbkdf.js';

export class MemIo {
  buf: Uint8Array;
  constructor(size: number) { this.buf = new Uint8Array(size); }
  async pread(b: Uint8Array, o: number): Promise<void> {
    b.fill(0);
    b.set(this.buf.subarray(o, Math.min(this.buf.length, o + b.length)));
  }
  async pwrite(b: Uint8Array, o: number): Promise<void> {
    if (o + b.length > this.buf.length) {
      const n = new Uint8Array(o + b.length);
      n.set(this.buf);
      this.buf = n;
    }
    this.buf.set(b, o);
  }
}

export interface MadeVolume { io: MemIo; masterKey: Buffer }

/** A volume with slot 0 opened by `secret`; `spec` defaults to aes-256-xts-plain64. */
export async function makeVolume(secret: Uint8Array, spec: CipherSpec = { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' }, hash = 'sha256'): Promise<MadeVolume> {
  const keyBytes = masterKeyBytes(spec);
  const masterKey = randomBytes(keyBytes);
  const mkSalt = randomBytes(32);
  const per = Math.ceil(splitSectors(keyBytes, LUKS_STRIPES) / 8) * 8;
  const h = {
    magic: LUKS_MAGIC, version: 1, cipherName: 'aes',
    cipherMode: `${spec.mode}-${spec.ivgen}${spec.ivHash ? `:${spec.ivHash}` : ''}`, hashSpec: hash,
    payloadOffset: headerSectors(spec), keyBytes, mkDigest: await derive(masterKey, mkSalt, 1000, 20, hash),
    mkDigestSalt: mkSalt, mkDigestIterations: 1000, uuid: randomUUID(),
    slots: Array.from({ length: LUKS_SLOT_COUNT }, (_, i) => ({
      active: SLOT_DISABLED, iterations: 0, salt: new Uint8Array(32), keyMaterialOffset: KEY_SLOT_OFFSET_SECTORS + i * per, stripes: LUKS_STRIPES,
    })),
  };
  const io = new MemIo(h.payloadOffset * 512);
  await storeSlot(io, h, spec, h.slots[0]!, masterKey, secret, 1000, randomBytes(32));
  await io.pwrite(encodeLuksHeader(h), 0);
  return { io, masterKey };
}
