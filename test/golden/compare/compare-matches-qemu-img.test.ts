import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
const q = (args: string[]): void => {
  const r = qemuImg(args, { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
};
q(['create', '-q', '-f', 'raw', 'c1.raw', '4M']);
q(['create', '-q', '-f', 'raw', 'c2.raw', '4M']);
q(['create', '-q', '-f', 'raw', 'c3.raw', '8M']);
q(['create', '-q', '-f', 'raw', 'c4.raw', '8M']);
q(['create', '-q', '-f', 'qcow2', 'c5.qcow2', '4M']);
q(['create', '-q', '-f', 'qcow2', '-b', 'c2.raw', '-F', 'raw', 'c6.qcow2']);
qemuIo(['-f', 'raw', '-c', 'write -P 1 1M 4k', join(dir, 'c2.raw')]);
qemuIo(['-f', 'raw', '-c', 'write -P 1 6M 4k', join(dir, 'c4.raw')]);
qemuIo(['-f', 'qcow2', '-c', 'write -P 1 1M 4k', '-c', 'write -z 2M 64k', join(dir, 'c6.qcow2')]);

const cases: string[][] = [
  ['c1.raw', 'c1.raw'], ['c1.raw', 'c2.raw'], ['c1.raw', 'c3.raw'], ['c3.raw', 'c1.raw'], ['c1.raw', 'c4.raw'],
  ['-s', 'c1.raw', 'c3.raw'], ['-s', 'c1.raw', 'c5.qcow2'], ['c1.raw', 'c5.qcow2'], ['-q', 'c1.raw', 'c2.raw'],
  ['-q', 'c1.raw', 'c1.raw'], ['c1.raw', 'nonexist'], ['nonexist', 'c1.raw'], ['c1.raw'],
  ['-f', 'raw', '-F', 'qcow2', 'c1.raw', 'c5.qcow2'], ['-f', 'qcow2', 'c1.raw', 'c5.qcow2'], ['-s', 'c1.raw', 'c2.raw'],
  ['-s', 'c1.raw', 'c4.raw'], ['-s', 'c1.raw', 'c1.raw'], ['-s', 'c5.qcow2', 'c5.qcow2'], ['c6.qcow2', 'c2.raw'],
  ['-s', 'c6.qcow2', 'c2.raw'], ['c2.raw', 'c6.qcow2', '-F', 'qcow2'], ['--bogus', 'c1.raw', 'c2.raw'],
];

for (const argv of cases) {
  test(`compare matches qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(['compare', ...argv], { cwd: dir });
    const got = vdisk(['compare', ...argv], { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}
