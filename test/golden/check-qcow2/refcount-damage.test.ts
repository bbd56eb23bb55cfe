/**
 * `check`, `check --output=json`, `check -r leaks` and `check -r all` of qcow2 images whose
 * refcounts are wrong (leaks, too low, zero for used clusters) or whose refcount structures are
 * damaged (table entries zeroed, unaligned, with reserved bits, past the end of the file, blocks
 * zeroed or shared with data): vdisk prints what qemu-img prints, exits as it does, and leaves the
 * same bytes in the image (repairs included, down to where a rebuild puts the new structures).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { scratch } from '../../helpers/oracle.ts';
import { assertSameOutput, checkBoth, makeImage, MODES, patch, sameBytes, type Qcow2Patch } from './damage.ts';

interface Case {
  what: string;
  opts?: string[];
  damage?: (q: Qcow2Patch) => void;
}

const dataCluster = (q: Qcow2Patch, j: number): number => q.cluster(q.l2(0, j));

const CASES: Case[] = [
  { what: 'no damage' },
  { what: 'a leaked data cluster', damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'a leaked cluster in a compat=0.10 image', opts: ['-o', 'compat=0.10'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'a data cluster used twice with refcount 1', damage: (q) => q.setL2(0, 1, q.l2(0, 0)) },
  { what: 'refcount 0 for a used data cluster (rebuild)', damage: (q) => q.setRefcount(dataCluster(q, 2), 0) },
  { what: 'refcount 2 for a cluster used once', damage: (q) => q.setRefcount(dataCluster(q, 2), 2) },
  { what: 'refcount 3 for an L2 table', damage: (q) => q.setRefcount(q.l2Offset(0) / q.cs, 3) },
  { what: 'the refcount table entry of the first block zeroed', damage: (q) => q.setReftable(0, 0n) },
  { what: 'a refcount table entry far outside the file', damage: (q) => q.setReftable(1, 0x10000000n) },
  {
    what: 'a refcount table entry just past the end of the file',
    damage: (q) => q.setReftable(1, BigInt((Math.ceil(statSync(q.path).size / q.cs) + 3) * q.cs)),
  },
  { what: 'a refcount table entry beyond 2^63', damage: (q) => q.setReftable(1, 0x7fffffffffff0000n) },
  { what: 'an unaligned refcount block offset', damage: (q) => q.setReftable(0, q.reftable(0) + 0x200n) },
  { what: 'reserved bits in a refcount table entry', damage: (q) => q.setReftable(0, q.reftable(0) | 1n) },
  { what: 'a zeroed refcount block', damage: (q) => q.write(Number(q.reftable(0) & ~0x1ffn), new Uint8Array(q.cs)) },
  { what: 'a refcount block also mapped as guest data', damage: (q) => q.setL2(0, 1, (1n << 63n) | (q.reftable(0) & ~0x1ffn)) },
  { what: 'a leak with refcount_bits=1', opts: ['-o', 'refcount_bits=1'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'a leak with refcount_bits=2', opts: ['-o', 'refcount_bits=2'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'refcount 0 with refcount_bits=4', opts: ['-o', 'refcount_bits=4'], damage: (q) => q.setRefcount(dataCluster(q, 2), 0) },
  { what: 'refcount 2 with refcount_bits=8', opts: ['-o', 'refcount_bits=8'], damage: (q) => q.setRefcount(dataCluster(q, 2), 2) },
  { what: 'a leak with refcount_bits=32', opts: ['-o', 'refcount_bits=32'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'refcount 0 with refcount_bits=64', opts: ['-o', 'refcount_bits=64'], damage: (q) => q.setRefcount(dataCluster(q, 2), 0) },
  { what: 'a zeroed refcount table entry with refcount_bits=64', opts: ['-o', 'refcount_bits=64'], damage: (q) => q.setReftable(0, 0n) },
  { what: 'a leak with 512-byte clusters', opts: ['-o', 'cluster_size=512'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'a zeroed refcount table entry with 512-byte clusters', opts: ['-o', 'cluster_size=512'], damage: (q) => q.setReftable(0, 0n) },
  { what: 'refcount 0 with 2 MiB clusters', opts: ['-o', 'cluster_size=2M'], damage: (q) => q.setRefcount(dataCluster(q, 0), 0) },
  { what: 'a leak with extended L2 entries', opts: ['-o', 'extended_l2=on'], damage: (q) => q.setL2(0, 1, 0n) },
  { what: 'refcount 0 with extended L2 entries', opts: ['-o', 'extended_l2=on'], damage: (q) => q.setRefcount(dataCluster(q, 2), 0) },
];

for (const c of CASES) {
  test(`check and repair of an image with ${c.what} match qemu-img`, () => {
    const img = join(scratch('vdisk-check-case-'), 'img.qcow2');
    makeImage(img, c.opts);
    if (c.damage) patch(img, c.damage);
    for (const mode of MODES) {
      const r = checkBoth(img, mode);
      const what = `${c.what} [check ${mode.join(' ')}]`;
      assertSameOutput(r, what);
      assert.ok(sameBytes(r.qemuImage, r.vdiskImage), `${what}: the image differs from qemu-img's after the command`);
    }
  });
}
