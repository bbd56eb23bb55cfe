/**
 * A compression worker of ./compress-pool.ts: receives a batch of whole clusters in one buffer
 * (moved, not copied), compresses each into the output buffer it was given, packed end to end,
 * with the same bytes as compressCluster on the main thread, and sends both buffers back with
 * each cluster's length (-1: it does not shrink and is stored plainly; -2: left out).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ClusterCompressor } from './compress.js';

/** Length of a cluster the batch leaves out (the caller marked it in `skip`). */
export const SKIPPED = -2;

export interface CompressBatch {
  id: number;
  type: number;
  clusterSize: number;
  /** The clusters, end to end, in [offset, offset + bytes). */
  data: ArrayBuffer;
  offset: number;
  bytes: number;
  /** Nonzero for clusters not to compress. */
  skip?: Uint8Array;
  /** Where the compressed clusters go: at least `bytes` long (a compressed cluster is shorter than the cluster). */
  out: ArrayBuffer;
}

export interface CompressResult {
  id: number;
  lengths: Int32Array;
  /** The batch's buffers, handed back. */
  data: ArrayBuffer;
  out: ArrayBuffer;
  error?: string;
}

const compressors = new Map<number, ClusterCompressor>();
/** The last cluster of an image may be short: it is compressed zero-padded to a whole cluster. */
let padded: Uint8Array | undefined;

/** Compress a batch; exported for the main-thread fallback when no worker can start. */
export function compressBatch(b: CompressBatch): Int32Array {
  const cs = b.clusterSize;
  const n = Math.ceil(b.bytes / cs);
  const lengths = new Int32Array(n);
  let c = compressors.get(b.type);
  if (!c) compressors.set(b.type, (c = new ClusterCompressor(b.type)));
  const out = new Uint8Array(b.out);
  let at = 0;
  try {
    for (let i = 0; i < n; i++) {
      if (b.skip?.[i]) {
        lengths[i] = SKIPPED;
        continue;
      }
      let src: Uint8Array = new Uint8Array(b.data, b.offset + i * cs, Math.min(cs, b.bytes - i * cs));
      if (src.length < cs) {
        if (padded?.length !== cs) padded = new Uint8Array(cs);
        padded.fill(0).set(src);
        src = padded;
      }
      const len = c.compressInto(src, out, at);
      lengths[i] = len;
      if (len > 0) at += len;
    }
  } catch (e) {
    // a failed context is not reused
    compressors.delete(b.type);
    throw e;
  }
  return lengths;
}

// only in a worker the pool started: a program that is itself a worker may import this module
const port = (workerData as { vdiskCompress?: boolean } | null)?.vdiskCompress ? parentPort : null;
port?.on('message', (b: CompressBatch) => {
  let r: CompressResult;
  try {
    r = { id: b.id, lengths: compressBatch(b), data: b.data, out: b.out };
  } catch (e) {
    r = { id: b.id, lengths: new Int32Array(0), data: b.data, out: b.out, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(r, [r.data, r.out, r.lengths.buffer as ArrayBuffer]);
});
