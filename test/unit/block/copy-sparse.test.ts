import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sparseRuns, type SparseRun } from '../../../dist/block/copy.js';
import { isAllZero } from '../../../dist/block/bytes.js';

/** The rule written the slow way: unit by unit over views, as the copy engine first did it. */
function reference(buf: Uint8Array, dst: number, unit: number): SparseRun[] {
  const unitZero = (a: number, b: number): boolean => isAllZero(buf.subarray(a, b));
  const out: SparseRun[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const first = Math.min(buf.length, pos + unit - ((dst + pos) % unit));
    const zero = unitZero(pos, first);
    let end = first;
    while (end < buf.length) {
      const next = Math.min(buf.length, end + unit);
      if (unitZero(end, next) !== zero) break;
      end = next;
    }
    const last = out[out.length - 1];
    assert.ok(!last || last.zero !== zero || !zero, 'zero runs never follow each other');
    out.push({ start: pos, end, zero });
    pos = end;
  }
  return out;
}

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

test('sparse runs: zero runs are whole -S units aligned in the target, data runs reach the next zero unit, at any offset and buffer end', () => {
  const rand = rng(7);
  for (const unit of [512, 4096, 65536, 3 << 20]) {
    for (let round = 0; round < 60; round++) {
      const len = 1 + Math.floor(rand() * (unit * 5 + 1000));
      const dst = Math.floor(rand() * 4) === 0 ? 0 : Math.floor(rand() * unit * 3);
      const buf = new Uint8Array(len);
      // nonzero bytes at random places, and right at unit edges (first and last byte of a unit)
      for (let k = Math.floor(rand() * 6); k > 0; k--) buf[Math.floor(rand() * len)] = 1 + Math.floor(rand() * 255);
      const edge = unit - (dst % unit);
      if (rand() < 0.5 && edge < len) buf[edge] = 9;
      if (rand() < 0.5 && edge - 1 < len) buf[edge - 1] = 9;
      if (rand() < 0.3) buf[len - 1] = 5;
      const got = sparseRuns(buf, dst, unit);
      assert.deepEqual(got, reference(buf, dst, unit), `unit ${unit} len ${len} dst ${dst}`);
      // the runs cover the buffer exactly, in order
      assert.equal(got[0]!.start, 0);
      assert.equal(got[got.length - 1]!.end, len);
      for (let i = 1; i < got.length; i++) assert.equal(got[i]!.start, got[i - 1]!.end);
    }
  }
});

test('sparse runs: a zero tail shorter than a unit at the buffer end is a zero run; inside the buffer it stays data', () => {
  const buf = new Uint8Array(4096 * 2 + 100);
  buf[10] = 1;
  // unit 0 is data, unit 1 zero, the 100-byte tail is zero too and joins it
  assert.deepEqual(sparseRuns(buf, 0, 4096), [{ start: 0, end: 4096, zero: false }, { start: 4096, end: buf.length, zero: true }]);
  // the buffer starts 100 bytes before a unit boundary: the partial head unit is judged alone
  assert.deepEqual(sparseRuns(new Uint8Array(4196), 4096 - 100, 4096), [{ start: 0, end: 4196, zero: true }]);
  const b2 = new Uint8Array(4196);
  b2[4195] = 1;
  assert.deepEqual(sparseRuns(b2, 4096 - 100, 4096), [{ start: 0, end: 100, zero: true }, { start: 100, end: 4196, zero: false }]);
});
