/**
 * measure's argument checks in qemu-img's order (iotest 178): one filename at most, --image-opts,
 * -f and -l need a filename, -l snapshot.* option lists are checked while parsing; sizes past
 * 2^53 print exactly in both output formats.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '1M']);

const cases: string[][] = [
  ['a.qcow2', 'b'], ['--image-opts'], ['-f', 'qcow2'], ['-l', 'snap1'], ['-l', 'snapshot.foo=bar'],
  ['-l', 'snapshot.id=1,snapshot.foo=2', 'a.qcow2'], ['-l', 'foo=bar', 'a.qcow2'], ['-l', 'snapshot.name=none', 'a.qcow2'],
  ['--object', 'secret,id=sec0,data=MTIzNDU2,format=base64'],
  ['-O', 'raw', '--size', '7E'], ['--output=json', '-O', 'raw', '--size', '7E'], ['-O', 'qcow2', '--size', '7E'],
];

for (const argv of cases) {
  test(`measure arguments match qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(['measure', ...argv], { cwd: dir });
    const got = vdisk(['measure', ...argv], { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

for (const l of ['snapshot.foo=bar', 'snapshot.id=1,snapshot.foo=2', 'foo=bar']) {
  test(`convert -l ${l} fails as qemu-img does`, () => {
    const want = qemuImg(['convert', '-l', l, '-O', 'raw', 'a.qcow2', 'o1.raw'], { cwd: dir });
    const got = vdisk(['convert', '-l', l, '-O', 'raw', 'a.qcow2', 'o2.raw'], { cwd: dir });
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}
