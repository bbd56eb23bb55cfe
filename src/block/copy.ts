/**
 * The copy engine behind convert (and later commit, rebase, dd, the NBD client's bulk reads).
 *
 * It asks the source for block status one window at a time (never for the whole disk up front),
 * skips what is unallocated or known zero without reading it, detects zeros in the data it reads at
 * the sparse granularity, and keeps a bounded number of requests in flight over a fixed pool of
 * buffers, so memory stays flat whatever the image size. Writes land in order unless the caller
 * allows out-of-order writes (qemu-img's -W).
 */
import type { Image } from './image.js';

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
}

interface Job {
  seq: number;
  src: Image;
  srcOffset: number;
  dstOffset: number;
  length: number;
  /** 'data': read and write; 'zero': the target must read zeros here; 'skip': nothing to do. */
  kind: 'data' | 'zero' | 'skip';
}

/** Length of the zero run at the start of buf, in whole `unit`s (0 if the first unit is not zero). */
function zeroPrefix(buf: Uint8Array, unit: number): number {
  let n = 0;
  while (n < buf.length) {
    const end = Math.min(buf.length, n + unit);
    for (let i = n; i < end; i++) if (buf[i] !== 0) return n;
    n = end;
  }
  return n;
}

function dataPrefix(buf: Uint8Array, unit: number): number {
  let n = 0;
  while (n < buf.length) {
    const next = Math.min(buf.length, n + unit);
    if (zeroPrefix(buf.subarray(n, next), unit) === next - n) return n;
    n = next;
  }
  return n;
}

