/**
 * The file protocol honours qemu's cache modes: unsafe never passes a flush to the host (qemu-img
 * convert's default), writeback flushes when asked, writethrough/directsync open with O_DSYNC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as fs from 'node:fs';
import { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { FileProtocol } from '../../../dist/protocols/file.js';
import { parseCacheMode, type CacheMode } from '../../../dist/protocols/types.js';
import { scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-cache-');
const O_DSYNC = 0o10000;

/**
 * Count the fdatasync calls made while `fn` runs. The file protocol calls node:fs's fdatasync;
 * syncBuiltinESMExports() hands the counting one to the modules that imported it by name.
 */
async function countDatasyncs(fn: () => Promise<void>): Promise<number> {
  const nodeFs = process.getBuiltinModule('node:fs') as { fdatasync: typeof fs.fdatasync };
  const orig = nodeFs.fdatasync;
  let n = 0;
  nodeFs.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => { n++; orig(fd, cb); }) as typeof fs.fdatasync;
  syncBuiltinESMExports();
  try { await fn(); } finally { nodeFs.fdatasync = orig; syncBuiltinESMExports(); }
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
