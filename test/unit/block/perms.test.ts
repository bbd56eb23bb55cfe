/**
 * The permissions each open takes and shares, pinned to the lock bytes qemu-img 7.2 was seen to
 * hold (strace of its fcntl calls): lockPlan(filePerms(...)).take lists the bytes in its order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CREATE_PERMS, filePerms, type PermRequest } from '../../../dist/block/perms.js';
import { lockPlan } from '../../../dist/protocols/file-lock.js';

function bytes(r: PermRequest): number[] {
  return lockPlan(filePerms(r)).take;
}

test('qcow2 read-only opens hold read and refuse writers and resizers (map, check, compare)', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: true }), [100, 201, 203]);
});

test('qemu-img info reads no data: a qcow2 holds only its refusals, a raw file nothing', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: true, noIo: true }), [201, 203]);
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: false, noIo: true }), []);
});

test('writable qcow2 opens take read, write and resize and refuse write and resize', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: false, metadata: true }), [100, 101, 103, 201, 203]);
});

test('raw passes the opener\'s permissions through and shares everything', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: false }), [100]);
  assert.deepEqual(bytes({ role: 'image', readOnly: false, metadata: false }), [100, 101]);
  assert.deepEqual(bytes({ role: 'image', readOnly: false, metadata: false, resize: true }), [100, 101, 103]);
});

test('convert\'s sources refuse writers even when raw', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: false, noShare: true }), [100, 201, 203]);
});

test('backing files are read and share everything their format allows', () => {
  assert.deepEqual(bytes({ role: 'backing', readOnly: true, metadata: false }), [100]);
  assert.deepEqual(bytes({ role: 'backing', readOnly: true, metadata: true }), [100, 201, 203]);
});

test('force-share lets others do everything, even below a qcow2', () => {
  assert.deepEqual(bytes({ role: 'image', readOnly: true, metadata: true, forceShare: true }), [100]);
});

test('an external data file refuses resizes and is resized when writable', () => {
  assert.deepEqual(bytes({ role: 'data', readOnly: true, metadata: false }), [100, 203]);
  assert.deepEqual(bytes({ role: 'data', readOnly: false, metadata: false, resize: true }), [100, 101, 103, 203]);
  assert.deepEqual(bytes({ role: 'data', readOnly: true, metadata: false, noShare: true }), [100, 201, 203]);
});

test('creating a file takes write and resize and refuses resizes', () => {
  assert.deepEqual(lockPlan(CREATE_PERMS).take, [101, 103, 203]);
});
