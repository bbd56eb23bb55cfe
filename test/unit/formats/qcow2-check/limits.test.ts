/**
 * Hostile-input limits of the qcow2 check, each crossed by a crafted image: the check stops with
 * qemu-img's "Check failed: ..." and a reason naming the limit, or (for messages) keeps counting
 * but stops keeping lines; it never hangs or grows without bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../../helpers/oracle.ts';
import { maxCheckClusters } from '../../../../dist/formats/qcow2/check-imrt.js';
import { MAX_CHECK_MESSAGES, MAX_CHECK_TABLE_ENTRIES } from '../../../../dist/formats/qcow2/check-context.js';

function header(path: string): { l1Size: number; l1Offset: number } {
  const fd = openSync(path, 'r');
  const h = Buffer.alloc(48);
  readSync(fd, h, 0, 48, 0);
  closeSync(fd);
  return { l1Size: h.readUInt32BE(36), l1Offset: Number(h.readBigUInt64BE(40)) };
}

test('a sparse image file too long to count is refused before counters are allocated (MAX_CHECK_COUNTER_BYTES)', () => {
  const f = join(scratch('vdisk-check-limit-'), 'long.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', f, '1M']).code, 0);
  truncateSync(f, (maxCheckClusters(4) + 1) * 512);
  const r = vdisk(['check', f]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^qemu-img: Check failed: File too large: counting the references to its \d+ clusters needs \d+ MiB; vdisk uses at most 1024 MiB\n$/);
});

test('an L1 table whose entries all name one L2 table stops the check at the table-entry budget (MAX_CHECK_TABLE_ENTRIES)', () => {
  const f = join(scratch('vdisk-check-limit-'), 'same-l2.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', f, '64T']).code, 0);
  assert.equal(qemuIo(['-c', 'write 0 64k', f]).code, 0);
  const { l1Size, l1Offset } = header(f);
  const fd = openSync(f, 'r+');
  const e = Buffer.alloc(8);
  readSync(fd, e, 0, 8, l1Offset);
  writeSync(fd, Buffer.concat(Array.from({ length: l1Size }, () => e)), 0, l1Size * 8, l1Offset);
  closeSync(fd);
  // 131072 visits of an 8192-entry table: 2^30 entries, four times the budget
  assert.ok(l1Size * 8192 > MAX_CHECK_TABLE_ENTRIES);
  const r = vdisk(['check', f]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, new RegExp(`qemu-img: Check failed: the image makes the check visit more than ${MAX_CHECK_TABLE_ENTRIES} table entries\\n$`));
});

test('findings past MAX_CHECK_MESSAGES are counted but not kept, with a line saying how many were left out', () => {
  const f = join(scratch('vdisk-check-limit-'), 'noisy.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', f, '512M']).code, 0);
  const { l1Size, l1Offset } = header(f);
  // every L1 entry names its own L2 table whose 64 entries all have a reserved bit set
  const end = 4096;
  const fd = openSync(f, 'r+');
  const l2 = Buffer.alloc(512);
  for (let j = 0; j < 64; j++) l2.writeBigUInt64BE(2n, j * 8);
  const tables = Buffer.concat(Array.from({ length: l1Size }, () => l2));
  writeSync(fd, tables, 0, tables.length, end);
  const l1 = Buffer.alloc(l1Size * 8);
  for (let i = 0; i < l1Size; i++) l1.writeBigUInt64BE((1n << 63n) | BigInt(end + 512 * i), i * 8);
  writeSync(fd, l1, 0, l1.length, l1Offset);
  closeSync(fd);
  const r = vdisk(['check', '--output=json', f]);
  assert.equal(r.code, 2);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, MAX_CHECK_MESSAGES + 1);
  assert.match(lines.at(-1)!, /^\(vdisk: \d+ further messages not shown\)$/);
  const report = JSON.parse(r.stdout) as { corruptions: number };
  assert.ok(report.corruptions >= l1Size * 64, `${report.corruptions} corruptions`);
});
