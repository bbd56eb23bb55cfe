import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// qemu's preallocation gives each cluster a place but allocates none of its subclusters, so the
// guest still reads the backing file; vdisk used to mark every subcluster allocated, and the
// image read zeros where the backing file has data
for (const mode of ['metadata', 'falloc', 'full']) {
  test(`extended_l2 preallocation=${mode} over a backing file shows the backing file's data, as qemu-img's image does`, () => {
    const d = scratch();
    qemuImg(['create', '-q', '-f', 'raw', join(d, 'base.raw'), '1M']);
    qemuIo(['-f', 'raw', '-c', 'write -P 0x55 0 1M', join(d, 'base.raw')]);
    const argv = (name: string): string[] => ['create', '-q', '-f', 'qcow2', '-o', `extended_l2=on,preallocation=${mode}`, '-b', 'base.raw', '-F', 'raw', name, '1M'];
    assert.equal(qemuImg(argv('q.qcow2'), { cwd: d }).code, 0);
    const v = vdisk(argv('v.qcow2'), { cwd: d });
    assert.equal(v.code, 0, v.stderr);
    const cmp = qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', join(d, 'v.qcow2'), join(d, 'base.raw')]);
    assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
    const map = (f: string): string => qemuImg(['map', '--output=json', join(d, f)]).stdout;
    assert.equal(map('v.qcow2').replace(/"offset": \d+/g, ''), map('q.qcow2').replace(/"offset": \d+/g, ''));
    if (mode === 'metadata') assert.ok(readFileSync(join(d, 'v.qcow2')).equals(readFileSync(join(d, 'q.qcow2'))), 'bytes differ');
    const check = qemuImg(['check', join(d, 'v.qcow2')]);
    assert.equal(check.code, 0, check.stdout);
  });
}

test('extended_l2 preallocation=metadata without a backing file is byte-identical to qemu-img\'s (no subcluster allocated)', () => {
  const d = scratch();
  const argv = (name: string): string[] => ['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,preallocation=metadata', name, '5M'];
  assert.equal(qemuImg(argv('q.qcow2'), { cwd: d }).code, 0);
  assert.equal(vdisk(argv('v.qcow2'), { cwd: d }).code, 0);
  assert.ok(readFileSync(join(d, 'v.qcow2')).equals(readFileSync(join(d, 'q.qcow2'))), 'bytes differ');
});
