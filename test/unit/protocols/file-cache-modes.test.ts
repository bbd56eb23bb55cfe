/**
 * The file protocol honours qemu's cache modes: unsafe never passes a flush to the host (qemu-img
 * convert's default), writeback flushes when asked, writethrough/directsync open with O_DSYNC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FileProtocol } from '../../../dist/protocols/file.js';
import { parseCacheMode, type CacheMode } from '../../../dist/protocols/types.js';
import { scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-cache-');
const O_DSYNC = 0o10000;

/** Count the fdatasync calls FileHandles make while `fn` runs. */
async function countDatasyncs(fn: () => Promise<void>): Promise<number> {
  const probe = await open(join(dir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  const orig = proto.datasync;
  let n = 0;
  proto.datasync = function (this: unknown) { n++; return orig.call(this); };
  try { await fn(); } finally { proto.datasync = orig; }
  return n;
}

function fdFlags(fd: number): number {
  const m = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return parseInt(m![1]!, 8);
}

for (const [mode, flushes] of [['unsafe', 0], ['writeback', 1], ['none', 1]] as const) {
  test(`cache=${mode}: flush ${flushes ? 'reaches' : 'never reaches'} the host`, async () => {
    const f = await FileProtocol.open(join(dir, `f-${mode}`), { readOnly: false, create: true, cache: mode });
    const n = await countDatasyncs(async () => {
      await f.pwrite(new Uint8Array(512).fill(1), 0);
      await f.flush();
    });
    await f.close();
    assert.equal(n, flushes);
  });
}

for (const mode of ['writethrough', 'directsync', 'writeback', 'unsafe'] as const satisfies readonly CacheMode[]) {
  const dsync = mode === 'writethrough' || mode === 'directsync';
  test(`cache=${mode}: the file is ${dsync ? '' : 'not '}opened O_DSYNC`, async () => {
    const f = await FileProtocol.open(join(dir, `d-${mode}`), { readOnly: false, create: true, cache: mode });
    try {
      assert.equal((fdFlags(f.fd) & O_DSYNC) !== 0, dsync);
    } finally {
      await f.close();
    }
  });
}

test('cache mode names are qemu-img\'s -t words', () => {
  for (const m of ['writeback', 'unsafe', 'writethrough', 'directsync', 'none', 'off']) assert.equal(parseCacheMode(m), m);
  assert.equal(parseCacheMode('fast'), undefined);
  assert.equal(parseCacheMode(''), undefined);
});
