/**
 * `check` and its repairs on qcow2 images with damaged L1/L2 entries (reserved bits, unaligned or
 * out-of-file offsets, wrong copied flags, bad subcluster bitmaps, refcount overflow), compressed
 * clusters, internal snapshots, an external data file, and the dirty and corrupt header bits:
 * vdisk prints what qemu-img prints, exits as it does, and leaves the same bytes in the image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch } from '../../helpers/oracle.ts';
import { assertSameOutput, checkBoth, COPIED, makeImage, MODES, patch, sameBytes, type Qcow2Patch } from './damage.ts';

interface Case {
  what: string;
  make: (path: string) => void;
  damage?: (q: Qcow2Patch) => void;
  /** Files the image needs beside it (external data file). */
  companions?: (path: string) => string[];
}

const plain = (opts: string[] = []) => (path: string): void => makeImage(path, opts);

function ok(r: { code: number | null; stderr: string }): void {
  assert.equal(r.code, 0, r.stderr);
}

/** Two internal snapshots sharing clusters with the active state. */
function withSnapshots(path: string): void {
  makeImage(path);
  ok(qemuImg(['snapshot', '-c', 's1', path]));
  ok(qemuIo(['-c', 'write -P 7 0 64k', '-c', 'write -P 8 30M 64k', path]));
  ok(qemuImg(['snapshot', '-c', 's2', path]));
  ok(qemuIo(['-c', 'write -P 9 64k 64k', path]));
}

function compressed(path: string): void {
  const src = `${path}.src`;
  makeImage(src);
  ok(qemuImg(['convert', '-c', '-O', 'qcow2', src, path]));
}

const CASES: Case[] = [
  { what: 'the copied flag missing on a data cluster', make: plain(), damage: (q) => q.setL2(0, 3, q.l2(0, 3) & ~COPIED) },
  { what: 'the copied flag missing on an L1 entry', make: plain(), damage: (q) => q.setL1(0, q.l1(0) & ~COPIED) },
  { what: 'reserved bits in an L1 entry', make: plain(), damage: (q) => q.setL1(0, q.l1(0) | 0x100n) },
  { what: 'reserved bits in an L2 entry', make: plain(), damage: (q) => q.setL2(0, 2, q.l2(0, 2) | 2n) },
  { what: 'an unaligned data cluster offset', make: plain(), damage: (q) => q.setL2(0, 2, q.l2(0, 2) + 0x200n) },
  { what: 'an unaligned preallocated zero cluster', make: plain(), damage: (q) => q.setL2(0, 2, q.l2(0, 2) + 0x201n) },
  { what: 'a data cluster past the end of the file', make: plain(), damage: (q) => q.setL2(0, 2, COPIED | 0x10000000n) },
  { what: 'an L2 table past the end of the file', make: plain(), damage: (q) => q.setL1(0, COPIED | 0x10000000n) },
  { what: 'an unaligned L2 table offset', make: plain(), damage: (q) => q.setL1(0, q.l1(0) + 0x200n) },
  { what: 'a data cluster mapped onto the L1 table', make: plain(), damage: (q) => q.setL2(0, 5, COPIED | BigInt(q.l1Offset)) },
  { what: 'a corrupted subcluster bitmap', make: plain(['-o', 'extended_l2=on']), damage: (q) => q.setU64(q.l2Offset(0) + 16 * 2 + 8, 0xffffffffffffffffn) },
  { what: 'more references than 1-bit refcounts hold', make: plain(['-o', 'refcount_bits=1']), damage: (q) => q.setL2(0, 1, q.l2(0, 0)) },
  {
    what: 'more references than 2-bit refcounts hold',
    make: plain(['-o', 'refcount_bits=2']),
    damage: (q) => [1, 3, 4].forEach((j) => q.setL2(0, j, q.l2(0, 0))),
  },
  { what: 'compressed clusters', make: compressed },
  { what: 'the copied flag on a compressed cluster', make: compressed, damage: (q) => q.setL2(0, 0, q.l2(0, 0) | COPIED) },
  { what: 'refcount 0 for a compressed cluster', make: compressed, damage: (q) => q.setRefcount(Number((q.l2(0, 0) & 0x3fffffffffffn) / BigInt(q.cs)), 0) },
  { what: 'a leaked compressed cluster', make: compressed, damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'a compressed cluster past the end of the file', make: compressed, damage: (q) => q.setL2(0, 1, (1n << 62n) | 0x3ff0000000n) },
  { what: 'internal snapshots', make: withSnapshots },
  { what: 'a leak next to snapshots', make: withSnapshots, damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'refcount 1 for a cluster two snapshots share', make: withSnapshots, damage: (q) => q.setRefcount(q.cluster(q.l2(0, 3)), 1) },
  { what: 'refcount 0 for a cluster snapshots share', make: withSnapshots, damage: (q) => q.setRefcount(q.cluster(q.l2(0, 3)), 0) },
  { what: 'snapshots and a zeroed refcount table entry', make: withSnapshots, damage: (q) => q.setReftable(0, 0n) },
  { what: 'the copied flag on a cluster snapshots share', make: withSnapshots, damage: (q) => q.setL2(0, 3, q.l2(0, 3) | COPIED) },
  {
    what: 'an unaligned snapshot L1 table',
    make: withSnapshots,
    damage: (q) => q.setU64(q.snapshotsOffset, q.u64(q.snapshotsOffset) + 0x200n),
  },
  {
    what: 'a snapshot L1 table too large',
    make: withSnapshots,
    damage: (q) => q.write(q.snapshotsOffset + 8, Buffer.from([0, 0x50, 0, 0])),
  },
  {
    what: 'a v3 snapshot table entry without extra data',
    make: (path) => {
      makeImage(path);
      ok(qemuImg(['snapshot', '-c', 'sn0', path]));
    },
    damage: (q) => {
      // drop the 24 bytes of extra data: id and name move up, the entry is re-laid as qemu 0.10 wrote it
      const e = q.read(q.snapshotsOffset, 40 + 24 + 64);
      const idLen = e.readUInt16BE(12);
      const nameLen = e.readUInt16BE(14);
      e.writeUInt32BE(0, 36);
      e.copy(e, 40, 64, 64 + idLen + nameLen);
      q.write(q.snapshotsOffset, e.subarray(0, 40 + idLen + nameLen));
    },
  },
  {
    what: 'an external data file',
    make: (path) => {
      ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'data_file=img.data', path, '64M'], { cwd: join(path, '..') }));
      ok(qemuIo(['-c', 'write -P 1 0 256k', path], { cwd: join(path, '..') }));
    },
    companions: (path) => [join(path, '..', 'img.data')],
  },
  { what: 'the corrupt bit set', make: plain(), damage: (q) => q.setIncompat(2n) },
  { what: 'the corrupt bit set and a leak', make: plain(), damage: (q) => { q.setIncompat(2n); q.setL2(0, 1, 0n); } },
];

