import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();

/** A fresh qcow2 v3 image whose header extensions are replaced by one feature table of `table` bytes. */
function image(name: string, incompat: bigint, autoclear: bigint, table?: Buffer): string {
  const d = join(dir, name);
  mkdirSync(d);
  const r = qemuImg(['create', '-q', '-f', 'qcow2', 't.qcow2', '64M'], { cwd: d });
  assert.equal(r.code, 0, r.stderr);
  const fd = openSync(join(d, 't.qcow2'), 'r+');
  const fields = Buffer.alloc(24);
  fields.writeBigUInt64BE(incompat, 0);
  fields.writeBigUInt64BE(0n, 8);
  fields.writeBigUInt64BE(autoclear, 16);
  writeSync(fd, fields, 0, 24, 72);
  const exts = Buffer.alloc(4096);
  let at = 0;
  if (table) {
    exts.writeUInt32BE(0x6803f857, 0);
    exts.writeUInt32BE(table.length, 4);
    table.copy(exts, 8);
    at = 8 + Math.ceil(table.length / 8) * 8;
  }
  exts.fill(0, at, at + 8);
  writeSync(fd, exts, 0, 4096, 112);
  closeSync(fd);
  return d;
}

function entry(type: number, bit: number, name: string, pad = true): Buffer {
  const b = Buffer.alloc(pad ? 48 : 2 + name.length);
  b[0] = type;
  b[1] = bit;
  b.write(name, 2, 'latin1');
  return b;
}

const cases: Array<[string, bigint, Buffer | undefined]> = [
  ['no table', 1n << 63n, undefined],
  ['short last entry', 1n << 63n, entry(0, 63, 'Test feature', false)],
  ['short entry, more bits set', 7n << 61n, entry(0, 63, 'Test feature', false)],
  ['two named of three', 7n << 61n, Buffer.concat([entry(0, 61, 'test1'), entry(0, 62, 'test2')])],
  ['all named', 7n << 61n, Buffer.concat([entry(0, 61, 'test1'), entry(0, 62, 'test2'), entry(0, 63, 'test3')])],
  ['other types ignored', 7n << 61n, Buffer.concat([entry(1, 61, 'test1'), entry(0, 62, 'test2'), entry(2, 63, 'test3'), entry(0, 60, 'test4')])],
  ['empty name ends the table', 3n << 62n, Buffer.concat([entry(0, 62, 'first'), entry(0, 5, ''), entry(0, 63, 'hidden')])],
];
for (const [label, incompat, table] of cases) {
  test(`info on an image with unknown incompatible bits names them from the feature table as qemu-img does: ${label}`, () => {
    const d = image(label.replace(/\W+/g, '-'), incompat, 0n, table);
    const want = qemuImg(['info', 't.qcow2'], { cwd: d });
    const got = vdisk(['info', 't.qcow2'], { cwd: d });
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

test('check -r all clears unknown autoclear bits even when nothing needs repairing, as qemu-img does', () => {
  const d = image('autoclear', 0n, 1n << 63n, entry(0, 0, 'dirty bit'));
  const v = join(d, 'v');
  const q = join(d, 'q');
  mkdirSync(v);
  mkdirSync(q);
  copyFileSync(join(d, 't.qcow2'), join(v, 't.qcow2'));
  copyFileSync(join(d, 't.qcow2'), join(q, 't.qcow2'));
  const want = qemuImg(['check', '-r', 'all', 't.qcow2'], { cwd: q });
  const got = vdisk(['check', '-r', 'all', 't.qcow2'], { cwd: v });
  assert.deepEqual(got, want);
  const header = (p: string): Buffer => readFileSync(join(p, 't.qcow2')).subarray(0, 104);
  assert.deepEqual(header(v), header(q));
  assert.equal(header(v).readBigUInt64BE(88), 0n);
});
