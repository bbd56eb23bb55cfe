import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, sha256File, vdisk } from '../../helpers/oracle.ts';

/** A 64 MiB raw image with data at 0 and 32 MiB and an explicit zero MiB at 40 MiB, in two dirs. */
function dirs(): [string, string] {
  const a = scratch();
  const b = scratch();
  qemuImg(['create', '-q', '-f', 'raw', join(a, 'src.raw'), '64M']);
  qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 32M 1M', '-c', 'write -P 0 40M 1M', join(a, 'src.raw')]);
  qemuImg(['create', '-q', '-f', 'qcow2', join(a, 'src.qcow2'), '16M']);
  qemuIo(['-f', 'qcow2', '-c', 'write -P 7 1M 1M', '-c', 'write -z 4M 1M', join(a, 'src.qcow2')]);
  copyFileSync(join(a, 'src.raw'), join(b, 'src.raw'));
  copyFileSync(join(a, 'src.qcow2'), join(b, 'src.qcow2'));
  return [a, b];
}

const cases: string[][] = [
  ['-f', 'raw', '-O', 'raw', 'src.raw', 'out.img'],
  ['-O', 'raw', 'src.raw', 'out.img'],
  ['-f', 'raw', '-O', 'raw', '-S', '0', 'src.raw', 'out.img'],
  ['-f', 'raw', '-O', 'raw', '-S', '64k', '-m', '1', '-W', 'src.raw', 'out.img'],
  ['-f', 'qcow2', '-O', 'raw', 'src.qcow2', 'out.img'],
  ['-f', 'raw', '-O', 'raw', 'src.raw', 'src.raw', 'out.img'],
  ['src.raw'],
  [],
  ['-O', 'foo', 'src.raw', 'out.img'],
  ['-n', 'src.raw', 'nonexist.img'],
  ['-c', '-O', 'raw', 'src.raw', 'out.img'],
  ['-S', 'foo', 'src.raw', 'out.img'],
  ['-S', '4000', 'src.raw', 'out.img'],
  ['-m', '0', 'src.raw', 'out.img'],
  ['-m', '17', 'src.raw', 'out.img'],
  ['--target-is-zero', 'src.raw', 'out.img'],
  ['-t', 'foo', 'src.raw', 'out.img'],
  ['-O', 'raw', 'nonexist', 'out.img'],
  ['-O', 'raw', '-o', 'help'],
  ['-q', '-p', '-O', 'raw', 'src.raw', 'out.img'],
  ['-p', '-O', 'raw', 'src.qcow2', 'out.img'],
];

for (const argv of cases) {
  test(`convert matches qemu-img: ${argv.join(' ')}`, async () => {
    const [a, b] = dirs();
    const want = qemuImg(['convert', ...argv], { cwd: a });
    const got = vdisk(['convert', ...argv], { cwd: b });
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    if (!argv.includes('-p')) assert.equal(got.stdout, want.stdout);
    const oa = join(a, 'out.img');
    const ob = join(b, 'out.img');
    // on failure vdisk leaves no half-made output (qemu-img creates it before checking -t, for one)
    if (want.code !== 0) assert.equal(existsSync(ob), false);
    else assert.equal(existsSync(ob), existsSync(oa));
    if (want.code === 0 && existsSync(oa)) {
      assert.equal(statSync(ob).size, statSync(oa).size);
      assert.equal(await sha256File(ob), await sha256File(oa));
      // allocation within 5% (+64 KiB) of qemu-img's: holes stay holes
      const ba = statSync(oa).blocks * 512;
      const bb = statSync(ob).blocks * 512;
      assert.ok(bb <= ba * 1.05 + 65536, `vdisk allocated ${bb} bytes, qemu-img ${ba}`);
    }
  });
}

test('convert -p prints progress lines ending in 100% and a newline', () => {
  const [, b] = dirs();
  const got = vdisk(['convert', '-p', '-O', 'raw', 'src.raw', 'out.img'], { cwd: b });
  assert.equal(got.code, 0);
  assert.match(got.stdout, /^ {4}\(0\.00\/100%\)\r/);
  assert.ok(got.stdout.endsWith('    (100.00/100%)\r\n'));
});
