/**
 * The copy engine behind convert (and later commit, rebase, dd, the NBD client's bulk reads).
 *
 * It asks the source for block status one window at a time (never for the whole disk up front),
 * skips what is unallocated or known zero without reading it, detects zeros in the data it reads at
 * the sparse granularity, and keeps a bounded number of requests in flight over a fixed pool of
 * buffers, so memory stays flat whatever the image size. Writes are issued in order (each
 * request's writes reach the target after the previous request's, before those complete) unless
 * the caller allows out-of-order writes (qemu-img's -W).
 */
import type { Image } from './image.js';
import { RateLimiter, SALVAGE_SECTOR, copyRange, isIoFailure, readForCopy, statusError, statusWarning } from './copy-io.js';
import { isAllZero, isZeroRange } from './bytes.js';
import { alignedBuffers } from './aligned.js';
import type { CompressedClusters } from './driver.js';

/** A cluster precompress left out (all zero): CompressedClusters.lengths. */
const LEFT_OUT = -2;

/** Largest request the engine reads or writes at once (qemu-img convert uses 2 MiB too). */
export const COPY_CHUNK_BYTES = 2 << 20;
/** Default and largest number of parallel requests (qemu-img convert -m: 1..16, default 8). */
export const COPY_DEFAULT_IN_FLIGHT = 8;
export const COPY_MAX_IN_FLIGHT = 16;

export interface CopySegment {
  /** The source image (its whole backing chain is read unless `topOnly`). */
  image: Image;
  /** Where this source starts in the target. */
  targetOffset: number;
}

export interface CopyOptions {
  target: Image;
  /** Zero runs of at least this many (aligned) bytes are not written; 0 writes everything read. */
  sparseSize: number;
  /** The target reads as zeros already (freshly created, or --target-is-zero). */
  targetIsZero: boolean;
  /** Only copy what the sources' top layers allocate (the target has a backing file: -B). */
  topOnly?: boolean;
  inFlight?: number;
  outOfOrder?: boolean;
  /** Write whole clusters compressed (-c); the target must support it. */
  compressed?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** --salvage: read and block-status errors become warnings; unreadable sectors are written as zeros. */
  salvage?: boolean;
  /** Receives warning texts (qemu-img prints them as "warning: ..."), in source order. */
  warn?: (text: string) => void;
  /** -r: bytes per second of copied data (0 or absent: unlimited). */
  rateLimit?: number;
  /** -C: copy data with copy_file_range where both ends are plain files; data is copied verbatim (no zero detection). */
  copyOffload?: boolean;
}

interface Job {
  seq: number;
  src: Image;
  srcOffset: number;
  dstOffset: number;
  length: number;
  /** 'data': read and write; 'zero': the target must read zeros here; 'skip': nothing to do. */
  kind: 'data' | 'zero' | 'skip';
  /** Block-status warnings (--salvage) printed when this job's turn comes. */
  warnings?: string[];
  /** A compressed-target window spanning several sources: what to read into which part of the buffer. */
  parts?: JobPart[];
}

interface JobPart {
  src: Image;
  srcOffset: number;
  length: number;
  bufOffset: number;
}

/** Length of the zero run at the start of buf, in whole `unit`s (0 if the first unit is not zero). */
function zeroPrefix(buf: Uint8Array, unit: number): number {
  let n = 0;
  while (n < buf.length) {
    const end = Math.min(buf.length, n + unit);
    if (!isAllZero(buf.subarray(n, end))) return n;
    n = end;
  }
  return n;
}

/**
 * True when [off, end) of the source reads as zeros, by block status alone. With topOnly,
 * `explicit` is set when some of it is zeroed in the top layer (the target must get those zeros
 * over its backing file) rather than unallocated.
 */
async function allZero(img: Image, off: number, end: number, topOnly: boolean, explicit?: { zero: boolean }): Promise<boolean> {
  for (let p = off; p < end;) {
    if (topOnly) {
      const st = await img.layerStatus(p, end - p);
      if (st.allocated && !(st.zero && !st.data)) return false;
      if (st.allocated && explicit) explicit.zero = true;
      p += st.length;
    } else {
      const st = await img.chainStatus(p, end - p);
      if (!st.zero) return false;
      p += st.length;
    }
  }
  return true;
}

