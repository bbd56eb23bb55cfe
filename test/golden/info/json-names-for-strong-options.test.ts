import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// an image opened with a key secret among its options is named by the json: filename qemu builds
// (iotest 198); without such an option the plain file name stays
const S0 = 'secret,id=sec0,data=astrochicken';
const dir = scratch();
const ok = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
ok(['create', '-q', '--object', S0, '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', 'enc.qcow2', '1M']);
ok(['create', '-q', '--object', S0, '-f', 'luks', '-o', 'key-secret=sec0,iter-time=10', 'k.luks', '1M']);
ok(['create', '-q', '-f', 'qcow2', 'plain.qcow2', '1M']);
const abs = join(dir, 'enc.qcow2');
const cases: string[][] = [
  ['info', '--object', S0, '--image-opts', `driver=qcow2,file.filename=${abs},encrypt.key-secret=sec0`],
  ['info', '--object', S0, '--output=json', '--image-opts', 'driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=sec0'],
  ['info', '--object', S0, '--image-opts', 'driver=qcow2,file.driver=file,file.filename=enc.qcow2,encrypt.key-secret=sec0'],
  ['info', '--object', S0, 'json:{"driver": "qcow2", "encrypt.key-secret": "sec0", "file": {"driver": "file", "filename": "enc.qcow2"}}'],
  ['info', '--object', S0, '--image-opts', 'driver=luks,file.filename=k.luks,key-secret=sec0'],
  ['info', '--image-opts', 'driver=qcow2,file.filename=plain.qcow2'],
  ['info', '--image-opts', 'driver=qcow2,file.filename=plain.qcow2,lazy-refcounts=on'],
  ['info', 'json:{"file.filename": "plain.qcow2"}'],
];
for (const argv of cases) {
  test(`${argv.join(' ')} matches qemu-img`, () => {
    assert.deepEqual(vdisk(argv, { cwd: dir }), qemuImg(argv, { cwd: dir }));
  });
}
