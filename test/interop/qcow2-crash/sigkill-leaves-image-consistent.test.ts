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
 * kills also land inside a write. A normal run does a handful of kills with fresh seeds; the
 * long mode (VDISK_LONG_TESTS=1) does VDISK_CRASH_KILLS (default 200). VDISK_CRASH_SEED=<n>
 * replays one seed. A failing kill keeps its files in /tmp/vdisk-crash-<seed>/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
}

function killFor(seed: number): Kill {
  const r = prng(seed ^ 0x5bd1e995);
  return seed % 4 === 3 ? { seed, killAfter: 0, delayMs: r(400) } : { seed, killAfter: 1 + r(layoutFor(seed).writes), delayMs: 0 };
}

/** Run the child until it dies or finishes; returns its journal lines. */
async function runChild(image: string, journal: string, k: Kill): Promise<{ lines: string[]; signal: string | null; code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CHILD, image, journal, String(k.seed), String(OPS), String(k.killAfter)], { stdio: ['ignore', 'ignore', 'pipe'] });
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
  const image = join(d, 'image.qcow2');
  const c = qemuImg(['create', '-q', '-f', 'qcow2', '-o', lay.createOptions, '-b', backing, '-F', 'raw', image, String(lay.size)]);
  assert.equal(c.code, 0, c.stderr);
  const journal = join(d, 'journal');
  const where = `seed ${k.seed} (${k.killAfter ? `self-kill after write ${k.killAfter}` : `timer ${k.delayMs} ms`}; replay with VDISK_CRASH_SEED=${k.seed}; files kept in /tmp/vdisk-crash-${k.seed})`;
  const keep = (): void => cpSync(d, `/tmp/vdisk-crash-${k.seed}`, { recursive: true });
  try {
    const r = await runChild(image, journal, k);
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
  test(`SIGKILL of a qcow2 writer leaves an image qemu-img checks clean with every flushed write (seed ${seed}, ${layoutFor(seed).createOptions})`, () => crashOnce(k));
}