/**
 * Compressed targets take whole clusters only, so the walk goes in cluster-aligned windows
 * (COPY_CHUNK_BYTES is a multiple of every qcow2 cluster size) instead of following block status.
 */
async function* planAligned(segments: readonly CopySegment[], o: CopyOptions): AsyncGenerator<Job> {
  let seq = 0;
  if (o.topOnly && segments.length === 1) {
    // -B: only what the top layer holds, cluster by cluster (a backing file excludes concatenation)
    const seg = segments[0]!;
    for await (const j of planTopOnlyClusters(seg.image, o.target.layer.granularity ?? COPY_CHUNK_BYTES)) {
      yield { seq: seq++, src: seg.image, srcOffset: j.off, dstOffset: seg.targetOffset + j.off, length: j.length, kind: j.kind };
    }
    return;
  }
  const end = segments.reduce((m, s) => Math.max(m, s.targetOffset + s.image.size), 0);
  // windows in target coordinates: a cluster may span two concatenated sources
  for (let t = 0; t < end; t += COPY_CHUNK_BYTES) {
    const n = Math.min(COPY_CHUNK_BYTES, end - t);
    const parts = windowParts(segments, t, n);
    if (parts.length !== 1 || parts[0]!.length !== n) {
      let zero = true;
      for (const p of parts) if (zero && !(await allZero(p.src, p.srcOffset, p.srcOffset + p.length, false))) zero = false;
      const kind: Job['kind'] = zero && o.sparseSize !== 0 ? (o.targetIsZero ? 'skip' : 'zero') : 'data';
      yield { seq: seq++, src: parts[0]!.src, srcOffset: parts[0]!.srcOffset, dstOffset: t, length: n, kind, parts };
      continue;
    }
    const img = parts[0]!.src;
    const off = parts[0]!.srcOffset;
    const explicit = { zero: false };
    const zero = await allZero(img, off, off + n, o.topOnly ?? false, explicit);
    // -S 0: zero clusters are written (compressed) too, so the output is fully allocated
    const kind: Job['kind'] = zero && !(o.sparseSize === 0 && !o.topOnly) ? (o.targetIsZero || o.topOnly ? 'skip' : 'zero') : 'data';
    if (kind === 'skip' && o.topOnly && explicit.zero) {
      // zeros over a backing file must reach the target; the unallocated runs beside them stay so
      for (let p = off; p < off + n;) {
        const st = await img.layerStatus(p, off + n - p);
        yield { seq: seq++, src: img, srcOffset: p, dstOffset: t + (p - off), length: st.length, kind: st.allocated ? 'zero' : 'skip' };
        p += st.length;
      }
      continue;
    }
    yield { seq: seq++, src: img, srcOffset: off, dstOffset: t, length: n, kind };
  }
}

/** The pieces of the sources that fill the target window [t, t+n). */
function windowParts(segments: readonly CopySegment[], t: number, n: number): JobPart[] {
  const out: JobPart[] = [];
  for (const s of segments) {
    const a = Math.max(t, s.targetOffset);
    const b = Math.min(t + n, s.targetOffset + s.image.size);
    if (a < b) out.push({ src: s.image, srcOffset: a - s.targetOffset, length: b - a, bufOffset: a - t });
  }
  return out;
}

/**
 * Compressed copies of the top layer only (-B): cluster by cluster, so clusters the top does not
 * allocate stay unallocated in the target instead of being filled from the backing file.
 */
async function* planTopOnlyClusters(img: Image, cluster: number): AsyncGenerator<{ off: number; length: number; kind: Job['kind'] }> {
  let run: { off: number; length: number; kind: Job['kind'] } | undefined;
  const pending: Array<{ off: number; length: number; kind: Job['kind'] }> = [];
  const add = (off: number, length: number, kind: Job['kind']): void => {
    if (run && run.kind === kind && (kind !== 'data' || run.length + length <= COPY_CHUNK_BYTES)) {
      run.length += length;
      return;
    }
    if (run) pending.push(run);
    run = { off, length, kind };
  };
  for (let c = 0; c < img.size;) {
    // whole clusters in one status run share its state; only clusters split by runs are walked
    const st = await img.layerStatus(c, Math.min(img.size - c, 1 << 30));
    const kind: Job['kind'] = !st.allocated ? 'skip' : st.zero && !st.data ? 'zero' : 'data';
    const whole = Math.floor(Math.min(st.length, img.size - c) / cluster) * cluster;
    if (whole > 0) {
      for (let p = 0; p < whole; p += COPY_CHUNK_BYTES) add(c + p, Math.min(COPY_CHUNK_BYTES, whole - p), kind);
      c += whole;
    } else {
      // a run shorter than a cluster (or the image's short last cluster) makes its cluster data,
      // read through the chain, as qemu-img takes it: compressed clusters are written whole
      const end = Math.min(img.size, c + cluster);
      add(c, end - c, 'data');
      c = end;
    }
    yield* pending.splice(0);
  }
  if (run) yield run;
}

