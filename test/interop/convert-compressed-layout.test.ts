import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../helpers/oracle.ts';

// convert -c packs whole requests of compressed clusters (placed back to back, one write per run,
// one L2 pass): the images must read back as the source in qemu-img, check clean, leave zero
// clusters unallocated as qemu-img does, and take no more room than 1.25x qemu-img's.

const dir = scratch();
const MIB = 1 << 20;

/** Deterministic incompressible bytes (xorshift32). */
function noise(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/**
 * A raw source of 9 MiB + 1536 bytes (the last cluster is short for every cluster size): text
 * that compresses, noise that does not, zero runs inside data, and a data tail up to the end,
 * so one convert goes through several 2 MiB requests with every kind of cluster in each.
 */
const SIZE = 9 * MIB + 1536;
const src = new Uint8Array(SIZE);
for (let off = 0; off < SIZE; off += 384 * 1024) {
  const kind = (off / (384 * 1024)) % 4;
  const n = Math.min(384 * 1024, SIZE - off);
  if (kind === 0) src.set(new TextEncoder().encode(`block ${off} `.repeat(Math.ceil(n / 8))).subarray(0, n), off);
  else if (kind === 1) src.set(noise(n, off + 1), off);
  else if (kind === 2) src.set(noise(n, off + 7).map((v, i) => (i % 3 === 0 ? v : 65)), off);
  // kind 3: zeros
}
src.set(noise(1536, 99), SIZE - 1536);
writeFileSync(join(dir, 'src.raw'), src);

const ok = (r: { code: number | null; stderr: string }, what: string): void => assert.equal(r.code, 0, `${what}: ${r.stderr}`);
/**
 * Where data, zeros and holes are, which must equal qemu-img's: the map with host offsets left
 * out and neighbouring extents of the same kind merged (map splits extents where host offsets
 * stop being contiguous, and the placement of plain clusters may differ).
 */
function shape(img: string): string[] {
  type Extent = { start: number; length: number; depth: number; present: boolean; zero: boolean; data: boolean };
  const out: Extent[] = [];
  for (const e of JSON.parse(qemuImg(['map', '--output=json', img], { cwd: dir }).stdout) as Extent[]) {
    const last = out[out.length - 1];
    if (last && last.depth === e.depth && last.present === e.present && last.zero === e.zero && last.data === e.data) last.length += e.length;
    else out.push({ start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.zero, data: e.data });
  }
  return out.map((e) => JSON.stringify(e));
}

function checkAgainstQemu(args: string[], out: string, source: string, sourceFmt: string): void {
  ok(qemuImg([...args, `q-${out}`], { cwd: dir }), 'qemu-img convert');
  ok(vdisk([...args, `v-${out}`], { cwd: dir }), 'vdisk convert');
  const check = qemuImg(['check', `v-${out}`], { cwd: dir });
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /No errors were found on the image/);
  assert.equal(qemuImg(['compare', '-f', sourceFmt, '-F', 'qcow2', source, `v-${out}`], { cwd: dir }).stdout, 'Images are identical.\n');
  assert.deepEqual(shape(`v-${out}`), shape(`q-${out}`));
  const size = (n: string): number => statSync(join(dir, n)).size;
  assert.ok(size(`v-${out}`) <= size(`q-${out}`) * 1.25 + 4 * MIB, `${out}: ${size(`v-${out}`)} bytes against qemu-img's ${size(`q-${out}`)}`);
}

for (const type of ['zlib', 'zstd']) {
  for (const cluster of [512, 4096, 65536, 262144, 2 * MIB]) {
    test(`convert -c ${type}, ${cluster}-byte clusters: incompressible clusters plain, zero clusters unallocated, short last cluster, as qemu-img`, () => {
      const out = `${type}-${cluster}.qcow2`;
      checkAgainstQemu(['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', `compression_type=${type},cluster_size=${cluster}`, 'src.raw'], out, 'src.raw', 'raw');
    });
  }
}

test('convert -c with refcount_bits=1 gives every compressed cluster host clusters of its own, as qemu-img does', () => {
  checkAgainstQemu(['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'refcount_bits=1', 'src.raw'], 'rb1.qcow2', 'src.raw', 'raw');
});

test('convert -c with extended L2 entries writes compressed clusters qemu-img reads and checks clean', () => {
  checkAgainstQemu(['convert', '-f', 'raw', '-O', 'qcow2', '-c', '-o', 'extended_l2=on,cluster_size=131072', 'src.raw'], 'xl2.qcow2', 'src.raw', 'raw');
});

test('convert -c -B copies only the top layer, compressed, and the result reads as the source over its backing file', () => {
  ok(qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'base.qcow2'], { cwd: dir }), 'base');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'], { cwd: dir }), 'top');
  for (const [off, len, pat] of [[0, 3 * MIB, 0x41], [5 * MIB + 4096, 100 * 1024, 0], [8 * MIB, 512 * 1024, 0x42]] as const) {
    assert.equal(qemuIo(['-f', 'qcow2', '-c', `write -P ${pat} ${off} ${len}`, join(dir, 'top.qcow2')]).code, 0);
  }
  for (const type of ['zlib', 'zstd']) {
    const args = ['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', '-o', `compression_type=${type}`, '-B', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'];
    checkAgainstQemu(args, `b-${type}.qcow2`, 'top.qcow2', 'qcow2');
  }
});

// qemu-img takes a status run shorter than a cluster as data (compressed clusters are written
// whole): with -B the short last cluster is copied from the chain even where the top leaves it
// to the backing file, as compressed data or, when it reads as zeros, as a zero cluster
test('convert -c -B writes the short last cluster from the chain, as data or zeros, as qemu-img does', () => {
  for (const tail of ['data', 'zeros']) {
    const base = `tail-${tail}.qcow2`;
    ok(qemuImg(['create', '-q', '-f', 'qcow2', base, String(SIZE)], { cwd: dir }), 'base');
    if (tail === 'data') assert.equal(qemuIo(['-f', 'qcow2', '-c', `write -P 1 ${SIZE - 1536} 1536`, join(dir, base)]).code, 0);
    const top = `tail-top-${tail}.qcow2`;
    ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top], { cwd: dir }), 'top');
    assert.equal(qemuIo(['-f', 'qcow2', '-c', 'write -P 0x41 0 1M', join(dir, top)]).code, 0);
    checkAgainstQemu(['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', '-B', base, '-F', 'qcow2', top], `t-${tail}.qcow2`, top, 'qcow2');
  }
});
