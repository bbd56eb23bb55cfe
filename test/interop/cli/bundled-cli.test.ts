/**
 * The bundled CLI (scripts/bundle.mjs -> dist/bundle/) that bin/vdisk starts: it behaves as
 * dist/cli.js does, its worker threads (convert -c) and the native helper (image locking) load
 * from the bundle's directory, and bin/vdisk runs it only while it is newer than dist/cli.js.
 *
 * Everything runs on a copy of the package in a scratch directory (dist/ copied, the bundle built
 * there), so the checkout's own bundle is neither needed nor changed; the compile cache is off so
 * the scratch paths leave nothing in the user's cache directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, QEMU_IO, ROOT, qemuImg, run, scratch, type RunResult } from '../../helpers/oracle.ts';

const NO_CACHE = { NODE_DISABLE_COMPILE_CACHE: '1' };

/** A copy of the package: bin/, dist/ (without a bundle), scripts/, package.json; node_modules and native/ linked. */
function packageCopy(): string {
  const pkg = join(scratch('vdisk-pkg-'), 'vdisk');
  mkdirSync(pkg);
  for (const d of ['bin', 'scripts']) cpSync(join(ROOT, d), join(pkg, d), { recursive: true });
  cpSync(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true, filter: (src) => !src.startsWith(join(ROOT, 'dist', 'bundle')) });
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  symlinkSync(join(ROOT, 'native'), join(pkg, 'native'));
  const r = run(process.execPath, [join(pkg, 'scripts', 'bundle.mjs')]);
  assert.equal(r.code, 0, r.stderr);
  return pkg;
}

const pkg = packageCopy();
const bundleEntry = join(pkg, 'dist', 'bundle', 'cli.mjs');

/** `pkg/bin/vdisk` through a symlink named qemu-img, as the golden tests run it. */
function asQemuImg(): string {
  const link = join(scratch('vdisk-shim-'), 'qemu-img');
  symlinkSync(join(pkg, 'bin', 'vdisk'), link);
  return link;
}
const launcher = asQemuImg();

function bundled(args: string[], cwd?: string): RunResult {
  return run(process.execPath, [bundleEntry, ...args], { env: NO_CACHE, ...(cwd ? { cwd } : {}) });
}
function unbundled(args: string[], cwd?: string): RunResult {
  return run(process.execPath, [join(ROOT, 'dist', 'cli.js'), ...args], { env: NO_CACHE, ...(cwd ? { cwd } : {}) });
}

test('the bundle prints what dist/cli.js prints, messages and exit codes included', () => {
  const dir = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '64M']).code, 0);
  for (const argv of [
    ['--version'], ['--help'], [], ['nosuchcommand'], ['info'], ['create', '-f', 'qcow2', '-o', 'help'],
    ['info', '--output=json', 'a.qcow2'], ['map', '--output=json', 'a.qcow2'], ['check', 'a.qcow2'], ['info', 'missing.qcow2'],
  ]) {
    assert.deepEqual(bundled(argv, dir), unbundled(argv, dir), argv.join(' '));
  }
});

test('every file the bundle names relative to its own URL is in the bundle directory', () => {
  const dir = join(pkg, 'dist', 'bundle');
  const named = readdirSync(dir).filter((f) => f.endsWith('.mjs') || f.endsWith('.js'))
    .flatMap((f) => [...readFileSync(join(dir, f), 'utf8').matchAll(/new URL\("(\.\/[^"]+)", import\.meta\.url\)/g)].map((m) => m[1]!));
  assert.ok(named.includes('./compress-worker.js'), 'the compression pool names its worker');
  for (const n of named) assert.ok(existsSync(join(dir, n)), `${n} is missing from dist/bundle/`);
});

test('convert -c from the bundle compresses on its worker threads: the same image as dist/cli.js writes', () => {
  const dir = scratch();
  const src = join(dir, 'src.raw');
  // runs of compressible data, an incompressible run and holes
  const fd = openSync(src, 'w');
  writeSync(fd, Buffer.alloc(3 << 20, 0x5a), 0, 3 << 20, 0);
  writeSync(fd, Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => ((i * 2654435761) >>> 13) & 0xff)), 0, 1 << 20, 8 << 20);
  ftruncateSync(fd, 16 << 20);
  closeSync(fd);
  for (const [name, r] of [
    ['b.qcow2', bundled(['convert', '-c', '-f', 'raw', '-O', 'qcow2', src, join(dir, 'b.qcow2')])],
    ['d.qcow2', unbundled(['convert', '-c', '-f', 'raw', '-O', 'qcow2', src, join(dir, 'd.qcow2')])],
  ] as const) {
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.equal(qemuImg(['check', join(dir, name)]).code, 0, name);
  }
  assert.deepEqual(readFileSync(join(dir, 'b.qcow2')), readFileSync(join(dir, 'd.qcow2')));
  assert.equal(qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', src, join(dir, 'b.qcow2')]).code, 0);
});

/** Whether any process holds a lock on the file (by inode, as /proc/locks lists it). */
function locked(path: string): boolean {
  const ino = statSync(path).ino;
  return readFileSync('/proc/locks', 'utf8').split('\n').some((l) => l.includes(`:${ino} `));
}

test('the native helper loads from the bundle: an image qemu-io writes is refused as by qemu-img', async () => {
  const dir = scratch();
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 't.qcow2'), '1M'], { cwd: dir }).code, 0);
  const child: ChildProcess = spawn(QEMU_IO, ['-c', 'sleep 600000', 't.qcow2'], { cwd: dir, stdio: 'ignore' });
  try {
    for (let i = 0; i < 600 && !locked(join(dir, 't.qcow2')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(locked(join(dir, 't.qcow2')), 'qemu-io took its lock');
    const want = run(QEMU_IMG, ['info', 't.qcow2'], { cwd: dir });
    assert.equal(want.code, 1);
    assert.deepEqual(run(launcher, ['info', 't.qcow2'], { cwd: dir, env: NO_CACHE }), want);
  } finally {
    const done = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await done;
  }
});

test('bin/vdisk runs the bundle while it is newer than dist/cli.js, else dist/cli.js', () => {
  const real = run(launcher, ['--version'], { env: NO_CACHE });
  assert.equal(real.code, 0, real.stderr);
  assert.match(real.stdout, /^qemu-img version 7\.2\.22 \(vdisk /);
  // a bundle that says which one ran, newer than dist/cli.js: bin/vdisk starts it
  writeFileSync(bundleEntry, 'process.stdout.write("the bundle\\n");\n');
  assert.equal(run(launcher, ['--version'], { env: NO_CACHE }).stdout, 'the bundle\n');
  // tsc rewrote dist/ after the bundle was made: the stale bundle is not run
  const later = new Date(statSync(bundleEntry).mtimeMs + 5000);
  utimesSync(join(pkg, 'dist', 'cli.js'), later, later);
  const stale = run(launcher, ['--version'], { env: NO_CACHE });
  assert.equal(stale.code, 0, stale.stderr);
  assert.match(stale.stdout, /^qemu-img version 7\.2\.22 \(vdisk /);
  // no bundle at all (never built, or a build in progress)
  rmSync(join(pkg, 'dist', 'bundle'), { recursive: true });
  const none = run(launcher, ['--version'], { env: NO_CACHE });
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /^qemu-img version 7\.2\.22 \(vdisk /);
});
