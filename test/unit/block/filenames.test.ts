import { test } from 'node:test';
import assert from 'node:assert/strict';
import { combinePaths, hostPath, protocolPrefix } from '../../../dist/block/filenames.js';

test('protocolPrefix sees a protocol only when a colon comes before any slash', () => {
  assert.equal(protocolPrefix('nbd:unix:/x'), 'nbd');
  assert.equal(protocolPrefix('a:b.qcow2'), 'a');
  assert.equal(protocolPrefix('./a:b.qcow2'), undefined);
  assert.equal(protocolPrefix('/d/a:b'), undefined);
  assert.equal(protocolPrefix('plain.qcow2'), undefined);
});

test('hostPath strips file:, guards a colon left in the name with ./, and refuses unknown protocols', () => {
  assert.equal(hostPath('file:x.qcow2'), 'x.qcow2');
  assert.equal(hostPath('file:a:b.qcow2'), './a:b.qcow2');
  assert.equal(hostPath('file:a:b.qcow2', true), 'a:b.qcow2');
  assert.equal(hostPath('file:/d/a:b'), '/d/a:b');
  assert.equal(hostPath('nbd:host:1'), 'nbd:host:1');
  assert.throws(() => hostPath('foo:bar'), /Unknown protocol 'foo'/);
  assert.throws(() => hostPath('file:'), /requires a file name/);
});

test('combinePaths joins like qemu path_combine, without normalizing', () => {
  assert.equal(combinePaths('/d/t.qcow2', './b.qcow2'), '/d/./b.qcow2');
  assert.equal(combinePaths('t.qcow2', 'b.qcow2'), 'b.qcow2');
  assert.equal(combinePaths('./t.qcow2', 'b.qcow2'), './b.qcow2');
  assert.equal(combinePaths('sub/../t.qcow2', 'b'), 'sub/../b');
  assert.equal(combinePaths('/d/t.qcow2', '/abs/b'), '/abs/b');
  assert.equal(combinePaths('/d/t.qcow2', 'nbd:x'), 'nbd:x');
});
