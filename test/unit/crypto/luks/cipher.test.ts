import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { SectorCipher, checkCipherAvailable, xtsOverEcb, type CipherSpec } from '../../../../dist/crypto/luks/cipher.js';
import { afMerge, afSplit } from '../../../../dist/crypto/luks/afsplit.js';

test('every AES mode and IV generator decrypts what it encrypted, sector by sector', () => {
  for (const alg of ['aes-128', 'aes-192', 'aes-256']) {
    for (const mode of ['xts', 'cbc', 'ecb', 'ctr']) {
      for (const ivgen of ['plain', 'plain64', 'essiv']) {
        const spec = { alg, mode, ivgen, ...(ivgen === 'essiv' ? { ivHash: 'sha256' } : {}) } as CipherSpec;
        const keyBytes = (Number(alg.slice(4)) / 8) * (mode === 'xts' ? 2 : 1);
        const c = new SectorCipher(spec, randomBytes(keyBytes));
        const plain = randomBytes(2048);
        const buf = Buffer.from(plain);
        c.encrypt(buf, 7);
        assert.notDeepEqual(buf, plain, `${alg}-${mode}-${ivgen} changes the data`);
        c.decrypt(buf, 7);
        assert.deepEqual(buf, plain, `${alg}-${mode}-${ivgen} round-trips`);
      }
    }
  }
});

test('XTS built over ECB (for AES-192, which OpenSSL lacks) matches OpenSSL XTS on AES-128 and AES-256 keys', () => {
  for (const bits of [128, 256]) {
    const key = randomBytes(bits / 4);
    const sector = randomBytes(512);
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(5n);
    const x = createCipheriv(`aes-${bits}-xts`, key, iv);
    const expect = Buffer.concat([x.update(sector), x.final()]);
    assert.deepEqual(xtsOverEcb(`aes-${bits}`, key, iv, sector, true), expect);
    assert.deepEqual(xtsOverEcb(`aes-${bits}`, key, iv, expect, false), sector);
  }
});

test('each batched mode equals OpenSSL running that mode sector by sector with plain64 IVs', () => {
  for (const [alg, mode, keyBytes] of [['aes-128', 'xts', 32], ['aes-256', 'xts', 64], ['aes-128', 'cbc', 16], ['aes-256', 'cbc', 32],
    ['aes-192', 'cbc', 24], ['aes-256', 'ctr', 32], ['aes-128', 'ecb', 16]] as const) {
    const key = randomBytes(keyBytes);
    const plain = randomBytes(512 * 5);
    const expect = Buffer.alloc(plain.length);
    for (let s = 0; s < 5; s++) {
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64LE(BigInt(1000 + s));
      const c = createCipheriv(`${alg}-${mode}`, key, mode === 'ecb' ? null : iv).setAutoPadding(false);
      Buffer.concat([c.update(plain.subarray(s * 512, (s + 1) * 512)), c.final()]).copy(expect, s * 512);
    }
    const buf = Buffer.from(plain);
    const sc = new SectorCipher({ alg, mode, ivgen: 'plain64' }, key);
    sc.encrypt(buf, 1000);
    assert.deepEqual(buf, expect, `${alg}-${mode} encrypts as OpenSSL does`);
    sc.decrypt(buf, 1000);
    assert.deepEqual(buf, plain, `${alg}-${mode} decrypts back`);
  }
});

test('plain IVs wrap at 2^32 sectors while plain64 IVs do not', () => {
  const key = randomBytes(32);
  const a = new SectorCipher({ alg: 'aes-128', mode: 'xts', ivgen: 'plain' }, key);
  const b = new SectorCipher({ alg: 'aes-128', mode: 'xts', ivgen: 'plain64' }, key);
  const s = (c: SectorCipher, n: number): Buffer => { const x = Buffer.alloc(512); c.encrypt(x, n); return x; };
  assert.deepEqual(s(a, 2 ** 32 + 3), s(a, 3));
  assert.notDeepEqual(s(b, 2 ** 32 + 3), s(b, 3));
});

test('ciphers qemu can create but Node cannot are refused by name; ESSIV needs a digest AES can key', () => {
  assert.throws(() => checkCipherAvailable({ alg: 'twofish-256', mode: 'xts', ivgen: 'plain64' } as CipherSpec), /vdisk does not support the LUKS cipher 'twofish-256'/);
  assert.throws(() => checkCipherAvailable({ alg: 'cast5-128', mode: 'xts', ivgen: 'plain64' }), /Unsupported cipher mode xts/);
  assert.throws(() => checkCipherAvailable({ alg: 'des', mode: 'cbc', ivgen: 'plain64' }), /Algorithm 'des' not supported/);
  assert.throws(() => checkCipherAvailable({ alg: 'aes-256', mode: 'cbc', ivgen: 'essiv', ivHash: 'sha1' }), /No AES cipher with key size 20 available/);
});

test('anti-forensic split and merge give back the key, and a damaged stripe loses it', () => {
  const key = randomBytes(64);
  const m = afSplit(key, 4000, 'sha256');
  assert.equal(m.length, 64 * 4000);
  assert.deepEqual(afMerge(m, 64, 4000, 'sha256'), key);
  m[1000]! ^= 1;
  assert.notDeepEqual(afMerge(m, 64, 4000, 'sha256'), key);
});
