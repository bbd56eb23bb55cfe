import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// the "Formatting" line shows string values with commas doubled, as typed in an option list, and
// a json: backing name is opened as an option set (then stored as written)
const dir = scratch();
assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '0.img', '1M'], { cwd: dir }).code, 0);
const json = `json:{"driver": "qcow2", "file": {"driver": "file", "filename": "${join(dir, '0.img')}"}}`;
const cases: string[][] = [
  ['-f', 'qcow2', '-o', 'data_file=a,,b.data', 'x.qcow2', '1M'],
  ['-f', 'qcow2', '-u', '-b', 'c,d', '-F', 'raw', 'y.qcow2', '1M'],
  ['-f', 'qcow2', '-F', 'qcow2', '-b', json, 'j1.img', '1M'],
  ['-f', 'qcow2', '-F', 'qcow2', '-b', json, 'j2.img'],
  ['-f', 'qcow2', '-b', json, 'j3.img'],
];
for (const argv of cases) {
  test(`create ${argv.join(' ')} matches qemu-img`, () => {
    const want = qemuImg(['create', ...argv], { cwd: dir });
    const out = argv.at(-1)!.endsWith('M') ? argv.at(-2)! : argv.at(-1)!;
    const wantInfo = want.code === 0 ? qemuImg(['info', '--output=json', out], { cwd: dir }).stdout : '';
    const got = vdisk(['create', ...argv], { cwd: dir });
    assert.deepEqual(got, want);
    if (want.code === 0) assert.equal(qemuImg(['info', '--output=json', out], { cwd: dir }).stdout.replace(/"actual-size": \d+/, ''), wantInfo.replace(/"actual-size": \d+/, ''));
  });
}
