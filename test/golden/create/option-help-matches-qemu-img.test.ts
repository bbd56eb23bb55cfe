import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// -o help as qemu-img prints it (iotest 082): with a target filename the list merges the options
// of the protocol that filename names (or refuses an unknown or create-less protocol); a format
// that cannot create images is refused; `help` counts only as a flag item, and `,,` escapes a
// comma in values, never in names. convert checks its command line before printing the help.
const dir = scratch();
assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', 's.qcow2', '1M'], { cwd: dir }).code, 0);
const cases: string[][] = [
  ['create', '-f', 'qcow2', '-o', 'help'],
  ['create', '-f', 'qcow2', '-o', 'help', 'x.qcow2'],
  ['create', '-f', 'qcow2', '-o', 'help', 'nbd://localhost/x'],
  ['create', '-f', 'raw', '-o', 'help', 'host_device:/dev/null'],
  ['create', '-f', 'raw', '-o', 'help', 'gluster://h/v/x'],
  ['create', '-f', 'qcow2', '-o', 'help', 'foo:bar'],
  ['create', '-f', 'qcow2', '-o', 'help', 'json:{}'],
  ['create', '-f', 'qcow2', '-o', 'help', 'null-co://'],
  ['create', '-f', 'qcow2', '-o', 'help', 'fat:x'],
  ['create', '-f', 'bochs', '-o', 'help'],
  ['create', '-f', 'bochs', '-o', 'help', 'x.img'],
  ['create', '-f', 'file', '-o', 'help'],
  ['create', '-f', 'qcow2', '-o', 'help,,', 'x.qcow2'],
  ['create', '-f', 'qcow2', '-o', 'a,,help', 'x.qcow2', '1M'],
  ['create', '-f', 'qcow2', '-o', 'help=x', 'x.qcow2', '1M'],
  ['create', '-f', 'qcow2', '-o', 'nohelp', 'x.qcow2', '1M'],
  ['create', '-f', 'qcow2', '-o', 'size=1M,,', 'x.qcow2'],
  ['create', '-f', 'qcow2', '-o', 'size=1M,,,', 'x.qcow2'],
  ['create', '-f', 'qcow2', '-u', '-F', 'raw', '-o', 'backing_file=b,,help', 'x.qcow2', '1M'],
  ['convert', '-O', 'qcow2', '-o', 'help', 's.qcow2', 'd.qcow2'],
  ['convert', '-O', 'qcow2', '-o', 'cluster_size=4k', '-o', '?', 's.qcow2', 'd.qcow2'],
  ['convert', '-O', 'qcow2', '-o', 'help', 's.qcow2'],
  ['convert', '-o', 'help', 's.qcow2', 'd.raw'],
  ['convert', '-O', 'qcow2', '-o', 'help', 's.qcow2', 'nbd://localhost/x'],
  ['convert', '-O', 'qcow2', '-o', 'help', 's.qcow2', 'foo:bar'],
  ['convert', '-O', 'bochs', '-o', 'help'],
  ['convert', '-n', '-O', 'qcow2', '-o', 'help', 's.qcow2', 'd.qcow2'],
  ['convert', '--target-is-zero', '-o', 'help', 's.qcow2', 'd.qcow2'],
  ['convert', '--target-image-opts', '-o', 'help', 's.qcow2', 'd.qcow2'],
  ['convert', '--target-is-zero', '--target-image-opts', 's.qcow2', 'd.qcow2'],
  ['convert', '-c', '-C', '--skip-broken-bitmaps', 's.qcow2', 'd.qcow2'],
  ['convert', '--bitmaps', '-o', 'help', 'a', 'b', 'c'],
  ['convert', '--image-opts', '-f', 'raw', '--bitmaps', 'a', 'b', 'c'],
  ['convert', '--bitmaps', '-O', 'foo', 's.qcow2', 's.qcow2', 'd'],
  ['convert', '--bitmaps', '-c', '-O', 'raw', 's.qcow2', 's.qcow2', 'd'],
  ['convert', '--bitmaps', 's.qcow2', 's.qcow2', 'd.qcow2'],
];
for (const argv of cases) {
  test(`${argv.join(' ')} matches qemu-img`, () => {
    assert.deepEqual(vdisk(argv, { cwd: dir }), qemuImg(argv, { cwd: dir }));
  });
}
