/**
 * The LUKS `-o` option specs (create and amend), as data only: the qcow2 and luks drivers list them
 * at load time, and keeping them apart from the key-slot code keeps node:crypto and the rest of
 * src/crypto out of the start-up of commands that never touch an encrypted image.
 */
import type { CreateOptionSpec } from '../../block/driver.js';

/** The LUKS options in the order qemu's luks driver lists them (`-o help` sorts them). */
export function luksOptionSpecs(prefix: string, keySecretHelp: string): CreateOptionSpec[] {
  return [
    { name: `${prefix}key-secret`, type: 'string', help: keySecretHelp },
    { name: `${prefix}cipher-alg`, type: 'string', help: 'Name of encryption cipher algorithm' },
    { name: `${prefix}cipher-mode`, type: 'string', help: 'Name of encryption cipher mode' },
    { name: `${prefix}ivgen-alg`, type: 'string', help: 'Name of IV generator algorithm' },
    { name: `${prefix}ivgen-hash-alg`, type: 'string', help: 'Name of IV generator hash algorithm' },
    { name: `${prefix}hash-alg`, type: 'string', help: 'Name of encryption hash algorithm' },
    { name: `${prefix}iter-time`, type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
  ];
}

/** The key-slot options of amend (qemu's luks amend options). */
export function luksAmendSpecs(prefix: string): CreateOptionSpec[] {
  return [
    { name: `${prefix}state`, type: 'string', help: 'Select new state of affected keyslots (active/inactive)' },
    { name: `${prefix}keyslot`, type: 'number', help: 'Select a single keyslot to modify explicitly' },
    { name: `${prefix}old-secret`, type: 'string', help: 'Select all keyslots that match this password' },
    { name: `${prefix}new-secret`, type: 'string', help: 'New secret to set in the matching keyslots. Empty string to erase' },
    { name: `${prefix}iter-time`, type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
  ];
}
