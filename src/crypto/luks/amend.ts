/**
 * LUKS key-slot management (qemu-img amend on luks, and on qcow2 with an `encrypt.` prefix):
 * `state=active` puts `new-secret` into a free slot (or `keyslot`), `state=inactive` erases the
 * slot `keyslot` or every slot `old-secret` opens. Erasing the last usable key and overwriting an
 * active slot need `--force`, with qemu's refusals otherwise. Key material is written before the
 * header that points at it, so a crash leaves the old slots usable.
 */
import { VdiskError } from '../../block/errors.js';
import type { SecretStore } from '../../block/driver.js';
import { LUKS_SLOT_COUNT, SLOT_ACTIVE } from './header.js';
import { eraseSlot, trySlot, type LuksIo } from './keyslot.js';
import { parseIterTime } from './options.js';
import type { LuksVolume } from './volume.js';

export { luksAmendSpecs } from './specs.js';

function fail(msg: string, kind: 'invalid-argument' | 'permission' = 'invalid-argument'): never {
  throw new VdiskError(kind, 'LUKS_AMEND', msg);
}

function secretOf(secrets: SecretStore, id: string): Uint8Array {
  const s = secrets.get(id);
  if (!s) throw new VdiskError('not-found', 'NO_SECRET', `No secret with id '${id}'`);
  return s;
}

function activeSlots(vol: LuksVolume): number[] {
  return vol.header.slots.flatMap((s, i) => (s.active === SLOT_ACTIVE ? [i] : []));
}

/** Slots `secret` opens (each tried, as qemu does for erase by password). */
async function matchingSlots(vol: LuksVolume, io: LuksIo, secret: Uint8Array): Promise<number[]> {
  const out: number[] = [];
  let spent = 0;
  for (const i of activeSlots(vol)) {
    const s = vol.header.slots[i]!;
    vol.checkWork(s.iterations, spent);
    spent += s.iterations + vol.header.mkDigestIterations;
    if (await trySlot(io, vol.header, vol.spec, s, secret)) out.push(i);
  }
  return out;
}

/** Apply key-slot options (names without `prefix`) to an unlocked volume. */
export async function amendLuksKeys(vol: LuksVolume, io: LuksIo, values: Readonly<Record<string, string>>, prefix: string, secrets: SecretStore, force: boolean, _path: string): Promise<void> {
  const get = (k: string): string | undefined => values[prefix + k];
  const state = get('state');
  if (state === undefined) fail("Parameter 'state' is missing");
  if (state !== 'active' && state !== 'inactive') fail(`Parameter 'state' does not accept value '${state}'`);
  const ks = get('keyslot');
  let keyslot: number | undefined;
  if (ks !== undefined) {
    // qemu takes the number as u64 and prints it as a 32-bit unsigned value (-1: 4294967295)
    const wrapped = BigInt.asUintN(32, BigInt.asUintN(64, BigInt(ks)));
    if (wrapped >= BigInt(LUKS_SLOT_COUNT) || BigInt(ks) >= 1n << 64n) fail(`Invalid keyslot ${wrapped} specified, must be between 0 and ${LUKS_SLOT_COUNT - 1}`);
    keyslot = Number(wrapped);
  }
  const oldId = get('old-secret');
  const newId = get('new-secret');
  if (state === 'active') {
    if (newId === undefined) fail("'new-secret' is required to activate a keyslot");
    if (oldId !== undefined) fail("'old-secret' must not be given when activating keyslots");
    const secret = secretOf(secrets, newId);
    const iterTime = parseIterTime(get('iter-time'), 'iter-time');
    const slots = vol.header.slots;
    const target = keyslot ?? slots.findIndex((s) => s.active !== SLOT_ACTIVE);
    if (target < 0) fail("Can't add a keyslot - all keyslots are in use");
    if (slots[target]!.active === SLOT_ACTIVE && !force) fail(`Refusing to overwrite active keyslot ${target} - please erase it first`);
    await vol.addKey(io, target, vol.key!, secret, iterTime);
    await vol.writeHeader(io);
    return;
  }
  if (newId !== undefined) fail("'new-secret' must not be given when erasing keyslots");
  if (get('iter-time') !== undefined) fail("'iter-time' must not be given when erasing keyslots");
  const active = activeSlots(vol);
  let erase: number[];
  if (keyslot !== undefined) {
    if (!active.includes(keyslot)) {
      if (force) return;
      fail(`Given keyslot ${keyslot} is already erased (inactive) `);
    }
    if (oldId !== undefined && !(await matchingSlots(vol, io, secretOf(secrets, oldId))).includes(keyslot)) {
      fail(`Given keyslot ${keyslot} doesn't contain the given old password for erase operation`);
    }
    if (active.length === 1 && !force) {
      fail(`Attempt to erase the only active keyslot ${keyslot} which will erase all the data in the image irreversibly - refusing operation`);
    }
    erase = [keyslot];
  } else if (oldId !== undefined) {
    erase = await matchingSlots(vol, io, secretOf(secrets, oldId));
    if (erase.length === 0) fail('No keyslots match given (old) password for erase operation');
    if (erase.length === active.length && !force) {
      fail('All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation');
    }
  } else {
    fail("To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given");
  }
  for (const i of erase) {
    await eraseSlot(io, vol.header, vol.header.slots[i]!);
    // each erase is recorded before the next, so a crash leaves at most one slot half-erased
    await vol.writeHeader(io);
  }
}
