import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getopt, type LongOption } from '../../../dist/cli/getopt.js';

const longs: LongOption[] = [
  { name: 'output', arg: 'required', key: 'output' },
  { name: 'backing-chain', arg: 'none', key: 'backing-chain' },
  { name: 'backing-format', arg: 'required', key: 'F' },
  { name: 'force-share', arg: 'none', key: 'U' },
];

test('clustered short options and attached arguments parse like getopt', () => {
  const r = getopt(['-qUfqcow2', 'x.img'], 'qUf:', longs);
  assert.ok(r.ok);
  assert.deepEqual(r.options.map((o) => [o.key, o.value]), [['q', undefined], ['U', undefined], ['f', 'qcow2']]);
  assert.deepEqual(r.operands, ['x.img']);
});

test('long options take values with = or as the next word', () => {
  for (const argv of [['--output=json', 'a'], ['--output', 'json', 'a']]) {
    const r = getopt(argv, 'f:', longs);
    assert.ok(r.ok);
    assert.deepEqual(r.options.map((o) => [o.key, o.value]), [['output', 'json']]);
    assert.deepEqual(r.operands, ['a']);
  }
});

test('options after operands are permuted, and -- ends options', () => {
  const r = getopt(['a', '-f', 'raw', '--', '-b', '--output=x'], 'f:b', longs);
  assert.ok(r.ok);
  assert.deepEqual(r.options.map((o) => o.key), ['f']);
  assert.deepEqual(r.operands, ['a', '-b', '--output=x']);
});

test('unambiguous prefixes of long options are accepted, ambiguous ones are not', () => {
  const ok = getopt(['--out=json'], '', longs);
  assert.ok(ok.ok);
  assert.equal(ok.options[0]?.key, 'output');
  const amb = getopt(['--backing'], '', longs);
  assert.deepEqual(amb, { ok: false, message: "unrecognized option '--backing'" });
});

test('unknown options and missing arguments are reported with qemu-img wording', () => {
  assert.deepEqual(getopt(['-Z'], 'f:', longs), { ok: false, message: "unrecognized option '-Z'" });
  assert.deepEqual(getopt(['--bogus'], 'f:', longs), { ok: false, message: "unrecognized option '--bogus'" });
  assert.deepEqual(getopt(['-f'], 'f:', longs), { ok: false, message: "missing argument for option '-f'" });
  assert.deepEqual(getopt(['--output'], 'f:', longs), { ok: false, message: "missing argument for option '--output'" });
  assert.deepEqual(getopt(['--force-share=1'], 'f:', longs), { ok: false, message: "unrecognized option '--force-share=1'" });
});

test('a lone dash is an operand', () => {
  const r = getopt(['-'], 'f:', longs);
  assert.ok(r.ok);
  assert.deepEqual(r.operands, ['-']);
});
