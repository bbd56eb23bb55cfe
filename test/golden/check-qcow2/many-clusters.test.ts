/**
 * `check` (all modes) of qcow2 images with thousands of clusters spread over many L2 tables and
 * refcount blocks, where vdisk's fast walks (check-count.ts countPlain, check-repair.ts equalRun
 * and copiedScan: runs of plain entries in int32 loops, the rest entry by entry) do nearly all
 * the work: data written cluster by cluster in a shuffled order (fragmentation counts), zero and
 * compressed clusters, an internal snapshot with writes after it (copied flags off), every
 * refcount width, extended L2 entries, compat=0.10 and metadata preallocation; then damage in the
 * middle of such runs. Output, exit code and the repaired bytes equal qemu-img's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch } from '../../helpers/oracle.ts';
import { assertSameOutput, checkBoth, COPIED, MODES, patch, sameBytes, type Qcow2Patch } from './damage.ts';
import { shuffled } from '../../helpers/shuffle.ts';


interface Variant {
  what: string;
  opts: string;
  size: string;
  /** Bytes per write. */
  unit: number;
  snapshot: boolean;
  compressed: boolean;
}

/** Writes of `unit` bytes at 700 shuffled places of the first 48 MiB; every 9th a zero write, every 13th compressed. */
function makeFragmented(path: string, v: Variant): void {
  const c = qemuImg(['create', '-q', '-f', 'qcow2', '-o', v.opts, path, v.size]);
  assert.equal(c.code, 0, c.stderr);
  const slots = Math.floor((48 << 20) / v.unit);
  const order = shuffled(slots, 7).slice(0, 700);
  const cmds: string[] = [];
  order.forEach((s, i) => {
    const at = s * v.unit;
    if (i % 9 === 4) cmds.push('-c', `write -z ${at} ${v.unit}`);
    else if (v.compressed && i % 13 === 6) cmds.push('-c', `write -c -P ${(i % 200) + 1} ${at} ${v.unit}`);
    else cmds.push('-c', `write -P ${(i % 200) + 1} ${at} ${v.unit}`);
  });
  const w = qemuIo([...cmds, path]);
  assert.equal(w.code, 0, w.stderr);
  if (!v.snapshot) return;
  assert.equal(qemuImg(['snapshot', '-c', 'snap1', path]).code, 0);
  const after = order.slice(0, 150).map((s) => ['-c', `write -P 251 ${s * v.unit} ${v.unit}`]).flat();
  assert.equal(qemuIo([...after, path]).code, 0);
}

const base: Variant = { what: '4 KiB clusters', opts: 'cluster_size=4k', size: '64M', unit: 4096, snapshot: true, compressed: true };
const VARIANTS: Variant[] = [
  base,
  { ...base, what: '4 KiB clusters and 1-bit refcounts', opts: 'cluster_size=4k,refcount_bits=1', snapshot: false, compressed: false },
  { ...base, what: '4 KiB clusters and 8-bit refcounts', opts: 'cluster_size=4k,refcount_bits=8' },
  { ...base, what: '4 KiB clusters and 32-bit refcounts', opts: 'cluster_size=4k,refcount_bits=32' },
  { ...base, what: '4 KiB clusters and 64-bit refcounts', opts: 'cluster_size=4k,refcount_bits=64' },
  { ...base, what: 'extended L2 entries, 16 KiB clusters, 4 KiB writes', opts: 'cluster_size=16k,extended_l2=on', compressed: false },
  { ...base, what: 'compat=0.10, 4 KiB clusters', opts: 'cluster_size=4k,compat=0.10' },
  { ...base, what: 'metadata preallocation, 64 KiB clusters', opts: 'preallocation=metadata', size: '1G', unit: 65536, compressed: false },
];

for (const v of VARIANTS) {
  test(`check of a fragmented image with ${v.what} matches qemu-img`, () => {
    const img = join(scratch('vdisk-check-many-'), 'img.qcow2');
    makeFragmented(img, v);
    for (const mode of [[], ['--output=json']]) {
      const r = checkBoth(img, mode);
      assertSameOutput(r, `${v.what} [check ${mode.join(' ')}]`);
    }
  });
}

/** L2 index of the `n`-th standard (not compressed, not zero) data entry of L2 table `i`. */
function dataEntry(q: Qcow2Patch, i: number, n: number): number {
  const per = q.cs / q.entryBytes;
  for (let j = 0, seen = 0; j < per; j++) {
    const e = q.l2(i, j);
    if ((e & 0x00fffffffffffe00n) !== 0n && !(e & (1n << 62n)) && !(e & 1n) && seen++ === n) return j;
  }
  throw new Error(`no data entry ${n} in L2 table ${i}`);
}

const DAMAGE: Array<{ what: string; damage: (q: Qcow2Patch) => void }> = [
  { what: 'a leak in the middle of a table', damage: (q) => q.setL2(5, dataEntry(q, 5, 3), 0n) },
  { what: 'refcount 2 for a cluster used once', damage: (q) => q.setRefcount(q.cluster(q.l2(7, dataEntry(q, 7, 2))), 2) },
  { what: 'refcount 0 for a used cluster', damage: (q) => q.setRefcount(q.cluster(q.l2(9, dataEntry(q, 9, 1))), 0) },
  { what: 'a copied flag missing in the middle of a table', damage: (q) => {
    const j = dataEntry(q, 11, 4);
    q.setL2(11, j, q.l2(11, j) & ~COPIED);
  } },
  { what: 'a data cluster used twice', damage: (q) => q.setL2(3, dataEntry(q, 3, 0), q.l2(4, dataEntry(q, 4, 1))) },
];

for (const d of DAMAGE) {
  test(`check and repair of a fragmented image with ${d.what} match qemu-img`, () => {
    const img = join(scratch('vdisk-check-many-'), 'img.qcow2');
    makeFragmented(img, { ...base, snapshot: false });
    patch(img, d.damage);
    for (const mode of MODES) {
      const r = checkBoth(img, mode);
      const what = `${d.what} [check ${mode.join(' ')}]`;
      assertSameOutput(r, what);
      assert.ok(sameBytes(r.qemuImage, r.vdiskImage), `${what}: the image differs from qemu-img's after the command`);
    }
  });
}
