import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InOrder } from '../../../dist/block/in-order.js';

/** A promise settled from outside, to finish requests in any chosen order. */
function deferred<T>(): { p: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const p = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { p, resolve, reject };
}

test('values are handed on in the order the requests were added, whatever order they finish in', async () => {
  const seen: number[] = [];
  const q = new InOrder<number>(8, (v) => seen.push(v));
  const ds = [0, 1, 2, 3].map(() => deferred<number>());
  for (const d of ds) await q.add(d.p);
  ds[3]!.resolve(3);
  ds[1]!.resolve(1);
  ds[2]!.resolve(2);
  ds[0]!.resolve(0);
  await q.finish();
  assert.deepEqual(seen, [0, 1, 2, 3]);
});

test('add waits once the limit of unsettled requests is reached', async () => {
  const q = new InOrder<number>(2);
  const a = deferred<number>();
  await q.add(a.p);
  let added = false;
  const adding = q.add(Promise.resolve(2)).then(() => { added = true; });
  await new Promise((r) => setImmediate(r));
  assert.equal(added, false);
  a.resolve(1);
  await adding;
  assert.equal(added, true);
  await q.finish();
});

test('the earliest failure wins over a later one that failed first, and only after every request settled', async () => {
  const q = new InOrder<number>(8);
  const first = deferred<number>();
  const second = deferred<number>();
  const third = deferred<number>();
  for (const d of [first, second, third]) await q.add(d.p);
  third.reject(new Error('third'));
  second.reject(new Error('second'));
  const box: { thrown?: unknown } = {};
  const done = q.finish().catch((e: unknown) => { box.thrown = e; });
  await new Promise((r) => setImmediate(r));
  assert.ok(!('thrown' in box), 'nothing is thrown while an earlier request is in flight');
  first.resolve(1);
  await done;
  assert.match(String(box.thrown), /second/);
});

test('nothing is left running when a failure is thrown', async () => {
  const q = new InOrder<number>(8);
  const later = deferred<number>();
  let laterSettled = false;
  await q.add(Promise.reject(new Error('early')));
  await q.add(later.p.finally(() => { laterSettled = true; }));
  const done = q.finish();
  setTimeout(() => later.resolve(2), 5);
  await assert.rejects(done, /early/);
  assert.equal(laterSettled, true);
});

test('fail() throws its own error only when every request before it succeeded', async () => {
  const ok = new InOrder<number>(8);
  await ok.add(Promise.resolve(1));
  await assert.rejects(ok.fail(new Error('status')), /status/);
  const bad = new InOrder<number>(8);
  await bad.add(Promise.reject(new Error('read')));
  await assert.rejects(bad.fail(new Error('status')), /read/);
});
