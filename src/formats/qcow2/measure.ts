/**
 * `qemu-img measure -O qcow2`: the file size a new qcow2 image needs.
 *
 * "fully allocated" counts every piece of metadata a fully written image carries (header cluster,
 * L2 tables for every guest cluster, an L1 table padded to whole clusters, and the refcount table
 * and blocks that count all of those clusters, themselves included) plus the data rounded up to
 * clusters. "required" keeps that metadata but counts only the source's allocated data clusters
 * (none with --size), or everything when preallocation writes it all.
 */
import type { MeasureInput, MeasureResult } from '../../block/driver.js';
import { luksHeaderBytes, qcow2CreateParams } from './create.js';
import { VdiskError } from '../../block/errors.js';
import { entryBytes } from './bitmap-store.js';

const L1_ENTRY_BYTES = 8;
const REFTABLE_ENTRY_BYTES = 8;

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/**
 * Clusters of refcount table and blocks needed to count `clusters` host clusters plus the refcount
 * structures themselves: grow both until they count everything (a fixed point).
 */
export function refcountMetadataClusters(clusters: number, clusterSize: number, refcountOrder: number): number {
  const perBlock = (clusterSize * 8) / 2 ** refcountOrder;
  const blocksPerTableCluster = clusterSize / REFTABLE_ENTRY_BYTES;
  let blocks = 0;
  let table = 0;
  for (;;) {
    const nextBlocks = Math.ceil((clusters + blocks + table) / perBlock);
    const nextTable = Math.ceil(nextBlocks / blocksPerTableCluster);
    if (nextBlocks === blocks && nextTable === table) return blocks + table;
    blocks = nextBlocks;
    table = nextTable;
  }
}

/** Bytes of a fully preallocated image of `size` bytes (metadata and data). */
export function fullyAllocatedBytes(size: number, clusterSize: number, refcountOrder: number, extendedL2: boolean): number {
  const data = roundUp(size, clusterSize);
  const l2EntryBytes = extendedL2 ? 16 : 8;
  const l2Entries = roundUp(data / clusterSize, clusterSize / l2EntryBytes);
  const l1Entries = roundUp((l2Entries * l2EntryBytes) / clusterSize, clusterSize / L1_ENTRY_BYTES);
  let meta = clusterSize + l2Entries * l2EntryBytes + l1Entries * L1_ENTRY_BYTES;
  meta += refcountMetadataClusters((meta + data) / clusterSize, clusterSize, refcountOrder) * clusterSize;
  return meta + data;
}

/** Guest bytes the source really stores, counted in whole target clusters (each cluster once). */
async function allocatedDataBytes(input: MeasureInput, clusterSize: number): Promise<number> {
  if (!input.extents) return input.allocatedBytes ?? 0;
  let total = 0;
  let lastCounted = -1; // index of the last cluster counted, so runs sharing a cluster count it once
  for await (const e of input.extents) {
    if (!e.data || e.zero || e.length === 0) continue;
    let first = Math.floor(e.offset / clusterSize);
    const last = Math.floor((e.offset + e.length - 1) / clusterSize);
    if (first <= lastCounted) first = lastCounted + 1;
    if (last >= first) total += (last - first + 1) * clusterSize;
    lastCounted = Math.max(lastCounted, last);
  }
  return total;
}

/** Bitmap tables, data clusters (counted even where all zeros) and the directory for the source's bitmaps. */
function bitmapsBytes(input: MeasureInput, clusterSize: number): number {
  let total = 0;
  let dir = 0;
  for (const b of input.sourceBitmaps ?? []) {
    const clusters = Math.ceil(Math.ceil(Math.ceil(input.size / b.granularity) / 8) / clusterSize);
    total += roundUp(clusters * 8, clusterSize) + clusters * clusterSize;
    dir += entryBytes(b.name, 0);
  }
  return total + roundUp(dir, clusterSize);
}

export async function measureQcow2(input: MeasureInput): Promise<MeasureResult> {
  let p;
  try {
    p = qcow2CreateParams(input.size, input.options, 'measure');
  } catch (e) {
    // measure words the size limit without naming the format
    if (e instanceof VdiskError && e.code === 'QCOW2_TOO_LARGE') {
      throw new VdiskError(e.kind, e.code, 'The image size is too large (try using a larger cluster size)', e.context);
    }
    throw e;
  }
  const clusterSize = 2 ** p.clusterBits;
  const virtual = roundUp(p.size, clusterSize);
  // the LUKS header area is whole clusters on top of everything else, as qemu counts it
  const luks = roundUp(luksHeaderBytes(p), clusterSize);
  const fully = luks + fullyAllocatedBytes(virtual, clusterSize, p.refcountOrder, p.extendedL2);
  const bitmaps = input.sourceBitmapBytes !== undefined ? { bitmaps: input.sourceBitmapBytes + bitmapsBytes(input, clusterSize) } : {};
  if (p.prealloc === 'full' || p.prealloc === 'falloc') return { required: fully, fullyAllocated: fully, ...bitmaps };
  // with a backing file for the new image qemu cannot tell how much of the source that backing
  // chain already holds, so it counts every cluster of an input image as written (not for --size)
  const fromImage = input.extents !== undefined || input.allocatedBytes !== undefined;
  const data = fromImage && p.backingFile !== undefined ? virtual : await allocatedDataBytes(input, clusterSize);
  return { required: fully - virtual + data, fullyAllocated: fully, ...bitmaps };
}
