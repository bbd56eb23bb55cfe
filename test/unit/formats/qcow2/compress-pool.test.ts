import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { ClusterCompressor, compressCluster } from '../../../../dist/formats/qcow2/compress.js';
import { compressClusters, compressWorkerCount, MAX_COMPRESS_WORKERS } from '../../../../dist/formats/qcow2/compress-pool.js';
import { compressBatch } from '../../../../dist/formats/qcow2/compress-worker.js';

const CS = 65536;

function clusters(): Uint8Array[] {
  const text = new Uint8Array(CS).map((_, i) => 97 + ((i * 7) % 26));
  const noise = randomFillSync(new Uint8Array(CS));
  const half = new Uint8Array(CS);
  half.set(noise.subarray(0, CS / 2));
  return [text, noise, half, new Uint8Array(CS).fill(1)];
}

/** What each cluster must become: compressCluster's bytes, or the cluster itself when it does not shrink. */
function expected(type: number, cs: readonly Uint8Array[]): Array<Buffer | { plain: Buffer } | 'skip'> {
  return cs.map((c) => {
    const r = compressCluster(type, c);
    return r ? Buffer.from(r) : { plain: Buffer.from(c) };
  });
}

/** Split a packed result back into one entry per cluster. */
function unpack(packed: Uint8Array, lengths: Int32Array, cs: number, bytes: number): Array<Buffer | { plain: Buffer } | 'skip'> {
  let at = 0;
  const out = Array.from(lengths, (n, i): Buffer | { plain: Buffer } | 'skip' => {
    if (n === -2) return 'skip';
    const len = n >= 0 ? n : Math.min(cs, bytes - i * cs);
    const b = Buffer.from(packed.subarray(at, at + len));
    at += len;
    return n >= 0 ? b : { plain: b };
  });
  assert.equal(at, packed.length, 'packed holds exactly the clusters');
  return out;
}

test('the reused native context compresses every cluster to the one-shot call\'s bytes, -1 when it does not shrink', () => {
  for (const type of [0, 1]) {
    const cs = clusters();
    const want = expected(type, cs);
    for (const oneShot of [false, true]) {
      const c = new ClusterCompressor(type, oneShot);
      const out = new Uint8Array(CS * cs.length);
      // twice over: a context reset after a cluster that did not fit must still give fresh streams
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < cs.length; i++) {
          const n = c.compressInto(cs[i]!, out, 100);
          assert.deepEqual(n < 0 ? { plain: Buffer.from(cs[i]!) } : Buffer.from(out.subarray(100, 100 + n)), want[i], `type ${type} oneShot ${oneShot} cluster ${i}`);
        }
      }
    }
  }
});

test('a short last cluster is compressed zero-padded to a whole cluster, stored as it is without room for its compressed bytes', () => {
  const noisy = clusters()[1]!;
  const tail = noisy.slice(0, 1000);
  const whole = new Uint8Array(CS);
  whole.set(tail);
  for (const type of [0, 1]) {
    const want = compressCluster(type, whole)!;
    assert.ok(want.length > tail.length, 'noise padded with zeros compresses to more than its own bytes');
    // room for whole clusters: compressed as qemu compresses it
    const roomy = new Uint8Array(CS);
    roomy.set(tail);
    const l1 = compressBatch({ id: 0, type, clusterSize: CS, data: roomy.buffer, offset: 0, bytes: 1000, room: CS });
    assert.deepEqual(unpack(roomy.subarray(0, want.length), l1, CS, 1000), [Buffer.from(want)]);
    // no room past its bytes: stored plainly
    const tight = tail.slice();
    const l2 = compressBatch({ id: 0, type, clusterSize: CS, data: tight.buffer, offset: 0, bytes: 1000 });
    assert.deepEqual(unpack(tight, l2, CS, 1000), [{ plain: Buffer.from(tail) }]);
  }
});

test('requests compressed on the workers come back whole: the same bytes, moved buffers returned, left-out clusters marked', async () => {
  for (const type of [0, 1]) {
    const base = clusters();
    // 32 clusters a request (2 MiB), more requests than the workers hold at once
    const reqs = Array.from({ length: 12 }, (_, r) => Array.from({ length: 32 }, (_, i) => {
      const c = base[(r + i) % base.length]!.slice();
      c[5] = r;
      c[6] = i;
      return c;
    }));
    const bufs = reqs.map((cs) => {
      const b = new Uint8Array(cs.length * CS);
      cs.forEach((c, i) => b.set(c, i * CS));
      return b;
    });
    const skip = new Uint8Array(32);
    skip[3] = 1;
    skip[31] = 1;
    const got = await Promise.all(bufs.map((b) => compressClusters(type, CS, b, skip)));
    for (let r = 0; r < reqs.length; r++) {
      const g = got[r]!;
      const want = expected(type, reqs[r]!);
      want[3] = 'skip';
      want[31] = 'skip';
      assert.deepEqual(unpack(g.packed, g.lengths, CS, 32 * CS), want, `type ${type} request ${r}`);
      assert.equal(g.data.byteLength, 32 * CS, 'the buffer comes back');
      assert.equal(g.packed.buffer, g.data.buffer, 'packed in place');
    }
  }
});

test('a view that shares its buffer with other data is copied, not moved, and left as it is', async () => {
  const text = clusters()[0]!;
  const big = new Uint8Array(3 * CS);
  big.set(text, CS);
  const before = big.slice();
  const view = big.subarray(CS, 2 * CS + 500);
  const r = await compressClusters(0, CS, view);
  assert.equal(big.byteLength, 3 * CS, 'the shared buffer is not detached');
  assert.deepEqual(big, before, 'nor changed');
  const tail = new Uint8Array(CS);
  tail.set(view.subarray(CS));
  assert.deepEqual(unpack(r.packed, r.lengths, CS, view.length), [Buffer.from(compressCluster(0, text)!), Buffer.from(compressCluster(0, tail)!)]);
});

test('the worker count follows the cores, one left for the main thread, within the memory bound', () => {
  assert.equal(compressWorkerCount(1), 1);
  assert.equal(compressWorkerCount(2), 1);
  assert.equal(compressWorkerCount(3), 2);
  assert.equal(compressWorkerCount(64), MAX_COMPRESS_WORKERS);
});
