/**
 * Many block-status runs at once, in typed arrays (FormatLayer.blockStatusRunsSync,
 * Image.chainStatusRunsSync). `map` of a fragmented image walks ~100 000 runs: as one object per
 * run and per layer it spent more time allocating and collecting than finding the runs.
 *
 * The runs are consecutive: run i starts where run i-1 ends, the first at the queried offset.
 */

/** Layer: the layer defines the bytes (LayerStatus.allocated). Chain: some layer does (ChainStatus.present). */
export const RUN_ALLOCATED = 1;
export const RUN_ZERO = 2;
export const RUN_DATA = 4;
export const RUN_COMPRESSED = 8;
/** `hosts[i]` is the host offset of the run's first byte. */
export const RUN_HOST = 16;
/** LayerStatus.askHost === false. */
export const RUN_NO_ASK_HOST = 32;
/** LayerStatus.unknownContents. */
export const RUN_UNKNOWN = 64;

export class StatusRuns {
  readonly lengths: Float64Array;
  readonly hosts: Float64Array;
  readonly flags: Uint8Array;
  /** Chain runs: the index in the chain of the layer the run comes from (ChainStatus.depth). */
  readonly depths: Int32Array;
  /** Runs held, from index 0. */
  count = 0;
  /** Fillers stop at this many runs (at most `capacity`). */
  limit: number;
  /** Layer runs: the file RUN_HOST offsets are in when it is not the layer's own (LayerStatus.hostFile). */
  hostFile: string | undefined;
  /** Chain runs: the file RUN_HOST offsets are in, by depth (ChainStatus.hostFile). */
  readonly files: (string | undefined)[] = [];

  constructor(readonly capacity: number) {
    this.lengths = new Float64Array(capacity);
    this.hosts = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.depths = new Int32Array(capacity);
    this.limit = capacity;
  }

  /** Append a run; the caller has checked `count < limit`. */
  push(length: number, flags: number, host: number, depth: number): void {
    const i = this.count++;
    this.lengths[i] = length;
    this.flags[i] = flags;
    this.hosts[i] = host;
    this.depths[i] = depth;
  }

  get full(): boolean {
    return this.count >= this.limit;
  }
}
