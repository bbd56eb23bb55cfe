/**
 * `map` where its runs come many at a time from the batch block status (Image.chainStatusRunsSync,
 * the qcow2 reader's blockStatusRunsSync) and are merged straight from its run buffer: runs that
 * continue across L2 table boundaries (data contiguous in the file, zero and unallocated runs),
 * three-deep chains with short and raw backing files (depth; raw answers one run at a time),
 * zero, compressed and external-data-file clusters side by side, extended L2 subclusters, and
 * windows that start and end in the middle of runs and clusters, offsets past 1e9, 2^32 and
 * 1e12, and a chain 19 images deep. Output, messages and exit status
 * equal qemu-img's, in both formats.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { QEMU_IMG, qemuImg, qemuIo, scratch, vdiskAsQemuImg } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-map-batch-');

function make(name: string, fmt: string, size: string, writes: string[], opts: string[] = []): void {
  const path = join(dir, name);
  const c = qemuImg(['create', '-q', '-f', fmt, ...opts, path, size]);
  assert.equal(c.code, 0, c.stderr);
  if (writes.length === 0) return;
  const w = qemuIo(['-f', fmt, ...writes.flatMap((x) => ['-c', x]), path]);
  assert.equal(w.code, 0, w.stderr);
}

// 4 KiB clusters: an L2 table maps 2 MiB. Sequential writes are contiguous in the file across tables.
make('tables.qcow2', 'qcow2', '64M', [
  'write -P 1 1M 3M', 'write -z 6M 5M', 'write -P 2 13M 4k', 'write -P 3 12M 4k', 'write -P 4 12292k 1M',
  'write -c -P 5 20M 4k', 'write -c -P 6 20484k 4k', 'write -P 7 20488k 4k', 'write -z 30M 4k', 'write -P 8 62M 2M',
], ['-o', 'cluster_size=4k']);
// data that reads as zeros, stored: the human format leaves it out, JSON shows it as data
make('zdata.qcow2', 'qcow2', '16M', ['write -P 0 0 3M', 'write -P 9 3M 1M', 'write -z 4M 4M'], ['-o', 'cluster_size=4k']);
// a three-deep chain: raw at the bottom (no batch there), a short qcow2 in the middle
make('bottom.raw', 'raw', '48M', ['write -P 1 0 5M', 'write -P 2 20M 1M', 'write -P 3 40M 8M']);
make('middle.qcow2', 'qcow2', '24M', ['write -P 4 2M 2M', 'write -z 8M 3M', 'write -P 5 18M 6M'],
  ['-o', 'cluster_size=4k', '-b', 'bottom.raw', '-F', 'raw']);
make('upper.qcow2', 'qcow2', '64M', ['write -P 6 1M 4k', 'write -P 7 3M 2M', 'write -z 19M 1M', 'write -P 8 30M 4k', 'write -c 50M 64k'],
  ['-o', 'cluster_size=4k', '-b', 'middle.qcow2', '-F', 'qcow2']);
// two qcow2 layers only: every layer answers in batches
make('lower.qcow2', 'qcow2', '32M', ['write -P 1 0 9M', 'write -z 10M 2M', 'write -P 2 16M 16M'], ['-o', 'cluster_size=4k']);
make('over.qcow2', 'qcow2', '40M', ['write -P 3 2M 4k', 'write -P 4 2044k 8k', 'write -z 17M 4k', 'write -P 5 31M 2M'],
  ['-o', 'cluster_size=4k', '-b', 'lower.qcow2', '-F', 'qcow2']);
make('df.qcow2', 'qcow2', '16M', ['write -P 1 0 3M', 'write -z 3M 1M', 'write -P 2 5M 9M', 'write -z 6M 4k'],
  ['-o', `cluster_size=4k,data_file=${join(dir, 'df.data')}`]);
make('sub.qcow2', 'qcow2', '32M', [
  'write -P 1 2k 2k', 'write -z 6k 4k', 'write -P 2 1M 100k', 'write -z 4M 2k', 'write -P 3 12M 9M', 'write -c 24M 64k',
], ['-o', 'cluster_size=64k,extended_l2=on']);

// guest and host offsets past 1e9, 2^32 and 1e12 (the entries' numbers are encoded in pieces)
make('huge.qcow2', 'qcow2', '8T', [
  'write -P 1 999999488 1M', 'write -P 2 4294963200 8k', 'write -z 1099511627776 64k', 'write -P 3 999999995904 128k',
  'write -P 4 8796091973632 1M',
]);
make('hostfar.qcow2', 'qcow2', '2G', [], ['-o', 'cluster_size=2M,preallocation=falloc']);
// a chain deeper than the ready-made JSON parts go (depth 16 and more)
for (let i = 0; i <= 18; i++) {
  make(`deep${i}.qcow2`, 'qcow2', `${8 + i}M`, [`write -P ${i + 1} ${i * 256}k 64k`],
    i === 0 ? [] : ['-b', `deep${i - 1}.qcow2`, '-F', 'qcow2']);
}

const IMAGES = ['tables.qcow2', 'zdata.qcow2', 'upper.qcow2', 'over.qcow2', 'df.qcow2', 'sub.qcow2', 'huge.qcow2', 'hostfar.qcow2', 'deep18.qcow2'];
const WINDOWS: string[][] = [
  [],
  ['--start-offset=1536k', '--max-length=12345678'],
  ['--start-offset=2047k', '--max-length=4097'],
  ['--start-offset=3333333'],
  ['--max-length=20483k'],
];

for (const image of IMAGES) {
  for (const window of WINDOWS) {
    for (const output of [['--output=json'], []]) {
      const argv = ['map', ...output, ...window, image];
      test(`map from batch block status matches qemu-img: ${argv.join(' ')}`, () => {
        const want = spawnSync(QEMU_IMG, argv, { cwd: dir, encoding: 'utf8' });
        const got = spawnSync(vdiskAsQemuImg(), argv, { cwd: dir, encoding: 'utf8' });
        assert.equal(got.stdout, want.stdout);
        assert.equal(got.stderr, want.stderr);
        assert.equal(got.status, want.status);
      });
    }
  }
}
