import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Image, MutableBackingReader } from '../../../dist/block/image.js';
import type { FormatLayer, LayerStatus } from '../../../dist/block/driver.js';
import type { Protocol } from '../../../dist/protocols/types.js';

/** A layer that defines the bytes in `own` (offset -> byte value) per 512-byte block, reading the rest from below. */
function layer(size: number, own: Map<number, number>, backing: MutableBackingReader): FormatLayer {
  return {
    size,
    async read(buf, offset) {
      for (let b = 0; b < buf.length; b += 512) {
        const v = own.get(offset + b);
        if (v === undefined) await backing.read(buf.subarray(b, b + 512), offset + b);
        else buf.fill(v, b, b + 512);
      }
    },
    async blockStatus(offset, length): Promise<LayerStatus> {
      const allocated = own.has(offset);
      let n = 512;
      while (n < length && own.has(offset + n) === allocated) n += 512;
      const v = own.get(offset);
      return { length: Math.min(n, length), allocated, zero: v === 0, data: allocated && v !== 0 };
    },
    async info() { return {}; },
    async close() {},
  };
}

const nullProto: Protocol = {
  protocol: 'null', filename: 'mem', readOnly: true,
  async pread() {}, async pwrite() {}, async size() { return 0; }, async truncate() {}, async flush() {},
  async close() {}, async allocatedSize() { return 0; },
};

function image(name: string, size: number, own: Map<number, number>, readOnly = true): Image {
  const br = new MutableBackingReader();
  return new Image(layer(size, own, br), nullProto, { filename: name, format: 'test', probed: false, readOnly }, br);
}

test('unallocated ranges read from the backing image, and past a short backing file as zeros', async () => {
  const base = image('base', 1024, new Map([[0, 7], [512, 8]]));
  const top = image('top', 2048, new Map([[512, 9]]));
  top.linkBacking(base);
  const buf = new Uint8Array(2048).fill(0xff);
  await top.read(buf, 0);
  assert.equal(buf[0], 7);
  assert.equal(buf[512], 9);
  assert.equal(buf[1024], 0);
  assert.equal(buf[2047], 0);
});

test('chain status reports the depth of the defining layer and absence past the chain', async () => {
  const base = image('base', 1024, new Map([[0, 7]]));
  const top = image('top', 2048, new Map([[512, 9]]));
  top.linkBacking(base);
  assert.deepEqual(await top.chainStatus(0, 2048), { length: 512, present: true, zero: false, data: true, depth: 1 });
  const s1 = await top.chainStatus(512, 1536);
  assert.equal(s1.depth, 0);
  assert.equal(s1.length, 512);
  // past the end of a short backing file the top layer answers, as in qemu's map
  const s2 = await top.chainStatus(1024, 1024);
  assert.deepEqual(s2, { length: 1024, present: false, zero: true, data: false, depth: 0 });
  // unallocated everywhere: the bottom layer answers
  const s3 = await top.chainStatus(0, 512).then(() => base.chainStatus(512, 512));
  assert.equal(s3.present, false);
  const mid = image('mid', 1024, new Map());
  mid.linkBacking(image('bottom', 1024, new Map()));
  assert.equal((await mid.chainStatus(0, 1024)).depth, 1);
});

test('requests outside the image or writes to a read-only image are refused before the format sees them', async () => {
  const img = image('x', 1024, new Map());
  await assert.rejects(img.read(new Uint8Array(512), 1024), (e: any) => e.kind === 'out-of-bounds');
  await assert.rejects(img.read(new Uint8Array(512), -512), (e: any) => e.kind === 'out-of-bounds');
  await assert.rejects(img.write(new Uint8Array(512), 0), (e: any) => e.kind === 'permission');
  await img.close();
  await assert.rejects(img.read(new Uint8Array(512), 0), (e: any) => e.code === 'CLOSED');
});

test('write-zeroes is emulated with writes when a format lacks it', async () => {
  const writes: Array<[number, number]> = [];
  const br = new MutableBackingReader();
  const base = layer(4096, new Map(), br);
  const l: FormatLayer = { ...base, async write(buf, off) { writes.push([off, buf.length]); assert.ok(buf.every((b) => b === 0)); } };
  const img = new Image(l, nullProto, { filename: 'w', format: 'test', probed: false, readOnly: false }, br);
  await img.writeZeroes(512, 2048);
  assert.deepEqual(writes, [[512, 2048]]);
});