/** Walks the sources and yields jobs, each no longer than COPY_CHUNK_BYTES for data. */
async function* plan(segments: readonly CopySegment[], o: CopyOptions): AsyncGenerator<Job> {
  if (o.compressed) {
    yield* planAligned(segments, o);
    return;
  }
  let seq = 0;
  for (const seg of segments) {
    const img = seg.image;
    let off = 0;
    while (off < img.size) {
      const want = Math.min(img.size - off, 1 << 30);
      let { length, kind, warning } = await runStatus(img, off, want, o);
      if (kind === 'zero' && o.targetIsZero && o.sparseSize > 0) kind = 'skip';
      if (kind === 'zero' && o.sparseSize === 0) kind = 'data'; // -S 0: fully allocate the output
      const step = kind === 'data' ? COPY_CHUNK_BYTES : length;
      for (let done = 0; done < length; done += step) {
        const n = Math.min(step, length - done);
        const job: Job = { seq: seq++, src: img, srcOffset: off + done, dstOffset: seg.targetOffset + off + done, length: n, kind };
        if (warning !== undefined) job.warnings = [warning];
        warning = undefined;
        yield job;
      }
      off += length;
    }
  }
}

/**
 * Block status of the run at `off`. A failing query is an error, or under --salvage retried on a
 * quarter of the length until one sector, which is then taken as data with a warning (qemu-img's way).
 */
async function runStatus(img: Image, off: number, want: number, o: CopyOptions): Promise<{ length: number; kind: Job['kind']; warning?: string }> {
  for (let n = want; ;) {
    try {
      if (o.topOnly) {
        const st = await img.layerStatus(off, n);
        return { length: st.length, kind: !st.allocated ? 'skip' : st.zero && !st.data ? 'zero' : 'data' };
      }
      const st = await img.chainStatus(off, n);
      return { length: st.length, kind: st.zero ? 'zero' : 'data' };
    } catch (e) {
      if (!isIoFailure(e)) throw e;
      if (!o.salvage) throw statusError(off, e);
      if (n <= SALVAGE_SECTOR) return { length: n, kind: 'data', warning: statusWarning(off, e) };
      n = Math.max(SALVAGE_SECTOR, Math.ceil(n / SALVAGE_SECTOR / 4) * SALVAGE_SECTOR);
    }
  }
}

/**
 * Compress a buffer's clusters (zero ones left out unless -S 0 writes them) in one request off
 * the main thread, before the job waits for its turn to write: compression of every job in
 * flight overlaps, the writes stay in order. The buffer's bytes are consumed (the clusters are in
 * the result's `packed`); the result's `data` is its memory again, for the pool.
 */
async function precompress(o: CopyOptions, buf: Uint8Array): Promise<CompressedClusters | undefined> {
  const t = o.target;
  const g = t.layer.granularity ?? buf.length;
  const skip = new Uint8Array(Math.ceil(buf.length / g));
  for (let p = 0, i = 0; p < buf.length; p += g, i++) {
    const c = buf.subarray(p, Math.min(buf.length, p + g));
    if (o.sparseSize !== 0 && zeroPrefix(c, c.length) === c.length) skip[i] = 1;
  }
  return t.compressClusters(buf, skip);
}

/**
 * Write one buffer of data, leaving zero runs of at least sparseSize as zeros (not written). Every
 * call to the target is made before this returns (the promise only waits for them): the next job
 * may then issue its own writes behind these, in the same order, while these are still running.
 */
