import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { compressCluster, compressClusterAsync } from '../../../../dist/formats/qcow2/compress.js';
import { compressOnWorker } from '../../../../dist/formats/qcow2/compress-pool.js';

const CS = 65536;

function clusters(): Uint8Array[] {
  const text = new Uint8Array(CS).map((_, i) => 97 + ((i * 7) % 26));
  const noise = randomFillSync(new Uint8Array(CS));
  const half = new Uint8Array(CS);
  half.set(noise.subarray(0, CS / 2));
  return [text, noise, half, new Uint8Array(CS).fill(1)];
}

test('clusters compressed in batches on worker threads are the synchronous compression, null when they do not shrink', async () => {
  for (const type of [0, 1]) {
    const cs = clusters();
    // asked for in one turn: they travel as one batch
    const got = await Promise.all(cs.map((c) => compressClusterAsync(type, c)));
    for (let i = 0; i < cs.length; i++) {
      const want = compressCluster(type, cs[i]!) ?? null;
      assert.deepEqual(got[i] === null ? null : Buffer.from(got[i]!), want === null ? null : Buffer.from(want), `type ${type} cluster ${i}`);
    }
    assert.equal(got[1], null, 'random data does not shrink');
  }
});

test('a batch larger than one worker message is split and every cluster still gets its own result', async () => {
  const base = clusters()[0]!;
  const many = Array.from({ length: 70 }, (_, i) => {
    const c = base.slice();
    c[0] = i;
    return c;
  });
  const got = await Promise.all(many.map((c) => compressOnWorker(0, c)));
  for (let i = 0; i < many.length; i++) assert.deepEqual(Buffer.from(got[i]!), Buffer.from(compressCluster(0, many[i]!)!), `cluster ${i}`);
});
