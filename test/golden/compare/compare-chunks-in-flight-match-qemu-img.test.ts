/**
 * compare reads several 2 MiB chunks of both images at once and skips what block status says is
 * zero on both sides; these cases pin what must not change with that: the first differing 512-byte
 * sector named (at a chunk's first and last byte, mid-chunk, where one side is a zero cluster),
 * unallocated against explicit zeros, size differences, and which of a mismatch and a read error
 * in different chunks is reported (the earlier one, as qemu-img's serial loop meets them).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

const M = 1 << 20;
const dir = scratch();
const ok = (r: RunResult): void => assert.equal(r.code, 0, r.stderr);
const raw = (name: string, size: string, ...cmds: string[]): void => {
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, name), size]));
  if (cmds.length) ok(qemuIo(['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), join(dir, name)]));
};
raw('d.raw', '8M', 'write -P 1 0 8M');
raw('d-first.raw', '8M', 'write -P 1 0 8M', `write -P 9 ${2 * M} 1`);
raw('d-last.raw', '8M', 'write -P 1 0 8M', `write -P 9 ${4 * M - 1} 1`);
raw('d-mid.raw', '8M', 'write -P 1 0 8M', `write -P 9 ${6 * M + 1000} 1`);
raw('d-end.raw', '8M', 'write -P 1 0 8M', `write -P 9 ${8 * M - 1} 1`);
// the zero cluster of z.qcow2 against data that is zero but for one byte
raw('zd.raw', '8M', 'write -P 1 0 8M', `write -P 0 ${2 * M} 64k`, `write -P 7 ${2 * M + 700} 1`);
raw('ez.raw', '8M', 'write -P 0 0 8M');
raw('big.raw', '12M', 'write -P 1 0 8M', `write -P 0 ${8 * M} 4M`);
raw('big-tail.raw', '12M', 'write -P 1 0 8M', `write -P 0 ${8 * M} 4M`, `write -P 5 ${11 * M + 3} 1`);
raw('big-sparse-tail.raw', '12M', 'write -P 1 0 8M', `write -P 5 ${10 * M - 1} 1`);
ok(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', join(dir, 'd.raw'), join(dir, 'd.qcow2')]));
ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'z.qcow2'), '8M']));
ok(qemuIo(['-c', 'write -P 1 0 8M', '-c', `write -z ${2 * M} 64k`, join(dir, 'z.qcow2')]));
ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'e.qcow2'), '8M']));
ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'ez.qcow2'), '8M']));
ok(qemuIo(['-c', 'write -z 0 8M', join(dir, 'ez.qcow2')]));
// a read error in the second chunk (sector 4196) and in the fourth (sector 12388)
writeFileSync(join(dir, 'eio2.conf'), '[inject-error]\nevent = "none"\niotype = "read"\nsector = "4196"\n');
writeFileSync(join(dir, 'eio4.conf'), '[inject-error]\nevent = "none"\niotype = "read"\nsector = "12388"\n');

const cases: string[][] = [
  ['d.raw', 'd.qcow2'], ['d.qcow2', 'd-first.raw'], ['d.qcow2', 'd-last.raw'], ['d-mid.raw', 'd.qcow2'],
  ['d.raw', 'd-end.raw'], ['d.qcow2', 'd-end.raw'],
  ['z.qcow2', 'zd.raw'], ['zd.raw', 'z.qcow2'], ['z.qcow2', 'd.raw'],
  ['e.qcow2', 'ez.raw'], ['ez.raw', 'e.qcow2'], ['e.qcow2', 'ez.qcow2'], ['-s', 'e.qcow2', 'ez.qcow2'], ['-s', 'e.qcow2', 'ez.raw'],
  ['d.raw', 'big.raw'], ['big.raw', 'd.qcow2'], ['d.raw', 'big-tail.raw'], ['big-tail.raw', 'd.qcow2'],
  ['d.qcow2', 'big-sparse-tail.raw'], ['-s', 'd.raw', 'big.raw'], ['-q', 'd.raw', 'big-tail.raw'],
  // the mismatch comes first: the read error of a later chunk, read ahead, is not reported
  ['blkdebug:eio4.conf:d.raw', 'd-first.raw'], ['d-last.raw', 'blkdebug:eio4.conf:d.raw'],
  // the read error comes first: the later mismatch is not reported
  ['blkdebug:eio2.conf:d.raw', 'd-mid.raw'], ['d-mid.raw', 'blkdebug:eio2.conf:d.raw'],
  // both images fail in the same chunk: the first image's error is the one reported
  ['blkdebug:eio2.conf:d.raw', 'blkdebug:eio2.conf:d-mid.raw'],
];

for (const argv of cases) {
  test(`compare with chunks in flight matches qemu-img: ${argv.join(' ')}`, () => {
    const want = qemuImg(['compare', ...argv], { cwd: dir });
    const got = vdisk(['compare', ...argv], { cwd: dir });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
  });
}
