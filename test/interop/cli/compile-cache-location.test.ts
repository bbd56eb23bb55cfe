/**
 * Where bin/vdisk keeps Node's module compile cache: in the user's existing cache directory, and
 * nowhere when that directory does not exist (a CLI must not create a home: qemu's iotest 051 runs
 * with HOME pointing at a path that has to stay absent).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { run, scratch, VDISK } from '../../helpers/oracle.ts';

const env = (home: string): Record<string, string> => ({ HOME: home, XDG_CACHE_HOME: '' });

test('a HOME that does not exist is not created by the compile cache', () => {
  const dir = scratch('vdisk-home-');
  const home = join(dir, 'absent');
  const r = run(VDISK, ['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '1M'], { env: env(home) });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(home), false);
});

test('an existing ~/.cache gets the compile cache under vdisk/compile-cache', () => {
  const home = scratch('vdisk-home-');
  mkdirSync(join(home, '.cache'));
  // the cache is written when a run has compiled modules (not for --version)
  const r = run(VDISK, ['create', '-q', '-f', 'qcow2', join(home, 'a.qcow2'), '1M'], { env: env(home) });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(join(home, '.cache', 'vdisk', 'compile-cache')), true);
});
