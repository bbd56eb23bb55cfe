/**
 * qemu-img amend's `encrypt.*` options on qcow2: LUKS key-slot management (src/crypto/luks/amend.ts)
 * over the LUKS header area the crypto extension points at. The non-encryption amend options
 * live in ./amend.ts; a qcow2 amend hands the `encrypt.`-prefixed values here first, as qemu
 * changes the key slots before the other options.
 */
import { VdiskError } from '../../block/errors.js';
import type { SecretStore } from '../../block/driver.js';
import { amendLuksKeys } from '../../crypto/luks/amend.js';
import { ENCRYPT_AMEND_PREFIX } from './options.js';
import type { Qcow2Parts } from './layer.js';

export function hasEncryptAmend(values: Readonly<Record<string, string>>): boolean {
  return Object.keys(values).some((k) => k.startsWith(ENCRYPT_AMEND_PREFIX));
}

/** Apply the encrypt.* values (others are ignored); nothing happens when none is given. */
export async function amendEncryption(p: Qcow2Parts, values: Readonly<Record<string, string>>, force: boolean, secrets: SecretStore): Promise<void> {
  if (!hasEncryptAmend(values)) return;
  const c = p.luks;
  if (!c?.luks || !c.luksIo) {
    throw new VdiskError('unsupported', 'QCOW2_AMEND_NO_ENCRYPTION', "Can't amend encryption options - encryption not present", { path: p.path, format: 'qcow2' });
  }
  await amendLuksKeys(c.luks, c.luksIo, values, ENCRYPT_AMEND_PREFIX, secrets, force, p.path);
}
