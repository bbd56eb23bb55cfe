import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_QUORUM_CHILDREN, quorumOptions } from '../../../dist/block/quorum.js';

const children = (n: number): Record<string, string> => {
  const o: Record<string, string> = { 'file.vote-threshold': '1' };
  for (let i = 0; i < n; i++) {
    o[`file.children.${i}.driver`] = 'file';
    o[`file.children.${i}.filename`] = `/x/${i}.raw`;
  }
  return o;
};

test('a quorum takes up to MAX_QUORUM_CHILDREN children and refuses more as a limit', () => {
  assert.equal(quorumOptions(children(MAX_QUORUM_CHILDREN), 'file.').children.length, MAX_QUORUM_CHILDREN);
  assert.throws(() => quorumOptions(children(MAX_QUORUM_CHILDREN + 1), 'file.'),
    (e: Error & { kind?: string }) => e.kind === 'limit' && /at most 32 children/.test(e.message));
});

test('quorum children keep their own options and index order; settings default as qemu documents', () => {
  const { settings, children: c } = quorumOptions({
    'children.1.driver': 'qcow2', 'children.1.file.filename': '/b.qcow2', 'children.0.driver': 'file', 'children.0.filename': '/a.raw',
    'vote-threshold': '2',
  }, '');
  assert.deepEqual(settings, { threshold: 2, readPattern: 'quorum', rewriteCorrupted: false, blkverify: false });
  assert.deepEqual(c, [{ driver: 'file', filename: '/a.raw', options: {} }, { driver: 'qcow2', filename: '/b.qcow2', options: {} }]);
});