function writeSparse(o: CopyOptions, buf: Uint8Array, dst: number, pre?: CompressedClusters, runs?: readonly SparseRun[]): Promise<void> {
  const t = o.target;
  const calls: Array<Promise<void>> = [];
  if (o.compressed) {
    // whole clusters; all-zero clusters stay unallocated like qemu-img -c leaves them
    const g = t.layer.granularity ?? buf.length;
    if (pre) {
      calls.push(t.writeCompressed(buf, dst, pre));
      if (!o.targetIsZero) {
        for (let i = 0; i < pre.lengths.length; i++) if (pre.lengths[i] === LEFT_OUT) calls.push(t.writeZeroes(dst + i * g, Math.min(g, buf.length - i * g), true));
      }
      return allIssued(calls);
    }
    for (let p = 0; p < buf.length; p += g) {
      const c = buf.subarray(p, Math.min(buf.length, p + g));
      if (o.sparseSize !== 0 && zeroPrefix(c, c.length) === c.length) {
        if (!o.targetIsZero) calls.push(t.writeZeroes(dst + p, c.length, true));
      } else {
        calls.push(t.writeCompressed(c, dst + p));
      }
    }
    return allIssued(calls);
  }
  if (o.sparseSize === 0) return t.write(buf, dst);
  for (const r of runs ?? sparseRuns(buf, dst, o.sparseSize)) {
    if (!r.zero) calls.push(t.write(buf.subarray(r.start, r.end), dst + r.start));
    else if (!o.targetIsZero) calls.push(t.writeZeroes(dst + r.start, r.end - r.start, true));
  }
  return allIssued(calls);
}

/**
 * Wait for every call (none may still be using the buffer when the job returns it to the pool),
 * then fail with the first failure in call order.
 */
