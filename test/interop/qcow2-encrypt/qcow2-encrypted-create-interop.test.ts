/**
 * Encrypted qcow2 images vdisk creates (LUKS with several ciphers and cluster sizes, legacy AES)
 * pass the real `qemu-img check`, take writes from qemu-io and read back the same bytes through
 * vdisk and qemu-img; images qemu-img creates read the same through vdisk; vdisk's writes into
 * them read back in qemu; encrypt.* amend adds key slots qemu opens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, sha256File, vdisk } from '../../helpers/oracle.ts';

const SEC = ['--object', 'secret,id=sec0,data=123456'];
const SEC1 = ['--object', 'secret,id=sec1,data=hunter1'];
const opts = (f: string, id = 'sec0'): string[] => ['--image-opts', `driver=qcow2,file.filename=${f},encrypt.key-secret=${id}`];

async function rawOf(tool: typeof vdisk, f: string, dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  const r = tool(['convert', ...SEC, ...opts(f), '-O', 'raw', out]);
  assert.equal(r.code, 0, r.stderr);
  return sha256File(out);
}

function checkClean(f: string): void {
  const c = qemuImg(['check', ...SEC, ...opts(f)]);
  assert.equal(c.code, 0, c.stdout + c.stderr);
  assert.match(c.stdout, /No errors were found on the image/);
}

const VARIANTS = [
  'encrypt.format=luks', 'encrypt.format=luks,cluster_size=512', 'encrypt.format=luks,cluster_size=2048,encrypt.cipher-alg=aes-128',
  'encrypt.format=luks,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.hash-alg=sha512', 'encrypt.format=luks,compat=0.10',
  'encrypt.format=luks,preallocation=metadata', 'encrypt.format=aes', 'encryption=on',
];

for (const v of VARIANTS) {
  test(`a qcow2 image vdisk creates with ${v} passes qemu-img check and reads the same after qemu-io writes`, async () => {
    const dir = scratch('vdisk-qenc-');
    const f = join(dir, 'e.qcow2');
    const c = vdisk(['create', '-q', '-f', 'qcow2', ...SEC, '-o', `${v},encrypt.key-secret=sec0${v.includes('luks') ? ',encrypt.iter-time=10' : ''}`, f, '4M']);
    assert.equal(c.code, 0, c.stderr);
    checkClean(f);
    const w = qemuIo([...SEC, ...opts(f), '-c', 'write -P 0x5a 1000 70000', '-c', 'read -P 0x5a 1000 70000']);
    assert.equal(w.code, 0, w.stderr);
    assert.doesNotMatch(w.stdout, /fail/i);
    checkClean(f);
    assert.equal(await rawOf(vdisk, f, dir, 'v.raw'), await rawOf(qemuImg, f, dir, 'q.raw'));
  });
}

for (const v of ['encrypt.format=luks,encrypt.iter-time=10', 'encrypt.format=aes']) {
  test(`a qcow2 image qemu-img creates with ${v} takes vdisk's writes and qemu reads them back`, async () => {
    const dir = scratch('vdisk-qenc-');
    const f = join(dir, 'q.qcow2');
    const src = join(dir, 'src.raw');
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', ...SEC, '-o', `${v},encrypt.key-secret=sec0`, f, '2M']).code, 0);
    assert.equal(qemuIo([...SEC, ...opts(f), '-c', 'write -P 0x11 0 64k']).code, 0);
    assert.equal(await rawOf(vdisk, f, dir, 'v0.raw'), await rawOf(qemuImg, f, dir, 'q0.raw'));
    assert.equal(qemuImg(['create', '-q', '-f', 'raw', src, '2M']).code, 0);
    assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 0x77 4097 300000', src]).code, 0);
    const r = vdisk(['convert', '-n', ...SEC, '-f', 'raw', src, '--target-image-opts', `driver=qcow2,file.filename=${f},encrypt.key-secret=sec0`]);
    assert.equal(r.code, 0, r.stderr);
    checkClean(f);
    assert.equal(await rawOf(qemuImg, f, dir, 'q.raw'), await sha256File(src));
  });
}

test('convert into a new encrypted qcow2 (-O qcow2 -o encrypt.format=luks) gives qemu the source bytes', async () => {
  const dir = scratch('vdisk-qenc-');
  const src = join(dir, 'src.raw');
  const f = join(dir, 'c.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', src, '3M']).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 0x3c 65536 1000000', src]).code, 0);
  const r = vdisk(['convert', ...SEC, '-f', 'raw', '-O', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', src, f]);
  assert.equal(r.code, 0, r.stderr);
  checkClean(f);
  assert.equal(await rawOf(qemuImg, f, dir, 'q.raw'), await sha256File(src));
});

test('encrypt.* amend adds a key slot that qemu opens; --force is needed to overwrite an active one', () => {
  const dir = scratch('vdisk-qenc-');
  const f = join(dir, 'k.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', ...SEC, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', f, '1M']).code, 0);
  const add = vdisk(['amend', ...SEC, ...SEC1, ...opts(f), '-o', 'encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10']);
  assert.equal(add.code, 0, add.stderr);
  assert.equal(qemuIo([...SEC, ...SEC1, ...opts(f, 'sec1'), '-c', 'read 0 512']).code, 0);
  checkClean(f);
  const args = ['amend', ...SEC, ...SEC1, ...opts(f), '-o', 'encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=0'];
  const want = qemuImg(args);
  const got = vdisk(args);
  assert.equal(got.stderr, want.stderr);
  assert.equal(got.code, want.code);
});
