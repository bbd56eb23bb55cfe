/**
 * Encryption inside qcow2 (qcow2.txt "crypt_method" and the "Full disk encryption header
 * pointer" extension). Two kinds, both over the shared src/crypto code:
 *   - LUKS (crypt_method 2): a LUKS1 header and key material in the clusters the crypto extension
 *     names, offsets inside relative to it; guest clusters are encrypted per 512-byte sector with
 *     the *host* sector number as IV.
 *   - legacy AES (crypt_method 1): AES-128-CBC keyed by the first 16 bytes of the secret (zero
 *     padded), plain64 IVs from the *guest* sector number; no header at all.
 */
import { VdiskError } from '../../block/errors.js';
import type { JsonObject, OpenContext } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';
import { LuksVolume } from '../../crypto/luks/volume.js';
import type { LuksIo } from '../../crypto/luks/keyslot.js';
import { SectorCipher } from '../../crypto/luks/cipher.js';
import { CRYPT_AES, CRYPT_LUKS, toSafe } from './header.js';
import type { Qcow2Parts } from './layer.js';

/** What the qcow2 layer needs of its encryption. Offsets are of the first (sector-aligned) byte. */
export interface Qcow2Crypto {
  readonly unlocked: boolean;
  /** `encrypt` of format-specific info. */
  info(): JsonObject;
  encrypt(buf: Uint8Array, host: number, guest: number): void;
  decrypt(buf: Uint8Array, host: number, guest: number): void;
  /** The LUKS volume, for key-slot amend. */
  readonly luks?: LuksVolume;
  /** Where the LUKS header lives in the image file. */
  readonly luksIo?: LuksIo;
}

const AES_KEY_BYTES = 16;

export function regionIo(proto: Protocol, at: number): LuksIo {
  return { pread: (b, o) => proto.pread(b, at + o), pwrite: (b, o) => proto.pwrite(b, at + o) };
}

class LuksCrypto implements Qcow2Crypto {
  constructor(readonly luks: LuksVolume, readonly luksIo: LuksIo) {}
  get unlocked(): boolean { return this.luks.unlocked; }
  info(): JsonObject { return this.luks.info(true); }
  encrypt(buf: Uint8Array, host: number): void { this.luks.encrypt(buf, host / 512); }
  decrypt(buf: Uint8Array, host: number): void { this.luks.decrypt(buf, host / 512); }
}

class AesCrypto implements Qcow2Crypto {
  private cipher: SectorCipher | undefined;
  get unlocked(): boolean { return this.cipher !== undefined; }
  info(): JsonObject { return { format: 'aes' }; }
  unlock(secret: Uint8Array): void {
    const key = new Uint8Array(AES_KEY_BYTES);
    key.set(secret.subarray(0, AES_KEY_BYTES));
    this.cipher = new SectorCipher({ alg: 'aes-128', mode: 'cbc', ivgen: 'plain64' }, key);
  }
  encrypt(buf: Uint8Array, _host: number, guest: number): void { this.cipher!.encrypt(buf, guest / 512); }
  decrypt(buf: Uint8Array, _host: number, guest: number): void { this.cipher!.decrypt(buf, guest / 512); }
}

/** Read the encryption header and, unless only metadata is wanted, unlock it with the key secret. */
export async function openCrypto(p: Qcow2Parts, ctx: OpenContext): Promise<void> {
  const h = p.loaded.header;
  if (h.cryptMethod !== CRYPT_LUKS && h.cryptMethod !== CRYPT_AES) return;
  let aes: AesCrypto | undefined;
  let luks: LuksCrypto | undefined;
  if (h.cryptMethod === CRYPT_AES) {
    aes = new AesCrypto();
    p.luks = aes;
  } else {
    const at = toSafe(p.loaded.ext.crypto!.offset, 'Encryption header', p.path);
    const io = regionIo(p.proto, at);
    luks = new LuksCrypto(await LuksVolume.read(io, { path: p.path, format: 'qcow2' }), io);
    p.luks = luks;
  }
  const id = ctx.options['encrypt.key-secret'];
  const missing = new VdiskError('invalid-argument', 'QCOW2_NO_KEY', "Parameter 'encrypt.key-secret' is required for cipher", { path: p.path, format: 'qcow2' });
  // like qemu, a metadata-only open (info) neither needs nor checks the key
  if (ctx.noIo) {
    p.ioBlocked = missing;
    return;
  }
  if (id === undefined) throw missing;
  const secret = ctx.secrets.get(id);
  if (!secret) throw new VdiskError('not-found', 'NO_SECRET', `No secret with id '${id}'`, { path: p.path, format: 'qcow2' });
  if (aes) aes.unlock(secret);
  else await luks!.luks.unlock(luks!.luksIo, secret);
}
