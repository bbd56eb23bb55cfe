import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// rebase -F takes any qemu block driver name (iotest 031 records host_device as the backing
// format); an unknown name is refused only after the image opened, and host_device opens only
// block and character devices
const dir = scratch();
const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
q(['create', '-q', '-f', 'qcow2', 'base.qcow2', '1M']);

for (const compat of ['0.10', '1.1']) {
  test(`rebase -u -F host_device writes the header qemu-img writes (compat=${compat})`, () => {
    for (const n of ['v.qcow2', 'q.qcow2']) q(['create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, n, '64M']);
    const argv = ['rebase', '-u', '-b', '/some/backing/file/path', '-F', 'host_device'];
    assert.deepEqual(vdisk([...argv, 'v.qcow2'], { cwd: dir }), qemuImg([...argv, 'q.qcow2'], { cwd: dir }));
    assert.deepEqual(readFileSync(join(dir, 'v.qcow2')), readFileSync(join(dir, 'q.qcow2')));
  });
}

const cases: string[][] = [
  ['rebase', '-u', '-b', 'base.qcow2', '-F', 'foo', 'nonexistent.qcow2'],
  ['rebase', '-u', '-b', 'base.qcow2', '-F', 'foo', 'base.qcow2'],
  ['info', '-f', 'host_device', 'base.qcow2'],
  ['info', '-f', 'host_device', 'nonexistent'],
];
for (const argv of cases) {
  test(`${argv.join(' ')} matches qemu-img`, () => {
    assert.deepEqual(vdisk(argv, { cwd: dir }), qemuImg(argv, { cwd: dir }));
  });
}
