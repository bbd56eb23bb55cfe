import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RateLimiter } from '../../../dist/block/copy-io.js';
import { copyImage } from '../../../dist/block/copy.js';
import { createImage } from '../../../dist/block/create.js';
import { openImage } from '../../../dist/block/open.js';
import { scratch } from '../../helpers/oracle.ts';

test('the rate limiter lets the first request go and delays each later one by the bytes sent before it', () => {
  let now = 1000;
  const rl = new RateLimiter(2 << 20, () => now);
  assert.equal(rl.delayFor(2 << 20), 0);
  assert.equal(rl.delayFor(2 << 20), 1000);
  now += 1000;
  assert.equal(rl.delayFor(1 << 20), 1000);
  now += 5000; // long after: the bytes already sent are paid for
  assert.equal(rl.delayFor(1 << 20), 0);
});

async function salvageCopy(dir: string, rules: Record<string, string>, salvage: boolean): Promise<{ out: Buffer; warnings: string[] }> {
  writeFileSync(join(dir, 'src.raw'), Buffer.alloc(4 << 20, 0x2a));
  const dst = join(dir, 'dst.raw');
  await createImage({ format: 'raw', filename: dst, size: 4 << 20 });
  const src = await openImage(join(dir, 'src.raw'), { format: 'blkdebug', options: { 'image.driver': 'raw', ...rules } });
  const tgt = await openImage(dst, { format: 'raw', readOnly: false });
  const warnings: string[] = [];
  try {
    await copyImage([{ image: src, targetOffset: 0 }], { target: tgt, sparseSize: 4096, targetIsZero: true, salvage, warn: (w) => warnings.push(w) });
  } finally {
    await tgt.close();
    await src.close();
  }
  return { out: readFileSync(dst), warnings };
}

test('a read error stops the copy, reported at the start of the failed request', async () => {
  const d = scratch();
  await assert.rejects(
    salvageCopy(d, { 'inject-error.0.event': 'none', 'inject-error.0.iotype': 'read', 'inject-error.0.sector': '5000' }, false),
    /: error while reading at byte 2097152: Input\/output error$/);
});

test('--salvage zero-fills exactly the unreadable sectors and warns once for each, in order', async () => {
  const d = scratch();
  const { out, warnings } = await salvageCopy(d, {
    'inject-error.0.event': 'none', 'inject-error.0.iotype': 'read', 'inject-error.0.sector': '100',
    'inject-error.1.event': 'none', 'inject-error.1.iotype': 'read', 'inject-error.1.sector': '101',
    'inject-error.2.event': 'none', 'inject-error.2.iotype': 'block-status', 'inject-error.2.sector': '6000',
  }, true);
  assert.deepEqual(warnings, [
    'error while reading block status at offset 3072000: Input/output error', // counting pass
    'error while reading offset 51200: Input/output error',
    'error while reading offset 51712: Input/output error',
    'error while reading block status at offset 3072000: Input/output error',
  ]);
  const want = Buffer.alloc(4 << 20, 0x2a);
  want.fill(0, 51200, 52224);
  assert.ok(out.equals(want));
});

test('-C copies raw-mapped data with copy_file_range and refuses what is not plainly stored', async (t) => {
  const { native } = await import('../../../dist/protocols/native.js');
  if (!native?.copyFileRange) {
    t.skip('native helper not built');
    return;
  }
  const { copyRange } = await import('../../../dist/block/copy-io.js');
  const d = scratch();
  const data = Buffer.alloc(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  writeFileSync(join(d, 'src.raw'), data);
  await createImage({ format: 'raw', filename: join(d, 'dst.raw'), size: 2 << 20 });
  await createImage({ format: 'qcow2', filename: join(d, 'dst.qcow2'), size: 2 << 20 });
  const src = await openImage(join(d, 'src.raw'), { format: 'raw' });
  const raw = await openImage(join(d, 'dst.raw'), { format: 'raw', readOnly: false });
  const q = await openImage(join(d, 'dst.qcow2'), { format: 'qcow2', readOnly: false });
  assert.equal(await copyRange(src, 4096, 65536, raw, 1 << 20), true);
  assert.equal(await copyRange(src, 0, 65536, q, 0), false, 'a qcow2 target is written through its driver');
  await raw.close();
  await q.close();
  await src.close();
  const out = readFileSync(join(d, 'dst.raw'));
  assert.ok(out.subarray(1 << 20, (1 << 20) + 65536).equals(data.subarray(4096, 4096 + 65536)));
  assert.equal(out.subarray(0, 1 << 20).every((b) => b === 0), true);
});
