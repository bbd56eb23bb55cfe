import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'sp.raw'), '64M']);
qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 32M 1M', join(dir, 'sp.raw')]);

const cases: string[][] = [
  ['--size', '1G', '-O', 'raw'], ['--size', '1G'], ['-O', 'raw', 'sp.raw'], ['-f', 'raw', '-O', 'raw', 'sp.raw'],
  ['--output=json', '-O', 'raw', 'sp.raw'], ['--output=json', '--size', '1G', '-O', 'raw'], ['-O', 'raw'],
  ['--size', '1G', '-O', 'raw', 'sp.raw'], ['--size', 'foo', '-O', 'raw'], ['--size', '1G', '-O', 'foo'],
  ['-O', 'raw', '-o', 'preallocation=full', '--size', '1G'], ['-O', 'raw', 'nonexist'], ['-O', 'raw', '-l', 'snap', 'sp.raw'],
  ['--size', '0', '-O', 'raw'], ['-O', 'raw', '-o', 'help'], ['--output=xml', '--size', '1G'], ['--size', '9E'],
];

for (const argv of cases) {
  test(`measure matches qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(['measure', ...argv], { cwd: dir });
    const got = vdisk(['measure', ...argv], { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

test('convert -l on a raw image fails like qemu-img (raw has no internal snapshots)', () => {
  const want = qemuImg(['convert', '-O', 'raw', '-l', 'snap', 'sp.raw', 'o1.raw'], { cwd: dir });
  const got = vdisk(['convert', '-O', 'raw', '-l', 'snap', 'sp.raw', 'o2.raw'], { cwd: dir });
  assert.equal(got.stderr, want.stderr);
  assert.equal(got.code, want.code);
});
