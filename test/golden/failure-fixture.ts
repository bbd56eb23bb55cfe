/**
 * Images the failure-case golden tests of convert, commit, rebase, compare and map share: an
 * overlay whose backing file is gone, a directory posing as an image, a base/overlay pair, a
 * smaller image, and a blkdebug config that fails reads. Made once with the real tools, then
 * copied (holes kept) into a fresh directory for each case.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copiesOf, qemuImg, qemuIo, vdisk, type RunResult } from '../helpers/oracle.ts';


function make(dir: string): void {
  const ok = (r: RunResult): void => assert.equal(r.code, 0, r.stderr);
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'gone.qcow2'), '4M']));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'gone.qcow2', '-F', 'qcow2', join(dir, 'orphan.qcow2')]));
  rmSync(join(dir, 'gone.qcow2'));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '4M']));
  ok(qemuIo(['-c', 'write -P 1 0 4M', join(dir, 'base.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')]));
  ok(qemuIo(['-c', 'write -P 2 1M 64k', join(dir, 'top.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'small.qcow2'), '1M']));
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'r1.raw'), '1M']));
  mkdirSync(join(dir, 'dir.img'));
  writeFileSync(join(dir, 'eio.conf'), '[inject-error]\nevent = "none"\niotype = "read"\nsector = "2100"\n');
}

/** A fresh directory holding the images of make(), copied (holes kept) from one made once. */
export const failureDir: () => string = copiesOf(make);

/** Run one command line in two copies of the fixture; output and exit code must match qemu-img's. */
export function assertSameFailure(argv: readonly string[]): { a: string; b: string } {
  const a = failureDir();
  const b = failureDir();
  const want = qemuImg(argv, { cwd: a });
  const got = vdisk(argv, { cwd: b });
  assert.equal(got.stderr, want.stderr);
  assert.equal(got.stdout, want.stdout);
  assert.equal(got.code, want.code);
  return { a, b };
}
