import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';
import { poke } from '../../helpers/patch.ts';

// iotest 080: qemu-img opens images whose snapshot table or active L2 table is damaged and fails
// the snapshot operation itself, with its own wording (and for creation, with the clusters it
// had allocated before failing): vdisk must say and leave the same.

const be64 = (n: bigint): number[] => Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(56 - 8 * i)) & 0xffn));
const be32 = (n: number): number[] => [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

/** One image per program, made the same way. */
function twins(make: (image: string, dir: string) => void): [string, string] {
  const dirs: [string, string] = [scratch(), scratch()];
  for (const d of dirs) {
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 't.qcow2', '64M'], { cwd: d }).code, 0);
    make(join(d, 't.qcow2'), d);
  }
  return dirs;
}

function same(argv: string[], a: string, b: string): void {
  const want = qemuImg(argv, { cwd: a });
  assert.notEqual(want.code, 0, `${argv.join(' ')} should fail`);
  const got = vdisk(argv, { cwd: b });
  assert.deepEqual({ ...got, stderr: got.stderr.replaceAll(b, a) }, want, argv.join(' '));
}

function sameBytes(a: string, b: string, what: string): void {
  assert.ok(readFileSync(join(b, 't.qcow2')).equals(readFileSync(join(a, 't.qcow2'))), `${what}: image bytes differ from qemu-img's`);
}

test('snapshot -c on a table already holding the most snapshots qemu allows fails with EFBIG', () => {
  const [a, b] = twins((img) => {
    poke(img, 64, be64(0x1000000n));
    poke(img, 60, be32(65536));
  });
  same(['snapshot', '-c', 'test', 't.qcow2'], a, b);
  sameBytes(a, b, 'snapshot -c');
});

for (const [name, entry] of [
  ['past any refcount table qemu can make (EFBIG)', 0xbfffffffffff0000n],
  ['under a refcount block that does not exist yet (EAGAIN, the block is made)', 0x80000000ffffff0000n & 0xffffffffffffffffn],
] as const) {
  test(`snapshot -c of an image whose L2 entry points ${name} fails as in qemu-img`, () => {
    const [a, b] = twins((img) => {
      assert.equal(qemuIo(['-c', 'write 0 512', img]).code, 0);
      poke(img, 0x40000, be64(entry));
    });
    same(['snapshot', '-c', 'test', 't.qcow2'], a, b);
    sameBytes(a, b, 'snapshot -c');
  });
}

for (const [name, at, bytes] of [
  ['offset is not cluster aligned', 0x70000, be64(0x400200n)],
  ['size is past qemu\'s limit', 0x70008, be32(0x10000000)],
] as const) {
  test(`convert -l, snapshot -a and snapshot -d of a snapshot whose L1 table ${name} fail as in qemu-img`, () => {
    const [a, b] = twins((img, d) => {
      assert.equal(qemuIo(['-c', 'write 0 512', img]).code, 0);
      assert.equal(qemuImg(['snapshot', '-c', 'test', 't.qcow2'], { cwd: d }).code, 0);
      poke(img, at, [...bytes]);
    });
    // the twins' snapshots differ in their dates: each program must leave its image untouched
    const before = [a, b].map((d) => readFileSync(join(d, 't.qcow2')));
    same(['convert', '-l', 'test', 't.qcow2', 't.snap'], a, b);
    same(['snapshot', '-a', 'test', 't.qcow2'], a, b);
    same(['snapshot', '-d', 'test', 't.qcow2'], a, b);
    [a, b].forEach((d, i) => assert.ok(readFileSync(join(d, 't.qcow2')).equals(before[i]!), `${d === a ? 'qemu-img' : 'vdisk'} changed the image`));
  });
}
