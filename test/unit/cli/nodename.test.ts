import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compactJson, filterTreeName } from '../../../dist/cli/nodename.js';

test('trees without blkdebug or quorum keep the name they were given', () => {
  assert.equal(filterTreeName({ driver: 'qcow2', 'file.filename': '/a.qcow2' }), undefined);
});

test('blkdebug without rules of its own is named blkdebug:CONFIG:FILE, nested filters compose', () => {
  assert.equal(filterTreeName({ driver: 'qcow2', file: { driver: 'blkdebug', image: { filename: '/a' } } }), 'blkdebug::/a');
  assert.equal(filterTreeName({ driver: 'qcow2', 'file.driver': 'blkdebug', 'file.config': '/c', 'file.image.filename': '/a' }), 'blkdebug:/c:/a');
  assert.equal(filterTreeName({ driver: 'blkdebug', image: { driver: 'raw', file: { driver: 'blkdebug', image: { driver: 'file', filename: '/a' } } } }),
    'blkdebug::blkdebug::/a');
});

test('blkdebug rule lists print flattened with their given types; quorum children print as a list', () => {
  const name = filterTreeName({ driver: 'raw', file: { driver: 'blkdebug', 'inject-error': [{ event: 'read_aio', errno: 5 }], image: { filename: '/a' } } });
  assert.match(name!, /^json:\{/);
  assert.match(name!, /"inject-error\.0\.errno": 5/);
  assert.match(name!, /"inject-error\.0\.event": "read_aio"/);
  const q = filterTreeName({ driver: 'raw', 'file.driver': 'quorum', 'file.vote-threshold': '1', 'file.children.0.driver': 'file', 'file.children.0.filename': '/a' });
  assert.match(q!, /"children": \[\{"driver": "file", "filename": "\/a"\}\]/);
  assert.match(q!, /"vote-threshold": "1"/);
});

test('compact JSON uses qemu\'s separators', () => {
  assert.equal(compactJson({ a: [1, 'x', true], b: { c: null } }), '{"a": [1, "x", true], "b": {"c": null}}');
});

test('option keys deeper than JSON may nest give no rebuilt name (the walks over the tree recurse)', () => {
  const deep = `${'file.'.repeat(30000)}x`;
  assert.equal(filterTreeName({ driver: 'raw', 'file.driver': 'blkdebug', 'file.image.filename': '/a', [deep]: '1' }), undefined);
});
