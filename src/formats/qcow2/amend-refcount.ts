/**
 * amend refcount_bits=N: a new refcount structure of the new width, built beside the old one and
 * switched to in one header write (qcow2.txt "Host cluster management").
 *
 * The old refcounts are walked in full: a first walk allocates (through the old structure, so the
 * new clusters are counted) a new refcount block for each non-empty range of the new width; the
 * new table is allocated once the blocks are; as those allocations change the refcounts the walk
 * reads, it repeats until a walk allocates nothing. A last walk writes the new blocks, then the
 * new table is written, the old structure flushed, the header switched, and only then the old
 * blocks and table are freed through the new structure. A crash before the header write leaves the
 * old structure valid (the new clusters leak); after it, the new one (the old clusters leak).
 * Refcounts are copied as they are, so a refcount that does not fit the new width stops it first.
 */
import { VdiskError } from '../../block/errors.js';
import { getRefcountEntry, maxRefcount, setRefcountEntry, type Refcounts } from './refcount.js';
import { writeWholeHeader } from './header-write.js';
import { MAX_REFCOUNT_TABLE_BYTES } from './limits.js';
import type { MetadataWriter } from './l2-update.js';
import type { AmendContext } from './amend.js';

type Report = (done: number, total: number) => void;

/** One walk's view of the new structure. */
interface NewStructure {
  order: number;
  /** Entries per new refcount block. */
  per: number;
  /** Offsets of the new blocks (0: none); its length is the new table's size in entries. */
  table: number[];
  allocated: boolean;
}

interface Walk {
  /** Called for each completed new block (index, whether every refcount in it is 0). */
  finish(ti: number, empty: boolean, block: Uint8Array): Promise<void>;
  /** Fill the new blocks with the refcounts (the writing walk). */
  fill: boolean;
}

function hx(n: number): string {
  return `0x${n.toString(16)}`;
}

class Walker {
  private ti = 0;
  private idx = 0;
  private empty = true;
  readonly block: Uint8Array;

  constructor(private readonly c: AmendContext, private readonly rc: Refcounts, private readonly nu: NewStructure, private readonly w: Walk) {
    this.block = new Uint8Array(c.p.map.geo.clusterSize);
  }

  private async boundary(): Promise<void> {
    if (this.idx < this.nu.per) return;
    await this.w.finish(this.ti, this.empty, this.block);
    this.ti++;
    this.idx = 0;
    this.empty = true;
  }

  /** `n` refcounts of zero (an old range without a block). */
  async zeros(n: number): Promise<void> {
    const bits = 2 ** this.nu.order;
    while (n > 0) {
      await this.boundary();
      const take = Math.min(n, this.nu.per - this.idx);
      if (this.w.fill) this.block.fill(0, (this.idx * bits) / 8, ((this.idx + take) * bits) / 8);
      this.idx += take;
      n -= take;
    }
  }

  /** The refcounts of old block `oldTi` at `off`, re-read after each new block (allocations change them). */
  async copy(oldTi: number, off: number): Promise<void> {
    const oldPer = 2 ** this.rc.blockBits;
    const limit = maxRefcount(this.nu.order);
    let old = await this.rc.blocks.get(off);
    for (let i = 0; i < oldPer; i++) {
      if (this.idx >= this.nu.per) {
        await this.boundary();
        old = await this.rc.blocks.get(off);
      }
      const v = getRefcountEntry(old, i, this.rc.order);
      if (this.nu.order < 6 && v > limit) {
        const at = (oldTi * oldPer + i) * this.c.p.map.geo.clusterSize;
        throw new VdiskError('invalid-argument', 'QCOW2_AMEND_REFCOUNT_FIT',
          `Cannot decrease refcount entry width to ${2 ** this.nu.order} bits: Cluster at offset ${hx(at)} has a refcount of ${v}`,
          { path: this.c.p.path, format: 'qcow2', op: 'amend' });
      }
      if (this.w.fill) setRefcountEntry(this.block, this.idx, this.nu.order, v);
      this.idx++;
      if (v !== 0) this.empty = false;
    }
  }

