/**
 * Safe rebase's data step: every cluster the image leaves to its backing file where the old and
 * the new backing differ is written into the image first, so the guest view does not change.
 *
 * Where block status says both backings read as zeros nothing is read; where one side is zero
 * only the other is read. Several ranges are read at once (both backings in parallel), into
 * page-aligned buffers, and a range whose bytes are equal on both sides is dismissed with one
 * comparison; the differing clusters are written as qemu-img leaves them (the old bytes, as data;
 * zeros past the end of the old backing file, as zero clusters), one request per run.
 */
import { readClipped, type Image } from '../block/image.js';
import { InOrder } from '../block/in-order.js';
import { AlignedPool } from '../block/aligned.js';
import { isAllZero } from '../block/bytes.js';

/** Bytes examined per range at most: bounds memory whatever the image size. */
const REBASE_CHUNK = 2 << 20;
/** Ranges read (and compared) at once. */
const REBASE_IN_FLIGHT = 4;
const DEFAULT_CLUSTER = 65536;

/** How the run at `off` of a backing file reads: zeros (known without reading) or not, and how far. */
async function zeroRun(img: Image | null, off: number, max: number): Promise<{ zero: boolean; length: number }> {
  if (!img || off >= img.size) return { zero: true, length: max };
  const st = await img.chainStatus(off, Math.min(max, img.size - off));
  return { zero: st.zero, length: st.length };
}

interface Range {
  off: number;
  length: number;
  /** Block status says this side reads as zeros: it is not read. */
  oldZero: boolean;
  newZero: boolean;
}

/** Writes into `top` every cluster it leaves to its backing where old and new backing differ. */
export async function preserveContent(top: Image, next: Image | null): Promise<void> {
  const cs = top.layer.granularity ?? DEFAULT_CLUSTER;
  const step = Math.max(cs, Math.floor(REBASE_CHUNK / cs) * cs);
  const pool = new AlignedPool(2 * REBASE_IN_FLIGHT, Math.min(step, Math.ceil(top.size / cs) * cs)); // a pair per range in flight
  const jobs = new InOrder<void>(REBASE_IN_FLIGHT);
  // writes go in range order (the image's layout is the serial loop's), after the reads overlapped
  let turn: Promise<void> = Promise.resolve();
  let failed = false;
  const add = (r: Range): Promise<void> => {
    const prev = turn;
    const job = preserveRange(top, next, r, cs, pool, prev, () => failed);
    // a range that writes nothing still passes the turn on only after the ranges before it
    turn = prev.then(() => job).then(() => undefined, () => { failed = true; });
    return jobs.add(job);
  };
  for (let off = 0; off < top.size;) {
    let st;
    try {
      st = await top.layerStatus(off, Math.min(step, top.size - off));
    } catch (e) {
      return jobs.fail(e);
    }
    if (!st.allocated) {
      try {
        await planRange(top, next, off, off + st.length, cs, add);
      } catch (e) {
        return jobs.fail(e);
      }
    }
    off += st.length;
  }
  await jobs.finish();
}

/**
 * Split one unallocated range of `top` by what the backings' block status says. Both sides zero:
 * skipped, in whole clusters (a part of a cluster is compared with the rest of its cluster).
 * A range that ends inside a cluster is carried to the cluster's end, read on both sides.
 */
async function planRange(top: Image, next: Image | null, start: number, end: number, cs: number, add: (r: Range) => Promise<void>): Promise<void> {
  const old = top.backing;
  for (let pos = start; pos < end;) {
    const so = await zeroRun(old, pos, end - pos);
    const sn = await zeroRun(next, pos, end - pos);
    let stop = pos + Math.min(so.length, sn.length);
    let oldZero = so.zero;
    let newZero = sn.zero;
    if (oldZero && newZero) {
      const skip = stop === end ? end : Math.floor(stop / cs) * cs;
      if (skip > pos) {
        pos = skip;
        continue;
      }
    }
    if (stop !== end && stop % cs !== 0) {
      stop = Math.min(end, Math.ceil(stop / cs) * cs);
      oldZero = newZero = false;
    }
    await add({ off: pos, length: stop - pos, oldZero, newZero });
    pos = stop;
  }
}

/**
 * One range: both sides read (or known zero) and compared; the differences are written once the
 * range before has written its own (`turn`), and not at all when one before failed.
 */
async function preserveRange(top: Image, next: Image | null, r: Range, cs: number, pool: AlignedPool, turn: Promise<void>, failed: () => boolean): Promise<void> {
  const old = top.backing;
  const a = pool.take();
  const b = pool.take();
  try {
    const oa = a.subarray(0, r.length);
    const nb = b.subarray(0, r.length);
    if (r.oldZero) oa.fill(0);
    if (r.newZero) nb.fill(0);
    const reads: Array<Promise<void>> = [];
    if (!r.oldZero) reads.push(readClipped(old, oa, r.off));
    if (!r.newZero) reads.push(readClipped(next, nb, r.off));
    const settled = await Promise.allSettled(reads);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
    if (equalBytes(oa, nb, r)) return;
    await turn;
    if (failed()) return;
    await writeDifferences(top, old?.size ?? 0, oa, nb, r.off, cs);
  } finally {
    pool.give(a);
    pool.give(b);
  }
}

function equalBytes(oa: Uint8Array, nb: Uint8Array, r: Range): boolean {
  if (r.oldZero) return isAllZero(nb);
  if (r.newZero) return isAllZero(oa);
  return Buffer.compare(oa, nb) === 0;
}

/**
 * Each run of adjacent differing clusters is written with one request (the same bytes,
 * cluster-aligned, as one write per cluster would leave); past the end of the old backing file
 * (or without one) qemu-img writes zeros as zeros.
 */
async function writeDifferences(top: Image, oldEnd: number, oa: Uint8Array, nb: Uint8Array, off: number, cs: number): Promise<void> {
  let run: { start: number; end: number; zero: boolean } | undefined;
  const flush = async (): Promise<void> => {
    if (!run) return;
    if (run.zero) await top.writeZeroes(run.start, run.end - run.start, false);
    else await top.write(oa.subarray(run.start - off, run.end - off), run.start);
    run = undefined;
  };
  const length = oa.length;
  for (let pos = off; pos < off + length;) {
    const n = Math.min(cs - (pos % cs), off + length - pos);
    const i = pos - off;
    if (Buffer.compare(oa.subarray(i, i + n), nb.subarray(i, i + n)) !== 0) {
      const zero = pos >= oldEnd;
      if (run && (run.zero !== zero || run.end !== pos)) await flush();
      if (run) run.end = pos + n;
      else run = { start: pos, end: pos + n, zero };
    } else {
      await flush();
    }
    pos += n;
  }
  await flush();
}
