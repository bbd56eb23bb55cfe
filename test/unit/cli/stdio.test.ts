/**
 * StdoutStream writes as C stdio does when stdout is not a terminal: whole 4096-byte blocks as
 * soon as they are complete, the rest at the end; text split inside a UTF-8 sequence still comes
 * out whole when only text output is available; a stream that asks to wait is waited for. Text
 * encoded in place (reserve/commit) goes out the same way; with heldBytes, complete blocks wait
 * and go out together, or at flushBlocks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StdoutStream } from '../../../dist/cli/stdio.js';
import type { Cli } from '../../../dist/cli/context.js';

function fakeCli(extra: Partial<Cli>): Cli {
  const none = (): never => { throw new Error('not used'); };
  return { prog: 'vdisk', isTTY: false, out: none, errRaw: none, error: none, usageError: none, fail: none, ...extra };
}

test('output goes out in whole 4096-byte blocks, and the rest at the end', () => {
  const writes: Buffer[] = [];
  const s = new StdoutStream(fakeCli({ outBytes: (b) => { writes.push(Buffer.from(b)); return true; } }));
  const line = `${'x'.repeat(99)}\n`;
  for (let i = 0; i < 1000; i++) s.write(line);
  assert.ok(writes.length > 0);
  for (const w of writes) assert.equal(w.length % 4096, 0);
  const before = writes.length;
  s.end();
  assert.equal(writes.length, before + 1);
  assert.equal(Buffer.concat(writes).toString(), line.repeat(1000));
});

test('a long text larger than the slab comes out whole', () => {
  const writes: Buffer[] = [];
  const s = new StdoutStream(fakeCli({ outBytes: (b) => { writes.push(Buffer.from(b)); return true; } }));
  const big = 'é'.repeat(300000);
  s.write('a');
  s.write(big);
  s.end();
  assert.equal(Buffer.concat(writes).toString(), `a${big}`);
});

test('with text output only, a block boundary inside a UTF-8 sequence loses nothing', () => {
  let text = '';
  const s = new StdoutStream(fakeCli({ out: (t) => { text += t; } }));
  s.write('a'.repeat(4095));
  s.write('€uro');
  s.end();
  assert.equal(text, `${'a'.repeat(4095)}€uro`);
});

test('a stream that asks to wait is waited for before more is written', async () => {
  let drained = 0;
  const s = new StdoutStream(fakeCli({ outBytes: () => false, drain: async () => { drained++; } }));
  s.write('y'.repeat(5000));
  assert.equal(s.mustDrain, true);
  await s.drain();
  assert.equal(drained, 1);
  assert.equal(s.mustDrain, false);
});

test('text encoded in place (reserve, at, commit) goes out as written text would', () => {
  const writes: Buffer[] = [];
  const s = new StdoutStream(fakeCli({ outBytes: (b) => { writes.push(Buffer.from(b)); return true; } }));
  let want = '';
  for (let i = 0; i < 3000; i++) {
    const line = `line ${i} ü\n`;
    if (i % 2) {
      s.write(line);
    } else {
      const buf = s.reserve(3 * line.length);
      s.commit(s.at() + buf.write(line, s.at(), 'utf8'));
    }
    want += line;
  }
  for (const w of writes) assert.equal(w.length % 4096, 0);
  s.end();
  assert.equal(Buffer.concat(writes).toString(), want);
});

test('held blocks go out together once more than heldBytes are held, and at flushBlocks', () => {
  const writes: number[] = [];
  const s = new StdoutStream(fakeCli({ outBytes: (b) => { writes.push(b.length); return true; } }), 5 * 4096);
  s.write('z'.repeat(4 * 4096 + 10));
  assert.deepEqual(writes, []);
  s.write('z'.repeat(2 * 4096));
  assert.deepEqual(writes, [6 * 4096]);
  s.write('z'.repeat(4096));
  s.flushBlocks();
  assert.deepEqual(writes, [6 * 4096, 4096]);
  s.end();
  assert.deepEqual(writes, [6 * 4096, 4096, 10]);
});

test('on a terminal, text encoded in place goes out at once', () => {
  let text = '';
  const s = new StdoutStream(fakeCli({ isTTY: true, out: (t) => { text += t; } }));
  const buf = s.reserve(16);
  s.commit(s.at() + buf.write('naïve\n', s.at(), 'utf8'));
  assert.equal(text, 'naïve\n');
});
