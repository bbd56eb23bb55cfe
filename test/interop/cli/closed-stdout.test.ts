/**
 * A reader that goes away early (`qemu-img map ... | head`): qemu-img ignores SIGPIPE, finishes the
 * command and exits with its status, printing nothing about the failed writes. vdisk must end the
 * same way, not with a stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { QEMU_IMG, qemuImg, qemuIo, scratch, vdiskAsQemuImg } from '../../helpers/oracle.ts';

/** Run cmd with a stdout pipe that is closed as soon as the first bytes arrive. */
function withReaderGone(cmd: string, args: readonly string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    child.stdout.once('data', () => child.stdout.destroy());
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

test('map whose reader leaves early exits as qemu-img does, without a message', async () => {
  const dir = scratch();
  const img = join(dir, 'frag.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', img, '1G']).code, 0);
  // thousands of extents: far more JSON than a pipe buffer holds, so the writes do fail
  const cmds = Array.from({ length: 3000 }, (_, i) => ['-c', `write ${i * 128}k 4k`]).flat();
  assert.equal(qemuIo(['-f', 'qcow2', ...cmds, img]).code, 0);
  for (const args of [['map', '--output=json', img], ['map', img]]) {
    const want = await withReaderGone(QEMU_IMG, args);
    const got = await withReaderGone(vdiskAsQemuImg(), args);
    assert.equal(got.code, want.code, args.join(' '));
    assert.equal(got.stderr, want.stderr, args.join(' '));
  }
});
