/**
 * The file protocol's failures come out as qemu words them, whatever node:fs API it calls: a
 * failed open names the file and the system's reason (kind from the errno), a failed read or
 * write names the byte, a read past the end of the file reads zeros, and offsets past 4 GiB work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileProtocol, fileExists } from '../../../dist/protocols/file.js';
import { VdiskError } from '../../../dist/block/errors.js';
import { scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-file-errors-');

function vdiskError(kind: string, message: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof VdiskError, `not a VdiskError: ${String(e)}`);
    assert.equal(e.message, message);
    assert.equal(e.kind, kind);
    return true;
  };
}

test('opening a missing file fails with ENOENT as qemu words it', async () => {
  const p = join(dir, 'missing.img');
  await assert.rejects(FileProtocol.open(p, { readOnly: true }), vdiskError('not-found', `Could not open '${p}': No such file or directory`));
  const q = join(dir, 'no-such-dir', 'new.img');
  await assert.rejects(FileProtocol.open(q, { readOnly: false, create: true }), vdiskError('not-found', `Could not create '${q}': No such file or directory`));
  assert.equal(await fileExists(p), false);
});

test('opening a directory read-write fails with EISDIR; read-only, as not a regular file', async () => {
  const d = join(dir, 'a-dir');
  mkdirSync(d);
  await assert.rejects(FileProtocol.open(d, { readOnly: false }), vdiskError('io', `Could not open '${d}': Is a directory`));
  await assert.rejects(FileProtocol.open(d, { readOnly: true }), vdiskError('invalid-argument', `'file' driver requires '${d}' to be a regular file`));
  assert.equal(await fileExists(d), true);
});

test('opening a file without permission fails with EACCES as qemu words it', async (t) => {
  const locked = join(dir, 'locked');
  mkdirSync(locked, { mode: 0o700 });
  const p = join(locked, 'f.img');
  writeFileSync(p, Buffer.alloc(512));
  chmodSync(p, 0o000);
  const expected = { kind: 'permission', message: `Could not open '${p}': Permission denied` };
  if (process.getuid?.() !== 0) {
    await assert.rejects(FileProtocol.open(p, { readOnly: true }), vdiskError(expected.kind, expected.message));
    return;
  }
  // root reads any file: open it as nobody, who may not even enter the directory
  const url = new URL('../../../dist/protocols/file.js', import.meta.url).href;
  const script = `const { FileProtocol } = await import(${JSON.stringify(url)});
    try { await FileProtocol.open(${JSON.stringify(p)}, { readOnly: true }); console.log('opened'); }
    catch (e) { console.log(JSON.stringify({ kind: e.kind, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    t.skip(`cannot run as nobody here: ${r.error?.message ?? r.stderr}`);
    return;
  }
  assert.deepEqual(JSON.parse(r.stdout), expected);
});

test('a read past the end of the file is filled with zeros, a read across it with the rest', async () => {
  const p = join(dir, 'short.img');
  writeFileSync(p, Buffer.alloc(1000, 0xab));
  const f = await FileProtocol.open(p, { readOnly: true });
  try {
    const across = new Uint8Array(4096).fill(0xee);
    await f.pread(across, 512);
    assert.deepEqual(across.subarray(0, 488), new Uint8Array(488).fill(0xab));
    assert.deepEqual(across.subarray(488), new Uint8Array(4096 - 488));
    const past = new Uint8Array(512).fill(0xee);
    await f.pread(past, 1 << 20);
    assert.deepEqual(past, new Uint8Array(512));
  } finally {
    await f.close();
  }
});

test('writes and reads beyond 4 GiB reach the offsets asked for', async () => {
  const p = join(dir, 'big.img');
  const f = await FileProtocol.open(p, { readOnly: false, create: true });
  const at = 5 * 2 ** 30 + 12345;
  try {
    await f.pwrite(new Uint8Array(100).fill(0x5a), at);
    assert.equal(await f.size(), at + 100);
    const back = new Uint8Array(102);
    await f.pread(back, at - 1);
    assert.deepEqual(back, Uint8Array.from([0, ...new Array(100).fill(0x5a), 0]));
    await f.truncate(at);
    assert.equal(statSync(p).size, at);
  } finally {
    await f.close();
  }
});

test('a failed write names the byte it failed at and the reason', async (t) => {
  let f: FileProtocol;
  try {
    f = await FileProtocol.open('/dev/full', { readOnly: false });
  } catch {
    t.skip('no writable /dev/full here');
    return;
  }
  try {
    await assert.rejects(f.pwrite(new Uint8Array(512), 4096), vdiskError('io', 'error while writing at byte 4096: No space left on device'));
  } finally {
    await f.close();
  }
});

test('calls on a closed file fail with EBADF at the byte asked for; closing twice is harmless', async () => {
  const p = join(dir, 'closed.img');
  writeFileSync(p, Buffer.alloc(4096));
  const f = await FileProtocol.open(p, { readOnly: false });
  const pending = f.pread(new Uint8Array(4096), 0);
  await f.close();
  await pending;
  await f.close();
  assert.equal(f.fd, -1);
  const ebadf = (prefix: string) => (e: unknown) =>
    e instanceof VdiskError && e.kind === 'io' && e.code === 'EBADF' && e.message.startsWith(prefix);
  await assert.rejects(f.pread(new Uint8Array(10), 50), ebadf('error while reading at byte 50: '));
  await assert.rejects(f.pwrite(new Uint8Array(10), 70), ebadf('error while writing at byte 70: '));
  await assert.rejects(f.flush(), ebadf('Failed to flush: '));
  await assert.rejects(f.size(), (e: unknown) => (e as { code?: string }).code === 'EBADF');
});
