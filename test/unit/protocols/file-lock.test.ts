/**
 * Image locking: the lock bytes qemu's file-posix driver uses (held permissions at 100+bit,
 * refused ones at 200+bit), the order of its checks and their messages, the locking= modes and
 * the fallbacks when OFD locks or the native helper are missing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  LOCK_FALLBACK_WARNING, LOCK_PERM_BASE, LOCK_SHARED_BASE, PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE,
  PERM_WRITE_UNCHANGED, applyFileLocks, lockPlan, parseLockingMode, type LockOps,
} from '../../../dist/protocols/file-lock.js';
import { native } from '../../../dist/protocols/native.js';
import { scratch } from '../../helpers/oracle.ts';

test('lock bytes sit at 100 + bit for held permissions and 200 + bit for refused ones', () => {
  assert.equal(LOCK_PERM_BASE, 100);
  assert.equal(LOCK_SHARED_BASE, 200);
  assert.deepEqual([PERM_CONSISTENT_READ, PERM_WRITE, PERM_WRITE_UNCHANGED, PERM_RESIZE], [1, 2, 4, 8]);
  // a writable qcow2 image as qemu-io holds it: 100 101 103 201 203 in /proc/locks
  const plan = lockPlan({ perm: PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE, shared: PERM_ALL & ~(PERM_WRITE | PERM_RESIZE) });
  assert.deepEqual(plan.take, [100, 101, 103, 201, 203]);
});

test('checks ask first for refusals of what is taken, then for holders of what is refused, in bit order', () => {
  const plan = lockPlan({ perm: PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE, shared: PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED });
  assert.deepEqual(plan.checks.map((c) => c.byte), [200, 201, 203, 101, 103]);
  assert.equal(plan.checks[1]!.message, 'Failed to get "write" lock');
  assert.equal(plan.checks[3]!.message, 'Failed to get shared "write" lock');
  assert.equal(plan.checks[4]!.message, 'Failed to get shared "resize" lock');
  assert.equal(plan.checks[0]!.message, 'Failed to get "consistent read" lock');
});

test('an opener that takes nothing and shares everything locks no byte', () => {
  assert.deepEqual(lockPlan({ perm: 0, shared: PERM_ALL }), { take: [], checks: [] });
});

test('locking= accepts on, off and auto only', () => {
  assert.equal(parseLockingMode('on'), 'on');
  assert.equal(parseLockingMode('off'), 'off');
  assert.equal(parseLockingMode('auto'), 'auto');
  assert.equal(parseLockingMode('yes'), undefined);
});

/** Lock calls recorded, with a chosen answer for OFD support and for the tests. */
function fakeOps(ofd: boolean, heldBytes: number[] = []): LockOps & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    ofdLocks: () => ofd,
    lockByte: (_fd, off, o, lock) => { calls.push(`${lock ? 'lock' : 'unlock'} ${off} ${o ? 'ofd' : 'posix'}`); },
    testByte: (_fd, off) => { calls.push(`test ${off}`); return heldBytes.includes(off); },
  };
}

const qcow2Reader = { perm: PERM_CONSISTENT_READ, shared: PERM_ALL & ~(PERM_WRITE | PERM_RESIZE) };

test('locking=auto without OFD locks takes no lock (qemu falls back to none)', () => {
  const ops = fakeOps(false);
  assert.equal(applyFileLocks(3, 'x.img', qcow2Reader, 'auto', undefined, ops), false);
  assert.deepEqual(ops.calls, []);
});

test('locking=on without OFD locks uses POSIX locks and warns as qemu does', () => {
  const ops = fakeOps(false);
  const warnings: string[] = [];
  assert.equal(applyFileLocks(3, 'x.img', qcow2Reader, 'on', (t) => warnings.push(t), ops), true);
  assert.deepEqual(warnings, [`warning: ${LOCK_FALLBACK_WARNING}\n`]);
  assert.ok(ops.calls.includes('lock 100 posix'));
});

test('locking=off and a missing native helper take no lock', () => {
  const ops = fakeOps(true, [101]);
  assert.equal(applyFileLocks(3, 'x.img', qcow2Reader, 'off', undefined, ops), false);
  assert.deepEqual(ops.calls, []);
  assert.equal(applyFileLocks(3, 'x.img', qcow2Reader, 'on', undefined, null), false);
});

test('a conflict is a busy error with qemu\'s two lines naming the file', () => {
  const ops = fakeOps(true, [101]);
  assert.throws(() => applyFileLocks(3, 'dir/t.qcow2', qcow2Reader, 'auto', undefined, ops),
    (e: Error & { kind?: string }) => e.kind === 'busy'
      && e.message === 'Failed to get shared "write" lock\nIs another process using the image [dir/t.qcow2]?');
});

test('a failing lock call reports the byte and the system error', () => {
  const ops: LockOps = {
    ofdLocks: () => true,
    lockByte: () => { throw Object.assign(new Error('lock: No locks available'), { errno: 37 }); },
    testByte: () => false,
  };
  assert.throws(() => applyFileLocks(3, 'x.img', qcow2Reader, 'auto', undefined, ops), /Failed to lock byte 100: No locks available/);
});

test('OFD locks of two opens of one file conflict inside one process', { skip: !native?.lockByte }, () => {
  const dir = scratch('file-lock');
  const f = join(dir, 'a.img');
  writeFileSync(f, Buffer.alloc(4096));
  const a = openSync(f, 'r');
  const b = openSync(f, 'r');
  try {
    assert.equal(applyFileLocks(a, f, { perm: PERM_CONSISTENT_READ | PERM_WRITE, shared: PERM_ALL }, 'auto'), true);
    assert.throws(() => applyFileLocks(b, f, qcow2Reader, 'auto'), /Failed to get shared "write" lock/);
    // the same open file description never conflicts with itself
    assert.equal(applyFileLocks(a, f, qcow2Reader, 'auto'), true);
  } finally {
    closeSync(a);
    closeSync(b);
  }
});
