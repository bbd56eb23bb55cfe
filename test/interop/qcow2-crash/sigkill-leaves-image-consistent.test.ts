/**
 * Crash safety of the qcow2 write path: a child process writes an image through vdisk's library
 * (allocating and partial-cluster writes with COW from a raw backing file, extended L2
 * subclusters, write-zeroes, discards, compressed writes, refcount-table and L1 growth; see
 * test/helpers/qcow2-crash-ops.ts) and is killed with SIGKILL at a random point. After each kill
 * the real `qemu-img check` must find no corruption (leaks are allowed: exit 0 or 3), and every
 * byte written before the last completed flush must read back through the real qemu-img.
 *
 * Most kills are reproducible: the child SIGKILLs itself right after its Nth write to the image
 * file, N drawn from the seed. Every fourth seed is killed by the parent on a timer instead, so
 * kills also land inside a write. Another fourth also simulates a power loss at the kill: the
 * child logs its writes and fsyncs, and the image judged is rebuilt from that log keeping each
 * write since the last fsync or not, at random (this is what checks the flush barriers between
 * data, refcounts, L2 and L1; a SIGKILL alone leaves every issued write in the page cache). A normal run does a handful of kills with fresh seeds; the
 * long mode (VDISK_LONG_TESTS=1) does VDISK_CRASH_KILLS (default 200). VDISK_CRASH_SEED=<n>
 * replays one seed. A failing kill keeps its files in /tmp/vdisk-crash-<seed>/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, cpSync, existsSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, qemuImg, scratch } from '../../helpers/oracle.ts';
import {
  applyOp, backingBytes, digest, initialModel, layoutFor, opRange, opsFor, prng, type CrashOp,
} from '../../helpers/qcow2-crash-ops.ts';

const CHILD = join(ROOT, 'test', 'helpers', 'qcow2-crash-child.ts');
const LONG = process.env['VDISK_LONG_TESTS'] === '1';
const KILLS = Number(process.env['VDISK_CRASH_KILLS'] ?? (LONG ? 200 : 4));
/** Operations per child run: enough that most kill points fall inside the workload. */
const OPS = 160;

const dir = scratch('vdisk-crash-');

interface Kill {
  seed: number;
  /** Self-kill after this many writes to the image file (0: killed by the parent's timer). */
  killAfter: number;
  /** Parent's timer, in ms after the child reported it had opened the image. */
  delayMs: number;
  /** Simulate a power loss as well: writes after the last fsync reach the file or not, at random. */
  powerLoss: boolean;
}

function killFor(seed: number): Kill {
  const r = prng(seed ^ 0x5bd1e995);
  if (seed % 4 === 3) return { seed, killAfter: 0, delayMs: r(400), powerLoss: false };
  return { seed, killAfter: 1 + r(layoutFor(seed).writes), delayMs: 0, powerLoss: seed % 4 === 1 };
}

/**
 * The file as a disk would hold it after losing power at the kill: every write the child logged
 * up to its last fsync, then each later one kept or lost at random (a disk cache reorders freely
 * between barriers). Starts from the image as it was before the child ran.
 */
function powerLossImage(before: string, logPath: string, out: string, seed: number): void {
  copyFileSync(before, out);
  const logBytes = readFileSync(logPath);
  const recs: Array<{ kind: number; offset: number; length: number; at: number }> = [];
  let lastSync = -1;
  for (let p = 0; p + 17 <= logBytes.length;) {
    const kind = logBytes.readUInt8(p);
    const offset = logBytes.readDoubleLE(p + 1);
    const length = logBytes.readDoubleLE(p + 9);
    const rec = { kind, offset, length, at: p + 17 };
    p += 17 + (kind === 1 ? length : 0);
    if (p > logBytes.length) break;
    if (kind === 2) lastSync = recs.length;
    recs.push(rec);
  }
  const keep = prng(seed ^ 0x27d4eb2f);
  const fd = openSync(out, 'r+');
  try {
    recs.forEach((r, i) => {
      if (i > lastSync && keep(2) === 0) return;
      if (r.kind === 1) writeSync(fd, logBytes, r.at, r.length, r.offset);
      else if (r.kind === 3) writeSync(fd, new Uint8Array(r.length), 0, r.length, r.offset);
      else if (r.kind === 4) ftruncateSync(fd, r.offset);
    });
  } finally {
    closeSync(fd);
  }
}