  /** The last, partly filled new block. */
  async end(): Promise<void> {
    if (this.idx === 0) return;
    const bits = 2 ** this.nu.order;
    if (this.w.fill) this.block.fill(0, (this.idx * bits) / 8);
    await this.w.finish(this.ti, this.empty, this.block);
  }
}

async function walk(c: AmendContext, rc: Refcounts, nu: NewStructure, w: Walk, index: number, total: number, report: Report): Promise<void> {
  const walker = new Walker(c, rc, nu, w);
  // the old table can grow during the walk (allocations), so its size is read each time
  for (let ti = 0; ti < rc.tableEntries; ti++) {
    report(index * rc.tableEntries + ti, total * rc.tableEntries);
    const off = rc.blockOffset(ti);
    if (off === 0) await walker.zeros(2 ** rc.blockBits);
    else await walker.copy(ti, off);
  }
  await walker.end();
  report((index + 1) * rc.tableEntries, total * rc.tableEntries);
}

function allocating(c: AmendContext, meta: MetadataWriter, nu: NewStructure): Walk {
  const cs = c.p.map.geo.clusterSize;
  return {
    fill: false,
    finish: async (ti, empty) => {
      if (empty) return;
      if (ti >= nu.table.length) {
        const size = Math.ceil((ti + 1) / (cs / 8)) * (cs / 8);
        if (size * 8 > MAX_REFCOUNT_TABLE_BYTES) {
          throw new VdiskError('limit', 'QCOW2_AMEND_REFTABLE_FULL',
            'This operation would make the refcount table grow beyond the maximum size supported by QEMU, aborting',
            { path: c.p.path, format: 'qcow2', op: 'amend' });
        }
        while (nu.table.length < size) nu.table.push(0);
      }
      if (nu.table[ti] === 0) {
        nu.table[ti] = await meta.alloc.allocateMeta(1);
        nu.allocated = true;
      }
    },
  };
}

function writing(c: AmendContext, nu: NewStructure): Walk {
  return {
    fill: true,
    finish: async (ti, _empty, block) => {
      const off = ti < nu.table.length ? nu.table[ti]! : 0;
      if (off !== 0) await c.p.proto.pwrite(block, off);
    },
  };
}

export async function changeRefcountOrder(c: AmendContext, order: number, report: Report): Promise<void> {
  const p = c.p;
  const cs = p.map.geo.clusterSize;
  const meta = await c.writer();
  await meta.flush();
  const rc = meta.rc;
  const nu: NewStructure = { order, per: 2 ** (p.map.geo.clusterBits + 3 - order), table: [], allocated: false };
  let index = 0;
  let tableOffset = 0;
  let tableClusters = 0;
  do {
    nu.allocated = false;
    // at least this walk, one that finds nothing more to allocate, and the writing one
    const total = Math.max(index + 2, 3);
    await walk(c, rc, nu, allocating(c, meta, nu), index++, total, report);
    if (nu.allocated) {
      if (tableOffset !== 0) await meta.alloc.release(tableOffset, tableClusters * cs, false);
      tableClusters = Math.ceil((nu.table.length * 8) / cs);
      tableOffset = await meta.alloc.allocateMeta(tableClusters);
    }
  } while (nu.allocated);
  await walk(c, rc, nu, writing(c, nu), index, index + 1, report);
  const table = new Uint8Array(tableClusters * cs);
  const dv = new DataView(table.buffer);
  nu.table.forEach((off, i) => dv.setBigUint64(i * 8, BigInt(off)));
  await p.proto.pwrite(table, tableOffset);
  const old = { offset: rc.tableOffset, clusters: rc.table.length / cs, blocks: [] as number[] };
  for (let ti = 0; ti < rc.tableEntries; ti++) {
    const off = rc.blockOffset(ti);
    if (off !== 0) old.blocks.push(off);
  }
  await c.resetWriter();
  await p.proto.flush();
  await writeWholeHeader(p, { ...p.loaded.header, refcountOrder: order, refcountTableOffset: BigInt(tableOffset), refcountTableClusters: tableClusters });
  p.loaded.refcountTableOffset = tableOffset;
  const fresh = await c.writer();
  for (const off of old.blocks) await fresh.alloc.release(off, cs, false);
  await fresh.alloc.release(old.offset, old.clusters * cs, false);
  await fresh.flush();
}
