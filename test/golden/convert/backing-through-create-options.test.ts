import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// convert's -B/-F are old-style spellings of -o backing_file/backing_fmt: the backing format may
// come from either, -B/-F win over -o, and the target then holds only what differs from it
const dir = scratch();
const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
q(['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M']);
assert.equal(qemuIo(['-c', 'write -P 0x11 0 64M', join(dir, 'base.qcow2')]).code, 0);
q(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2']);
assert.equal(qemuIo(['-c', 'write -P 0x22 0 3M', join(dir, 'top.qcow2')]).code, 0);
// zeros written as data over the backing file must stay zeros in a target that has it as backing
q(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'ztop.qcow2']);
assert.equal(qemuIo(['-c', 'write -P 0 0 3M', join(dir, 'ztop.qcow2')]).code, 0);
q(['create', '-q', '-f', 'qcow2', 's1.qcow2', '1M']);
q(['create', '-q', '-f', 'qcow2', 's2.qcow2', '1M']);

const cases = [
  '-B base.qcow2 -o backing_fmt=qcow2', '-o backing_file=base.qcow2,backing_fmt=qcow2', '-o backing_file=base.qcow2',
  '-B base.qcow2 -o backing_file=nonexist,backing_fmt=qcow2', '-B base.qcow2 -F raw -o backing_fmt=qcow2',
];
const more: Array<[string, string]> = [
  ['-B base.qcow2 -F qcow2', 'ztop.qcow2'], ['-c -B base.qcow2 -F qcow2', 'ztop.qcow2'], ['-B base.qcow2', 's1.qcow2 s2.qcow2'],
  ['-o backing_file=base.qcow2', 's1.qcow2 s2.qcow2'], ['-B base.qcow2 -o bogus=1', 's1.qcow2 s2.qcow2'], ['-B nonexist -F qcow2', 's1.qcow2'],
];
let n = 0;

/**
 * Run the convert through both tools into vN/qN.qcow2: same output and exit code (target names
 * masked), and, when it succeeded, the same map. Returns whether it succeeded.
 */
function convertBoth(args: string[], i: number): boolean {
  const got = vdisk([...args, `v${i}.qcow2`], { cwd: dir });
  const want = qemuImg([...args, `q${i}.qcow2`], { cwd: dir });
  assert.deepEqual({ ...got, stderr: got.stderr.replaceAll(`v${i}.`, 'T.') }, { ...want, stderr: want.stderr.replaceAll(`q${i}.`, 'T.') });
  if (want.code !== 0) return false;
  const mapOf = (name: string): string => qemuImg(['map', '--output=json', name], { cwd: dir }).stdout.replaceAll(name, 'T');
  assert.equal(mapOf(`v${i}.qcow2`), mapOf(`q${i}.qcow2`));
  return true;
}
for (const [c, srcs] of more) {
  test(`convert -O qcow2 ${c} ${srcs} matches qemu-img`, () => {
    n++;
    if (!convertBoth(['convert', '-O', 'qcow2', ...c.split(' '), ...srcs.split(' ')], n)) return;
    assert.equal(qemuImg(['compare', `v${n}.qcow2`, `q${n}.qcow2`], { cwd: dir }).code, 0);
  });
}

for (const c of cases) {
  test(`convert -O qcow2 ${c} matches qemu-img`, () => {
    n++;
    if (!convertBoth(['convert', '-O', 'qcow2', ...c.split(' '), 'top.qcow2'], n)) return;
    const bk = (name: string): string => qemuImg(['info', '--output=json', name], { cwd: dir }).stdout.match(/"(backing-filename|backing-filename-format)": "[^"]*"/g)!.join();
    assert.equal(bk(`v${n}.qcow2`), bk(`q${n}.qcow2`));
  });
}
