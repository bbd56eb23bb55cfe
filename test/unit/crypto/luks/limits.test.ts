import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LuksVolume } from '../../../../dist/crypto/luks/volume.js';
import { decodeLuksHeader, encodeLuksHeader, LUKS_STRIPES, SLOT_ACTIVE } from '../../../../dist/crypto/luks/header.js';
import { MAX_LUKS_ITERATIONS, MAX_LUKS_UNLOCK_ITERATIONS, scaledIterations } from '../../../../dist/crypto/luks/pbkdf.js';
import { makeVolume } from './helpers.ts';

const where = { path: 'x.luks', format: 'luks' };
const secret = Buffer.from('123456');

async function crafted(edit: (h: ReturnType<typeof decodeLuksHeader>) => void) {
  const v = await makeVolume(secret);
  const h = decodeLuksHeader(v.io.buf.subarray(0, 592));
  edit(h);
  v.io.buf.set(encodeLuksHeader(h), 0);
  return v.io;
}

test('a volume made here unlocks with its passphrase and refuses another', async () => {
  const { io, masterKey } = await makeVolume(secret);
  const vol = await LuksVolume.read(io, where);
  await vol.unlock(io, secret);
  assert.deepEqual(vol.key, masterKey);
  const other = await LuksVolume.read(io, where);
  await assert.rejects(other.unlock(io, Buffer.from('nope')), /Invalid password, cannot unlock any keyslot/);
});

test('a key slot asking for more than MAX_LUKS_ITERATIONS is refused before any PBKDF2 work', async () => {
  const io = await crafted((h) => { h.slots[0]!.iterations = 0xffffffff; });
  const vol = await LuksVolume.read(io, where);
  // a 'limit' error, not a PBKDF2 run of 2^32 iterations (minutes) ending in a wrong-password error
  await assert.rejects(vol.unlock(io, secret), (e: Error & { kind?: string }) => e.kind === 'limit' && /iteration count exceeds/.test(e.message));
  assert.ok(MAX_LUKS_ITERATIONS < 0xffffffff);
});

test('a master key digest iteration count over the limit is refused too', async () => {
  const io = await crafted((h) => { h.mkDigestIterations = MAX_LUKS_ITERATIONS + 1; });
  const vol = await LuksVolume.read(io, where);
  await assert.rejects(vol.unlock(io, secret), (e: Error & { kind?: string }) => e.kind === 'limit');
});

test('all slots together may not exceed MAX_LUKS_UNLOCK_ITERATIONS (a wrong password tries each)', async () => {
  const io = await crafted((h) => {
    for (const s of h.slots) { s.active = SLOT_ACTIVE; s.iterations = MAX_LUKS_ITERATIONS; }
  });
  const vol = await LuksVolume.read(io, where);
  // slot 0 itself is cheap to reach, but its recorded count is at the per-slot limit: the sum check trips first
  assert.throws(() => vol.checkWork(MAX_LUKS_ITERATIONS, MAX_LUKS_UNLOCK_ITERATIONS - MAX_LUKS_ITERATIONS + 1), /iteration count exceeds/);
  assert.doesNotThrow(() => vol.checkWork(1000, 0));
});

test('stripes other than 4000 are refused with qemu message', async () => {
  for (const n of [0, LUKS_STRIPES + 1, 0xffffffff]) {
    const io = await crafted((h) => { h.slots[3]!.stripes = n; });
    await assert.rejects(LuksVolume.read(io, where), new RegExp(`Keyslot 3 is corrupted \\(stripes ${n} != 4000\\)`));
  }
});

test('key material overlapping the header, the payload or another slot is refused as qemu does', async () => {
  const cases: Array<[(h: ReturnType<typeof decodeLuksHeader>) => void, RegExp]> = [
    [(h) => { h.slots[0]!.keyMaterialOffset = 1; }, /Keyslot 0 is overlapping with the LUKS header/],
    [(h) => { h.slots[0]!.keyMaterialOffset = 0x7fffffff; }, /Keyslot 0 is overlapping with the encrypted payload/],
    [(h) => { h.slots[1]!.keyMaterialOffset = 9; }, /Keyslots 0 and 1 are overlapping in the header/],
    [(h) => { h.keyBytes = 1000; }, /Keyslot 0 is overlapping with the encrypted payload/],
    [(h) => { h.payloadOffset = 1; }, /LUKS payload is overlapping with the header/],
    [(h) => { h.slots[2]!.active = 0x12345678; }, /Keyslot 2 state \(active\/disable\) is corrupted/],
    [(h) => { h.slots[0]!.iterations = 0; }, /Keyslot 0 iteration count is zero/],
    [(h) => { h.mkDigestIterations = 0; }, /LUKS key iteration count is zero/],
    [(h) => { h.version = 2; }, /LUKS version 2 is not supported/],
    [(h) => { h.keyBytes = 0; }, /Algorithm 'aes' with key size 0 bytes not supported/],
    [(h) => { h.cipherMode = 'xts'; }, /Unexpected cipher mode string format 'xts'/],
    [(h) => { h.cipherMode = 'foo-plain64'; }, /Cipher mode 'foo' not supported/],
    [(h) => { h.cipherMode = 'xts-foo'; }, /IV generator 'foo' not supported/],
    [(h) => { h.hashSpec = 'md4'; }, /Hash algorithm 'md4' not supported/],
  ];
  for (const [edit, msg] of cases) {
    const io = await crafted(edit);
    await assert.rejects(LuksVolume.read(io, where), msg);
  }
});

test('iteration scaling reports overflow with qemu wording and keeps its floors', () => {
  assert.equal(scaledIterations(100, 10n, 1, 1000), 1000);
  assert.equal(scaledIterations(1_000_000, 2000n, 8, 1000), 250_000);
  assert.throws(() => scaledIterations(6_000_000, (1n << 64n) - 1n, 1, 1000), /PBKDF iterations 6000000 too large to scale: Numerical result out of range/);
  assert.throws(() => scaledIterations(6_000_000, 1n << 40n, 1, 1000), /larger than 4294967295/);
});
