/**
 * State shared by the phases of a qcow2 check: the image, the counters of the result, the
 * in-memory refcount table, the stored refcounts, and the messages in the order qemu prints them.
 */
import type { CheckResult } from '../../block/driver.js';
import { VdiskError } from '../../block/errors.js';
import type { Qcow2Parts } from './layer.js';
import type { Imrt } from './check-imrt.js';
import type { StoredRefs } from './check-stored.js';
import { INCOMPAT_CORRUPT } from './header.js';

/**
 * Table entries (L2 entries of every L1 table visited, bitmap table entries) one check examines at
 * most: a crafted L1 table whose 4 Mi entries all name the same L2 table would otherwise make the
 * check read that table 4 Mi times (qemu does, for hours). 2^28 entries is 16 TiB of guest space
 * mapped by 64 KiB clusters, counting every internal snapshot again, and takes seconds.
 */
export const MAX_CHECK_TABLE_ENTRIES = 1 << 28;

/** Messages one check reports at most; past this a crafted image only repeats itself. */
export const MAX_CHECK_MESSAGES = 1 << 20;

export type Fix = { leaks: boolean; errors: boolean };
export const NO_FIX: Fix = { leaks: false, errors: false };

/** The check cannot go on; qemu-img reports "Check failed: <errno text>" and prints no report. */
export class CheckAbort extends Error {
  constructor(readonly errnoText: string) {
    super(errnoText);
  }
}

export function emptyResult(): CheckResult {
  return {
    corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0,
    totalClusters: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0, messages: [],
  };
}

export class CheckCtx {
  fileLen = 0;
  entriesLeft = MAX_CHECK_TABLE_ENTRIES;
  private signaled = false;
  /**
   * A corruption was signalled on a writable image: qemu then makes the image unusable, so what
   * it still had in its refcount cache never reaches the disk and later requests fail.
   */
  fatal = false;
  private dropped = 0;
  /**
   * The active L1 table as the counting walk read it, and per L1 index whether that walk already
   * found every copied flag of its L2 table right (read-only checks only; check-count.ts).
   */
  copiedChecked: { l1: Uint8Array; tables: Uint8Array } | undefined;

  constructor(
    readonly p: Qcow2Parts,
    public res: CheckResult,
    public imrt: Imrt,
    public stored: StoredRefs,
    /** Where every message goes, across the sub-results qemu keeps. */
    readonly out: string[],
  ) {}

  get cs(): number {
    return this.p.map.geo.clusterSize;
  }

  get clusterBits(): number {
    return this.p.map.geo.clusterBits;
  }

  get writable(): boolean {
    return !this.p.readOnly;
  }

  msg(line: string): void {
    if (this.out.length < MAX_CHECK_MESSAGES) this.out.push(line);
    else this.dropped++;
  }

  /** A final line saying how many messages were not kept, if any. */
  finishMessages(): void {
    if (this.dropped) this.out.push(`(vdisk: ${this.dropped} further messages not shown)`);
    this.dropped = 0;
  }

  async refreshFileLen(): Promise<void> {
    this.fileLen = await this.p.proto.size();
  }

  /** Spend `n` table entries of the check's budget. */
  spend(n: number): void {
    this.entriesLeft -= n;
    if (this.entriesLeft < 0) {
      throw new VdiskError('limit', 'QCOW2_CHECK_TABLES', `the image makes the check visit more than ${MAX_CHECK_TABLE_ENTRIES} table entries`,
        { path: this.p.path, format: 'qcow2', op: 'check' });
    }
  }

  /**
   * qemu's corruption event: printed once; on a writable image the image is marked corrupt so
   * nothing writes to it until it is repaired.
   */
  async signalCorruption(message: string): Promise<void> {
    if (this.signaled) return;
    this.signaled = true;
    if (this.writable) {
      this.fatal = true;
      this.msg(`qcow2: Marking image as corrupt: ${message}; further corruption events will be suppressed`);
      const h = this.p.loaded.header;
      h.incompatibleFeatures |= INCOMPAT_CORRUPT;
      await writeIncompat(this.p);
    } else {
      this.msg(`qcow2: Image is corrupt: ${message}; further non-fatal corruption events will be suppressed`);
    }
  }
}

/** Write the in-memory incompatible feature bits to the header (v3 only: v2 has no such field). */
export async function writeIncompat(p: Qcow2Parts): Promise<void> {
  const h = p.loaded.header;
  if (h.version < 3) return;
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, h.incompatibleFeatures);
  await p.proto.flush();
  await p.proto.pwrite(b, 72);
  await p.proto.flush();
}

export function hex(n: number | bigint): string {
  return n.toString(16);
}

/** C's %#x: "0x" before nonzero values only. */
export function hexAlt(n: number | bigint): string {
  return n === 0 || n === 0n ? '0' : `0x${n.toString(16)}`;
}

export function hex64(hi: number, lo: number): string {
  return ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
}
