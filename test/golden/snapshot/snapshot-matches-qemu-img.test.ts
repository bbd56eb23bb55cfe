import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'ss.qcow2'), '1M']);
qemuImg(['snapshot', '-c', 'snap1', join(dir, 'ss.qcow2')]);
qemuImg(['snapshot', '-c', 'a-very-long-snapshot-name-here', join(dir, 'ss.qcow2')]);
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'r.raw'), '1M']);

const cases: string[][] = [
  ['-l', 'ss.qcow2'], ['-l', '-q', 'ss.qcow2'], ['-l', 'r.raw'], ['-l', '-c', 'x', 'ss.qcow2'],
  ['-d', 'nosuch', 'ss.qcow2'], ['-c', 's1', 'r.raw'], ['-d', 's1', 'r.raw'], ['ss.qcow2', 'extra'],
];

for (const argv of cases) {
  test(`snapshot matches qemu-img: ${argv.join(' ')}`, () => {
    const b = scratch();
    copyFileSync(join(dir, 'ss.qcow2'), join(b, 'ss.qcow2'));
    copyFileSync(join(dir, 'r.raw'), join(b, 'r.raw'));
    const want = qemuImg(['snapshot', ...argv], { cwd: dir });
    const got = vdisk(['snapshot', ...argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

test('info lists snapshots in the same table as qemu-img', () => {
  const want = qemuImg(['info', 'ss.qcow2'], { cwd: dir });
  const got = vdisk(['info', 'ss.qcow2'], { cwd: dir });
  assert.equal(got.stdout.replace(/disk size: .*\n/, ''), want.stdout.replace(/disk size: .*\n/, ''));
});

test('convert -l with an unknown snapshot fails like qemu-img', () => {
  const argv = ['convert', '-l', 'nosuch', '-O', 'raw', 'ss.qcow2'];
  const want = qemuImg([...argv, join(scratch(), 'o.raw')], { cwd: dir });
  const got = vdisk([...argv, join(scratch(), 'o.raw')], { cwd: dir });
  assert.equal(got.stderr, want.stderr);
  assert.equal(got.code, want.code);
});
