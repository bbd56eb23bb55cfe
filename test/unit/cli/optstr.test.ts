import { test } from 'node:test';
import assert from 'node:assert/strict';
import { optListWantsHelp, parseOptString, parseImageSpec, splitOptString, Secrets, flattenJson, MAX_JSON_NESTING } from '../../../dist/cli/optstr.js';
import { isValidOptionList } from '../../../dist/cli/createopts.js';

test('double commas stand for a literal comma inside a value', () => {
  assert.deepEqual(splitOptString('a=1,,2,b=3'), ['a=1,2', 'b=3']);
  assert.deepEqual(parseOptString('backing_file=x,,y.img,cluster_size=4k'), [['backing_file', 'x,y.img'], ['cluster_size', '4k']]);
});

test('a name ends at the first = or comma: double commas escape values only, as QemuOpts reads them', () => {
  assert.deepEqual(parseOptString('help,,'), [['help', 'on'], ['', 'on']]);
  assert.deepEqual(parseOptString('a,,help'), [['a', 'on'], ['', 'on'], ['help', 'on']]);
  assert.deepEqual(parseOptString('nohelp,x=1,'), [['help', 'off'], ['x', '1']]);
  assert.deepEqual(parseOptString('secret,,x,id=s0', 'qom-type'), [['qom-type', 'secret,x'], ['id', 's0']]);
});

test('help is wanted only as a flag item', () => {
  assert.equal(optListWantsHelp('size=1,help'), true);
  assert.equal(optListWantsHelp('?,size=1'), true);
  assert.equal(optListWantsHelp('help,,'), true);
  assert.equal(optListWantsHelp('help=x'), false);
  assert.equal(optListWantsHelp('nohelp'), false);
  assert.equal(optListWantsHelp('backing_file=x,,help'), false);
});

test('an option list is refused when empty, led by a comma or ended by an odd run of commas', () => {
  for (const ok of ['a=1', 'a=1,,', 'a=1,,,,', 'help,,', 'a,,b']) assert.equal(isValidOptionList(ok), true, ok);
  for (const bad of ['', ',a', ',,', 'a=1,', 'a=1,,,']) assert.equal(isValidOptionList(bad), false, bad);
});

test('a bare first item takes the implied key; later bare items mean on', () => {
  assert.deepEqual(parseOptString('secret,id=s0,data=x', 'qom-type'), [['qom-type', 'secret'], ['id', 's0'], ['data', 'x']]);
  assert.deepEqual(parseOptString('lazy_refcounts'), [['lazy_refcounts', 'on']]);
});

test('--image-opts and json: filenames resolve to a file name, a driver and dotted options', () => {
  assert.deepEqual(parseImageSpec('driver=qcow2,file.filename=a.qcow2,encrypt.key-secret=s0', true),
    { filename: 'a.qcow2', format: 'qcow2', options: { 'encrypt.key-secret': 's0' } });
  assert.deepEqual(parseImageSpec('json:{"driver":"raw","file":{"driver":"file","filename":"a.raw"}}', false),
    { filename: 'a.raw', format: 'raw', options: {} });
  assert.deepEqual(parseImageSpec('plain.img', false), { filename: 'plain.img', options: {} });
  assert.throws(() => parseImageSpec('json:{bad', false), /Could not parse the JSON options/);
});

test('flattenJson makes dotted keys from nested objects', () => {
  assert.deepEqual(flattenJson({ a: { b: 1, c: { d: true } } }), { 'a.b': '1', 'a.c.d': 'true' });
});

test('secret objects hold data, base64 data, and reject other object types', () => {
  const s = new Secrets();
  s.add('secret,id=a,data=hello');
  s.add('secret,id=b,data=aGk=,format=base64');
  assert.equal(Buffer.from(s.get('a')!).toString(), 'hello');
  assert.equal(Buffer.from(s.get('b')!).toString(), 'hi');
  assert.throws(() => s.add('foo,id=x'), /Parameter 'qom-type' does not accept value 'foo'/);
  assert.throws(() => s.add('secret,id=a,data=again'), /duplicate/);
});

test('json: names nest up to MAX_JSON_NESTING levels; deeper ones are refused with qemu\'s message', () => {
  const nested = (n: number): string => `json:{"driver":"raw","file.filename":"x","n":${'['.repeat(n - 1)}${']'.repeat(n - 1)}}`;
  assert.doesNotThrow(() => parseImageSpec(nested(MAX_JSON_NESTING), false));
  assert.throws(() => parseImageSpec(nested(MAX_JSON_NESTING + 1), false), /^.*Could not parse the JSON options: JSON nesting depth limit exceeded$/);
  assert.throws(() => parseImageSpec(`json:${'['.repeat(100000)}`, false), /JSON nesting depth limit exceeded/);
});
