/**
 * Helpers for the qcow2 check tests: make images with the real qemu-img/qemu-io, break them at
 * the byte level (qcow2.txt layout), and run `check` through vdisk and qemu-img on copies of the
 * same image, each in its own directory under the same name, so outputs compare byte for byte.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

/** A qcow2 file opened for patching: header fields, table entries, refcounts. */
export class Qcow2Patch {
  readonly fd: number;
  readonly clusterBits: number;
  readonly cs: number;
  readonly l1Offset: number;
  readonly l1Size: number;
  readonly reftableOffset: number;
  readonly refcountOrder: number;
  readonly entryBytes: number;
  readonly snapshotsOffset: number;
  readonly path: string;

  constructor(path: string) {
    this.path = path;
    this.fd = openSync(path, 'r+');
    const h = this.read(0, 104);
    const version = h.readUInt32BE(4);
    this.clusterBits = h.readUInt32BE(20);
    this.cs = 2 ** this.clusterBits;
    this.l1Size = h.readUInt32BE(36);
    this.l1Offset = Number(h.readBigUInt64BE(40));
    this.reftableOffset = Number(h.readBigUInt64BE(48));
    this.snapshotsOffset = Number(h.readBigUInt64BE(64));
    const incompat = version >= 3 ? h.readBigUInt64BE(72) : 0n;
    this.refcountOrder = version >= 3 ? h.readUInt32BE(96) : 4;
    this.entryBytes = incompat & 16n ? 16 : 8;
  }

  read(off: number, n: number): Buffer {
    const b = Buffer.alloc(n);
    readSync(this.fd, b, 0, n, off);
    return b;
  }

  write(off: number, b: Uint8Array): void {
    writeSync(this.fd, b, 0, b.length, off);
  }

  u64(off: number): bigint {
    return this.read(off, 8).readBigUInt64BE(0);
  }

  setU64(off: number, v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, v));
    this.write(off, b);
  }

  l1(i: number): bigint {
    return this.u64(this.l1Offset + 8 * i);
  }

  setL1(i: number, v: bigint): void {
    this.setU64(this.l1Offset + 8 * i, v);
  }

  l2Offset(i: number): number {
    return Number(this.l1(i) & 0x00fffffffffffe00n);
  }

  l2(i: number, j: number): bigint {
    return this.u64(this.l2Offset(i) + this.entryBytes * j);
  }

  setL2(i: number, j: number, v: bigint): void {
    this.setU64(this.l2Offset(i) + this.entryBytes * j, v);
  }

  /** Host cluster index of a standard L2 entry. */
  cluster(entry: bigint): number {
    return Number((entry & 0x00fffffffffffe00n) / BigInt(this.cs));
  }

  reftable(i: number): bigint {
    return this.u64(this.reftableOffset + 8 * i);
  }

  setReftable(i: number, v: bigint): void {
    this.setU64(this.reftableOffset + 8 * i, v);
  }

  setRefcount(k: number, v: number): void {
    const per = (this.cs * 8) >> this.refcountOrder;
    const block = Number(this.reftable(Math.floor(k / per)) & ~0x1ffn);
    const bits = 1 << this.refcountOrder;
    const idx = k % per;
    if (bits < 8) {
      const at = block + Math.floor((idx * bits) / 8);
      const sh = (idx * bits) % 8;
      const mask = ((1 << bits) - 1) << sh;
      const old = this.read(at, 1)[0]!;
      this.write(at, Buffer.from([(old & ~mask) | ((v << sh) & mask)]));
      return;
    }
    const n = bits / 8;
    const b = Buffer.alloc(n);
    let x = BigInt(v);
    for (let i = n - 1; i >= 0; i--) {
      b[i] = Number(x & 0xffn);
      x >>= 8n;
    }
    this.write(block + idx * n, b);
  }

  setIncompat(v: bigint): void {
    this.setU64(72, v);
  }

  close(): void {
    closeSync(this.fd);
  }
}

export const COPIED = 1n << 63n;

/** A 64 MiB image with data at 0 (4 clusters), 1 MiB and 20 MiB, made by qemu-io. */
export function makeImage(path: string, createOpts: string[] = []): void {
  const c = qemuImg(['create', '-q', '-f', 'qcow2', ...createOpts, path, '64M']);
  assert.equal(c.code, 0, c.stderr);
  const w = qemuIo(['-c', 'write -P 1 0 256k', '-c', 'write -P 2 1M 64k', '-c', 'write -P 3 20M 128k', path]);
  assert.equal(w.code, 0, w.stderr);
}

export function patch(path: string, fn: (q: Qcow2Patch) => void): void {
  const q = new Qcow2Patch(path);
  try {
    fn(q);
  } finally {
    q.close();
  }
}

export interface Compared {
  qemu: RunResult;
  vdisk: RunResult;
  /** The images after the command, in their own directories under the same name. */
  qemuImage: string;
  vdiskImage: string;
}

/** Run `qemu-img check ARGS img.qcow2` with both tools on copies of `image` (and files beside it). */
export function checkBoth(image: string, args: readonly string[], companions: readonly string[] = []): Compared {
  const d = scratch('vdisk-check-qcow2-');
  const run = (tool: 'q' | 'v'): [RunResult, string] => {
    const dir = join(d, tool);
    mkdirSync(dir);
    const img = join(dir, 'img.qcow2');
    copyFileSync(image, img);
    for (const c of companions) copyFileSync(c, join(dir, c.split('/').pop()!));
    const argv = ['check', ...args, 'img.qcow2'];
    return [tool === 'q' ? qemuImg(argv, { cwd: dir }) : vdisk(argv, { cwd: dir }), img];
  };
  const [qemu, qemuImage] = run('q');
  const [vd, vdiskImage] = run('v');
  return { qemu, vdisk: vd, qemuImage, vdiskImage };
}

/** Same exit code, stdout and stderr (qemu's order of findings). */
export function assertSameOutput(r: Compared, what: string): void {
  assert.equal(r.vdisk.code, r.qemu.code, `${what}: exit code\nvdisk stderr:\n${r.vdisk.stderr.slice(0, 2000)}\nqemu stderr:\n${r.qemu.stderr.slice(0, 2000)}`);
  assert.equal(r.vdisk.stdout, r.qemu.stdout, `${what}: stdout`);
  assert.equal(r.vdisk.stderr, r.qemu.stderr, `${what}: stderr`);
}

/** Byte-identical files (cmp streams: repaired images can be sparse and gigabytes long). */
export function sameBytes(a: string, b: string): boolean {
  return statSync(a).size === statSync(b).size && spawnSync('cmp', ['-s', a, b]).status === 0;
}

export const MODES: ReadonlyArray<readonly string[]> = [[], ['--output=json'], ['-r', 'leaks'], ['-r', 'all'], ['-r', 'all', '--output=json']];
