/**
 * `check` of every qcow2 fixture gives qemu-img's report: same JSON, same exit code, same stderr
 * findings (as a multiset: qemu interleaves them with stdout differently), and leak repair
 * reports and fixes like qemu-img's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fixturesDir, manifest, qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const root = fixturesDir();
/** Backing chains qemu cannot open in time (loops) or opens through protocols vdisk refuses. */
const SKIP = new Set(['hostile/qcow2-backing-json.qcow2', 'hostile/qcow2-backing-nbd.qcow2', 'hostile/qcow2-backing-self.qcow2',
  'hostile/qcow2-loop-a.qcow2', 'hostile/qcow2-loop-b.qcow2', 'hostile/qcow2-snapshots-huge.qcow2']);
const entries = manifest().filter((e) => e.format === 'qcow2' && e.path.endsWith('.qcow2') && e.role !== 'component' && !e.secret && !SKIP.has(e.path));

for (const e of entries) {
  test(`check of ${e.path} matches qemu-img`, () => {
    const cwd = join(root, dirname(e.path));
    const args = ['check', '-f', 'qcow2', '--output=json', basename(e.path)];
    const want = qemuImg(args, { cwd });
    const got = vdisk(args, { cwd });
    assert.equal(got.code, want.code, got.stderr.slice(0, 500));
    assert.equal(got.stdout, want.stdout);
    // compared as joined text: a deepEqual diff of 67000 lines would take a minute to render
    const sorted = (t: string): string => t.split('\n').sort().join('\n');
    assert.ok(sorted(got.stderr) === sorted(want.stderr), `stderr differs:\n${got.stderr.slice(0, 300)}\n---\n${want.stderr.slice(0, 300)}`);
  });
}

test('check -r leaks repairs a leaked cluster with the same report as qemu-img', () => {
  const dir = scratch('vdisk-qcow2-check-');
  const f = join(dir, 'leak.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', f, '4M']).code, 0);
  assert.equal(qemuIo(['-c', 'write -P 1 0 256k', f]).code, 0);
  // drop the L2 entry of guest cluster 1: its data cluster keeps refcount 1 with no reference
  const fd = openSync(f, 'r+');
  const head = Buffer.alloc(0x40000);
  readSync(fd, head, 0, head.length, 0);
  const l1 = Number(head.readBigUInt64BE(40));
  const l2 = Number(head.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
  writeSync(fd, Buffer.alloc(8), 0, 8, l2 + 8);
  closeSync(fd);
  copyFileSync(f, `${f}.q`);
  const want = qemuImg(['check', '-r', 'leaks', `${f}.q`]);
  const got = vdisk(['check', '-r', 'leaks', f]);
  assert.equal(got.code, want.code);
  assert.equal(got.stdout, want.stdout.replaceAll(`${f}.q`, f));
  assert.equal(got.stderr, want.stderr);
  assert.equal(qemuImg(['check', f]).code, 0);
});
