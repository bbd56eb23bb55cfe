/**
 * Consistency check and repair of a qcow2 image (qemu-img check), in qemu's phases and words:
 *
 * 1. the snapshot table (v3 entries too short to hold the guest size; rewritten by -r all,
 *    ./check-snapshots.ts);
 * 2. count every reference the metadata makes to host clusters (./check-count.ts) into an
 *    in-memory refcount table (./check-imrt.ts) and compare with the stored refcounts
 *    (./check-repair.ts): stored > counted is a leak, stored < counted is corruption;
 * 3. repair when asked (-r leaks: leaks; -r all: also corruption): fix refcounts in place, or
 *    rebuild the refcount structures from the counts when a used cluster has no stored refcount
 *    or a refcount block is itself damaged; then the copied flags of the active tables;
 * 4. after a repair that left no corruption, clear the dirty and corrupt bits.
 *
 * Messages are collected in the result in the order qemu prints them; a check that cannot go on
 * reports why in `failure` (qemu-img's "Check failed: <reason>").
 */
import type { CheckResult, RepairMode } from '../../block/driver.js';
import { VdiskError } from '../../block/errors.js';
import type { Qcow2Parts } from './layer.js';
import type { Refcounts } from './refcount.js';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY } from './header.js';
import { CheckAbort, CheckCtx, emptyResult, NO_FIX, writeIncompat, type Fix } from './check-context.js';
import { Imrt } from './check-imrt.js';
import { StoredRefs } from './check-stored.js';
import { calculateRefcounts } from './check-count.js';
import { checkCopied, compareRefcounts, rebuildRefcounts } from './check-repair.js';
import { checkSnapshotTable, fixSnapshotTable } from './check-snapshots.js';

export { MAX_CHECK_COUNTER_BYTES } from './check-imrt.js';
export { MAX_CHECK_MESSAGES, MAX_CHECK_TABLE_ENTRIES } from './check-context.js';

const INT_MAX = 0x7fffffff;

type Counters = Pick<CheckResult, 'corruptions' | 'leaks' | 'checkErrors' | 'corruptionsFixed' | 'leaksFixed'>;

function counters(r: CheckResult): Counters {
  return { corruptions: r.corruptions, leaks: r.leaks, checkErrors: r.checkErrors, corruptionsFixed: r.corruptionsFixed, leaksFixed: r.leaksFixed };
}

function addCounters(to: CheckResult, from: Counters): void {
  to.corruptions += from.corruptions;
  to.leaks += from.leaks;
  to.checkErrors += from.checkErrors;
  to.corruptionsFixed += from.corruptionsFixed;
  to.leaksFixed += from.leaksFixed;
}

/**
 * Check the image, repairing as `repair` allows when it is writable. `rc` is the writer's live
 * refcount state, if any: blocks the check rewrites are dropped from its cache.
 */
/** Images a repair found corrupt while writable: as in qemu, nothing more can be done with them. */
const unusable = new WeakSet<Qcow2Parts>();

export async function checkQcow2(p: Qcow2Parts, repair: RepairMode, rc: Refcounts | undefined): Promise<CheckResult> {
  if (unusable.has(p)) {
    const r = emptyResult();
    r.checkErrors = 1;
    r.failure = new VdiskError('io', 'QCOW2_UNUSABLE', 'No medium found', { path: p.path, format: 'qcow2', op: 'check' });
    return r;
  }
  const fix: Fix = p.readOnly ? NO_FIX : { leaks: repair !== 'none', errors: repair === 'all' };
  const out: string[] = [];
  const result = emptyResult();
  const snap = emptyResult();
  const refs = emptyResult();
  let ctx: CheckCtx | undefined;
  try {
    checkSnapshotTable(p, snap, fix, out);
    ctx = await newContext(p, refs, out);
    await checkRefcounts(ctx, fix);
    addCounters(result, counters(refs));
    result.imageEndOffset = refs.imageEndOffset;
    result.totalClusters = refs.totalClusters;
    result.allocatedClusters = refs.allocatedClusters;
    result.fragmentedClusters = refs.fragmentedClusters;
    result.compressedClusters = refs.compressedClusters;
    await fixSnapshotTable(ctx, snap, fix);
    addCounters(result, counters(snap));
    if ((fix.leaks || fix.errors) && result.checkErrors === 0 && result.corruptions === 0) await markCleanAndConsistent(p);
  } catch (e) {
    const reason = e instanceof CheckAbort ? e.errnoText : undefined;
    if (reason === undefined && !(e instanceof VdiskError)) throw e;
    ctx?.finishMessages();
    result.messages = out;
    // whoever reads only the counters must not take a check that stopped for a clean one
    result.checkErrors = Math.max(1, result.checkErrors + snap.checkErrors + refs.checkErrors);
    result.failure = reason !== undefined
      ? new VdiskError('corrupt', 'QCOW2_CHECK_FAILED', reason, { path: p.path, format: 'qcow2', op: 'check' })
      : e as VdiskError;
    return result;
  } finally {
    if (rc && ctx) syncWriter(p, rc, ctx);
    if (ctx?.fatal) unusable.add(p);
  }
  ctx.finishMessages();
  result.messages = out;
  return result;
}

