/**
 * The deterministic workload of the qcow2 crash test, shared by the child that runs it through
 * vdisk's library (test/helpers/qcow2-crash-child.ts) and the parent that judges the image after
 * the child was killed (test/interop/qcow2-crash/). Both derive the same image layout and the same
 * operation list from one seed, so the parent knows what every completed flush made durable
 * without trusting the child for more than "flush number k returned".
 */
import { createHash } from 'node:crypto';

/** Deterministic pseudo-random numbers (mulberry32), so a failure replays from its seed. */
export function prng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
}

export interface CrashLayout {
  /** qemu-img create -o options of the image under test. */
  createOptions: string;
  clusterSize: number;
  extL2: boolean;
  /** Virtual size at creation. */
  size: number;
  /** Size of the raw backing file (shorter than the image: the tail reads as zeros). */
  backingSize: number;
  /** Whether compressed writes are part of the workload. */
  compressed: boolean;
  /** Size a resize grows the image to, past what its L1 table maps (the L1 table moves). */
  growTo?: number;
  /** About how many writes to the image file a full run makes (crash points are drawn below it). */
  writes: number;
}

/**
 * Three layouts, each aimed at one part of the write path: 512-byte clusters with 64-bit
 * refcounts (the refcount table outgrows its cluster and moves within a few MiB, an L2 table is
 * allocated every 32 KiB, the L1 table (192 entries) moves on resize), 16 KiB clusters with
 * extended L2 (subcluster allocation and COW; one L2 maps 16 MiB, so the resize moves the L1
 * too), 64 KiB clusters with zstd compressed writes.
 */
export function layoutFor(seed: number): CrashLayout {
  switch (seed % 3) {
    case 0:
      return { createOptions: 'cluster_size=512,refcount_bits=64', clusterSize: 512, extL2: false, size: 6 << 20, backingSize: 5 << 20, compressed: true, growTo: 10 << 20, writes: 12000 };
    case 1:
      return { createOptions: 'cluster_size=16384,extended_l2=on', clusterSize: 16384, extL2: true, size: 12 << 20, backingSize: 10 << 20, compressed: true, growTo: 20 << 20, writes: 400 };
    default:
      return { createOptions: 'cluster_size=65536,compression_type=zstd', clusterSize: 65536, extL2: false, size: 24 << 20, backingSize: 20 << 20, compressed: true, writes: 400 };
  }
}

export type CrashOp =
  | { kind: 'write'; offset: number; length: number; fill: number }
  | { kind: 'compressed'; offset: number; length: number; fill: number }
  | { kind: 'zeroes'; offset: number; length: number; unmap: boolean }
  | { kind: 'discard'; offset: number; length: number }
  | { kind: 'grow'; size: number }
  | { kind: 'flush' };

/** Bytes of the backing file at [offset, offset + buf.length): a pattern no write uses. */
export function backingBytes(buf: Uint8Array, offset: number): void {
  for (let i = 0; i < buf.length; i++) {
    const p = offset + i;
    buf[i] = ((p >>> 9) * 7 + (p & 0x1ff) * 13 + 0x5a) & 0xff;
  }
}

/** The bytes a write op puts down: mostly one byte (compressible), with a per-op sprinkle. */
export function opBytes(op: { length: number; fill: number }): Uint8Array {
  const b = new Uint8Array(op.length).fill(op.fill & 0xff);
  for (let j = 0; j < b.length; j += 61) b[j] = (op.fill * 31 + j) & 0xff;
  return b;
}

/** The operation list of a seed; every run ends with a flush. */
export function opsFor(seed: number, count: number): CrashOp[] {
  const lay = layoutFor(seed);
  const rnd = prng(seed * 2654435761);
  const cs = lay.clusterSize;
  let size = lay.size;
  let grown = false;
  const ops: CrashOp[] = [];
  for (let i = 0; i < count; i++) {
    const k = rnd(100);
    const clusters = size / cs;
    if (k < 40) {
      // partial-cluster writes take COW from the backing file or the old cluster
      const offset = rnd(size - 1);
      const length = Math.min(size - offset, 1 + rnd(rnd(4) === 0 ? 3 * cs : cs));
      ops.push({ kind: 'write', offset, length, fill: 1 + rnd(250) });
    } else if (k < 55) {
      // 512-byte clusters: long runs, so the file outgrows what one refcount table cluster covers
      const c = rnd(clusters);
      const n = Math.min(clusters - c, 1 + rnd(cs === 512 ? 1024 : 8));
      ops.push({ kind: 'write', offset: c * cs, length: n * cs, fill: 1 + rnd(250) });
    } else if (k < 65 && lay.compressed) {
      const c = rnd(clusters);
      const n = Math.min(clusters - c, 1 + rnd(4));
      ops.push({ kind: 'compressed', offset: c * cs, length: n * cs, fill: 1 + rnd(250) });
    } else if (k < 75) {
      const offset = rnd(size - 1);
      const length = Math.min(size - offset, 1 + rnd(4 * cs));
      ops.push({ kind: 'zeroes', offset, length, unmap: rnd(2) === 0 });
    } else if (k < 83) {
      const c = rnd(clusters);
      const n = Math.min(clusters - c, 1 + rnd(6));
      ops.push({ kind: 'discard', offset: c * cs, length: n * cs });
    } else if (k < 84 && !grown && lay.growTo && i > count / 4) {
      grown = true;
      size = lay.growTo;
      ops.push({ kind: 'grow', size });
    } else {
      ops.push({ kind: 'flush' });
    }
  }
  ops.push({ kind: 'flush' });
  return ops;
}

/** Guest content right after the image was created on top of its backing file. */
export function initialModel(lay: CrashLayout): Uint8Array {
  const m = new Uint8Array(lay.size);
  backingBytes(m.subarray(0, lay.backingSize), 0);
  return m;
}

/**
 * The guest content after `op`, as qemu's semantics define it (discard of whole clusters reads
 * as zeros: the image is v3 with a backing file, so qemu and vdisk set the zero flag). Returns
 * the model, reallocated when the image grew.
 */
export function applyOp(model: Uint8Array, op: CrashOp): Uint8Array {
  switch (op.kind) {
    case 'write':
    case 'compressed':
      model.set(opBytes(op), op.offset);
      return model;
    case 'zeroes':
    case 'discard':
      model.fill(0, op.offset, op.offset + op.length);
      return model;
    case 'grow': {
      const m = new Uint8Array(op.size);
      m.set(model);
      return m;
    }
    case 'flush':
      return model;
  }
}

/**
 * Guest ranges an operation may have changed, for the parent to skip when a crash interrupted
 * it; a grow changes no existing byte (the new tail is zeros either way).
 */
export function opRange(op: CrashOp): [number, number] | undefined {
  return 'offset' in op ? [op.offset, op.offset + op.length] : undefined;
}

export function digest(model: Uint8Array): string {
  return createHash('sha256').update(model).digest('hex').slice(0, 16);
}
