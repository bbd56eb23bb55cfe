/**
 * The block layer's hostile-input limits, crossed by crafted images: a backing chain one image
 * deeper than MAX_BACKING_CHAIN_DEPTH is refused with an error naming the top image (each image
 * is a qcow2 header whose backing file name points at the next one), the chain at the limit opens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../../dist/block/open.js';
import { MAX_BACKING_CHAIN_DEPTH } from '../../../dist/block/limits.js';
import { qemuImg, scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-block-limits-');

/** Images c0 … c{n-1}, each backed by the next (the last by none); returns c0's path. */
function chain(n: number): string {
  const base = join(dir, 'base.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']).code, 0);
  const bytes = readFileSync(base);
  for (let i = 0; i < n; i++) {
    const f = join(dir, `c${i}.qcow2`);
    writeFileSync(f, bytes);
    if (i === n - 1) continue;
    const name = Buffer.from(`c${i + 1}.qcow2`);
    const hdr = Buffer.alloc(12);
    hdr.writeBigUInt64BE(0x800n, 0);
    hdr.writeUInt32BE(name.length, 8);
    const fd = openSync(f, 'r+');
    writeSync(fd, hdr, 0, 12, 8);
    writeSync(fd, name, 0, name.length, 0x800);
    closeSync(fd);
  }
  return join(dir, 'c0.qcow2');
}

test('MAX_BACKING_CHAIN_DEPTH: a chain one backing file deeper than the limit is refused, the limit opens', async () => {
  assert.equal(MAX_BACKING_CHAIN_DEPTH, 256);
  const top = chain(MAX_BACKING_CHAIN_DEPTH + 2);
  await assert.rejects(openImage(top, { readOnly: true }),
    { message: `Could not open backing file: backing chain of '${top}' is deeper than ${MAX_BACKING_CHAIN_DEPTH}` });
  const img = await openImage(join(dir, 'c1.qcow2'), { readOnly: true });
  assert.equal(img.size, 1 << 20);
  await img.close();
});