async function newContext(p: Qcow2Parts, res: CheckResult, out: string[]): Promise<CheckCtx> {
  const h = p.loaded.header;
  const cs = p.map.geo.clusterSize;
  const size = await p.proto.size();
  const nb = Math.ceil(size / cs);
  if (nb > INT_MAX) {
    res.checkErrors++;
    throw new CheckAbort('File too large');
  }
  const imrt = new Imrt(h.refcountOrder, nb, p.path);
  let ctx: CheckCtx | undefined;
  const stored = await StoredRefs.load(p.proto, h.clusterBits, h.refcountOrder, Number(h.refcountTableOffset), h.refcountTableClusters,
    (m) => ctx!.signalCorruption(m));
  ctx = new CheckCtx(p, res, imrt, stored, out);
  return ctx;
}

/** qemu's qcow2_check_refcounts: count, compare, repair or rebuild, then the copied flags. */
async function checkRefcounts(c: CheckCtx, fix: Fix): Promise<void> {
  const res = c.res;
  res.totalClusters = Math.ceil(c.p.loaded.size / c.cs);
  let rebuild = await calculateRefcounts(c, fix);
  const pre = counters(res);
  let cmp = await compareRefcounts(c, NO_FIX);
  rebuild ||= cmp.rebuild;
  if (rebuild && fix.errors) {
    const old = counters(res);
    c.msg('Rebuilding refcount structure');
    await rebuildRefcounts(c);
    res.corruptions = 0;
    res.leaks = 0;
    c.imrt.clear();
    await calculateRefcounts(c, NO_FIX);
    let freshLeaks = 0;
    if (fix.leaks) {
      // the old structures are leaks now: free them; only leaks left after that count
      c.res = emptyResult();
      cmp = await compareRefcounts(c, { leaks: true, errors: false });
      if (cmp.rebuild) c.msg('ERROR rebuilt refcount structure is still broken');
      freshLeaks = c.res.leaks;
      c.res = res;
    }
    if (res.corruptions < old.corruptions) res.corruptionsFixed += old.corruptions - res.corruptions;
    if (res.leaks < old.leaks) res.leaksFixed += old.leaks - res.leaks;
    res.leaks += freshLeaks;
  } else if (fix.leaks || fix.errors) {
    if (rebuild) {
      c.msg('ERROR need to rebuild refcount structures');
      res.checkErrors++;
      throw new CheckAbort('Input/output error');
    }
    if (res.leaks || res.corruptions) {
      Object.assign(res, pre);
      cmp = await compareRefcounts(c, fix);
    }
  }
  await checkCopied(c, fix);
  res.imageEndOffset = (cmp.highest + 1) * c.cs;
}

/** After a repair that left no corruption the image is clean (lazy refcounts) and consistent. */
async function markCleanAndConsistent(p: Qcow2Parts): Promise<void> {
  const h = p.loaded.header;
  const bits = INCOMPAT_DIRTY | INCOMPAT_CORRUPT;
  if (!(h.incompatibleFeatures & bits)) return;
  h.incompatibleFeatures &= ~bits;
  await writeIncompat(p);
}

/** Make the writer's refcount state agree with what the check wrote (its cache holds no dirty block). */
function syncWriter(p: Qcow2Parts, rc: Refcounts, c: CheckCtx): void {
  for (let ti = 0; ti < rc.tableEntries; ti++) {
    try {
      const off = rc.blockOffset(ti);
      if (off) rc.blocks.drop(off);
    } catch {
      // a damaged entry has nothing cached
    }
  }
  if (rc.tableOffset !== p.loaded.refcountTableOffset) rc.replaceTable(c.stored.table.slice(), p.loaded.refcountTableOffset);
}
