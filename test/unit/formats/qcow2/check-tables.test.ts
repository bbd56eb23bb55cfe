import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L2TableReader, TABLE_RUN_BYTES } from '../../../../dist/formats/qcow2/check-tables.js';

const CS = 512;

/** A file of `n` clusters, cluster k filled with byte k, counting the reads made. */
function file(n: number): { proto: never; reads: number[] } {
  const data = new Uint8Array(n * CS);
  for (let k = 0; k < n; k++) data.fill(k & 0xff, k * CS, (k + 1) * CS);
  const reads: number[] = [];
  const proto = {
    pread: async (buf: Uint8Array, off: number) => {
      reads.push(buf.length);
      buf.set(data.subarray(off, off + buf.length));
    },
  };
  return { proto: proto as never, reads };
}

function l1(offsets: number[]): DataView {
  const dv = new DataView(new ArrayBuffer(offsets.length * 8));
  offsets.forEach((o, i) => {
    dv.setUint32(i * 8, (o / 2 ** 32) | 0x80000000);
    dv.setUint32(i * 8 + 4, o >>> 0);
  });
  return dv;
}

test('a check reads the L2 tables an L1 table names contiguously with one request and hands out each table', async () => {
  const f = file(16);
  const offsets = [2, 3, 4, 5, 9, 10].map((k) => k * CS);
  const r = new L2TableReader(f.proto, CS, l1(offsets), offsets.length, 16 * CS);
  for (let i = 0; i < offsets.length; i++) {
    const t = (await r.table(i, offsets[i]!))!;
    assert.equal(t.length, CS);
    assert.equal(t[0], offsets[i]! / CS, `table ${i}`);
  }
  assert.deepEqual(f.reads, [4 * CS, 2 * CS]);
});

test('tables not whole inside the file or not cluster aligned are left to the caller, and a run stops at TABLE_RUN_BYTES', async () => {
  const f = file(4);
  const r = new L2TableReader(f.proto, CS, l1([3 * CS, 4 * CS]), 2, 4 * CS);
  assert.equal(await r.table(1, 4 * CS), undefined);
  assert.equal(await r.table(0, 3 * CS + 8), undefined);
  const n = TABLE_RUN_BYTES / CS + 5;
  const big = file(n);
  const offs = Array.from({ length: n }, (_, k) => k * CS);
  const rr = new L2TableReader(big.proto, CS, l1(offs), n, n * CS);
  for (let i = 0; i < n; i++) await rr.table(i, offs[i]!);
  assert.deepEqual(big.reads, [TABLE_RUN_BYTES, 5 * CS]);
});
