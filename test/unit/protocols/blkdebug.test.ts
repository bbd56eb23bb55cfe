import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BlkdebugRules, parseBlkdebugName, parseConfig, rulesFromOptions, loadConfigRules, MAX_BLKDEBUG_CONFIG_BYTES,
} from '../../../dist/protocols/blkdebug.js';
import { openImage } from '../../../dist/block/open.js';
import { scratch } from '../../helpers/oracle.ts';

test('a config file rule fails reads covering its sector, with its errno worded as strerror', () => {
  const rules = new BlkdebugRules(parseConfig('[inject-error]\nevent = "none"\nerrno = "28"\nsector = "8"\n'));
  rules.check('read', 0, 4096); // sector 8 starts at 4096: not covered
  assert.throws(() => rules.check('read', 4096, 512), (e: Error & { kind?: string }) => e.message === 'No space left on device' && e.kind === 'io');
  assert.throws(() => rules.check('read', 0, 8192), /No space left on device/);
});

test('rules without an iotype fail reads and writes but not block status (qemu\'s default mask)', () => {
  const rules = new BlkdebugRules(parseConfig('[inject-error]\nevent = "none"\n'));
  assert.throws(() => rules.check('read', 0, 512), /Input\/output error/);
  assert.throws(() => rules.check('write', 0, 512), /Input\/output error/);
  rules.check('block-status', 0, 512);
});

test('a once rule fires a single time', () => {
  const rules = new BlkdebugRules(rulesFromOptions({ 'inject-error.0.event': 'none', 'inject-error.0.once': 'on' }));
  assert.throws(() => rules.check('read', 0, 512));
  rules.check('read', 0, 512);
});

test('json option lists keep their rules in index order and their own iotypes', () => {
  const rules = rulesFromOptions({
    'inject-error.1.event': 'none', 'inject-error.1.iotype': 'read', 'inject-error.1.errno': '28',
    'inject-error.0.event': 'none', 'inject-error.0.iotype': 'block-status', 'inject-error.0.sector': '4',
  });
  assert.equal(rules.length, 2);
  assert.deepEqual([...rules[0]!.ioTypes], ['block-status']);
  assert.equal(rules[0]!.sector, 4);
  assert.equal(rules[1]!.errno, 28);
});

test('unknown keys, events and iotypes are refused with qemu\'s wording; unmodelled events by name', () => {
  assert.throws(() => parseConfig('[inject-error]\nevent = "none"\nbogus = "1"\n'), /: Invalid parameter 'bogus'$/);
  assert.throws(() => parseConfig('[inject-error]\nevent = "foo"\n'), /invalid parameter value: foo/);
  assert.throws(() => parseConfig('[inject-error]\nevent = "none"\niotype = "nope"\n'), /invalid parameter value: nope/);
  assert.throws(() => parseConfig('[inject-error]\nevent = "l2_load"\n'), /does not support the event 'l2_load'/);
  assert.throws(() => parseConfig('[set-var]\nevent = "none"\n'), /There is no option group 'set-var'/);
  assert.throws(() => parseConfig('[set-state]\nevent = "read_aio"\nerrno = "5"\n'), /Invalid parameter 'errno'/);
});

test('blkdebug:CONFIG:FILE names split at the first colon after the prefix; a missing config is qemu\'s error', async () => {
  assert.deepEqual(parseBlkdebugName('blkdebug:c.conf:img.raw'), { config: 'c.conf', file: 'img.raw' });
  assert.deepEqual(parseBlkdebugName('blkdebug::img.raw'), { config: '', file: 'img.raw' });
  assert.equal(parseBlkdebugName('img.raw'), undefined);
  await assert.rejects(loadConfigRules('/nonexistent/x.conf'), /Could not read blkdebug config file: No such file or directory/);
});

