/**
 * The qcow2 reader's batch block status (Qcow2Reader.blockStatusRunsSync, ClusterMap.runsSync,
 * prepareStatusRuns): through Image.chainStatusRunsSync it gives the runs chainStatus gives one
 * call at a time, across L2 table boundaries, for data, zero, compressed and unallocated clusters,
 * extended L2 subclusters, external data files and a backing chain; writable images never answer
 * this way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openImage } from '../../../../dist/block/open.js';
import type { ChainStatus, Image } from '../../../../dist/block/image.js';
import { StatusRuns } from '../../../../dist/block/status-runs.js';
import { qemuImg, qemuIo, scratch } from '../../../helpers/oracle.ts';
import { asChainStatus } from '../../../helpers/status-runs.ts';

const dir = scratch('vdisk-qcow2-runs-');

function make(name: string, opts: string, size: string, writes: string[], extra: string[] = []): string {
  const path = join(dir, name);
  const c = qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts, ...extra, path, size]);
  assert.equal(c.code, 0, c.stderr);
  const w = qemuIo(['-f', 'qcow2', ...writes.flatMap((x) => ['-c', x]), path]);
  assert.equal(w.code, 0, w.stderr);
  return path;
}

// 4 KiB clusters: one L2 table maps 2 MiB, so these runs cross table boundaries
const plain = make('plain.qcow2', 'cluster_size=4k', '16M', [
  'write -P 1 0 12k', 'write -P 2 1020k 2088k', 'write -z 4M 3M', 'write -c -P 3 8M 4k', 'write -c -P 4 8196k 4k',
  'write -P 5 10M 4k', 'write -P 6 10232k 4k', 'write -P 7 15M 1M',
]);
const ext = make('ext.qcow2', 'cluster_size=64k,extended_l2=on', '16M', [
  'write -P 1 2k 2k', 'write -z 6k 4k', 'write -P 2 1M 100k', 'write -z 4M 2k', 'write -P 3 12M 2M',
]);
make('base.qcow2', 'cluster_size=4k', '12M', ['write -P 1 0 3M', 'write -z 5M 1M', 'write -P 2 8M 4M']);
const top = make('top.qcow2', 'cluster_size=4k', '16M', ['write -P 3 1M 8k', 'write -P 4 2044k 8k', 'write -z 9M 4k'],
  ['-b', 'base.qcow2', '-F', 'qcow2']);
const withData = make('df.qcow2', `cluster_size=4k,data_file=${join(dir, 'df.data')}`, '8M', ['write -P 1 0 1M', 'write -P 2 3M 5M', 'write -z 1M 8k']);

/** Runs from `from` to `to` as map walks them: batches, and one chainStatus where a batch covers nothing. */
async function batchWalk(img: Image, from: number, to: number, capacity: number): Promise<{ runs: ChainStatus[]; perCall: number }> {
  const runs: ChainStatus[] = [];
  const r = new StatusRuns(capacity);
  let perCall = 0;
  for (let pos = from; pos < to;) {
    r.count = 0;
    const n = img.chainStatusRunsSync(pos, to - pos, r);
    if (n === 0) {
      const st = await img.chainStatus(pos, to - pos);
      runs.push(st);
      perCall++;
      pos += st.length;
      continue;
    }
    for (let i = 0; i < r.count; i++) runs.push(asChainStatus(r, i));
    pos += n;
  }
  return { runs, perCall };
}

async function perCallWalk(img: Image, from: number, to: number): Promise<ChainStatus[]> {
  const runs: ChainStatus[] = [];
  for (let pos = from; pos < to;) {
    const st = await img.chainStatus(pos, to - pos);
    runs.push(st);
    pos += st.length;
  }
  return runs;
}

async function bothWalks(path: string, from: number, to: number, capacity: number): Promise<[ChainStatus[], ChainStatus[], number]> {
  const a = await openImage(path, { readOnly: true });
  const b = await openImage(path, { readOnly: true });
  try {
    const got = await batchWalk(a, from, Math.min(to, a.size), capacity);
    return [got.runs, await perCallWalk(b, from, Math.min(to, b.size)), got.perCall];
  } finally {
    await a.close();
    await b.close();
  }
}

for (const [name, path] of [['plain', plain], ['extended L2', ext], ['backing chain', top], ['external data file', withData]] as const) {
  test(`qcow2 batch status gives chainStatus's runs: ${name}`, async () => {
    for (const [from, to, cap] of [[0, 1 << 30, 4096], [0, 1 << 30, 3], [1234567, 9876543, 64]] as const) {
      const [got, want, perCall] = await bothWalks(path, from, to, cap);
      assert.deepEqual(got, want, `${from}..${to} by ${cap}`);
      if (from === 0) assert.ok(want.length > 5, 'the image has runs to walk');
      // once per image of the chain, for its first data run (it decides whether the image looks preallocated)
      assert.ok(perCall <= (name === 'backing chain' ? 2 : 1), `per-call runs: ${perCall}`);
    }
  });
}

test('a writable qcow2 image leaves batch status to the per-call path (its status waits for queued writes)', async () => {
  const img = await openImage(plain, { readOnly: false });
  try {
    await img.chainStatus(0, img.size);
    assert.equal(img.chainStatusRunsSync(0, img.size, new StatusRuns(16)), 0);
  } finally {
    await img.close();
  }
});

/** The open image's L2 cache (an internal: how many tables it holds). */
function cachedTables(img: Image): number {
  const layer = img.layer as unknown as { p: { map: { l2Cache: { slots: Map<number, unknown> } } } };
  return layer.p.map.l2Cache.slots.size;
}

test('qcow2 batch status reads the L2 tables it needs in place, without filling the cache', async () => {
  const img = await openImage(plain, { readOnly: true });
  try {
    const r = new StatusRuns(4096);
    // whether the image looks preallocated is decided by the first data run's blockStatus
    assert.equal(img.chainStatusRunsSync(0, img.size, r), 0);
    await img.chainStatus(0, 4096);
    const before = cachedTables(img);
    r.count = 0;
    assert.equal(img.chainStatusRunsSync(0, img.size, r), img.size);
    assert.ok(r.count > 10);
    assert.equal(cachedTables(img), before);
  } finally {
    await img.close();
  }
});

test('qcow2 batch status stops at an L2 table not cached when the file cannot be read in place', async () => {
  const img = await openImage(plain, { readOnly: true });
  try {
    const layer = img.layer as unknown as { p: { proto: object } };
    Object.defineProperty(layer.p.proto, 'preadSync', { value: undefined });
    await img.chainStatus(0, 4096);
    const r = new StatusRuns(4096);
    const n = img.chainStatusRunsSync(0, img.size, r);
    // the first table (2 MiB) is cached by chainStatus; the next one is not
    assert.equal(n, 2 << 20);
  } finally {
    await img.close();
  }
});