async function allIssued(calls: ReadonlyArray<Promise<void>>): Promise<void> {
  if (calls.length === 1) return calls[0];
  const results = await Promise.allSettled(calls);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/** A piece of a buffer to write: data, or zeros left unwritten (or written as zeroes). */
export interface SparseRun {
  start: number;
  end: number;
  zero: boolean;
}

/**
 * How a buffer of data landing at target offset `dst` splits into data runs and zero runs, `unit`
 * (the -S size) at a time in target coordinates: a zero run is whole aligned units (the last may
 * stop at the buffer's end), a data run reaches up to the next all-zero unit. Pure, and done before
 * the job waits for its turn to write, so the scan is off the ordered write path.
 */
export function sparseRuns(buf: Uint8Array, dst: number, unit: number): SparseRun[] {
  const runs: SparseRun[] = [];
  const len = buf.length;
  for (let pos = 0; pos < len;) {
    let end = Math.min(len, pos + unit - ((dst + pos) % unit));
    const zero = isZeroRange(buf, pos, end);
    for (let next = Math.min(len, end + unit); end < len; end = next, next = Math.min(len, end + unit)) {
      if (isZeroRange(buf, end, next) !== zero) break;
    }
    runs.push({ start: pos, end, zero });
    pos = end;
  }
  return runs;
}

/** Copy the segments into the target. Resolves when every write has completed. */
/** Bytes that will really be read and written: progress counts these, as qemu-img's does. */
async function dataBytes(segments: readonly CopySegment[], o: CopyOptions): Promise<number> {
  let n = 0;
  for await (const job of plan(segments, o)) {
    if (job.kind === 'data') n += job.length;
    for (const w of job.warnings ?? []) o.warn?.(w);
  }
  return n;
}

export async function copyImage(segments: readonly CopySegment[], o: CopyOptions): Promise<void> {
  // qemu-img always counts first; its block-status warnings show in that pass too
  const total = o.onProgress || o.salvage ? await dataBytes(segments, o) : 0;
  const limiter = o.rateLimit ? new RateLimiter(o.rateLimit) : undefined;
  // compressed: more requests than the default only hold buffers waiting for the compression
  // workers, and with them the 128 MiB memory budget would not hold (measured: -m 16 with 3 workers, 129 MiB)
  const inFlight = Math.max(1, Math.min(o.inFlight ?? COPY_DEFAULT_IN_FLIGHT, o.compressed ? COPY_DEFAULT_IN_FLIGHT : COPY_MAX_IN_FLIGHT));
  const jobs = plan(segments, o);
  let done = 0;
  let nextToWrite = 0;
  const waiters = new Map<number, () => void>();
  let failure: unknown;
  let failureSeq = Infinity;
  // writes overlap, so a later job may fail first: the error reported is the earliest job's, as a
  // serial copy would report it (the others settle before copyImage throws)
  const failAt = (seq: number, e: unknown): void => {
    if (seq < failureSeq) {
      failure = e;
      failureSeq = seq;
    }
    // release writers waiting behind this job so every worker can stop
    for (const w of waiters.values()) w();
    waiters.clear();
    o.outOfOrder = true;
  };
  // one buffer per worker, page-aligned: the kernel copies into them much faster (aligned.ts);
  // except for -c, whose buffers move to a compression worker and back, which the buffer of a
  // WebAssembly memory cannot do
  const pool = o.compressed
    ? Array.from({ length: inFlight }, () => new Uint8Array(COPY_CHUNK_BYTES))
    : alignedBuffers(inFlight, COPY_CHUNK_BYTES);

  const turn = (seq: number): Promise<void> => {
    if (o.outOfOrder || seq === nextToWrite) return Promise.resolve();
    return new Promise((res) => waiters.set(seq, res));
  };
  const finish = (seq: number): void => {
    if (o.outOfOrder) return;
    nextToWrite = seq + 1;
    const w = waiters.get(nextToWrite);
    if (w) {
      waiters.delete(nextToWrite);
      w();
    }
  };
  // the planner is shared; each worker takes the next job when it is free
  let planning: Promise<IteratorResult<Job>> = Promise.resolve({ done: false, value: undefined as unknown as Job });
  const nextJob = (): Promise<IteratorResult<Job>> => {
    planning = planning.then(() => jobs.next());
    return planning;
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure !== undefined) return;
      const it = await nextJob();
      if (it.done) return;
      const job = it.value;
      try {
        let buf: Uint8Array | undefined;
        let held: Uint8Array | undefined;
        const warnings = job.warnings ?? [];
        let offloaded = false;
        if (job.kind === 'data') {
          await limiter?.wait(job.length);
          if (o.copyOffload && !o.outOfOrder) await turn(job.seq);
          if (o.copyOffload) offloaded = await copyRange(job.src, job.srcOffset, job.length, o.target, job.dstOffset);
        }
        if (job.kind === 'data' && !offloaded) {
          held = pool.pop()!;
          buf = held.subarray(0, job.length);
          if (job.parts) {
            buf.fill(0);
            for (const p of job.parts) {
              await readForCopy(p.src, buf.subarray(p.bufOffset, p.bufOffset + p.length), p.srcOffset, job.dstOffset + p.bufOffset, o.salvage ?? false, warnings);
            }
          } else {
            await readForCopy(job.src, buf, job.srcOffset, job.dstOffset, o.salvage ?? false, warnings);
          }
        }
        const pre = o.compressed && buf ? await precompress(o, buf) : undefined;
        if (pre) {
          // the buffer went to a compression worker and came back as another view
          buf = pre.data;
          held = new Uint8Array(buf.buffer, 0, COPY_CHUNK_BYTES);
        }
        // zero detection while earlier jobs write, not on the ordered write path
        const runs = buf && !o.compressed && !o.copyOffload && o.sparseSize > 0 ? sparseRuns(buf, job.dstOffset, o.sparseSize) : undefined;
        await turn(job.seq);
        for (const w of warnings) o.warn?.(w);
        let writing: Promise<void> | undefined;
        if (offloaded) { /* copied already */ }
        else if (job.kind === 'data' && o.copyOffload) writing = o.target.write(buf!, job.dstOffset);
        else if (job.kind === 'data') writing = writeSparse(o, buf!, job.dstOffset, pre, runs);
        else if (job.kind === 'zero') writing = o.target.writeZeroes(job.dstOffset, job.length, o.sparseSize > 0);
        // in order means issued in order: the target has every call of this job (a qcow2 target
        // allocates in call order), so the next job may issue its own while these still run
        // instead of waiting for the completion of each (qemu-img waits: a gap per request)
        finish(job.seq);
        if (writing) {
          try {
            await writing;
          } catch (e) {
            failAt(job.seq, e);
            held = undefined; // the target has let go of it, but the copy is over
            return;
          }
        }
        if (held) pool.push(held);
        held = undefined;
        if (job.kind === 'data') {
          done += job.length;
          o.onProgress?.(done, total);
        }
      } catch (e) {
        failAt(job.seq, e);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  if (failure !== undefined) throw failure;
  if (total === 0) o.onProgress?.(1, 1);
}
