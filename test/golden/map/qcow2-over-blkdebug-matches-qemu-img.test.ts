/**
 * `map` of a qcow2 image whose file is a blkdebug node: L2 tables cannot be read in place there
 * (a filter counts its reads), so the batch block status stops before each table not yet read and
 * the per-call path reads it, in qemu's order. The output equals qemu-img's, also when the read
 * of one L2 table in the middle of the image fails (an error after the entries before it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-map-blkdebug-');
const image = join(dir, 'img.qcow2');
assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', image, '16M']).code, 0);
const w = qemuIo(['-f', 'qcow2', '-c', 'write -P 1 0 12k', '-c', 'write -P 2 2044k 8k', '-c', 'write -z 4M 3M',
  '-c', 'write -P 3 6M 1M', '-c', 'write -c -P 4 9M 4k', '-c', 'write -P 5 13M 3M', image]);
assert.equal(w.code, 0, w.stderr);

/** Host offset of the L2 table for L1 index `i` (qcow2.txt: l1_table_offset at byte 40, entries bits 9-55). */
function l2TableOffset(i: number): number {
  const f = readFileSync(image);
  const l1 = Number(f.readBigUInt64BE(40));
  return Number(f.readBigUInt64BE(l1 + 8 * i) & 0x00fffffffffffe00n);
}

// one L2 table maps 2 MiB: the table for 6 MiB is the fourth
const failing = l2TableOffset(3);
assert.ok(failing > 0);
writeFileSync(join(dir, 'none.conf'), '[inject-error]\nevent = "write_aio"\nerrno = "5"\n');
writeFileSync(join(dir, 'l2.conf'), `[inject-error]\nevent = "none"\niotype = "read"\nerrno = "5"\nsector = "${failing / 512}"\n`);

for (const conf of ['none.conf', 'l2.conf']) {
  for (const output of [['--output=json'], []]) {
    const argv = ['map', ...output, '-f', 'qcow2', `blkdebug:${conf}:img.qcow2`];
    test(`map of qcow2 over blkdebug matches qemu-img: ${argv.join(' ')}`, () => {
      const want = qemuImg(argv, { cwd: dir });
      const got = vdisk(argv, { cwd: dir });
      assert.equal(got.stdout, want.stdout);
      assert.equal(got.stderr, want.stderr);
      assert.equal(got.code, want.code);
      if (conf === 'l2.conf') assert.notEqual(want.code, 0, 'the table read fails');
    });
  }
}
