/**
 * Cluster compression for convert -c on worker threads, in batches. Node's one-call-per-cluster
 * async zlib/zstd costs about as much CPU again as the compression itself for zstd (a stream
 * object, its events and an output buffer per 64 KiB cluster) and a quarter more for deflate; a
 * worker compresses a whole batch with the synchronous calls, so the per-cluster cost is the
 * compression alone, and the workers run on as many cores as there are while the main thread
 * reads and writes. Clusters asked for in the same turn of the event loop (the copy engine asks
 * for all of a request's clusters at once) go to a worker as one batch of at most 2 MiB.
 *
 * The bytes are those of compressCluster (./compress.ts) on the main thread. If no worker can be
 * started, compression falls back to Node's async calls on the libuv threadpool.
 */
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import type { CompressBatch, CompressResult } from './compress-worker.js';

/** Workers at most: the copy engine has at most 16 requests in flight, 8 by default. */
export const MAX_COMPRESS_WORKERS = 8;
/** Bytes of clusters sent to a worker at once (one copy request's worth). */
const BATCH_BYTES = 2 << 20;
/** Batch buffers kept for reuse: enough to refill the workers without holding a copy of every request. */
const SPARE_BATCHES = 2;

type Waiter = { resolve: (r: Uint8Array | null) => void; reject: (e: unknown) => void };
interface Pending { type: number; clusterSize: number; clusters: Uint8Array[]; waiters: Waiter[]; bytes: number }
interface Slot { worker: Worker; busy: number }

let slots: Slot[] | undefined;
let startFailed = false;
let nextId = 1;
const inFlight = new Map<number, { slot: Slot; waiters: Waiter[] }>();
let pending: Pending | undefined;
/** Batch buffers the workers handed back, reused for the next batches. */
const spare: ArrayBuffer[] = [];

async function start(): Promise<Slot[] | undefined> {
  if (slots || startFailed) return slots;
  try {
    const { Worker } = await import('node:worker_threads');
    const n = Math.max(1, Math.min(MAX_COMPRESS_WORKERS, availableParallelism() - 1));
    const url = new URL('./compress-worker.js', import.meta.url);
    slots ??= Array.from({ length: n }, () => {
      // small heaps: a worker holds one batch and its results at a time, and garbage left to a
      // large young generation would show as resident memory for the whole convert
      const worker = new Worker(url, { resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 } });
      const slot: Slot = { worker, busy: 0 };
      worker.on('message', (r: CompressResult) => settle(slot, r));
      worker.on('error', (e) => fail(slot, e));
      // an idle pool must not keep the process alive
      worker.unref();
      return slot;
    });
  } catch {
    startFailed = true;
  }
  return slots;
}

function settle(slot: Slot, r: CompressResult): void {
  const job = inFlight.get(r.id);
  if (!job) return;
  inFlight.delete(r.id);
  if (--slot.busy === 0) slot.worker.unref();
  if (r.data.byteLength === BATCH_BYTES && spare.length < SPARE_BATCHES) spare.push(r.data);
  if (slots) dispatch(slots);
  if (r.error !== undefined) {
    for (const w of job.waiters) w.reject(new Error(r.error));
    return;
  }
  let at = 0;
  for (let i = 0; i < job.waiters.length; i++) {
    const n = r.lengths[i]!;
    if (n < 0) {
      job.waiters[i]!.resolve(null);
    } else {
      job.waiters[i]!.resolve(new Uint8Array(r.out, at, n));
      at += n;
    }
  }
}

/** A worker that died fails its batches; the next compression starts a fresh pool. */
function fail(slot: Slot, e: unknown): void {
  for (const [id, job] of inFlight) {
    if (job.slot !== slot) continue;
    inFlight.delete(id);
    for (const w of job.waiters) w.reject(e);
  }
  void slot.worker.terminate();
  slots = undefined;
  for (const b of queued.splice(0)) for (const w of b.waiters) w.reject(e);
}

async function flush(): Promise<void> {
  const b = pending;
  pending = undefined;
  if (!b) return;
  try {
    const pool = await start();
    if (!pool) throw new Error('no compression workers');
    queued.push(b);
    dispatch(pool);
  } catch (e) {
    for (const w of b.waiters) w.reject(e);
  }
}

/**
 * Batches wait here, uncopied, until a worker has fewer than PER_WORKER batches: copies exist only
 * for the batches being compressed or next in line, not for every request the copy has in flight.
 */
const queued: Pending[] = [];
const PER_WORKER = 2;

function dispatch(pool: Slot[]): void {
  while (queued.length > 0) {
    const slot = pool.reduce((a, s) => (s.busy < a.busy ? s : a));
    if (slot.busy >= PER_WORKER) return;
    const b = queued.shift()!;
    const data = new Uint8Array(spare.pop() ?? new ArrayBuffer(BATCH_BYTES), 0, b.bytes);
    let at = 0;
    for (const c of b.clusters) {
      data.set(c, at);
      at += b.clusterSize;
    }
    const id = nextId++;
    inFlight.set(id, { slot, waiters: b.waiters });
    if (slot.busy++ === 0) slot.worker.ref();
    const msg: CompressBatch = { id, type: b.type, clusterSize: b.clusterSize, data: data.buffer, bytes: b.bytes };
    slot.worker.postMessage(msg, [data.buffer]);
  }
}

/** Whether compression can go to workers (false: use the threadpool fallback). */
export function workersAvailable(): boolean {
  return !startFailed;
}

/**
 * One whole cluster compressed on a worker: its bytes, or null when it does not shrink. The
 * cluster must stay unchanged until the promise settles (it is copied into the batch later).
 */
export function compressOnWorker(type: number, cluster: Uint8Array): Promise<Uint8Array | null> {
  const cs = cluster.length;
  if (pending && (pending.type !== type || pending.clusterSize !== cs || pending.bytes + cs > BATCH_BYTES)) void flush();
  if (!pending) {
    pending = { type, clusterSize: cs, clusters: [], waiters: [], bytes: 0 };
    // after this turn's callbacks and promise jobs: every cluster asked for meanwhile joins
    setImmediate(() => void flush());
  }
  const p = pending;
  return new Promise((resolve, reject) => {
    p.clusters.push(cluster);
    p.waiters.push({ resolve, reject });
    p.bytes += cs;
  });
}
