/**
 * convert's progress output as qemu-img prints it: -p on a pipe (one line per 2 MiB chunk of a
 * fully allocated source), and SIGUSR1 without -p, which qemu-img 7.2 answers only once the copy
 * is over, with one "(100.00/100%)" line on stderr whatever the number of signals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, qemuImg, qemuIo, scratch, vdisk, vdiskAsQemuImg, type RunResult } from '../../helpers/oracle.ts';

function source(): string {
  const d = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(d, 'src.raw'), '16M']).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 42 0 16M', join(d, 'src.raw')]).code, 0);
  return d;
}

test('convert -p on a pipe prints the same progress lines as qemu-img', () => {
  const a = source();
  const b = source();
  const argv = ['convert', '-p', '-f', 'raw', '-O', 'raw', 'src.raw', 'o.raw'];
  const want = qemuImg(argv, { cwd: a });
  const got = vdisk(argv, { cwd: b });
  assert.deepEqual(got, want);
});

/** Run a throttled convert and send it SIGUSR1 twice once the copy has started. */
function withSignals(cmd: string, dir: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, ['convert', '-r', '4M', '-f', 'raw', '-O', 'raw', 'src.raw', 'o.raw'], { cwd: dir });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const poll = setInterval(() => {
      if (!existsSync(join(dir, 'o.raw'))) return;
      clearInterval(poll);
      setTimeout(() => p.kill('SIGUSR1'), 300);
      setTimeout(() => p.kill('SIGUSR1'), 600);
    }, 20);
    p.on('error', reject);
    p.on('close', (code) => {
      clearInterval(poll);
      resolve({ code, stdout, stderr });
    });
  });
}

test('SIGUSR1 during convert without -p prints one progress line at the end, as qemu-img 7.2', async () => {
  const want = await withSignals(QEMU_IMG, source());
  const got = await withSignals(vdiskAsQemuImg(), source());
  assert.deepEqual(got, want);
  assert.equal(want.stderr, '    (100.00/100%)\n');
});
