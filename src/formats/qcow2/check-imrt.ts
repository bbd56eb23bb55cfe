/**
 * The in-memory refcount table of a check: one counter per host cluster, as wide as the image's
 * refcount entries need (1 byte up to 8-bit refcounts, 2 bytes for 16-bit, 4 bytes above), so a
 * check costs a few bytes per host cluster and nothing per guest byte. It can be laid out as
 * on-disk refcount blocks when the refcount structures are rebuilt from it.
 */
import { VdiskError } from '../../block/errors.js';
import { setRefcountEntry } from './refcount.js';

/**
 * Memory for the counters of a check (one per host cluster of the image file, plus what its
 * metadata points at within one cluster past its end): 1 GiB is 512 Mi clusters at 16-bit
 * refcounts, 32 TiB of file at 64 KiB clusters. qemu's own limit is INT_MAX clusters ("File too
 * large"); a sparse file of absurd length is refused before anything is allocated.
 */
export const MAX_CHECK_COUNTER_BYTES = 1 << 30;

/** Bytes of one counter for a refcount order. */
export function counterBytes(order: number): number {
  return order <= 3 ? 1 : order === 4 ? 2 : 4;
}

/** Most host clusters a check of an image with this refcount order counts. */
export function maxCheckClusters(order: number): number {
  return MAX_CHECK_COUNTER_BYTES / counterBytes(order);
}

type Counters = Uint8Array | Uint16Array | Uint32Array;

export class Imrt {
  private a: Counters;
  /** Clusters the table describes (qemu's nb_clusters); counters past it are zero. */
  size: number;
  /** The largest count the image's refcount entries can hold (qemu's refcount_max). */
  readonly max: number;

  constructor(readonly order: number, clusters: number, private readonly path: string) {
    this.max = order >= 5 ? 0xffffffff : 2 ** (1 << order) - 1;
    Imrt.checkLimit(clusters, order, path);
    this.a = this.alloc(Math.max(clusters, 1));
    this.size = clusters;
  }

  static checkLimit(clusters: number, order: number, path: string): void {
    const max = maxCheckClusters(order);
    if (clusters > max) {
      throw new VdiskError('limit', 'QCOW2_CHECK_TOO_BIG',
        `File too large: counting the references to its ${clusters} clusters needs ${Math.ceil((clusters * counterBytes(order)) / 2 ** 20)} MiB; vdisk uses at most ${MAX_CHECK_COUNTER_BYTES / 2 ** 20} MiB`,
        { path, format: 'qcow2', op: 'check' });
    }
  }

  private alloc(n: number): Counters {
    if (this.order <= 3) return new Uint8Array(n);
    if (this.order === 4) return new Uint16Array(n);
    return new Uint32Array(n);
  }

  get(k: number): number {
    return k < this.size ? this.a[k]! : 0;
  }

  /**
   * The counter array itself, for the hot loops of a check (indexes below `size` only). It is
   * replaced when the table grows: callers take it again after anything that may grow it.
   */
  get counters(): Counters {
    return this.a;
  }

  set(k: number, v: number): void {
    if (k >= this.size) this.grow(k + 1);
    this.a[k] = v;
  }

  /** Make the table describe at least `n` clusters (new ones count zero). */
  grow(n: number): void {
    if (n <= this.size) return;
    Imrt.checkLimit(n, this.order, this.path);
    if (n > this.a.length) {
      const bigger = this.alloc(Math.min(maxCheckClusters(this.order), Math.max(n, Math.ceil(this.a.length * 1.5))));
      bigger.set(this.a);
      this.a = bigger;
    }
    this.size = n;
  }

  clear(): void {
    this.a.fill(0);
  }

  /** The refcount block for clusters [index * perBlock, (index + 1) * perBlock), as on disk. */
  refblock(index: number, clusterBits: number): Uint8Array {
    const out = new Uint8Array(2 ** clusterBits);
    const perBlock = 2 ** (clusterBits + 3 - this.order);
    const start = index * perBlock;
    const end = Math.min(this.size, start + perBlock);
    for (let k = start; k < end; k++) {
      const v = this.a[k]!;
      if (v !== 0) setRefcountEntry(out, k - start, this.order, v);
    }
    return out;
  }

  /**
   * Reserve `count` contiguous free clusters at or after `*from` (growing the table past the end
   * when none are free), mark them used, and return the first one. `from.value` is moved to the
   * first free cluster seen, as qemu's allocator does, so later searches start there.
   */
  allocate(count: number, from: { value: number }): number {
    let cluster = from.value;
    let run = 0;
    let firstGap = true;
    for (; cluster < this.size && run < count; cluster++) {
      if (this.get(cluster) === 0) {
        run++;
        if (firstGap) {
          from.value = cluster;
          firstGap = false;
        }
      } else {
        run = 0;
      }
    }
    if (run < count) this.grow(cluster + count - run);
    const first = cluster - run;
    for (let i = 0; i < count; i++) this.set(first + i, 1);
    return first;
  }
}
