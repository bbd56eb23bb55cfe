import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCreateOptions } from '../../../dist/cli/createopts.js';
import type { FormatDriver } from '../../../dist/block/driver.js';

const driver = {
  name: 'x', open: () => Promise.reject(new Error('unused')),
  createOptions: [{ name: 'n', type: 'number', help: '' }],
} as unknown as FormatDriver;

const parse = (v: string): string | undefined => parseCreateOptions(driver, `n=${v}`, []).get('n');

test('a negative number option wraps around as strtoull does (-1 is 2^64-1)', () => {
  assert.equal(parse('-1'), (2n ** 64n - 1n).toString());
  assert.equal(parse('-0'), '0');
  assert.equal(parse('0x10'), '16');
});

test('a number option of 2^64 or more is too large, with qemu wording', () => {
  assert.throws(() => parse('18446744073709551616'), /Value '18446744073709551616' is too large for parameter 'n'/);
  assert.throws(() => parse('abc'), /Parameter 'n' expects a number$/);
});