/** True when [off, end) of the source reads as zeros, by block status alone. */
async function allZero(img: Image, off: number, end: number, topOnly: boolean): Promise<boolean> {
  for (let p = off; p < end;) {
    if (topOnly) {
      const st = await img.layerStatus(p, end - p);
      if (st.allocated && !(st.zero && !st.data)) return false;
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
  for (const seg of segments) {
    const img = seg.image;
    if (o.topOnly) {
      for await (const j of planTopOnlyClusters(img, o.target.layer.granularity ?? COPY_CHUNK_BYTES)) {
        yield { seq: seq++, src: img, srcOffset: j.off, dstOffset: seg.targetOffset + j.off, length: j.length, kind: j.kind };
      }
      continue;
    }
    for (let off = 0; off < img.size; off += COPY_CHUNK_BYTES) {
      const n = Math.min(COPY_CHUNK_BYTES, img.size - off);
      const zero = await allZero(img, off, off + n, o.topOnly ?? false);
      // -S 0 allocates everything, compressed zero clusters included
      const kind: Job['kind'] = zero && o.sparseSize !== 0 ? (o.targetIsZero || o.topOnly ? 'skip' : 'zero') : 'data';
      yield { seq: seq++, src: img, srcOffset: off, dstOffset: seg.targetOffset + off, length: n, kind };
    }
  }
}

/** What the top layer holds in one target cluster: nothing (skip), only zeros, or data. */
async function clusterKind(img: Image, off: number, end: number): Promise<Job['kind']> {
  let unallocated = false;
  let zero = false;
  for (let p = off; p < end;) {
    const st = await img.layerStatus(p, end - p);
    if (!st.allocated) unallocated = true;
    else if (st.zero && !st.data) zero = true;
    else return 'data';
    p += st.length;
  }
  // a cluster partly zeroed and partly showing the backing file is copied as read
  if (zero) return unallocated ? 'data' : 'zero';
  return 'skip';
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
    const whole = c + st.length >= img.size ? img.size - c : Math.floor(st.length / cluster) * cluster;
    if (whole > 0) {
      for (let p = 0; p < whole; p += COPY_CHUNK_BYTES) add(c + p, Math.min(COPY_CHUNK_BYTES, whole - p), kind);
      c += whole;
    } else {
      const end = Math.min(img.size, c + cluster);
      add(c, end - c, await clusterKind(img, c, end));
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
      let length: number;
      let kind: Job['kind'];
      if (o.topOnly) {
        const st = await img.layerStatus(off, want);
        length = st.length;
        kind = !st.allocated ? 'skip' : st.zero && !st.data ? 'zero' : 'data';
      } else {
        const st = await img.chainStatus(off, want);
        length = st.length;
        kind = st.zero ? 'zero' : 'data';
      }
      if (kind === 'zero' && o.targetIsZero && o.sparseSize > 0) kind = 'skip';
      if (kind === 'zero' && o.sparseSize === 0) kind = 'data'; // -S 0: fully allocate the output
      const step = kind === 'data' ? COPY_CHUNK_BYTES : length;
      for (let done = 0; done < length; done += step) {
        const n = Math.min(step, length - done);
        yield { seq: seq++, src: img, srcOffset: off + done, dstOffset: seg.targetOffset + off + done, length: n, kind };
      }
      off += length;
    }
  }
}

/** Write one buffer of data, leaving zero runs of at least sparseSize as zeros (not written). */
async function writeSparse(o: CopyOptions, buf: Uint8Array, dst: number): Promise<void> {
  const t = o.target;
  if (o.compressed) {
    // whole clusters; all-zero clusters stay unallocated like qemu-img -c leaves them
    const g = t.layer.granularity ?? buf.length;
    for (let p = 0; p < buf.length; p += g) {
      const c = buf.subarray(p, Math.min(buf.length, p + g));
      if (o.sparseSize !== 0 && zeroPrefix(c, c.length) === c.length) {
        if (!o.targetIsZero) await t.writeZeroes(dst + p, c.length, true);
      } else {
        await t.writeCompressed(c, dst + p);
      }
    }
    return;
  }
  if (o.sparseSize === 0) {
    await t.write(buf, dst);
    return;
  }
  const unit = o.sparseSize;
  let pos = 0;
  while (pos < buf.length) {
    // align the scan to the sparse unit in target coordinates
    const firstUnit = Math.min(buf.length - pos, unit - ((dst + pos) % unit));
    const slice = buf.subarray(pos);
    const z = zeroPrefix(slice.subarray(0, firstUnit), firstUnit) === firstUnit
      ? firstUnit + zeroPrefix(slice.subarray(firstUnit), unit)
      : 0;
    if (z > 0) {
      if (!o.targetIsZero) await t.writeZeroes(dst + pos, z, true);
      pos += z;
      continue;
    }
    const d = firstUnit + dataPrefix(slice.subarray(firstUnit), unit);
    await t.write(buf.subarray(pos, pos + d), dst + pos);
    pos += d;
  }
}

/** Copy the segments into the target. Resolves when every write has completed. */
/** Bytes that will really be read and written: progress counts these, as qemu-img's does. */
async function dataBytes(segments: readonly CopySegment[], o: CopyOptions): Promise<number> {
  let n = 0;
  for await (const job of plan(segments, o)) if (job.kind === 'data') n += job.length;
  return n;
}

export async function copyImage(segments: readonly CopySegment[], o: CopyOptions): Promise<void> {
  const total = o.onProgress ? await dataBytes(segments, o) : 0;
  const inFlight = Math.max(1, Math.min(o.inFlight ?? COPY_DEFAULT_IN_FLIGHT, COPY_MAX_IN_FLIGHT));
  const jobs = plan(segments, o);
  let done = 0;
  let nextToWrite = 0;
  const waiters = new Map<number, () => void>();
  let failure: unknown;
  const pool: Uint8Array[] = [];

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
        if (job.kind === 'data') {
          buf = (pool.pop() ?? new Uint8Array(COPY_CHUNK_BYTES)).subarray(0, job.length);
          await job.src.read(buf, job.srcOffset);
        }
        await turn(job.seq);
        if (job.kind === 'data') await writeSparse(o, buf!, job.dstOffset);
        else if (job.kind === 'zero') await o.target.writeZeroes(job.dstOffset, job.length, o.sparseSize > 0);
        if (buf) pool.push(new Uint8Array(buf.buffer, 0, COPY_CHUNK_BYTES));
        finish(job.seq);
        if (job.kind === 'data') {
          done += job.length;
          o.onProgress?.(done, total);
        }
      } catch (e) {
        failure ??= e;
        // release writers waiting behind this job so every worker can stop
        for (const w of waiters.values()) w();
        waiters.clear();
        o.outOfOrder = true;
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  if (failure !== undefined) throw failure;
  if (total === 0) o.onProgress?.(1, 1);
}
