import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

function image(opts: string): string {
  const d = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts, join(d, 's.qcow2'), '1M']).code, 0);
  return d;
}

const cases: Array<{ opts: string; len: number }> = [
  { opts: 'cluster_size=512', len: 500 },
  { opts: 'cluster_size=512', len: 380 },
  { opts: 'cluster_size=512,compat=0.10', len: 380 },
  { opts: 'cluster_size=65536', len: 1023 },
  { opts: 'cluster_size=65536', len: 1024 },
];

for (const c of cases) {
  test(`rebase -u with a ${c.len}-byte name into a ${c.opts} image matches qemu-img`, () => {
    const a = image(c.opts);
    const b = image(c.opts);
    const argv = ['rebase', '-u', '-b', 'n'.repeat(c.len), '-F', 'raw', 's.qcow2'];
    const want = qemuImg(argv, { cwd: a });
    const got = vdisk(argv, { cwd: b });
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    assert.deepEqual(readFileSync(join(b, 's.qcow2')), readFileSync(join(a, 's.qcow2')));
  });
}
