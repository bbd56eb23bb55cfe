/**
 * Image.chainStatusRunsSync: many chain runs at once in a StatusRuns buffer, the same runs as
 * chainStatus gives one call at a time (cut at each layer's run boundaries), stopping where a
 * layer cannot answer without I/O and at the buffer's limit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Image, MutableBackingReader, type ChainStatus } from '../../../dist/block/image.js';
import type { FormatLayer, LayerStatus } from '../../../dist/block/driver.js';
import type { Protocol } from '../../../dist/protocols/types.js';
import {
  RUN_ALLOCATED, RUN_COMPRESSED, RUN_DATA, RUN_HOST, RUN_NO_ASK_HOST, RUN_ZERO, StatusRuns,
} from '../../../dist/block/status-runs.js';
import { asChainStatus } from '../../helpers/status-runs.ts';

/** Per 512-byte block at an offset: a byte value (0 reads as zeros, no data), or 'c' compressed data. */
type Blocks = Map<number, number | 'c'>;

/** A layer defining `own`; data blocks are stored at host offset guest + 1 MiB (so consecutive blocks continue). */
function layer(size: number, own: Blocks, batch: boolean): FormatLayer {
  const status = (offset: number, length: number): LayerStatus => {
    const kind = (o: number): string => {
      const v = own.get(o - (o % 512));
      return v === undefined ? 'u' : v === 0 ? '0' : v === 'c' ? 'c' : '1';
    };
    const k = kind(offset);
    let n = 512 - (offset % 512);
    while (n < length && kind(offset + n) === k) n += 512;
    const st: LayerStatus = { length: Math.min(n, length), allocated: k !== 'u', zero: k === '0', data: k === '1' || k === 'c' };
    if (k === '1') {
      st.hostOffset = offset + (1 << 20);
      st.askHost = false;
    }
    if (k === 'c') st.compressed = true;
    return st;
  };
  const l: FormatLayer = {
    size,
    async read() {},
    async blockStatus(offset, length) { return status(offset, length); },
    async info() { return {}; },
    async close() {},
  };
  if (batch) {
    l.blockStatusRunsSync = (offset, length, out) => {
      out.count = 0;
      out.hostFile = undefined;
      for (let pos = offset; pos < offset + length && !out.full;) {
        const st = status(pos, offset + length - pos);
        const f = (st.allocated ? RUN_ALLOCATED : 0) | (st.zero ? RUN_ZERO : 0) | (st.data ? RUN_DATA : 0)
          | (st.compressed ? RUN_COMPRESSED : 0) | (st.hostOffset !== undefined ? RUN_HOST | RUN_NO_ASK_HOST : 0);
        out.push(st.length, f, st.hostOffset ?? -1, 0);
        pos += st.length;
      }
      return out.count;
    };
  }
  return l;
}

const nullProto: Protocol = {
  protocol: 'null', filename: 'mem', readOnly: true,
  async pread() {}, async pwrite() {}, async size() { return 0; }, async truncate() {}, async flush() {},
  async close() {}, async allocatedSize() { return 0; },
};

function image(name: string, size: number, own: Blocks, batch = true): Image {
  const br = new MutableBackingReader();
  return new Image(layer(size, own, batch), nullProto, { filename: name, format: 'test', probed: false, readOnly: true }, br);
}

/** `spec` as 512-byte blocks: '.' not defined, '0' zeros, 'c' compressed, other digits data. */
function blocks(spec: string): Blocks {
  const m: Blocks = new Map();
  [...spec].forEach((c, i) => {
    if (c !== '.') m.set(i * 512, c === 'c' ? 'c' : Number(c));
  });
  return m;
}

async function perCall(img: Image, offset: number, end: number): Promise<ChainStatus[]> {
  const out: ChainStatus[] = [];
  for (let pos = offset; pos < end;) {
    const st = await img.chainStatus(pos, end - pos);
    out.push(st);
    pos += st.length;
  }
  return out;
}

function batch(img: Image, offset: number, end: number, capacity = 64): ChainStatus[] {
  const out: ChainStatus[] = [];
  const r = new StatusRuns(capacity);
  for (let pos = offset; pos < end;) {
    r.count = 0;
    const n = img.chainStatusRunsSync(pos, end - pos, r);
    assert.ok(n > 0, `covers something at ${pos}`);
    assert.ok(r.count <= capacity);
    let sum = 0;
    for (let i = 0; i < r.count; i++) {
      out.push(asChainStatus(r, i));
      sum += r.lengths[i]!;
    }
    assert.equal(sum, n, 'the runs add up to the bytes covered');
    pos += n;
  }
  return out;
}

function chain(): Image {
  const base = image('base', 16 * 512, blocks('11.0c22..1111'));
  const mid = image('mid', 20 * 512, blocks('..3.....00..........'));
  const top = image('top', 24 * 512, blocks('4.........44......55....'));
  mid.linkBacking(base);
  top.linkBacking(mid);
  return top;
}

test('chain runs at once are chainStatus\'s runs, with depths, host offsets and past the short backing files', async () => {
  const top = chain();
  for (const [from, to] of [[0, 24 * 512], [700, 20 * 512 + 3], [13 * 512, 24 * 512]] as const) {
    assert.deepEqual(batch(top, from, to), await perCall(top, from, to));
  }
});

test('chain runs stop at the buffer\'s limit and go on from there', async () => {
  const top = chain();
  for (const cap of [1, 2, 3, 5]) assert.deepEqual(batch(top, 0, 24 * 512, cap), await perCall(top, 0, 24 * 512));
});

test('chain runs stop where a layer cannot answer at once: at once at the top, below at the first run it would define', () => {
  const r = new StatusRuns(16);
  assert.equal(image('raw', 4096, blocks('11'), false).chainStatusRunsSync(0, 4096, r), 0);
  const top = image('top', 8 * 512, blocks('44..4'));
  top.linkBacking(image('base', 8 * 512, blocks('11111111'), false));
  r.count = 0;
  assert.equal(top.chainStatusRunsSync(0, 8 * 512, r), 1024);
  assert.equal(r.count, 1);
  r.count = 0;
  assert.equal(top.chainStatusRunsSync(1024, 6 * 512, r), 0);
  assert.equal(r.count, 0);
});

test('data that may sit in a hole of the host file is left to chainStatus (it asks the file)', () => {
  const l = layer(4096, blocks('1'), true);
  const inner = l.blockStatusRunsSync!.bind(l);
  l.blockStatusRunsSync = (offset, length, out) => {
    const n = inner(offset, length, out);
    for (let i = 0; i < n; i++) out.flags[i] = out.flags[i]! & ~RUN_NO_ASK_HOST;
    return n;
  };
  const img = new Image(l, nullProto, { filename: 'pre', format: 'test', probed: false, readOnly: true }, new MutableBackingReader());
  const r = new StatusRuns(16);
  assert.equal(img.chainStatusRunsSync(0, 4096, r), 0);
});

test('a layer run longer than what was asked is refused as chainStatus refuses it', () => {
  const l = layer(4096, blocks('1'), true);
  l.blockStatusRunsSync = (_offset, _length, out) => {
    out.count = 0;
    out.push(8192, RUN_ALLOCATED | RUN_DATA, -1, 0);
    return 1;
  };
  const img = new Image(l, nullProto, { filename: 'bad', format: 'test', probed: false, readOnly: true }, new MutableBackingReader());
  assert.throws(() => img.chainStatusRunsSync(0, 4096, new StatusRuns(4)), { code: 'BAD_BLOCK_STATUS' });
});
