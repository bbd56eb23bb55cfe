import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// Growing with preallocation=falloc/full lays the file out as qemu does (iotest 125 then checks
// that writing the new area needs no more host space): new refcount structures behind the last
// used cluster, all data clusters in one run, the L2 tables after them. The files must be equal.

const CREATION_SIZE = String(2 * 1024 * 1024 - 48 * 1024);

for (const cluster of ['512', '64k']) {
  for (const create of ['off', 'falloc']) {
    for (const grow of ['falloc', 'full']) {
      test(`create preallocation=${create} then resize --preallocation=${grow} (cluster_size=${cluster}) gives qemu-img's bytes`, () => {
        const files = [qemuImg, vdisk].map((prog) => {
          const d = scratch();
          for (const argv of [
            ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${create},cluster_size=${cluster}`, 't.qcow2', CREATION_SIZE],
            ['resize', '-f', 'qcow2', `--preallocation=${grow}`, 't.qcow2', '+80K'],
          ]) {
            const r = prog(argv, { cwd: d });
            assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
          }
          return join(d, 't.qcow2');
        });
        assert.ok(readFileSync(files[1]!).equals(readFileSync(files[0]!)), 'image bytes differ from qemu-img\'s');
        const check = qemuImg(['check', files[1]!]);
        assert.equal(check.code, 0, check.stdout);
      });
    }
  }
}

test('resize --preallocation=full over a backing file keeps the old end\'s backing content, as qemu-img', () => {
  const files = [qemuImg, vdisk].map((prog) => {
    const d = scratch();
    assert.equal(qemuImg(['create', '-q', '-f', 'raw', 'base.raw', '128k'], { cwd: d }).code, 0);
    assert.equal(qemuIo(['-f', 'raw', '-c', 'write -q -P 1 0 128k', join(d, 'base.raw')]).code, 0);
    assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'base.raw', '-o', 'cluster_size=64k', 't.qcow2', '33k'], { cwd: d }).code, 0);
    assert.equal(prog(['resize', '-f', 'qcow2', '--preallocation=full', 't.qcow2', '96k'], { cwd: d }).code, 0);
    assert.equal(qemuIo(['-c', 'read -q -P 1 0 33k', '-c', 'read -q -P 0 33k 63k', join(d, 't.qcow2')]).stdout, '');
    return join(d, 't.qcow2');
  });
  assert.ok(readFileSync(files[1]!).equals(readFileSync(files[0]!)), 'image bytes differ from qemu-img\'s');
});

test('resize --preallocation to the current size is refused as in qemu-img', () => {
  const d = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 't.qcow2', CREATION_SIZE], { cwd: d }).code, 0);
  const argv = ['resize', '--preallocation=falloc', 't.qcow2', CREATION_SIZE];
  const want = qemuImg(argv, { cwd: d });
  assert.notEqual(want.code, 0);
  assert.deepEqual(vdisk(argv, { cwd: d }), want);
});

test('resize --preallocation=metadata over a backing file keeps the old end\'s backing content', () => {
  const d = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', 'base.raw', '128k'], { cwd: d }).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -q -P 1 0 128k', join(d, 'base.raw')]).code, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'base.raw', '-o', 'cluster_size=64k', 't.qcow2', '31k'], { cwd: d }).code, 0);
  assert.equal(vdisk(['resize', '-f', 'qcow2', '--preallocation=metadata', 't.qcow2', '128k'], { cwd: d }).code, 0);
  assert.equal(qemuIo(['-c', 'read -q -P 1 0 31k', '-c', 'read -q -P 0 31k 63k', join(d, 't.qcow2')]).stdout, '');
  const check = qemuImg(['check', 't.qcow2'], { cwd: d });
  assert.equal(check.code, 0, check.stdout);
});
