import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'a.raw'), '1M']);

const cases: string[][] = [
  ['check', 'a.raw'],
  ['check', '-f', 'raw', 'a.raw'],
  ['check', '--output=json', 'a.raw'],
  ['check', '-r', 'all', 'a.raw'],
  ['check', '-r', 'bogus', 'a.raw'],
  ['check', '-q', 'missing.raw'],
  ['check'],
  ['check', '--output=xml', 'a.raw'],
];

for (const argv of cases) {
  test(`check matches qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(argv, { cwd: dir });
    const got = vdisk(argv, { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}
