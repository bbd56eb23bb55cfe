/**
 * The fast part of a qcow2 check's counting walk (./check-count.ts): runs of L2 entries that need
 * no message, repair or I/O, counted in one synchronous loop over int32 values, with the copied
 * flags of a read-only check's active tables checked on the way.
 */
import type { CheckCtx } from './check-context.js';
import { refcountAt } from './check-stored.js';

export interface L2Walk {
  table: Uint8Array;
  dv: DataView;
  l2: number | bigint;
  nextContiguous: number;
  copied: CopiedCheck | null;
}

/**
 * The copied-flag check (check-repair.ts checkCopied) of one active L2 table done during the
 * counting walk, for a read-only check. `ok` stays true while every entry the walk saw agrees
 * with its stored refcount; any entry checkCopied would have more to say about clears it, and
 * checkCopied then reads and checks that table itself.
 */
export interface CopiedCheck {
  ok: boolean;
  /** The refcount table entry whose block is at hand, and that block (null: none, refcounts zero). */
  ti: number;
  block: Uint8Array | null;
  /** A refcount table entry whose block must be read before the walk goes on, or -1. */
  miss: number;
}

/**
 * checkL2's walk over the entries from `from` on, as long as each is one that needs no message,
 * repair or I/O: unused entries, and plain host clusters inside the file whose counter is below
 * the maximum (what nearly every entry of a real image is). One synchronous loop over the table
 * and the counter array; returns the first entry it leaves to checkL2's own per-entry path (which
 * then does all of that entry's work), or the table's entry count.
 *
 * Everything in the loop is a 32-bit integer (entries read as int32, host offsets as cluster
 * numbers): a check runs each loop once, mostly before the optimizing compiler has seen it, and
 * there any value outside int32 is a heap allocation.
 */
export function countPlain(c: CheckCtx, w: L2Walk, from: number, frag: boolean): number {
  const g = c.p.map.geo;
  const n = 2 ** g.l2Bits;
  const eb = g.entryBytes;
  const ext = g.extL2;
  const dataFile = g.hasDataFile;
  const cs = g.clusterSize;
  const cb = g.clusterBits;
  // bits 9..cb-1 of the low half: an unaligned host offset
  const unaligned = (cs - 1) & ~0x1ff;
  // bits of the high half that would make the cluster number reach 2^31
  const tooFar = 0x1fffff & ~((1 << (cb - 1)) - 1);
  const imrt = c.imrt;
  const counters = imrt.counters;
  const size = imrt.size;
  const max = imrt.max;
  // first cluster at or past the end of the file: a reference to it exceeds the file
  const fileEnd = Math.min(Math.ceil(c.fileLen / cs), 0x7fffffff);
  const dv = w.dv;
  const cp = w.copied;
  const st = c.stored;
  const perBits = cb + 3 - st.order;
  const perMask = st.perBlock - 1;
  const order = st.order;
  let cpOk = cp !== null && cp.ok;
  const prev = w.nextContiguous;
  // the cluster after the last one counted (0: none yet; -1: that one was not cluster aligned)
  let next = prev === 0 ? 0 : prev % cs === 0 && prev / cs < 0x7fffffff ? prev / cs : -1;
  let allocated = 0;
  let fragmented = 0;
  let i = from;
  for (; i < n; i++) {
    const at = i * eb;
    const hi = dv.getInt32(at);
    const lo = dv.getInt32(at + 4);
    const bhi = ext ? dv.getInt32(at + 8) : 0;
    const blo = ext ? dv.getInt32(at + 12) : 0;
    if ((hi | lo | bhi | blo) === 0) continue;
    // compressed, reserved bits set, or an offset past 2^53
    if (hi & 0x7fe00000 || lo & 0x1fe) break;
    const zeroFlag = (lo & 1) !== 0 && !ext;
    if ((hi & 0x1fffff) === 0 && (lo & ~0x1ff) === 0 && (zeroFlag || !dataFile || hi >= 0)) {
      if (!zeroFlag && blo) break;
      continue;
    }
    if ((bhi & blo) !== 0 || (lo & unaligned) !== 0 || (hi & tooFar) !== 0) break;
    const k = ((hi & 0x1fffff) << (32 - cb)) | (lo >>> cb);
    // past the end of the file, or a counter that would overflow: messages
    if (!dataFile && (k >= fileEnd || k >= size || counters[k] === max)) break;
    if (cpOk) {
      // the copied flag says whether the stored refcount is exactly 1 (data file clusters: always)
      let rc = 1;
      if (!dataFile) {
        const kt = k >>> perBits;
        if (kt !== cp!.ti) {
          const b = st.cachedBlock(kt);
          if (b === undefined) {
            cp!.miss = kt;
            break;
          }
          cp!.ti = kt;
          cp!.block = b;
        }
        const b = cp!.block;
        const r = k & perMask;
        rc = b === null ? 0 : order === 4 ? (b[2 * r]! << 8) | b[2 * r + 1]! : refcountAt(b, r, order);
      }
      if ((rc === 1) !== (hi < 0)) {
        cp!.ok = false;
        cpOk = false;
      }
    }
    if (!dataFile) counters[k]!++;
    if (frag) {
      allocated++;
      if (next !== 0 && k !== next) fragmented++;
      next = k + 1;
    }
  }
  if (frag && next !== -1 && allocated > 0) w.nextContiguous = next * cs;
  c.res.allocatedClusters += allocated;
  c.res.fragmentedClusters += fragmented;
  return i;
}
