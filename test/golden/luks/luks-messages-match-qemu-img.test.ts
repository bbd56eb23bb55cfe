/**
 * What qemu-img says for bad LUKS options and hostile LUKS headers (luks format and qcow2's
 * encrypt.*), and what measure prints with LUKS: same stdout, stderr and exit code as the real
 * qemu-img. Option checks fail before any PBKDF2 benchmark, so these are quick.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const SEC = ['--object', 'secret,id=sec0,data=123456'];

function same(args: string[], cwd: string): void {
  const want = qemuImg(args, { cwd });
  const got = vdisk(args, { cwd });
  assert.equal(got.stderr, want.stderr, `stderr of ${args.join(' ')}`);
  assert.equal(got.stdout, want.stdout, `stdout of ${args.join(' ')}`);
  assert.equal(got.code, want.code, `exit code of ${args.join(' ')}`);
}

const BAD_LUKS = [
  'hash-alg=foo', 'cipher-mode=foo', 'ivgen-alg=foo', 'ivgen-hash-alg=foo', 'cipher-alg=sm4', 'iter-time=foo',
  'cipher-alg=des,cipher-mode=cbc', 'cipher-alg=cast5-128,cipher-mode=xts', 'cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha1',
  'key-secret=nosuch', 'preallocation=foo',
];

for (const o of BAD_LUKS) {
  test(`create -f luks -o ${o} fails as qemu-img does`, () => {
    const dir = scratch('vdisk-luksmsg-');
    same(['create', '-f', 'luks', ...SEC, '-o', `key-secret=sec0,iter-time=10,${o}`, 'x.luks', '1M'], dir);
  });
}

test('create -f luks without key-secret fails as qemu-img does', () => {
  same(['create', '-f', 'luks', '-o', 'iter-time=10', 'x.luks', '1M'], scratch('vdisk-luksmsg-'));
});

const BAD_QCOW2 = [
  'encrypt.key-secret=sec0', 'encryption=on', 'encrypt.format=aes', 'encrypt.format=aes,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128',
  'encryption=off,encrypt.key-secret=sec0', 'encrypt.format=luks', 'encrypt.format=foo',
  'encrypt.format=luks,encrypt.key-secret=sec0,encryption=on', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.hash-alg=foo',
  'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=foo',
];

for (const o of BAD_QCOW2) {
  test(`create -f qcow2 -o ${o} fails as qemu-img does`, () => {
    same(['create', '-f', 'qcow2', ...SEC, '-o', o, 'x.qcow2', '1M'], scratch('vdisk-luksmsg-'));
  });
}

test('-o help of create -f luks and amend -f luks/qcow2 list what qemu-img lists', () => {
  const dir = scratch('vdisk-luksmsg-');
  same(['create', '-f', 'luks', '-o', 'help'], dir);
  same(['amend', '-f', 'luks', '-o', 'help'], dir);
  same(['amend', '-f', 'qcow2', '-o', 'help'], dir);
});

// qemu's measure builds a LUKS header in memory (PBKDF2 benchmark included), so keep these few
for (const [o, size] of [
  [['-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'], '1G'],
  [['-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,cluster_size=512,encrypt.cipher-alg=aes-128,encrypt.iter-time=10'], '7T'],
  [['-O', 'qcow2', '-o', 'encrypt.format=aes,encrypt.key-secret=sec0'], '1G'],
  [['-O', 'luks', '-o', 'key-secret=sec0,iter-time=10'], '0'],
  [['-O', 'luks', '-o', 'key-secret=sec0,cipher-alg=aes-128,cipher-mode=cbc,iter-time=10'], '1G'],
  [['-O', 'luks'], '1G'],
] as const) {
  test(`measure ${o.join(' ')} --size ${size} prints what qemu-img prints`, () => {
    same(['measure', '--output=json', ...SEC, ...o, '--size', size], scratch('vdisk-luksmsg-'));
  });
}

/** Patch big-endian u32 values into a copy of a qemu-made volume and compare the open errors. */
test('hostile LUKS headers are refused with qemu-img messages (info and an unlocking open)', () => {
  const dir = scratch('vdisk-luksmsg-');
  const base = join(dir, 'base.luks');
  assert.equal(qemuImg(['create', '-q', '-f', 'luks', ...SEC, '-o', 'key-secret=sec0,iter-time=10', base, '1M']).code, 0);
  const patches: Array<[number, number]> = [
    [252, 4001], [252, 0], [296, 8], [108, 0], [108, 1000], [212, 0], [164, 0], [104, 1], [104, 0xffffff], [248, 1], [208, 0x12345678],
  ];
  for (const [off, val] of patches) {
    const f = join(dir, `p${off}-${val}.luks`);
    copyFileSync(base, f);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(val);
    const fd = openSync(f, 'r+');
    writeSync(fd, b, 0, 4, off);
    closeSync(fd);
    same(['info', `p${off}-${val}.luks`], dir);
    same(['convert', ...SEC, '--image-opts', `driver=luks,file.filename=p${off}-${val}.luks,key-secret=sec0`, '-O', 'raw', 'out.raw'], dir);
  }
});
