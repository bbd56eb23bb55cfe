import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

// qemu_strtosz's corners: zero fractions need no unit, "1." and "1.k" parse, exponents never,
// hex takes a suffix with a deprecation warning, and -o sizes are checked against uint64
const dir = scratch();
const sizes = [
  '1024.0', '1024.0b', '1.', '1.k', '1.5e', '0x10k', '0x10', '0x1.5', '0x', '0xk', '00x10', '1.00000', '0.5b',
  '1.5b', '-0', '+5', '.5k', '1e3', '1.0e3', '18446744073709551615', '9223372036854775808', '8E', '0.5M',
];
for (const s of sizes) {
  test(`create size operand '${s}' matches qemu-img`, () => {
    const args = ['create', '-f', 'qcow2', 'a.qcow2', '--', s];
    const want = qemuImg(args, { cwd: dir });
    const got = vdisk(args, { cwd: dir });
    assert.deepEqual(got, want);
  });
}

for (const o of ['size=1024.0', 'size=1024.0b', 'size=18446744073709551616', 'size=16E', 'cluster_size=1024.0', 'cluster_size=0.5k']) {
  test(`create -o ${o} matches qemu-img`, () => {
    const args = ['create', '-f', 'qcow2', '-o', o, 'b.qcow2', '64M'];
    const want = qemuImg(args, { cwd: dir });
    const got = vdisk(args, { cwd: dir });
    assert.deepEqual(got, want);
  });
}

for (const extra of [['-b', ''], ['-F', 'raw', '-b', ''], ['-o', 'backing_file='], ['-b', 'c.qcow2'], ['-b', 'c.qcow2', '-F', 'qcow2']]) {
  test(`create ${extra.join(' ')} c.qcow2 (empty or self backing name) matches qemu-img`, () => {
    const args = ['create', '-f', 'qcow2', ...extra, 'c.qcow2', '1M'];
    const want = qemuImg(args, { cwd: dir });
    const got = vdisk(args, { cwd: dir });
    assert.deepEqual(got, want);
  });
}
