/**
 * StdoutStream writes as C stdio does when stdout is not a terminal: whole 4096-byte blocks as
 * soon as they are complete, the rest at the end; text split inside a UTF-8 sequence still comes
 * out whole when only text output is available; a stream that asks to wait is waited for.
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
