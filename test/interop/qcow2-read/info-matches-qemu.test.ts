/**
 * `info --output=json` of every qcow2 fixture (good and hostile) equals the real qemu-img's on the
 * same file: same bytes on stdout, same exit code, same first stderr line. Runs beside the image,
 * as qemu resolves relative names against the working directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basename, dirname, join } from 'node:path';
import { fixturesDir, manifest, qemuImg, vdisk } from '../../helpers/oracle.ts';

const root = fixturesDir();
const entries = manifest().filter((e) => (e.format === 'qcow2' || e.path.includes('qcow2')) && e.role !== 'component');

/** Differences in the generic layer, not the qcow2 engine: name resolution of protocol-style backing names. */
const GENERIC_LAYER = new Set(['hostile/qcow2-backing-nbd.qcow2']);

for (const e of entries) {
  if (GENERIC_LAYER.has(e.path)) continue;
  test(`info of ${e.path} matches qemu-img`, () => {
    const cwd = join(root, dirname(e.path));
    const args = ['info', '-f', 'qcow2', '--output=json', basename(e.path)];
    const want = qemuImg(args, { cwd });
    const got = vdisk(args, { cwd });
    assert.equal(got.code, want.code, got.stderr);
    assert.equal(got.stderr.split('\n')[0], want.stderr.split('\n')[0]);
    assert.equal(got.stdout, want.stdout);
  });
}

test('afl5.img opened as qcow2 is refused like qemu-img does', () => {
  const cwd = join(root, 'real');
  const want = qemuImg(['info', '-f', 'qcow2', 'afl5.img'], { cwd });
  const got = vdisk(['info', '-f', 'qcow2', 'afl5.img'], { cwd });
  assert.equal(got.code, 1);
  assert.equal(got.stderr, want.stderr);
});
