import { test } from 'node:test';
import assert from 'node:assert/strict';
import { humanSize, parseSize } from '../../../dist/cli/units.js';

test('humanSize prints three significant digits like printf %0.3g, rounding ties to even', () => {
  assert.equal(humanSize(0), '0 B');
  assert.equal(humanSize(512), '512 B');
  assert.equal(humanSize(1536), '1.5 KiB');
  assert.equal(humanSize(1500160), '1.43 MiB');
  assert.equal(humanSize(1024000), '0.977 MiB');
  assert.equal(humanSize(4.625 * 1048576), '4.62 MiB');
  assert.equal(humanSize(123456789504), '115 GiB');
  assert.equal(humanSize(2 ** 40), '1 TiB');
});

test('parseSize takes qemu suffixes, hex without suffix, fractions only with a unit', () => {
  assert.deepEqual(parseSize('1M'), { ok: true, value: 1048576n });
  assert.deepEqual(parseSize('1.5G'), { ok: true, value: 1610612736n });
  assert.deepEqual(parseSize('1b'), { ok: true, value: 1n });
  assert.deepEqual(parseSize('0x100'), { ok: true, value: 256n });
  assert.deepEqual(parseSize(' 12'), { ok: true, value: 12n });
  assert.equal(parseSize('1.5').ok, false);
  assert.equal(parseSize('1kb').ok, false);
  assert.equal(parseSize('1e3').ok, false);
  assert.equal(parseSize('-1').ok, false);
  assert.deepEqual(parseSize('8E'), { ok: false, reason: 'range' });
});
