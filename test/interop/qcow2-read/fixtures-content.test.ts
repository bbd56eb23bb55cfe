/**
 * Every good qcow2 fixture read through the library gives the guest content qemu-img 7.2 recorded
 * in the manifest (sha256 of `convert -O raw`), and every internal snapshot read through the
 * `snapshot.name` option gives the snapshot's recorded content.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { openImage } from '../../../dist/block/open.js';
import { fixturesDir, manifest, type ManifestEntry } from '../../helpers/oracle.ts';

const root = fixturesDir();
const entries = manifest().filter((e) => e.format === 'qcow2' && e.group !== 'hostile' && e.role !== 'component' && e.sha256);

async function guestHash(e: ManifestEntry, options: Record<string, string> = {}): Promise<string> {
  const secrets = { get: (id: string) => (e.secret !== undefined && id === 'sec0' ? new TextEncoder().encode(e.secret) : undefined) };
  const opts = e.secret !== undefined ? { ...options, 'encrypt.key-secret': 'sec0' } : options;
  const img = await openImage(join(root, e.path), { format: 'qcow2', readOnly: true, options: opts, secrets });
  try {
    const h = createHash('sha256');
    const buf = new Uint8Array(4 << 20);
    for (let off = 0; off < img.size; off += buf.length) {
      const n = Math.min(buf.length, img.size - off);
      await img.read(buf.subarray(0, n), off);
      h.update(buf.subarray(0, n));
    }
    return h.digest('hex');
  } finally {
    await img.close();
  }
}

test('the qcow2 fixtures cover the features the engine claims', () => {
  const names = entries.map((e) => e.path).join(' ');
  for (const f of ['extl2', 'zstd', 'compressed', 'datafile', 'luks', 'v2', 'snapshots', 'chain-top', 'c512', 'c2M']) {
    assert.ok(names.includes(f), `a fixture for ${f}`);
  }
});

for (const e of entries) {
  test(`guest content of ${e.path} matches qemu-img`, async () => {
    assert.equal(await guestHash(e), e.sha256);
  });
  for (const s of e.snapshots ?? []) {
    test(`snapshot ${s.name} of ${e.path} reads as qemu-img's convert -l`, async () => {
      assert.equal(await guestHash(e, { 'snapshot.name': s.name }), s.sha256);
    });
  }
}

test('the 4 TiB sparse fixture reads its non-zero MiBs as recorded', async () => {
  const e = manifest().find((x) => x.path === 'made/qcow2-4T-sparse.qcow2')!;
  const chunks = e['nonzero_chunks_1MiB'] as Record<string, string>;
  const img = await openImage(join(root, e.path), { format: 'qcow2', readOnly: true });
  try {
    const buf = new Uint8Array(1 << 20);
    for (const [off, sha] of Object.entries(chunks)) {
      await img.read(buf, Number(off));
      assert.equal(createHash('sha256').update(buf).digest('hex'), sha, `MiB at ${off}`);
    }
    // the rest reads as zeros without touching every cluster: block status skips whole L2 ranges
    let off = 0;
    let runs = 0;
    while (off < img.size) {
      const st = await img.chainStatus(off, img.size - off);
      if (!st.data) assert.ok(st.zero);
      off += st.length;
      runs++;
    }
    // the generic layer asks at most 4 GiB at a time: about 1024 calls for 4 TiB, not 2^26 clusters
    assert.ok(runs < 2048, `${runs} status runs`);
  } finally {
    await img.close();
  }
});
