import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// -f file: the file protocol named as the format creates a plain file, with the protocol's options
const cases = [['x', '1M'], ['-o', 'preallocation=full', 'x', '1M'], ['-o', 'help', 'x'], ['-o', 'size=2M,nocow=on', 'x'], ['-o', 'cluster_size=4k', 'x', '1M']];
for (const c of cases) {
  test(`create -f file ${c.join(' ')} matches qemu-img`, () => {
    const a = scratch();
    const b = scratch();
    const want = qemuImg(['create', '-f', 'file', ...c], { cwd: a });
    assert.deepEqual(vdisk(['create', '-f', 'file', ...c], { cwd: b }), want);
    const size = (d: string): number => { try { return statSync(join(d, 'x')).size; } catch { return -1; } };
    assert.equal(size(b), size(a));
  });
}
