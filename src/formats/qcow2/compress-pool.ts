/**
 * Cluster compression for convert -c on worker threads, a copy request (up to 2 MiB, 32 clusters
 * of 64 KiB) at a time: one message each way per request, the request's buffer moved to the
 * worker and back instead of copied, and the compressed clusters packed end to end into an
 * output buffer that is reused once its bytes are written (`release`). Memory is flat: at most
 * PER_WORKER batches per worker are out, the rest wait uncopied, and output buffers are recycled
 * instead of left to the garbage collector (whose lag showed as resident memory growing with the
 * image). Node's one-call-per-cluster async zlib/zstd on the libuv pool costs about twice the CPU
 * of the synchronous calls for 64 KiB clusters (a stream object, events and an output buffer per
 * cluster), which is why compression runs on workers with the synchronous calls.
 *
 * The bytes are those of compressCluster (./compress.ts). If no worker can be started, batches
 * are compressed on the main thread.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { compressBatch, type CompressBatch, type CompressResult } from './compress-worker.js';

/**
 * Workers at most. Each Node worker costs about 20 MiB of resident memory whatever it does (its
 * own V8 heap and Node environment), so the count is bounded by the 128 MiB budget of a convert,
 * not by the cores: 3 workers plus the main thread's reads and writes keep a convert -c under it.
 */
export const MAX_COMPRESS_WORKERS = 3;
/** Batches a worker holds at once: one being compressed, one waiting, so it never idles between messages. */
const PER_WORKER = 2;
/** Output buffers are this long (the copy engine's request size), longer only for a longer batch. */
const OUT_BYTES = 2 << 20;

/** Clusters compressed ahead of their write. */
export interface PackedClusters {
  /** The clusters as given (the same bytes; their buffer may have moved to a worker and back). */
  data: Uint8Array;
  /** Per cluster: its compressed length in `packed` (in cluster order), -1 stored plainly, -2 left out. */
  lengths: Int32Array;
  packed: Uint8Array;
  /** The output buffer may be reused: `packed` must not be read any more. */
  release(): void;
}

interface Job {
  type: number;
  clusterSize: number;
  buf: Uint8Array;
  skip: Uint8Array | undefined;
  resolve: (r: PackedClusters) => void;
  reject: (e: unknown) => void;
}
interface Slot { worker: Worker; busy: number }

let slots: Slot[] | undefined;
let startFailed = false;
let nextId = 1;
/** Batches at a worker; `at`/`bytes`: where the clusters are in a moved buffer (the caller's view is detached). */
const inFlight = new Map<number, { slot: Slot; job: Job; moved: boolean; at: number; bytes: number }>();
const queued: Job[] = [];
/** Output buffers whose bytes were written, for the next batches. */
const freeOut: ArrayBuffer[] = [];
/** Input copies of batches whose buffer could not be moved. */
const freeIn: ArrayBuffer[] = [];

/** Compress threads: one per core but the main thread's, within MAX_COMPRESS_WORKERS. */
export function compressWorkerCount(cores = availableParallelism()): number {
  return Math.max(1, Math.min(MAX_COMPRESS_WORKERS, cores - 1));
}

