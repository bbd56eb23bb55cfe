/**
 * The luks format against the real qemu-img/qemu-io: volumes vdisk creates (every AES mode and IV
 * generator vdisk offers) open and read back in qemu, volumes qemu creates read the same through
 * vdisk, info is identical for the same file, and key slots added by vdisk's amend open in qemu.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, sha256File, vdisk, type RunResult } from '../../helpers/oracle.ts';

const SEC = ['--object', 'secret,id=sec0,data=123456'];
const SEC1 = ['--object', 'secret,id=sec1,data=hunter1'];
const opts = (f: string, id = 'sec0'): string[] => ['--image-opts', `driver=luks,file.filename=${f},key-secret=${id}`];

/** The command succeeded; its stderr is the message when it did not (a CI failure must say why). */
function ok(r: RunResult): void {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
}

async function rawOf(tool: typeof vdisk, f: string, dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  const r = tool(['convert', ...SEC, ...opts(f), '-O', 'raw', out]);
  assert.equal(r.code, 0, r.stderr);
  return sha256File(out);
}

const VARIANTS = [
  '', 'cipher-alg=aes-128', 'cipher-alg=aes-192', 'cipher-mode=cbc,ivgen-alg=essiv', 'cipher-mode=ecb',
  'cipher-alg=aes-128,cipher-mode=ctr,ivgen-alg=plain,hash-alg=sha1', 'cipher-alg=aes-192,cipher-mode=xts,ivgen-alg=essiv,ivgen-hash-alg=sha256,hash-alg=sha512',
];

for (const v of VARIANTS) {
  test(`a luks volume vdisk creates with '${v || 'defaults'}' is read and written by qemu-io with the same bytes vdisk reads`, async () => {
    const dir = scratch('vdisk-luks-');
    const f = join(dir, 'a.luks');
    const c = vdisk(['create', '-q', '-f', 'luks', ...SEC, '-o', `key-secret=sec0,iter-time=10${v ? `,${v}` : ''}`, f, '4M']);
    assert.equal(c.code, 0, c.stderr);
    const w = qemuIo([...SEC, ...opts(f), '-c', 'write -P 0x5a 1000 70000', '-c', 'read -P 0x5a 1000 70000']);
    assert.equal(w.code, 0, w.stderr);
    assert.doesNotMatch(w.stdout, /fail/i);
    assert.equal(await rawOf(vdisk, f, dir, 'v.raw'), await rawOf(qemuImg, f, dir, 'q.raw'));
  });
}

test('a luks volume qemu-img creates reads the same through vdisk, and info matches byte for byte', async () => {
  const dir = scratch('vdisk-luks-');
  const f = join(dir, 'q.luks');
  ok(qemuImg(['create', '-q', '-f', 'luks', ...SEC, '-o', 'key-secret=sec0,iter-time=10', f, '2M']));
  ok(qemuIo([...SEC, ...opts(f), '-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1500000 3']));
  assert.equal(await rawOf(vdisk, f, dir, 'v.raw'), await rawOf(qemuImg, f, dir, 'q.raw'));
  for (const out of ['human', 'json']) {
    const want = qemuImg(['info', `--output=${out}`, f]);
    const got = vdisk(['info', `--output=${out}`, f]);
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.code, want.code);
  }
});

test('vdisk writes to a qemu-made luks volume (convert -n) are read back by qemu-img', async () => {
  const dir = scratch('vdisk-luks-');
  const f = join(dir, 'q.luks');
  const src = join(dir, 'src.raw');
  ok(qemuImg(['create', '-q', '-f', 'luks', ...SEC, '-o', 'key-secret=sec0,iter-time=10', f, '1M']));
  ok(qemuImg(['create', '-q', '-f', 'raw', src, '1M']));
  ok(qemuIo(['-f', 'raw', '-c', 'write -P 0x77 4097 300000', src]));
  const r = vdisk(['convert', '-n', ...SEC, '-f', 'raw', src, '--target-image-opts', `driver=luks,file.filename=${f},key-secret=sec0`]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await rawOf(qemuImg, f, dir, 'q.raw'), await sha256File(src));
});

test('resize of a luks volume keeps its data, qemu sees the new size and reads what vdisk reads', async () => {
  const dir = scratch('vdisk-luks-');
  const f = join(dir, 'r.luks');
  ok(vdisk(['create', '-q', '-f', 'luks', ...SEC, '-o', 'key-secret=sec0,iter-time=10', f, '1M']));
  ok(qemuIo([...SEC, ...opts(f), '-c', 'write -P 0x42 0 1M']));
  const r = vdisk(['resize', ...SEC, ...opts(f), '3M']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(qemuImg(['info', '--output=json', f]).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], 3 << 20);
  // as with qemu's own resize, the new sectors are zeros on disk and so decrypt to noise
  assert.doesNotMatch(qemuIo([...SEC, ...opts(f), '-c', 'read -P 0x42 0 1M']).stdout, /fail/i);
  assert.equal(await rawOf(vdisk, f, dir, 'v.raw'), await rawOf(qemuImg, f, dir, 'q.raw'));
});

test('a key slot added by vdisk amend opens the volume in qemu, and erasing the old one locks it out', () => {
  const dir = scratch('vdisk-luks-');
  const f = join(dir, 'k.luks');
  ok(qemuImg(['create', '-q', '-f', 'luks', ...SEC, '-o', 'key-secret=sec0,iter-time=10', f, '1M']));
  const add = vdisk(['amend', ...SEC, ...SEC1, ...opts(f), '-o', 'state=active,new-secret=sec1,iter-time=10,keyslot=5']);
  assert.equal(add.code, 0, add.stderr);
  ok(qemuIo([...SEC, ...SEC1, ...opts(f, 'sec1'), '-c', 'read 0 512']));
  const erase = vdisk(['amend', ...SEC, ...SEC1, ...opts(f, 'sec1'), '-o', 'state=inactive,old-secret=sec0']);
  assert.equal(erase.code, 0, erase.stderr);
  assert.match(qemuIo([...SEC, ...opts(f), '-c', 'read 0 512']).stderr, /Invalid password, cannot unlock any keyslot/);
  const info = JSON.parse(qemuImg(['info', '--output=json', f]).stdout) as { 'format-specific': { data: { slots: Array<{ active: boolean }> } } };
  assert.deepEqual(info['format-specific'].data.slots.map((s) => s.active), [false, false, false, false, false, true, false, false]);
});
