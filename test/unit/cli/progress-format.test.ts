import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Progress } from '../../../dist/cli/progress.js';

function lines(fn: (p: Progress) => void, repeatZero = false): string[] {
  const out: string[] = [];
  const p = new Progress(true, (s) => out.push(s), repeatZero);
  fn(p);
  p.end();
  return out.join('').split('\r').map((s) => s.trim()).filter(Boolean);
}

test('progress prints a C float with ties to even, as qemu\'s %3.2f does', () => {
  assert.deepEqual(lines((p) => p.update(3.125, 100)), ['(0.00/100%)', '(3.12/100%)', '(100.00/100%)']);
  assert.deepEqual(lines((p) => p.update(3.375, 100)), ['(0.00/100%)', '(3.38/100%)', '(100.00/100%)']);
});

test('progress prints a step back of more than a percent (amend refcount walks)', () => {
  assert.deepEqual(lines((p) => { p.update(2, 3); p.update(1, 2); }), ['(0.00/100%)', '(66.67/100%)', '(50.00/100%)', '(100.00/100%)']);
});

test('amend progress prints every report of zero and one closing 100 %', () => {
  assert.deepEqual(lines((p) => p.update(0, 8), true), ['(0.00/100%)', '(0.00/100%)', '(100.00/100%)']);
  assert.deepEqual(lines((p) => p.update(8, 8)), ['(0.00/100%)', '(100.00/100%)', '(100.00/100%)']);
});
