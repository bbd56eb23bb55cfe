/**
 * Cluster compression for convert -c on worker threads, a copy request (up to 2 MiB, 32 clusters
 * of 64 KiB) at a time: one message each way per request, the request's buffer moved to the
 * worker and back instead of copied, and packed in place there (./compress-worker.ts), so a
 * request needs no memory beyond its own buffer and nothing is left to the garbage collector
 * (whose lag used to show as resident memory growing with the image). At most PER_WORKER
 * batches per worker are out; the rest wait, uncopied. Node's one-call-per-cluster async
 * zlib/zstd on the libuv pool costs about twice the CPU of the synchronous calls for 64 KiB
 * clusters (a stream object, events and an output buffer per cluster), which is why compression
 * runs on workers with one reused context each.
 *
 * The bytes are those of compressCluster (./compress.ts). If no worker can be started, batches
 * are compressed on the main thread.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { compressBatch, type CompressBatch, type CompressResult } from './compress-worker.js';

/**
 * Workers at most. Each Node worker costs 10-12 MiB of resident memory whatever it does (its own
 * V8 heap and Node environment), so the count is bounded by the 128 MiB budget of a convert, not
 * by the cores: measured on the default-size perf image (2 GiB virtual, 512 MiB data), one
 * worker 104-106 MiB, two 114-116 MiB; a third would leave no margin (quick image: 117-119 MiB).
 */
export const MAX_COMPRESS_WORKERS = 2;
/** Batches a worker holds at once: one being compressed, one waiting, so it never idles between messages. */
const PER_WORKER = 2;
/** Clusters compressed ahead of their write. */
export interface PackedClusters {
  /** The memory of the buffer given, for reuse: its bytes were consumed (moved to a worker and back, packed). */
  data: Uint8Array;
  /** Per cluster: its length in `packed` (in cluster order): >= 0 compressed, -1 stored plainly (all its bytes), -2 left out. */
  lengths: Int32Array;
  packed: Uint8Array;
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

/** The packed clusters in `packed` from `at` (plain ones take their whole length). */
function result(data: Uint8Array, packed: ArrayBuffer, at: number, bytes: number, clusterSize: number, lengths: Int32Array): PackedClusters {
  let total = 0;
  for (let i = 0; i < lengths.length; i++) {
    const n = lengths[i]!;
    if (n >= 0) total += n;
    else if (n === -1) total += Math.min(clusterSize, bytes - i * clusterSize);
  }
  return { data, lengths, packed: new Uint8Array(packed, at, total) };
}

function settle(slot: Slot, r: CompressResult): void {
  const f = inFlight.get(r.id);
  if (!f) return;
  inFlight.delete(r.id);
  if (--slot.busy === 0) slot.worker.unref();
  if (slots) dispatch(slots);
  const { job } = f;
  if (r.error !== undefined) {
    job.reject(new Error(r.error));
    return;
  }
  const data = f.moved ? new Uint8Array(r.data, f.at, f.bytes) : job.buf;
  job.resolve(result(data, r.data, f.moved ? f.at : 0, f.bytes, job.clusterSize, r.lengths));
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
    // a buffer that cannot move is copied (library callers), with room for whole clusters
    let data: ArrayBuffer;
    if (moved) {
      data = job.buf.buffer as ArrayBuffer;
    } else {
      data = new ArrayBuffer(Math.ceil(job.buf.length / job.clusterSize) * job.clusterSize);
      new Uint8Array(data).set(job.buf);
    }
    const id = nextId++;
    inFlight.set(id, { slot, job, moved, at: moved ? job.buf.byteOffset : 0, bytes: job.buf.length });
    if (slot.busy++ === 0) slot.worker.ref();
    const msg: CompressBatch = { id, type: job.type, clusterSize: job.clusterSize, data, offset: moved ? job.buf.byteOffset : 0, bytes: job.buf.length, room: data.byteLength - (moved ? job.buf.byteOffset : 0), skip: job.skip };
    slot.worker.postMessage(msg, [data]);
  }
}

/**
 * Compress the whole clusters of `buf` (the last may be short: it is compressed zero-padded);
 * clusters with `skip[i]` nonzero are left out. `buf`'s bytes are consumed: its memory may move
 * to a worker until the promise settles (the caller must not touch it meanwhile), and the
 * clusters are in the result's `packed` afterwards.
 */
export async function compressClusters(type: number, clusterSize: number, buf: Uint8Array, skip?: Uint8Array): Promise<PackedClusters> {
  const pool = await start();
  if (!pool) {
    const room = movable(buf) ? buf.buffer.byteLength : buf.length;
    const lengths = compressBatch({ id: 0, type, clusterSize, data: buf.buffer as ArrayBuffer, offset: buf.byteOffset, bytes: buf.length, room, skip });
    return result(buf, buf.buffer as ArrayBuffer, buf.byteOffset, buf.length, clusterSize, lengths);
  }
  return new Promise((resolve, reject) => {
    queued.push({ type, clusterSize, buf, skip, resolve, reject });
    dispatch(pool);
  });
}
