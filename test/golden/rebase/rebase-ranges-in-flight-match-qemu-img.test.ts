/**
 * Safe rebase reads several 2 MiB ranges of both backing files at once, reads neither where block
 * status says both are zero and only one where the other is: old and new backing that differ only
 * in a few bytes (at the first and last byte of a range, inside a zero cluster of one side, where
 * the old one is unallocated, past the old one's end), under an overlay that allocates some of
 * those places itself, must leave the overlay as qemu-img does; `-u` must not touch its data.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { copiesOf, qemuImg, qemuIo, vdisk, type RunResult } from '../../helpers/oracle.ts';

const M = 1 << 20;
const K = 1024;
const images = copiesOf((d: string): void => {
  const ok = (r: RunResult): void => assert.equal(r.code, 0, r.stderr);
  const io = (f: string, ...cmds: string[]): void => ok(qemuIo([...cmds.flatMap((c) => ['-c', c]), join(d, f)]));
  // old: data in most of 10M, a zero cluster and an unallocated hole; 10M long (the overlay is 12M)
  const shared = ['write -P 1 0 6M', `write -z ${3 * M} 64k`, `write -P 1 ${7 * M} 3M`];
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(d, 'old.qcow2'), '10M']));
  io('old.qcow2', ...shared);
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(d, 'new.qcow2'), '12M']));
  io('new.qcow2', ...shared,
    `write -P 9 ${2 * M} 1`, // first byte of a range
    `write -P 9 ${4 * M - 1} 1`, // last byte of a range
    `write -P 9 ${3 * M + 700} 1`, // inside the old zero cluster
    `write -P 9 ${6 * M + 300 * K} 1`, // where the old one is unallocated
    `write -P 9 ${8 * M + 5} 3`, // under an overlay cluster: must not be written
    `write -P 9 ${11 * M} 4k`); // past the old one's end
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'old.qcow2', '-F', 'qcow2', join(d, 'top.qcow2'), '12M']));
  io('top.qcow2', `write -P 5 ${8 * M} 64k`, `write -P 5 ${5 * M} 128k`);
  // identical backings but for the names: nothing to write
  ok(qemuImg(['convert', '-O', 'qcow2', join(d, 'old.qcow2'), join(d, 'same.qcow2')]));
});

interface MapEntry { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean; offset?: number }

/**
 * map's runs without host offsets, adjacent runs of the same kind merged, and data clusters not
 * told apart by host holes: qemu-img writes only the differing part of a cluster and leaves the
 * zero rest of it a hole in the host file, vdisk (before and after reading ranges in flight)
 * writes the whole cluster; the same clusters are allocated and read the same.
 */
function guestMap(json: string): string {
  const out: MapEntry[] = [];
  for (const e of JSON.parse(json) as MapEntry[]) {
    delete e.offset;
    if (e.data) e.zero = false;
    const last = out.at(-1);
    if (last && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data) last.length += e.length;
    else out.push(e);
  }
  return JSON.stringify(out);
}

const cases: string[][] = [
  ['-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2'],
  ['-b', 'same.qcow2', '-F', 'qcow2', 'top.qcow2'],
  ['-b', '', 'top.qcow2'],
  ['-u', '-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2'],
];

for (const argv of cases) {
  test(`rebase with ranges in flight leaves the overlay as qemu-img does: rebase ${argv.join(' ')}`, () => {
    const a = images();
    const b = images();
    assert.deepEqual(vdisk(['rebase', ...argv], { cwd: b }), qemuImg(['rebase', ...argv], { cwd: a }));
    const map = (d: string): string => guestMap(qemuImg(['map', '--output=json', 'top.qcow2'], { cwd: d }).stdout);
    assert.equal(map(b), map(a));
    // -U: the guest view of the result, through whatever backing it now names
    const same = qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', join(a, 'top.qcow2'), join(b, 'top.qcow2')]);
    assert.equal(same.code, 0, same.stdout + same.stderr);
    const check = qemuImg(['check', 'top.qcow2'], { cwd: b });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const head = (d: string): string => qemuImg(['info', '--output=json', 'top.qcow2'], { cwd: d }).stdout.replace(/"actual-size": \d+/, '');
    assert.equal(head(b), head(a));
  });
}

test('rebase -u changes only the header: the overlay keeps exactly its own clusters', () => {
  const b = images();
  const before = qemuImg(['map', '--output=json', '-f', 'qcow2', 'top.qcow2'], { cwd: b }).stdout;
  assert.equal(vdisk(['rebase', '-u', '-b', 'new.qcow2', '-F', 'qcow2', 'top.qcow2'], { cwd: b }).code, 0);
  const own = (json: string): string => JSON.stringify((JSON.parse(json) as MapEntry[]).filter((e) => e.depth === 0 && e.present));
  assert.equal(own(qemuImg(['map', '--output=json', 'top.qcow2'], { cwd: b }).stdout), own(before));
});
