/**
 * node:crypto, loaded on first use: its load is tens of milliseconds of start-up, and the LUKS
 * modules are imported by qcow2 create (for its option checks) even when nothing is encrypted.
 */
import type * as NodeCrypto from 'node:crypto';

let mod: typeof NodeCrypto | undefined;

export function nodeCrypto(): typeof NodeCrypto {
  return (mod ??= process.getBuiltinModule('node:crypto'));
}
