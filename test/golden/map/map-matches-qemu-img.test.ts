import { test } from 'node:test';
import assert from 'node:assert/strict';
import { basename, dirname, join } from 'node:path';
import { fixturesDir, manifest, qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'sp.raw'), '64M']);
qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 32M 1M', '-c', 'write -P 0 40M 1M', join(dir, 'sp.raw')]);
qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'sp.raw', '-F', 'raw', join(dir, 'top.qcow2'), '64M']);
qemuIo(['-f', 'qcow2', '-c', 'write -P 3 512k 1M', '-c', 'write -z 33M 64k', '-c', 'write -c 48M 64k', join(dir, 'top.qcow2')]);
// preallocated metadata reads as zeros but is data: the human format leaves such runs out
qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=1M,preallocation=metadata', join(dir, 'pre.qcow2'), '100M']);
qemuIo(['-f', 'qcow2', '-c', 'discard 0 10M', '-c', 'write 90M 10M', '-c', 'write 0 10M', join(dir, 'pre.qcow2')]);

const cases: string[][] = [
  ['pre.qcow2'],
  ['--output=json', 'pre.qcow2'],
  ['--start-offset=20M', 'pre.qcow2'],
  ['-f', 'raw', 'sp.raw'],
  ['--output=json', '-f', 'raw', 'sp.raw'],
  ['--output', 'json', 'sp.raw'],
  ['--output=json', 'top.qcow2'],
  ['top.qcow2'],
  ['--start-offset=4096', '--max-length=8192', '--output=json', '-f', 'raw', 'sp.raw'],
  ['--start-offset=1M', '--max-length=40M', 'top.qcow2', '--output=json'],
  ['--start-offset=2G', '--output=json', '-f', 'raw', 'sp.raw'],
  ['--start-offset=2G', '-f', 'raw', 'sp.raw'],
  ['--start-offset=foo', 'sp.raw'],
  ['--max-length=-1', 'sp.raw'],
  ['--output=xml', 'sp.raw'],
  [],
  ['missing.img'],
];

for (const argv of cases) {
  test(`map matches qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(['map', ...argv], { cwd: dir });
    const got = vdisk(['map', ...argv], { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}

test('map --output=json equals qemu-img on every readable qcow2 and raw fixture', () => {
  const root = fixturesDir();
  const entries = manifest().filter((e) => (e.group === 'made' || e.group === 'real') && e.role !== 'component'
    && (e.format === 'qcow2' || e.format === 'raw') && !e.secret && (e.virtual_size ?? 0) <= (1 << 30));
  assert.ok(entries.length > 10);
  for (const e of entries) {
    // run next to the image: qemu 7.2 opens external data files relative to the working directory
    const cwd = join(root, dirname(e.path));
    const argv = ['map', '--output=json', '-f', e.format, basename(e.path)];
    const want = qemuImg(argv, { cwd });
    const got = vdisk(argv, { cwd });
    assert.equal(got.stdout, want.stdout, e.path);
    assert.equal(got.code, want.code, e.path);
  }
});

test('human map equals qemu-img on every readable qcow2 and raw fixture', () => {
  const root = fixturesDir();
  const entries = manifest().filter((e) => (e.group === 'made' || e.group === 'real') && e.role !== 'component'
    && (e.format === 'qcow2' || e.format === 'raw') && !e.secret && (e.virtual_size ?? 0) <= (1 << 30));
  for (const e of entries) {
    const cwd = join(root, dirname(e.path));
    const argv = ['map', '-f', e.format, basename(e.path)];
    const want = qemuImg(argv, { cwd });
    const got = vdisk(argv, { cwd });
    assert.equal(got.stdout, want.stdout, e.path);
    assert.equal(got.stderr, want.stderr, e.path);
    assert.equal(got.code, want.code, e.path);
  }
});
