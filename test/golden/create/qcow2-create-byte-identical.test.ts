import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

/** Option sets whose files vdisk writes byte for byte like qemu-img 7.2. */
const OPTIONS = [
  [], ['-o', 'compat=0.10'], ['-o', 'refcount_bits=1'], ['-o', 'refcount_bits=2'], ['-o', 'refcount_bits=64'],
  ['-o', 'extended_l2=on'], ['-o', 'lazy_refcounts=on'], ['-o', 'cluster_size=512'], ['-o', 'cluster_size=2M'],
  ['-o', 'compression_type=zstd'], ['-b', 'base.raw', '-F', 'raw'], ['-o', 'data_file=img.data'],
  ['-o', 'preallocation=metadata'],
];
const SIZES = ['0', '1000', '5M', '1T'];

for (const opts of OPTIONS) {
  test(`qcow2 create is byte-identical to qemu-img's: ${opts.join(' ') || 'defaults'}`, () => {
    for (const size of SIZES) {
      if (opts.includes('preallocation=metadata') && size === '1T') continue;
      const a = scratch();
      const b = scratch();
      qemuImg(['create', '-q', '-f', 'raw', join(a, 'base.raw'), '1M']);
      copyFileSync(join(a, 'base.raw'), join(b, 'base.raw'));
      const argv = ['create', '-f', 'qcow2', ...opts, 'x.qcow2', size];
      const want = qemuImg(argv, { cwd: a });
      const got = vdisk(argv, { cwd: b });
      assert.equal(got.stdout, want.stdout, size);
      assert.equal(got.stderr, want.stderr, size);
      assert.equal(got.code, want.code, size);
      if (want.code !== 0) continue;
      assert.ok(readFileSync(join(b, 'x.qcow2')).equals(readFileSync(join(a, 'x.qcow2'))), `bytes differ at size ${size}`);
      // qemu grows the external data file to the virtual size
      if (opts.includes('data_file=img.data')) assert.equal(statSync(join(b, 'img.data')).size, statSync(join(a, 'img.data')).size, size);
      const check = qemuImg(['check', join(b, 'x.qcow2')], { cwd: b });
      assert.equal(check.code, 0, check.stdout);
    }
  });
}

const ERRORS = [
  'cluster_size=3k', 'cluster_size=256', 'cluster_size=4M', 'compat=0.10,lazy_refcounts=on', 'refcount_bits=3',
  'refcount_bits=128', 'extended_l2=on,cluster_size=4k', 'compat=0.10,extended_l2=on', 'compression_type=lz4',
  'compat=0.9', 'preallocation=bogus', 'compat=0.10,refcount_bits=8', 'data_file_raw=on', 'compat=0.10,data_file=x.d',
  'compression_type=zstd,compat=0.10',
];

test('qcow2 create refuses bad option combinations with qemu-img\'s messages', () => {
  for (const o of ERRORS) {
    const a = scratch();
    const b = scratch();
    const argv = ['create', '-f', 'qcow2', '-o', o, 'x.qcow2', '1M'];
    const want = qemuImg(argv, { cwd: a });
    const got = vdisk(argv, { cwd: b });
    assert.equal(got.stdout, want.stdout, o);
    assert.equal(got.stderr, want.stderr, o);
    assert.equal(got.code, want.code, o);
  }
  const want = qemuImg(['create', '-f', 'qcow2', 'x.qcow2', '64P'], { cwd: scratch() });
  const got = vdisk(['create', '-f', 'qcow2', 'x.qcow2', '64P'], { cwd: scratch() });
  assert.equal(got.stderr, want.stderr);
});

test('qcow2 create -o help lists qemu-img\'s options', () => {
  assert.equal(vdisk(['create', '-f', 'qcow2', '-o', 'help']).stdout, qemuImg(['create', '-f', 'qcow2', '-o', 'help']).stdout);
});
