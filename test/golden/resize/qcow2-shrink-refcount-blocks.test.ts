import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, statSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';
import { poke } from '../../helpers/patch.ts';

// A shrink drops the refcount blocks left counting nothing from the refcount table (qemu's
// iotest 163 reads the table back), and qemu's discard of the cut range gives the L2 table the new
// end falls in a place; the files must come out byte for byte as qemu-img leaves them.

/** The same image made twice (one for each program), by qemu-img and qemu-io, then patched. */
function twins(make: (dir: string) => void): [string, string] {
  const a = scratch();
  const b = scratch();
  make(a);
  make(b);
  return [a, b];
}

/** Size and bytes equal; the repaired images of the damaged cases are sparse files of 64 GiB, so
 * past their first 64 MiB (which hold all the metadata they have) only the size is compared. */
function sameFiles(a: string, b: string, what: string): void {
  const [x, y] = [join(a, 't.qcow2'), join(b, 't.qcow2')];
  assert.equal(statSync(y).size, statSync(x).size, `${what}: file size`);
  assert.ok(head(y).equals(head(x)), `${what}: image bytes differ from qemu-img's`);
}

const COMPARED_BYTES = 64 << 20;
function head(file: string): Buffer {
  const buf = Buffer.alloc(Math.min(COMPARED_BYTES, statSync(file).size));
  const fd = openSync(file, 'r');
  try {
    readSync(fd, buf, 0, buf.length, 0);
  } finally {
    closeSync(fd);
  }
  return buf;
}

for (const [name, create, write, to] of [
  ['an empty image', ['-o', 'cluster_size=65536'], undefined, '32M'],
  ['512-byte clusters written past several refcount blocks', ['-o', 'cluster_size=512,refcount_bits=16'], 'write -P 0xff 0 2M', '512k'],
  ['1-bit refcounts and 4 KiB clusters', ['-o', 'cluster_size=4096,refcount_bits=1'], 'write -P 0x5a 1M 20M', '3M'],
] as const) {
  test(`resize --shrink of ${name} leaves the file as qemu-img does`, () => {
    const [a, b] = twins((d) => {
      assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', ...create, 't.qcow2', '64M'], { cwd: d }).code, 0);
      if (write) assert.equal(qemuIo(['-c', write, join(d, 't.qcow2')]).code, 0);
    });
    const argv = ['resize', '--shrink', 't.qcow2', to];
    assert.deepEqual(vdisk(argv, { cwd: b }), qemuImg(argv, { cwd: a }));
    sameFiles(a, b, argv.join(' '));
    const check = qemuImg(['check', 't.qcow2'], { cwd: b });
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });
}

// iotest 060: refcount table entries naming refcount blocks that nothing covers
const RT = 0x10000;
for (const [name, opts, patches] of [
  ['a refcount block far past the end of the file', [], [[RT + 8, [0, 0xff, 0xff, 0xff, 0, 0, 0, 0]]]],
  ['a refcount block no refcount block covers', ['-o', 'refcount_bits=1'], [[RT + 8, [0, 0, 0, 0x10, 0, 0, 0, 0]]]],
  ['a refcount block covered by an unaligned one', ['-o', 'refcount_bits=1'], [[RT + 8, [0, 0, 0, 0x10, 0, 0, 0, 0]], [RT + 16, [0, 0, 0, 0, 0, 0, 2, 0]]]],
] as const) {
  test(`resize --shrink over ${name} fails, marks the image corrupt and is repaired as in qemu-img`, () => {
    const [a, b] = twins((d) => {
      assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', ...opts, 't.qcow2', '64M'], { cwd: d }).code, 0);
      for (const [at, bytes] of patches) poke(join(d, 't.qcow2'), at, [...bytes]);
    });
    const shrink = ['resize', '--shrink', 't.qcow2', '32M'];
    const want = qemuImg(shrink, { cwd: a });
    assert.match(want.stderr, /Marking image as corrupt/);
    assert.deepEqual(vdisk(shrink, { cwd: b }), want);
    sameFiles(a, b, 'after the failed shrink');
    for (const argv of [['info', '--output=json', 't.qcow2'], ['check', '-r', 'all', 't.qcow2']]) {
      const q = qemuImg(argv, { cwd: a });
      const v = qemuImg(argv, { cwd: b });
      assert.deepEqual({ ...v, stdout: v.stdout.replaceAll(b, a) }, q, argv.join(' '));
    }
    // a write open of a corrupt image is refused; once repaired it shrinks
    assert.deepEqual(vdisk(shrink, { cwd: b }), qemuImg(shrink, { cwd: a }));
    sameFiles(a, b, 'after the repaired shrink');
  });
}

test('resize of an image with the corrupt bit set is refused as in qemu-img', () => {
  const [a, b] = twins((d) => {
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 't.qcow2', '64M'], { cwd: d }).code, 0);
    poke(join(d, 't.qcow2'), 79, [0x02]);
  });
  const argv = ['resize', '--shrink', 't.qcow2', '32M'];
  const want = qemuImg(argv, { cwd: a });
  assert.notEqual(want.code, 0);
  const got = vdisk(argv, { cwd: b });
  assert.deepEqual({ ...got, stderr: got.stderr.replaceAll(b, a) }, want);
});
