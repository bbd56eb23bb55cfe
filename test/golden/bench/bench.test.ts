import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'a.raw'), '1M']);

/** Run times differ between runs; everything else is compared as printed. */
const filter = (s: string): string => s.replace(/Run completed in [0-9.]+ seconds\./g, 'Run completed in X seconds.');

const cases: string[][] = [
  ['-c', '100', '-f', 'raw'],
  ['-c', '10', '-w', '-d', '4', '-s', '512', '-S', '1024', '-o', '4096', '--pattern=5', '-f', 'raw'],
  ['-c', '5', '-w', '-d', '2', '--flush-interval=2', '-f', 'raw'],
  ['-c', '5', '-w', '-d', '2', '--flush-interval=2', '--no-drain', '-f', 'raw'],
  ['-c', '2', '--flush-interval=70', '-f', 'raw'],
  ['-c', '2', '-w', '--flush-interval=4', '-f', 'raw'],
  ['-c', '2', '-o', '1044480', '-f', 'raw'],
  ['-c', '1', '-o', '1044480', '-s', '8k', '-f', 'raw'],
  ['-c', '1', '-o', '2M', '-f', 'raw'],
  ['-c', '2', '-s', 'foo', '-f', 'raw'],
  ['-c', '2', '-S', 'foo', '-f', 'raw'],
  ['-c', 'x', '-f', 'raw'],
  ['-c', '-1', '-f', 'raw'],
  ['-d', 'x', '-f', 'raw'],
  ['-c', '2', '--pattern=300', '-w', '-f', 'raw'],
  ['-c', '2', '-i', 'foo', '-f', 'raw'],
  ['-c', '2', '-t', 'foo', '-f', 'raw'],
  ['-c', '2', '-n', '-f', 'raw'],
  ['-c', '2', '-n', '-t', 'none', '-f', 'raw'],
  ['-c', '2', '-w', '-U', '-f', 'raw'],
  ['-c', '2', '-w'],
  ['-q', '-c', '3', '-f', 'raw'],
  ['-c', '0', '-f', 'raw'],
];

for (const extra of cases) {
  test(`bench matches qemu-img: ${extra.join(' ')}`, () => {
    const argv = ['bench', ...extra, 'a.raw'];
    const want = qemuImg(argv, { cwd: dir });
    const got = vdisk(argv, { cwd: dir });
    assert.equal(filter(got.stdout), filter(want.stdout));
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

test('bench refuses a queue depth of 0 instead of hanging like qemu-img 7.2', () => {
  const got = vdisk(['bench', '-c', '2', '-d', '0', '-f', 'raw', 'a.raw'], { cwd: dir });
  assert.equal(got.code, 1);
  assert.equal(got.stderr, 'qemu-img: Invalid queue depth specified\n');
});
