import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch();
qemuImg(['create', '-q', '-f', 'raw', join(dir, 'sp.raw'), '64M']);
qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 2 32M 100k', '-c', 'write -P 0 40M 1M', join(dir, 'sp.raw')]);
qemuImg(['convert', '-O', 'qcow2', join(dir, 'sp.raw'), join(dir, 'sp.qcow2')]);

const OPTS = [[], ['-o', 'preallocation=metadata'], ['-o', 'preallocation=full'], ['-o', 'cluster_size=512'],
  ['-o', 'cluster_size=2M,extended_l2=on'], ['-o', 'refcount_bits=1'], ['-o', 'refcount_bits=64'],
  // a backing file for the target: every cluster of an input image counts (iotest 178), and
  // measure does not refuse what only create refuses (backing file with preallocation)
  ['-o', 'backing_file=x'], ['-o', 'backing_file=x,preallocation=full'], ['-o', 'backing_file=x,preallocation=metadata']];
const SOURCES = [['--size', '1G'], ['sp.raw'], ['--size', '4T'], ['--output=json', 'sp.qcow2'], ['-f', 'qcow2', 'sp.qcow2']];

test('measure -O qcow2 prints what qemu-img prints for sizes, sources and options', () => {
  for (const o of OPTS) {
    for (const src of SOURCES) {
      const argv = ['measure', '-O', 'qcow2', ...o, ...src];
      const want = qemuImg(argv, { cwd: dir });
      const got = vdisk(argv, { cwd: dir });
      assert.equal(got.stdout, want.stdout, argv.join(' '));
      assert.equal(got.stderr, want.stderr, argv.join(' '));
      assert.equal(got.code, want.code, argv.join(' '));
    }
  }
});
