import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

/** Each case runs in two fresh directories holding the same 1 MiB raw base image. */
function dirs(): [string, string] {
  const a = scratch();
  const b = scratch();
  qemuImg(['create', '-q', '-f', 'raw', join(a, 'base.raw'), '1M']);
  copyFileSync(join(a, 'base.raw'), join(b, 'base.raw'));
  return [a, b];
}

const cases: string[][] = [
  ['-f', 'raw', 'x.raw', '1M'],
  ['-f', 'raw', 'x.raw', '1000'],
  ['-f', 'raw', 'x.raw', '0'],
  ['-f', 'raw', 'x.raw', '0x100'],
  ['x.raw', '1G'],
  ['-q', '-f', 'raw', 'x.raw', '1M'],
  ['-f', 'raw', 'x.raw'],
  ['-f', 'raw'],
  ['-f', 'raw', '-b', 'base.raw', 'x.raw'],
  ['-f', 'foo', 'x.foo', '1M'],
  ['-f', 'raw', '-o', 'preallocation=bogus', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'preallocation=falloc', 'x.raw', '100k'],
  ['-f', 'raw', '-o', 'preallocation=full', '-o', 'nocow=off', 'x.raw', '100k'],
  ['-f', 'raw', '-o', 'nocow=on,extent_size_hint=1M,preallocation=off', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'size=2M', 'x.raw'],
  ['-f', 'raw', '-o', 'size=2M', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'foo=bar', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'nocow=maybe', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'extent_size_hint=foo', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'size=1.5', 'x.raw'],
  ['-f', 'raw', '-o', ',,', 'x.raw', '1M'],
  ['-f', 'raw', '-o', 'preallocation=off,', 'x.raw', '1M'],
  ['-f', 'raw', 'x.raw', '1M', 'extra'],
  ['-f', 'raw', 'x.raw', '1.5'],
  ['-f', 'raw', 'x.raw', '1.5G'],
  ['-f', 'raw', 'x.raw', '1kb'],
  ['-f', 'raw', 'x.raw', '9E'],
  ['-f', 'raw', 'x.raw', ''],
  ['-f', 'raw', 'x.raw', '--', '-5'],
  ['-f', 'raw', '-o', 'help'],
  ['-f', 'raw', '-o', '?', 'x.raw'],
  ['-f', 'raw', 'no/such/dir/x.raw', '1M'],
  ['-f', 'raw', '--bogus', 'x.raw', '1M'],
];

for (const argv of cases) {
  test(`create matches qemu-img: ${argv.join(' ')}`, () => {
    const [a, b] = dirs();
    const want = qemuImg(['create', ...argv], { cwd: a });
    const got = vdisk(['create', ...argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    const fa = join(a, 'x.raw');
    const fb = join(b, 'x.raw');
    assert.equal(existsSync(fb), existsSync(fa));
    if (existsSync(fa)) {
      assert.equal(statSync(fb).size, statSync(fa).size);
      assert.deepEqual(readFileSync(fb), readFileSync(fa));
    }
  });
}

test('qemu-img 10.1 spellings: --format, --backing-unsafe, -B and --quiet are accepted', () => {
  const [, b] = dirs();
  const r = vdisk(['create', '--format', 'raw', '--quiet', 'y.raw', '64k'], { cwd: b });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, '');
  assert.equal(statSync(join(b, 'y.raw')).size, 65536);
});
