/**
 * A compression worker of ./compress-pool.ts: receives a batch of whole clusters in one buffer,
 * compresses each with the synchronous call (the same bytes as compressCluster on the main thread)
 * and sends back one buffer with the results packed end to end and each one's length (-1: the
 * cluster does not shrink and is stored plainly).
 */
import { parentPort } from 'node:worker_threads';
import { compressCluster } from './compress.js';

export interface CompressBatch {
  id: number;
  type: number;
  clusterSize: number;
  /** The clusters, end to end, in the first `bytes` bytes. */
  data: ArrayBuffer;
  bytes: number;
}

export interface CompressResult {
  id: number;
  out: ArrayBuffer;
  lengths: Int32Array;
  /** The batch's input buffer, handed back. */
  data: ArrayBuffer;
  error?: string;
}

function compressBatch(b: CompressBatch): CompressResult {
  const n = Math.ceil(b.bytes / b.clusterSize);
  const lengths = new Int32Array(n);
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const r = compressCluster(b.type, new Uint8Array(b.data, i * b.clusterSize, Math.min(b.clusterSize, b.bytes - i * b.clusterSize)));
    if (r) {
      parts.push(r);
      total += r.length;
    }
    lengths[i] = r ? r.length : -1;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return { id: b.id, out: out.buffer, lengths, data: b.data };
}

parentPort?.on('message', (b: CompressBatch) => {
  let r: CompressResult;
  try {
    r = compressBatch(b);
  } catch (e) {
    r = { id: b.id, out: new ArrayBuffer(0), lengths: new Int32Array(0), data: b.data, error: e instanceof Error ? e.message : String(e) };
  }
  parentPort!.postMessage(r, [r.out, r.data, r.lengths.buffer as ArrayBuffer]);
});