/** Run the child until it dies or finishes; returns its journal lines. */
async function runChild(image: string, journal: string, k: Kill, log: string): Promise<{ lines: string[]; signal: string | null; code: number | null; stderr: string }> {
  const args = [CHILD, image, journal, String(k.seed), String(OPS), String(k.killAfter), ...(k.powerLoss ? [log] : [])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  let timer: NodeJS.Timeout | undefined;
  if (k.killAfter === 0) {
    const poll = setInterval(() => {
      if (existsSync(journal) && readFileSync(journal, 'utf8').startsWith('ready')) {
        clearInterval(poll);
        timer = setTimeout(() => child.kill('SIGKILL'), k.delayMs);
      }
    }, 5);
    child.on('exit', () => clearInterval(poll));
  }
  const [code, signal] = await new Promise<[number | null, string | null]>((res) => child.on('exit', (c, s) => res([c, s])));
  if (timer) clearTimeout(timer);
  const lines = existsSync(journal) ? readFileSync(journal, 'utf8').split('\n').filter(Boolean) : [];
  return { lines, signal, code, stderr };
}

/** The model at the last completed flush, and the guest ranges the interrupted ops may have touched. */
function expected(ops: CrashOp[], lastFlushed: number, seedLayout: ReturnType<typeof layoutFor>): { model: Uint8Array; skip: Array<[number, number]>; sizes: number[] } {
  let model = initialModel(seedLayout);
  for (let i = 0; i <= lastFlushed; i++) model = applyOp(model, ops[i]!);
  const skip: Array<[number, number]> = [];
  const sizes = [model.length];
  for (let i = lastFlushed + 1; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'flush') break;
    const r = opRange(op);
    if (r) skip.push(r);
    if (op.kind === 'grow') sizes.push(op.size);
  }
  return { model, skip, sizes };
}

/** First offset where the image differs from the model outside the skipped ranges, or -1. */
function firstDifference(got: Uint8Array, want: Uint8Array, skip: Array<[number, number]>): number {
  const mask = new Uint8Array(want.length);
  for (const [a, b] of skip) mask.fill(1, a, Math.min(b, want.length));
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i] && !mask[i]) return i;
  // past the old size (an interrupted grow): the new tail reads as zeros
  for (let i = n; i < got.length; i++) if (got[i] !== 0) return i;
  return -1;
}

async function crashOnce(k: Kill): Promise<void> {
  const lay = layoutFor(k.seed);
  const d = join(dir, String(k.seed));
  mkdirSync(d, { recursive: true });
  const backing = join(d, 'backing.raw');
  const buf = new Uint8Array(lay.backingSize);
  backingBytes(buf, 0);
  writeFileSync(backing, buf);
  const written = join(d, 'written.qcow2');
  const c = qemuImg(['create', '-q', '-f', 'qcow2', '-o', lay.createOptions, '-b', backing, '-F', 'raw', written, String(lay.size)]);
  assert.equal(c.code, 0, c.stderr);
  const before = join(d, 'before.qcow2');
  if (k.powerLoss) copyFileSync(written, before);
  const image = k.powerLoss ? join(d, 'power-lost.qcow2') : written;
  const journal = join(d, 'journal');
  const how = k.killAfter ? `${k.powerLoss ? 'power loss at' : 'self-kill after'} write ${k.killAfter}` : `timer ${k.delayMs} ms`;
  const where = `seed ${k.seed} (${how}; replay with VDISK_CRASH_SEED=${k.seed}; files kept in /tmp/vdisk-crash-${k.seed})`;
  const keep = (): void => cpSync(d, `/tmp/vdisk-crash-${k.seed}`, { recursive: true });
  try {
    const r = await runChild(written, journal, k, join(d, 'write-log'));
    if (k.powerLoss) powerLossImage(before, join(d, 'write-log'), image, k.seed);
    assert.ok(r.signal === 'SIGKILL' || (r.code === 0 && r.lines.at(-1)?.startsWith('done')), `child failed (${r.code}/${r.signal}): ${r.stderr}`);
    const ops = opsFor(k.seed, OPS);
    const flushed = r.lines.filter((l) => l.startsWith('flushed '));
    const last = flushed.at(-1)?.split(' ');
    const lastFlushed = last ? Number(last[1]) : -1;
    const want = expected(ops, lastFlushed, lay);
    if (last) assert.equal(last[2], digest(want.model), `child and parent disagree on the workload: ${where}`);

    const check = qemuImg(['check', image]);
    assert.ok(check.code === 0 || check.code === 3, `qemu-img check exit ${check.code} after ${where}:\n${check.stdout}${check.stderr}`);
    const raw = join(d, 'guest.raw');
    const conv = qemuImg(['convert', '-O', 'raw', image, raw]);
    assert.equal(conv.code, 0, `qemu-img convert after ${where}: ${conv.stderr}`);
    const got = new Uint8Array(readFileSync(raw));
    assert.ok(want.sizes.includes(got.length), `virtual size ${got.length}, expected one of ${want.sizes.join(', ')} after ${where}`);
    const at = firstDifference(got, want.model, want.skip);
    assert.equal(at, -1, `guest byte ${at} (cluster ${Math.floor(at / lay.clusterSize)}) lost after flush ${lastFlushed}: ${where}`);
  } catch (e) {
    keep();
    throw e;
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
}

const fixed = process.env['VDISK_CRASH_SEED'];
const base = fixed !== undefined ? Number(fixed) : (Date.now() * 7919) % 2 ** 30;
const seeds = fixed !== undefined ? [Number(fixed)] : Array.from({ length: KILLS }, (_, i) => base + i);

for (const seed of seeds) {
  const k = killFor(seed);
  test(`${k.powerLoss ? 'power loss' : 'SIGKILL'} of a qcow2 writer leaves an image qemu-img checks clean with every flushed write (seed ${seed}, ${layoutFor(seed).createOptions})`, () => crashOnce(k));
}
