import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyImage } from '../../../dist/block/copy.js';
import { createImage } from '../../../dist/block/create.js';
import { openImage } from '../../../dist/block/open.js';
import { scratch } from '../../helpers/oracle.ts';

/** A 16 MiB raw source: data at 0, a zero-filled MiB at 4 MiB (written, not a hole), data at 15 MiB + 1. */
function source(dir: string): Buffer {
  const b = Buffer.alloc(16 << 20);
  b.fill(1, 0, 1 << 20);
  b.fill(2, (15 << 20) + 1, (15 << 20) + 5000);
  writeFileSync(join(dir, 'src.raw'), b);
  return b;
}

async function copy(dir: string, opts: { sparseSize: number; inFlight: number; outOfOrder: boolean }): Promise<Buffer> {
  const dst = join(dir, `dst-${opts.sparseSize}-${opts.inFlight}-${opts.outOfOrder}.raw`);
  await createImage({ format: 'raw', filename: dst, size: 16 << 20 });
  const src = await openImage(join(dir, 'src.raw'), { format: 'raw' });
  const tgt = await openImage(dst, { format: 'raw', readOnly: false });
  let last = 0;
  await copyImage([{ image: src, targetOffset: 0 }], {
    target: tgt, targetIsZero: true, ...opts, onProgress: (done, total) => { assert.ok(done <= total); last = done / total; },
  });
  assert.equal(last, 1);
  await tgt.close();
  await src.close();
  return readFileSync(dst);
}

test('the copy engine reproduces the source whatever the parallelism, order and sparse size', async () => {
  const dir = scratch();
  const want = source(dir);
  for (const opts of [
    { sparseSize: 4096, inFlight: 1, outOfOrder: false },
    { sparseSize: 4096, inFlight: 16, outOfOrder: true },
    { sparseSize: 0, inFlight: 8, outOfOrder: false },
    { sparseSize: 65536, inFlight: 3, outOfOrder: true },
  ]) {
    assert.ok((await copy(dir, opts)).equals(want), JSON.stringify(opts));
  }
});

test('zeros read from the source are not written when sparse detection is on (the target stays sparse)', async () => {
  const dir = scratch();
  source(dir);
  await copy(dir, { sparseSize: 4096, inFlight: 8, outOfOrder: false });
  await copy(dir, { sparseSize: 0, inFlight: 8, outOfOrder: false });
  const sparse = statSync(join(dir, 'dst-4096-8-false.raw')).blocks * 512;
  const full = statSync(join(dir, 'dst-0-8-false.raw')).blocks * 512;
  assert.ok(sparse < (2 << 20), `sparse copy allocated ${sparse} bytes`);
  assert.ok(full >= (16 << 20), `-S 0 copy allocated only ${full} bytes`);
});

test('two sources are concatenated into one target', async () => {
  const dir = scratch();
  writeFileSync(join(dir, 'a.raw'), Buffer.alloc(1 << 20, 5));
  writeFileSync(join(dir, 'b.raw'), Buffer.alloc(1 << 20, 6));
  const dst = join(dir, 'ab.raw');
  await createImage({ format: 'raw', filename: dst, size: 2 << 20 });
  const a = await openImage(join(dir, 'a.raw'), { format: 'raw' });
  const b = await openImage(join(dir, 'b.raw'), { format: 'raw' });
  const t = await openImage(dst, { format: 'raw', readOnly: false });
  await copyImage([{ image: a, targetOffset: 0 }, { image: b, targetOffset: 1 << 20 }], { target: t, sparseSize: 4096, targetIsZero: true });
  await Promise.all([a.close(), b.close(), t.close()]);
  const out = readFileSync(dst);
  assert.equal(out[0], 5);
  assert.equal(out[(2 << 20) - 1], 6);
});

/** A fully written 16 MiB raw source and a fresh raw target whose writes `hook` wraps. */
async function hookedCopy(dir: string, hook: (orig: (b: Uint8Array, o: number) => Promise<void>, buf: Uint8Array, off: number) => Promise<void>): Promise<void> {
  writeFileSync(join(dir, 'full.raw'), Buffer.alloc(16 << 20, 7));
  const dst = join(dir, `hooked-${Math.random().toString(36).slice(2)}.raw`);
  await createImage({ format: 'raw', filename: dst, size: 16 << 20 });
  const src = await openImage(join(dir, 'full.raw'), { format: 'raw' });
  const tgt = await openImage(dst, { format: 'raw', readOnly: false });
  const orig = tgt.write.bind(tgt);
  tgt.write = (buf: Uint8Array, off: number) => hook(orig, buf, off);
  try {
    await copyImage([{ image: src, targetOffset: 0 }], { target: tgt, targetIsZero: true, sparseSize: 4096, inFlight: 8, outOfOrder: false });
  } finally {
    await tgt.close();
    await src.close();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('in-order writes are issued in guest order, each without waiting for the previous one to complete', async () => {
  const issued: number[] = [];
  let running = 0;
  let most = 0;
  await hookedCopy(scratch(), async (orig, buf, off) => {
    issued.push(off);
    most = Math.max(most, ++running);
    try {
      await sleep(20); // a slow disk: the next request's write arrives meanwhile
      await orig(buf, off);
    } finally {
      running--;
    }
  });
  assert.deepEqual(issued, [...issued].sort((a, b) => a - b), 'issued in offset order');
  assert.equal(issued.length, 8);
  assert.ok(most > 1, `writes overlapped (at most ${most} at once)`);
});

test('when several in-flight writes fail, the earliest request\'s error is the one reported, after all have settled', async () => {
  let running = 0;
  await assert.rejects(hookedCopy(scratch(), async (orig, buf, off) => {
    running++;
    try {
      // the first request fails last, the second first: a serial copy would report the first
      if (off === 0) { await sleep(40); throw new Error('write at 0 failed'); }
      if (off === 2 << 20) throw new Error('write at 2 MiB failed');
      await orig(buf, off);
    } finally {
      running--;
    }
  }), (e: Error) => {
    assert.equal(e.message, 'write at 0 failed');
    assert.equal(running, 0, 'no write still running when the copy fails');
    return true;
  });
});