for (const c of CASES) {
  test(`check and repair of an image with ${c.what} match qemu-img`, () => {
    const img = join(scratch('vdisk-check-case-'), 'img.qcow2');
    c.make(img);
    if (c.damage) patch(img, c.damage);
    for (const mode of MODES) {
      const r = checkBoth(img, mode, c.companions?.(img) ?? []);
      const what = `${c.what} [check ${mode.join(' ')}]`;
      assertSameOutput(r, what);
      assert.ok(sameBytes(r.qemuImage, r.vdiskImage), `${what}: the image differs from qemu-img's after the command`);
    }
  });
}

test('check and repair of a dirty lazy-refcounts image match qemu-img, except that vdisk keeps the dirty bit when the repair fails', () => {
  const img = join(scratch('vdisk-check-dirty-'), 'img.qcow2');
  makeImage(img, ['-o', 'lazy_refcounts=on']);
  // qemu-io aborting after a write leaves the image dirty with refcounts never written
  qemuIo(['-c', 'write -P 5 2M 64k', '-c', 'abort', img]);
  for (const mode of MODES) {
    const r = checkBoth(img, mode);
    const what = `dirty image [check ${mode.join(' ')}]`;
    assertSameOutput(r, what);
    if (mode.includes('leaks')) {
      // -r leaks cannot rebuild: qemu clears the dirty bit when it closes the image anyway, so its
      // next writer trusts broken refcounts; vdisk leaves the bit for the next repair
      assert.equal(r.vdisk.code, 1);
      patch(r.vdiskImage, (q) => {
        assert.equal(q.u64(72) & 1n, 1n);
        q.setIncompat(q.u64(72) & ~1n);
      });
    }
    assert.ok(sameBytes(r.qemuImage, r.vdiskImage), `${what}: the image differs from qemu-img's after the command`);
  }
});

test('check and repair of an image with persistent bitmaps match qemu-img and keep its content', () => {
  const img = join(scratch('vdisk-check-bitmaps-'), 'img.qcow2');
  makeImage(img);
  ok(qemuImg(['bitmap', '--add', img, 'b0']));
  ok(qemuImg(['bitmap', '--add', '-g', '128k', img, 'b1']));
  patch(img, (q) => q.setL2(0, 1, 0n));
  for (const mode of MODES) {
    const r = checkBoth(img, mode);
    assertSameOutput(r, `bitmaps [check ${mode.join(' ')}]`);
    // qemu also rewrites its bitmaps when it closes an image it opened read-write; the check does not
    assert.equal(qemuImg(['check', r.vdiskImage]).code, qemuImg(['check', r.qemuImage]).code);
    assert.equal(qemuImg(['compare', '-q', r.qemuImage, r.vdiskImage]).code, 0);
  }
});