test('an image opened through blkdebug:CONFIG:FILE fails reads of the injected sector only', async () => {
  const d = scratch();
  writeFileSync(join(d, 'img.raw'), Buffer.alloc(8192, 7));
  writeFileSync(join(d, 'c.conf'), '[inject-error]\nevent = "read_aio"\nsector = "10"\n');
  const img = await openImage(`blkdebug:${join(d, 'c.conf')}:${join(d, 'img.raw')}`, { format: 'raw' });
  const buf = new Uint8Array(4096);
  await img.read(buf, 0);
  assert.equal(buf[0], 7);
  await assert.rejects(img.read(buf, 4096), /Input\/output error/);
  await img.close();
});

test('driver=blkdebug above a format reads the image below and injects block-status errors', async () => {
  const d = scratch();
  writeFileSync(join(d, 'img.raw'), Buffer.alloc(8192, 3));
  const img = await openImage(join(d, 'img.raw'), {
    format: 'blkdebug',
    options: { 'image.driver': 'raw', 'inject-error.0.event': 'none', 'inject-error.0.iotype': 'block-status', 'inject-error.0.sector': '1' },
  });
  const buf = new Uint8Array(512);
  await img.read(buf, 512);
  assert.equal(buf[0], 3);
  await assert.rejects(img.chainStatus(0, 8192), /Input\/output error/);
  assert.equal((await img.chainStatus(1024, 1024)).data, true);
  await img.close();
});

test('rules of an event arm when a format signals it, replacing the rules armed before', () => {
  const rules = new BlkdebugRules(parseConfig('[inject-error]\nevent = "read_aio"\nsector = "0"\n[inject-error]\nevent = "write_aio"\nerrno = "28"\n'));
  rules.check('read', 0, 512); // nothing signalled yet: a format's metadata reads pass
  rules.event('read_aio');
  assert.throws(() => rules.check('read', 0, 512), /Input\/output error/);
  rules.check('read', 512, 512);
  rules.event('write_aio');
  assert.throws(() => rules.check('read', 512, 512), /No space left on device/);
});

test('set-state rules move the state once an event was handled, and inject-error rules apply in their state only', () => {
  const rules = new BlkdebugRules(parseConfig([
    '[set-state]', 'event = "read_aio"', 'state = "1"', 'new_state = "2"',
    '[set-state]', 'event = "read_aio"', 'state = "2"', 'new_state = "3"',
    '[inject-error]', 'event = "read_aio"', 'state = "2"', 'errno = "28"', '',
  ].join('\n')));
  assert.equal(rules.currentState, 1);
  rules.event('read_aio'); // state 1: only the first set-state applies, no error armed
  assert.equal(rules.currentState, 2);
  rules.check('read', 0, 512);
  rules.event('read_aio'); // state 2: the error arms, and the state moves on to 3
  assert.equal(rules.currentState, 3);
  assert.throws(() => rules.check('read', 0, 512), /No space left on device/);
});

test('set-state rules come from set-state.N options as well', () => {
  const rules = new BlkdebugRules(rulesFromOptions({ 'set-state.0.event': 'read_aio', 'set-state.0.new_state': '42' }));
  rules.event('read_aio');
  assert.equal(rules.currentState, 42);
});

test('a blkdebug config file larger than MAX_BLKDEBUG_CONFIG_BYTES is refused as a limit, one at the limit is read', async () => {
  const d = scratch();
  const rule = '[inject-error]\nevent = "none"\n';
  writeFileSync(join(d, 'ok.conf'), rule + '#'.repeat(MAX_BLKDEBUG_CONFIG_BYTES - rule.length));
  assert.equal((await loadConfigRules(join(d, 'ok.conf'))).length, 1);
  writeFileSync(join(d, 'big.conf'), rule + '#'.repeat(MAX_BLKDEBUG_CONFIG_BYTES - rule.length + 1));
  await assert.rejects(loadConfigRules(join(d, 'big.conf')), (e: Error & { kind?: string }) => e.kind === 'limit');
  await assert.rejects(loadConfigRules('/dev/zero'), (e: Error & { kind?: string }) => e.kind === 'limit');
});
