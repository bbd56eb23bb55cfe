/**
 * Test helpers shared by every tier: run vdisk and the real qemu-img (Debian qemu-utils 7.2, the
 * oracle) on the same command line, in throwaway directories, and compare what they did.
 *
 * vdisk is run through a symlink named `qemu-img`, so its messages carry the same prefix and can be
 * compared byte for byte.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, symlinkSync, readFileSync, existsSync, mkdirSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VDISK = join(ROOT, 'bin', 'vdisk');
export const QEMU_IMG = '/usr/bin/qemu-img';
export const QEMU_IO = '/usr/bin/qemu-io';

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let shimDir: string | undefined;
/** A directory holding `qemu-img -> bin/vdisk`, made once per test process. */
export function vdiskAsQemuImg(): string {
  if (!shimDir) {
    shimDir = mkdtempSync(join(tmpdir(), 'vdisk-shim-'));
    symlinkSync(VDISK, join(shimDir, 'qemu-img'));
    process.on('exit', () => rmSync(shimDir!, { recursive: true, force: true }));
  }
  return join(shimDir, 'qemu-img');
}

export function run(cmd: string, args: readonly string[], opts: { cwd?: string; env?: Record<string, string>; input?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, {
    cwd: opts.cwd,
    env: { ...process.env, TZ: 'UTC', ...opts.env },
    input: opts.input,
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    timeout: 120_000,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Run vdisk (as `qemu-img`) with these arguments. */
export function vdisk(args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}): RunResult {
  return run(vdiskAsQemuImg(), args, opts);
}

/**
 * qemu-img 7.2 times PBKDF2 with the thread's CPU clock when it makes a LUKS key slot, and fails
 * with this message when a loaded machine gives it a zero-length measurement: a flake of the oracle
 * (seen in CI), not a result to compare. Only this exact failure is retried.
 */
const QEMU_PBKDF_TIMING_FLAKE = /Unable to get accurate CPU usage/;
const QEMU_PBKDF_RETRIES = 3;

/** Run the real qemu-img with these arguments. */
export function qemuImg(args: readonly string[], opts: { cwd?: string; env?: Record<string, string> } = {}): RunResult {
  let r = run(QEMU_IMG, args, opts);
  for (let i = 0; i < QEMU_PBKDF_RETRIES && r.code !== 0 && QEMU_PBKDF_TIMING_FLAKE.test(r.stderr); i++) r = run(QEMU_IMG, args, opts);
  return r;
}

/**
 * One command line through qemu-img in directory `qemuDir` and through vdisk in `vdiskDir` (two
 * prepared copies of the same files): stderr, exit status and stdout must be equal.
 */
export function sameAsQemuImg(args: readonly string[], qemuDir: string, vdiskDir: string): void {
  const want = qemuImg(args, { cwd: qemuDir });
  const got = vdisk(args, { cwd: vdiskDir });
  assert.equal(got.stderr, want.stderr);
  assert.equal(got.code, want.code);
  assert.equal(got.stdout, want.stdout);
}

export function qemuIo(args: readonly string[], opts: { cwd?: string } = {}): RunResult {
  return run(QEMU_IO, args, opts);
}

/** A fresh temporary directory, removed when the process exits. */
export function scratch(prefix = 'vdisk-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * Fresh copies (holes kept) of a directory that `build` fills once per process: tests that need the
 * same set of images in a clean state per case, without making them again each time.
 */
export function copiesOf(build: (dir: string) => void): () => string {
  let template: string | undefined;
  return () => {
    if (!template) {
      template = scratch();
      build(template);
    }
    const d = scratch();
    const r = spawnSync('cp', ['-a', '--sparse=always', `${template}/.`, d]);
    if (r.status !== 0) throw new Error(`copying ${template}: ${String(r.stderr)}`);
    return d;
  };
}

export function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (c) => h.update(c)).on('end', () => res(h.digest('hex'))).on('error', rej);
  });
}

/** Guest-visible content hash, read through the real qemu-img (the oracle). */
export async function guestSha256(image: string, format?: string, cwd?: string): Promise<string> {
  const d = scratch('vdisk-raw-');
  const out = join(d, 'out.raw');
  const r = qemuImg(['convert', ...(format ? ['-f', format] : []), '-O', 'raw', image, out], cwd ? { cwd } : {});
  if (r.code !== 0) throw new Error(`qemu-img convert failed: ${r.stderr}`);
  return sha256File(out);
}

export const FIXTURES = resolve(ROOT, '..', 'shared', 'fixtures');

export interface ManifestEntry {
  path: string;
  stored: string;
  group: 'real' | 'made' | 'hostile';
  format: string;
  role?: string;
  part_of?: string;
  virtual_size?: number;
  sha256?: string | null;
  info?: Record<string, unknown>;
  map?: unknown;
  check?: { exit_code: number; result?: unknown; stderr_first_line?: string };
  snapshots?: Array<{ id: string; name: string; sha256: string }>;
  secret?: string;
  secret_object?: string;
  image_opts?: string;
  defect?: string;
  host_dependent?: boolean;
  qemu_img_7_2?: Record<string, { exit_code: number | null; stderr_first_line?: string; timed_out?: boolean; signal?: string; format?: string }>;
  [k: string]: unknown;
}

export function manifest(): ManifestEntry[] {
  return (JSON.parse(readFileSync(join(FIXTURES, 'MANIFEST.json'), 'utf8')) as { entries: ManifestEntry[] }).entries;
}

let unpacked: string | undefined;
/**
 * All fixtures unpacked (sparse) into one cache directory, layout kept (backing files and extents
 * are found by relative path). Shared with ../shared/tools/fixtures-check's cache. Read-only use only.
 */
export function fixturesDir(): string {
  if (unpacked) return unpacked;
  const manifestText = readFileSync(join(FIXTURES, 'MANIFEST.json'));
  const digest = createHash('sha256').update(manifestText).digest('hex').slice(0, 16);
  const root = join(tmpdir(), `vdisk-fixtures-${digest}`);
  if (!existsSync(join(root, '.done'))) {
    mkdirSync(root, { recursive: true });
    // the same unpacking as fixtures-check (python, sparse), so both share one cache
    const py = `
import gzip, json, os, sys
root, fix = sys.argv[1], sys.argv[2]
for e in json.load(open(os.path.join(fix, 'MANIFEST.json')))['entries']:
    dst = os.path.join(root, e['path']); os.makedirs(os.path.dirname(dst), exist_ok=True)
    with gzip.open(os.path.join(fix, e['stored']), 'rb') as src, open(dst, 'wb') as out:
        while True:
            chunk = src.read(1 << 20)
            if not chunk: break
            if chunk.count(0) == len(chunk): out.seek(len(chunk), 1)
            else: out.write(chunk)
        out.truncate()
open(os.path.join(root, '.done'), 'w').close()
`;
    const r = spawnSync('python3', ['-c', py, root, FIXTURES], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`unpacking fixtures failed: ${r.stderr}`);
  }
  unpacked = root;
  return root;
}
