import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getRefcountEntry, setRefcountEntry, maxRefcount } from '../../../../dist/formats/qcow2/refcount.js';
import { compressedDescriptor, entryOffset, geometry } from '../../../../dist/formats/qcow2/l1l2.js';
import { encodeSnapshots, readSnapshots, diskTableBytes } from '../../../../dist/formats/qcow2/snapshot.js';
import { compressCluster, decompressCluster } from '../../../../dist/formats/qcow2/compress.js';

test('refcount entries of every width round-trip without touching their neighbours', () => {
  for (let order = 0; order <= 6; order++) {
    const block = new Uint8Array(512);
    const max = maxRefcount(order);
    const values = [max, 1, 0, Math.min(max, 3), max];
    values.forEach((v, i) => setRefcountEntry(block, 10 + i, order, v));
    values.forEach((v, i) => assert.equal(getRefcountEntry(block, 10 + i, order), v, `order ${order} entry ${10 + i}`));
    assert.equal(getRefcountEntry(block, 9, order), 0);
    assert.equal(getRefcountEntry(block, 15, order), 0);
  }
});

test('sub-byte refcounts start at the least significant bit, wider ones are big-endian', () => {
  const b1 = new Uint8Array(4);
  setRefcountEntry(b1, 0, 0, 1);
  assert.equal(b1[0], 0b00000001);
  const b16 = new Uint8Array(4);
  setRefcountEntry(b16, 1, 4, 0x0102);
  assert.deepEqual([...b16], [0, 0, 1, 2]);
});

test('compressed descriptors split offset and sector count at 62 - (cluster_bits - 8)', () => {
  // 64 KiB clusters: x = 54; offset 0x12345, 3 additional sectors
  const entry = (1n << 62n) | (3n << 54n) | 0x12345n;
  const d = compressedDescriptor(Number(entry >> 32n), Number(entry & 0xffffffffn), 16);
  assert.equal(d.hostOffset, 0x12345);
  assert.equal(d.size, 4 * 512 - 0x145);
  assert.equal(d.exact, 0x12345n);
});

test('table entry offsets at or above 2^53 are rejected as corruption', () => {
  assert.equal(entryOffset(0x001fffff, 0xfffffe00, 'x', 'L2 table'), 2 ** 53 - 512);
  assert.throws(() => entryOffset(0x00200000, 0, 'x', 'L2 table'), { kind: 'corrupt' });
});

test('geometry: extended L2 halves the entries per table and splits clusters into 32 subclusters', () => {
  const g = geometry(16, true, 3, false);
  assert.equal(g.l2Bits, 12);
  assert.equal(g.subclusterSize, 2048);
  assert.equal(g.zeroFlag, false);
  assert.equal(geometry(16, false, 2, false).zeroFlag, false);
  assert.equal(geometry(16, false, 3, false).zeroFlag, true);
});

test('the snapshot table round-trips through encode and read', async () => {
  const list = [
    { l1TableOffset: 0x50000n, l1Size: 1, id: '1', name: 'first', dateSec: 100, dateNsec: 5, vmClockNsec: 7n, vmStateSize: 0n, diskSize: 1n << 30n, icount: -1n, extra: new Uint8Array(24) },
    { l1TableOffset: 0x60000n, l1Size: 2, id: '2', name: 'second snapshot', dateSec: 200, dateNsec: 6, vmClockNsec: 8n, vmStateSize: 4096n, diskSize: 1n << 31n, icount: 0n, extra: new Uint8Array(24) },
  ];
  const bytes = encodeSnapshots(list);
  assert.equal(bytes.length, diskTableBytes(list));
  const proto = { async pread(buf: Uint8Array, off: number) { buf.fill(0); buf.set(bytes.subarray(off, off + buf.length)); } };
  const back = await readSnapshots(proto as never, 0, 2, 'x');
  for (const s of back) s.extra = new Uint8Array(24);
  assert.deepEqual(back.map((s) => ({ ...s, extra: undefined })), list.map((s) => ({ ...s, extra: undefined })));
});

test('compressed clusters round-trip for zlib (raw deflate) and zstd, ignoring trailing bytes', () => {
  const cluster = new Uint8Array(65536);
  for (let i = 0; i < cluster.length; i++) cluster[i] = (i * 7) % 13;
  for (const type of [0, 1]) {
    const c = compressCluster(type, cluster)!;
    assert.ok(c && c.length < cluster.length);
    const withTail = new Uint8Array(c.length + 700).fill(0xaa);
    withTail.set(c);
    const out = new Uint8Array(65536);
    assert.equal(decompressCluster(type, withTail, out), true, `type ${type}`);
    assert.deepEqual(Buffer.from(out).equals(Buffer.from(cluster)), true);
  }
  assert.equal(decompressCluster(0, new Uint8Array(100).fill(0xff), new Uint8Array(65536)), false);
});

test('the table cache writes dirty tables back on eviction and keeps a changed table marked after eviction', async () => {
  const { TableCache } = await import('../../../../dist/formats/qcow2/l2-cache.js');
  const disk = new Map<number, Uint8Array>();
  const proto = {
    async pread(buf: Uint8Array, off: number) { buf.set(disk.get(off) ?? new Uint8Array(buf.length)); },
    async pwrite(buf: Uint8Array, off: number) { disk.set(off, buf.slice()); },
  };
  const cache = new TableCache(proto as never, 16, 64); // capacity 4
  const order: string[] = [];
  cache.beforeWrite = async () => { order.push('before'); };
  const t0 = await cache.get(0);
  t0[0] = 42;
  cache.markDirty(0, t0);
  for (let i = 1; i <= 4; i++) await cache.get(i * 16); // evicts table 0
  assert.equal(disk.get(0)?.[0], 42, 'written back on eviction');
  assert.deepEqual(order, ['before'], 'dependencies flushed first');
  t0[1] = 43; // a holder changes its (evicted) copy and marks it again
  cache.markDirty(0, t0);
  await cache.flush();
  assert.equal(disk.get(0)?.[1], 43);
});
