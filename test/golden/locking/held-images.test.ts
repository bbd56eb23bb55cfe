/**
 * Image locking against real QEMU processes: an image held open by a real qemu-io (read-write,
 * read-only, force-shared; the top or its backing file) and each qemu-img command run on it by
 * vdisk and by the real qemu-img give the same output and exit code. And the other way round: an
 * image held by vdisk is refused to qemu-io as an image held by qemu-img is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, QEMU_IO, qemuImg, qemuIo, run, scratch, vdisk, vdiskAsQemuImg, type RunResult } from '../../helpers/oracle.ts';

/** Whether any process holds a lock on the file (by inode, as /proc/locks lists it). */
function locked(path: string): boolean {
  const ino = statSync(path).ino;
  return readFileSync('/proc/locks', 'utf8').split('\n').some((l) => l.includes(`:${ino} `));
}

/** Start `cmd args` and wait until it holds a lock on `path`; the caller kills it. */
async function hold(cmd: string, args: string[], cwd: string, path: string): Promise<ChildProcess> {
  const child = spawn(cmd, args, { cwd, stdio: 'ignore' });
  for (let i = 0; i < 600 && !locked(path); i++) {
    if (child.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} exited early`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(locked(path), `${cmd} took no lock on ${path}`);
  return child;
}

async function release(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await done;
}

function images(dir: string): void {
  for (const args of [
    ['create', '-q', '-f', 'qcow2', 't.qcow2.base', '32M'],
    ['create', '-q', '-f', 'qcow2', '-b', 't.qcow2.base', '-F', 'qcow2', 't.qcow2'],
    ['create', '-q', '-f', 'raw', 't.raw', '1M'],
  ]) assert.equal(qemuImg(args, { cwd: dir }).code, 0);
}

const bench = (argv: string[]): boolean => argv[0] === 'bench';

/**
 * Each command through qemu-img and vdisk while `holder` (qemu-io arguments) holds `file`; each
 * tool in its own directory with its own holder, since a command let through changes the image.
 */
async function compareWhileHeld(holder: string[], file: string, commands: string[][]): Promise<void> {
  const dirs = [scratch('vdisk-lock-'), scratch('vdisk-lock-')] as const;
  const children: ChildProcess[] = [];
  try {
    for (const d of dirs) {
      images(d);
      children.push(await hold(QEMU_IO, [...holder, '-c', 'sleep 600000', file], d, join(d, file)));
    }
    for (const argv of commands) {
      const norm = (r: RunResult): RunResult => ({ ...r, stdout: bench(argv) ? '' : r.stdout });
      const want = norm(qemuImg(argv, { cwd: dirs[0] }));
      const got = norm(vdisk(argv, { cwd: dirs[1] }));
      assert.deepEqual(got, want, `${argv.join(' ')} with qemu-io ${holder.join(' ')} holding ${file}`);
    }
  } finally {
    for (const c of children) await release(c);
  }
}

const READERS = [
  ['info', 't.qcow2'], ['info', '-U', 't.qcow2'], ['check', 't.qcow2'], ['check', '-U', 't.qcow2'],
  ['compare', 't.qcow2', 't.qcow2'], ['compare', '-U', 't.qcow2', 't.qcow2'], ['map', 't.qcow2'], ['map', '-U', 't.qcow2'],
  ['snapshot', '-l', 't.qcow2'], ['snapshot', '-l', '-U', 't.qcow2'], ['measure', '-O', 'qcow2', 't.qcow2'],
  ['convert', 't.qcow2', 't.qcow2.convert'], ['convert', '-U', 't.qcow2', 't.qcow2.convert'],
  ['dd', 'if=t.qcow2', 'of=t.qcow2.convert', 'bs=512', 'count=1'], ['dd', '-U', 'if=t.qcow2', 'of=t.qcow2.convert', 'bs=512', 'count=1'],
  ['bench', '-c', '1', 't.qcow2'], ['bench', '-U', '-c', '1', 't.qcow2'],
  ['info', '--image-opts', 'driver=qcow2,file.filename=t.qcow2'],
  ['info', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,file.locking=off'],
  ['info', '--image-opts', 'driver=qcow2,file.filename=t.qcow2,force-share=on'],
  ['info', 'json:{"file":{"filename":"t.qcow2","locking":"off"}}'],
  ['info', 'json:{"file":{"filename":"t.qcow2"}}'],
];
// check -r first: the writers after it leave images that differ (not in what locking decides)
const WRITERS = [
  ['check', '-r', 'all', 't.qcow2'], ['check', '-r', 'all', '-U', 't.qcow2'],
  ['amend', '-o', 'size=32M', 't.qcow2'], ['commit', 't.qcow2'], ['resize', 't.qcow2', '32M'],
  ['rebase', 't.qcow2', '-b', 't.qcow2.base', '-F', 'qcow2'], ['rebase', '-U', 't.qcow2', '-b', 't.qcow2.base', '-F', 'qcow2'],
  ['snapshot', '-c', 's', 't.qcow2'], ['snapshot', '-c', 's', '-U', 't.qcow2'], ['bitmap', '--add', 't.qcow2', 'b'],
  ['bench', '-w', '-c', '1', 't.qcow2'], ['bench', '-U', '-w', '-c', '1', 't.qcow2'],
  ['convert', '-n', 't.raw', 't.qcow2'], ['create', '-f', 'qcow2', 't.qcow2', '32M'],
];

test('a qcow2 image qemu-io writes is refused to every command as by qemu-img, and -U reads it', async () => {
  await compareWhileHeld([], 't.qcow2', [...READERS, ...WRITERS]);
});

test('a qcow2 image qemu-io reads is refused only to writers', async () => {
  await compareWhileHeld(['-r'], 't.qcow2', [...READERS, ...WRITERS]);
});

test('a force-shared reader refuses nobody', async () => {
  // (create and convert -n let through would compare images made differently, not locks)
  await compareWhileHeld(['-r', '-U'], 't.qcow2', [...READERS, ...WRITERS.filter((a) => a[0] !== 'create' && a[0] !== 'convert')]);
});

test('a backing file in use blocks commit into it and opens of its chain as in qemu-img', async () => {
  const chain = [
    ['commit', 't.qcow2'], ['map', 't.qcow2'], ['map', '-U', 't.qcow2'], ['snapshot', '-l', 't.qcow2'], ['check', 't.qcow2'],
    ['info', 't.qcow2'], ['info', '--backing-chain', 't.qcow2'], ['info', '-U', '--backing-chain', 't.qcow2'],
    ['rebase', '-U', 't.qcow2', '-b', '', '-F', 'qcow2'],
    ['create', '-f', 'qcow2', '-b', 't.qcow2.base', '-F', 'qcow2', 't.qcow2.overlay'],
  ];
  await compareWhileHeld([], 't.qcow2.base', chain);
  await compareWhileHeld(['-r'], 't.qcow2.base', chain);
});

test('raw images lock as qemu-img locks them: readers share writes, convert\'s sources do not', async () => {
  await compareWhileHeld(['-f', 'raw'], 't.raw', [
    ['info', 't.raw'], ['map', 't.raw'], ['compare', 't.raw', 't.raw'], ['convert', 't.raw', 't.raw.convert'],
    ['convert', '-U', 't.raw', 't.raw.convert'], ['resize', '-f', 'raw', 't.raw', '2M'], ['bench', '-w', '-c', '1', '-f', 'raw', 't.raw'],
    ['dd', 'if=t.qcow2', 'of=t.raw', 'bs=512', 'count=1'],
  ]);
});

test('creating over an image in use leaves it untouched', async () => {
  const dir = scratch('vdisk-lock-');
  images(dir);
  const before = readFileSync(join(dir, 't.qcow2'));
  const child = await hold(QEMU_IO, ['-r', '-c', 'sleep 600000', 't.qcow2'], dir, join(dir, 't.qcow2'));
  try {
    const r = vdisk(['create', '-f', 'raw', 't.qcow2', '1M'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qemu-img: t.qcow2: Failed to get "write" lock\nIs another process using the image [t.qcow2]?\n');
  } finally {
    await release(child);
  }
  assert.deepEqual(readFileSync(join(dir, 't.qcow2')), before);
});

test('qemu-io sees the locks of an image vdisk holds as those qemu-img holds', async () => {
  const dir = scratch('vdisk-lock-');
  images(dir);
  const file = join(dir, 't.qcow2');
  const probes = [['-c', 'read 0 512', 't.qcow2'], ['-r', '-c', 'read 0 512', 't.qcow2'], ['-r', '-U', '-c', 'read 0 512', 't.qcow2']];
  // bench -w holds the image writable, bench alone read-only, for as long as it runs
  for (const holder of [['bench', '-w', '-c', '100000000', 't.qcow2'], ['bench', '-c', '100000000', 't.qcow2']]) {
    const results: Record<string, RunResult[]> = {};
    for (const [name, cmd] of [['qemu-img', QEMU_IMG], ['vdisk', vdiskAsQemuImg()]] as const) {
      const child = await hold(cmd, holder, dir, file);
      try {
        results[name] = probes.map((p) => {
          const r = qemuIo(p, { cwd: dir });
          return { ...r, stdout: r.stdout.replace(/\d+ ops;.*\n/, '') };
        });
      } finally {
        await release(child);
      }
    }
    assert.deepEqual(results['vdisk'], results['qemu-img'], holder.join(' '));
  }
  assert.equal(run(QEMU_IMG, ['check', 't.qcow2'], { cwd: dir }).code, 0);
});
