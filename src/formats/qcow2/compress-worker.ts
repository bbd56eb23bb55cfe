/**
 * A compression worker of ./compress-pool.ts: receives a batch of whole clusters in one buffer
 * (moved, not copied) and packs it in place: each cluster, compressed (the same bytes as
 * compressCluster on the main thread) or, when it does not shrink, as it is, goes end to end
 * from the start of the buffer, which is sent back with each cluster's length (-1: stored
 * plainly; -2: left out). Packing in place needs no output buffer: a packed cluster is never
 * longer than the cluster it came from, so it never reaches a cluster not yet compressed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ClusterCompressor } from './compress.js';

/** Length of a cluster the batch leaves out (the caller marked it in `skip`). */
export const SKIPPED = -2;

export interface CompressBatch {
  id: number;
  type: number;
  clusterSize: number;
  /** The clusters, end to end, in [offset, offset + bytes); packed from `offset` on return. */
  data: ArrayBuffer;
  offset: number;
  bytes: number;
  /**
   * Bytes from `offset` the packed clusters may take (at least `bytes`): a short last cluster is
   * compressed zero-padded and may come out longer than its own bytes; without the room it is
   * stored plainly. Default: `bytes`.
   */
  room?: number;
  /** Nonzero for clusters not to compress. */
  skip?: Uint8Array;
}

export interface CompressResult {
  id: number;
  lengths: Int32Array;
  /** The batch's buffer, handed back packed. */
  data: ArrayBuffer;
  error?: string;
}

const compressors = new Map<number, ClusterCompressor>();
/** One cluster's worth: the compressor's output (and the zero-padded short last cluster's input). */
let scratch = new Uint8Array(0);
let padded = new Uint8Array(0);

/**
 * Compress a batch, packing it in place; also the main thread's fallback when no worker starts.
 * Returns the lengths: >= 0 compressed, -1 stored plainly (its whole bytes), -2 left out.
 */
export function compressBatch(b: CompressBatch): Int32Array {
  const cs = b.clusterSize;
  const n = Math.ceil(b.bytes / cs);
  const lengths = new Int32Array(n);
  let c = compressors.get(b.type);
  if (!c) compressors.set(b.type, (c = new ClusterCompressor(b.type)));
  if (scratch.length < cs) scratch = new Uint8Array(cs);
  const buf = new Uint8Array(b.data, b.offset, Math.max(b.bytes, b.room ?? 0));
  let at = 0;
  try {
    for (let i = 0; i < n; i++) {
      if (b.skip?.[i]) {
        lengths[i] = SKIPPED;
        continue;
      }
      const from = i * cs;
      const len = Math.min(cs, b.bytes - from);
      let src = buf.subarray(from, from + len);
      if (len < cs) {
        if (padded.length !== cs) padded = new Uint8Array(cs);
        padded.fill(0).set(src);
        src = padded;
      }
      let size = c.compressInto(src, scratch, 0);
      if (at + size > buf.length) size = -1;
      lengths[i] = size;
      // at <= from: the packed bytes end before the next cluster starts
      if (size >= 0) buf.set(scratch.subarray(0, size), at);
      else buf.copyWithin(at, from, from + len);
      at += size >= 0 ? size : len;
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
    r = { id: b.id, lengths: compressBatch(b), data: b.data };
  } catch (e) {
    r = { id: b.id, lengths: new Int32Array(0), data: b.data, error: e instanceof Error ? e.message : String(e) };
  }
  port!.postMessage(r, [r.data, r.lengths.buffer as ArrayBuffer]);
});