async function start(): Promise<Slot[] | undefined> {
  if (slots || startFailed) return slots;
  try {
    const { Worker } = await import('node:worker_threads');
    const url = new URL('./compress-worker.js', import.meta.url);
    slots ??= Array.from({ length: compressWorkerCount() }, () => {
      // small heaps: a worker allocates almost nothing (buffers come from the main thread)
      const worker = new Worker(url, { workerData: { vdiskCompress: true }, resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
      const slot: Slot = { worker, busy: 0 };
      worker.on('message', (r: CompressResult) => settle(slot, r));
      worker.on('error', (e) => fail(slot, e));
      worker.on('exit', (code) => fail(slot, new Error(`compression worker exited with status ${code}`)));
      // an idle pool must not keep the process alive
      worker.unref();
      return slot;
    });
  } catch {
    startFailed = true;
  }
  return slots;
}

/** Output room for a batch: whole clusters (a short last cluster is compressed zero-padded). */
function roomFor(bytes: number, clusterSize: number): number {
  return Math.ceil(bytes / clusterSize) * clusterSize;
}

function takeOut(bytes: number): ArrayBuffer {
  const i = freeOut.findIndex((b) => b.byteLength >= bytes);
  if (i >= 0) return freeOut.splice(i, 1)[0]!;
  return new ArrayBuffer(Math.max(OUT_BYTES, bytes));
}

function result(job: Job, data: Uint8Array, out: ArrayBuffer, lengths: Int32Array): PackedClusters {
  let total = 0;
  for (const n of lengths) if (n > 0) total += n;
  let released = false;
  return {
    data, lengths, packed: new Uint8Array(out, 0, total),
    release: () => {
      if (released) return;
      released = true;
      if (freeOut.length < PER_WORKER * MAX_COMPRESS_WORKERS + 2) freeOut.push(out);
    },
  };
}

function settle(slot: Slot, r: CompressResult): void {
  const f = inFlight.get(r.id);
  if (!f) return;
  inFlight.delete(r.id);
  if (--slot.busy === 0) slot.worker.unref();
  if (slots) dispatch(slots);
  const { job } = f;
  const data = f.moved ? new Uint8Array(r.data, f.at, f.bytes) : job.buf;
  if (!f.moved && freeIn.length < PER_WORKER) freeIn.push(r.data);
  if (r.error !== undefined) {
    job.reject(new Error(r.error));
    return;
  }
  job.resolve(result(job, data, r.out, r.lengths));
}

/** A worker that died fails every batch out (the pool stops as a whole); the next compression starts a fresh pool. */
function fail(slot: Slot, e: unknown): void {
  const pool = slots;
  if (!pool?.includes(slot)) return;
  slots = undefined;
  for (const s of pool) void s.worker.terminate();
  for (const f of inFlight.values()) f.job.reject(e);
  inFlight.clear();
  for (const j of queued.splice(0)) j.reject(e);
}

/** A buffer can move to a worker when nothing else can see its memory: the view covers all of it. */
function movable(buf: Uint8Array): boolean {
  return buf.buffer instanceof ArrayBuffer && buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength;
}

function dispatch(pool: Slot[]): void {
  while (queued.length > 0) {
    const slot = pool.reduce((a, s) => (s.busy < a.busy ? s : a));
    if (slot.busy >= PER_WORKER) return;
    const job = queued.shift()!;
    const moved = movable(job.buf);
    let data: ArrayBuffer;
    if (moved) {
      data = job.buf.buffer as ArrayBuffer;
    } else {
      const i = freeIn.findIndex((b) => b.byteLength >= job.buf.length);
      data = i >= 0 ? freeIn.splice(i, 1)[0]! : new ArrayBuffer(Math.max(OUT_BYTES, job.buf.length));
      new Uint8Array(data).set(job.buf);
    }
    const out = takeOut(roomFor(job.buf.length, job.clusterSize));
    const id = nextId++;
    inFlight.set(id, { slot, job, moved, at: job.buf.byteOffset, bytes: job.buf.length });
    if (slot.busy++ === 0) slot.worker.ref();
    const msg: CompressBatch = { id, type: job.type, clusterSize: job.clusterSize, data, offset: moved ? job.buf.byteOffset : 0, bytes: job.buf.length, skip: job.skip, out };
    slot.worker.postMessage(msg, [data, out]);
  }
}

/**
 * Compress the whole clusters of `buf` (the last may be short: it is compressed zero-padded);
 * clusters with `skip[i]` nonzero are left out. `buf`'s memory may move to a worker until the
 * promise settles: the caller must not touch it meanwhile and uses the result's `data` after.
 */
export async function compressClusters(type: number, clusterSize: number, buf: Uint8Array, skip?: Uint8Array): Promise<PackedClusters> {
  const pool = await start();
  if (!pool) {
    const out = takeOut(roomFor(buf.length, clusterSize));
    const lengths = compressBatch({ id: 0, type, clusterSize, data: buf.buffer as ArrayBuffer, offset: buf.byteOffset, bytes: buf.length, skip, out });
    return result({ type, clusterSize, buf, skip, resolve: () => undefined, reject: () => undefined }, buf, out, lengths);
  }
  return new Promise((resolve, reject) => {
    queued.push({ type, clusterSize, buf, skip, resolve, reject });
    dispatch(pool);
  });
}
