/**
 * A protocol is where an image's bytes live: a host file now, NBD and HTTP later. Formats sit on top
 * of a protocol and never touch the OS themselves, so every format works over every protocol.
 *
 * Offsets and lengths are byte counts as JavaScript numbers; they stay below 2^53 by the block
 * layer's request checks (see src/block/limits.ts).
 */

import type { FilePerms, LockingMode } from './file-lock.js';

export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

/**
 * qemu's cache modes (`-t`/`-T`). What vdisk honours: `unsafe` ignores flushes (qemu-img convert's
 * default: the output is useless until convert finishes anyway, so fsyncs only cost time);
 * `writethrough` and `directsync` make every write durable before it completes (O_DSYNC);
 * `writeback`, `none` and `off` flush when asked. O_DIRECT (`none`, `directsync`) is not used:
 * it would impose buffer alignment on every caller and changes nothing that can be observed
 * but speed.
 */
export type CacheMode = 'writeback' | 'unsafe' | 'writethrough' | 'directsync' | 'none' | 'off';

const CACHE_MODES: ReadonlySet<string> = new Set<CacheMode>(['writeback', 'unsafe', 'writethrough', 'directsync', 'none', 'off']);

/** The cache mode named `s` (qemu's -t/-T words), or undefined for a name qemu rejects. */
export function parseCacheMode(s: string): CacheMode | undefined {
  return CACHE_MODES.has(s) ? (s as CacheMode) : undefined;
}

/** One run of a protocol's allocation map. */
export interface ProtocolExtent {
  length: number;
  /** false where the host file has a hole (reads as zeros, takes no space). */
  data: boolean;
  /** Whether the run reads as zeros, when the protocol knows it apart from `data` (NBD). Absent: `!data`. */
  zero?: boolean;
}

export interface Protocol {
  /** Protocol name as qemu names it ("file", "nbd", ...). */
  readonly protocol: string;
  /** The name the user gave, as shown in messages and `info`. */
  readonly filename: string;
  readonly readOnly: boolean;

  /**
   * Read `buf.length` bytes at `offset`. Bytes past the end of the file read as zeros (qemu's
   * file driver does the same), so a short read is never silent corruption.
   */
  pread(buf: Uint8Array, offset: number): Promise<void>;
  pwrite(buf: Uint8Array, offset: number): Promise<void>;
  /** Current length in bytes. */
  size(): Promise<number>;
  /** `exact`: the user asked for this size (resize), not just room for it (create). */
  truncate(size: number, prealloc?: Preallocation, exact?: boolean): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Bytes the host really uses for this file (st_blocks * 512), as qemu's "disk size". */
  allocatedSize(): Promise<number | undefined>;
  /** Allocation of [offset, offset+length): one run starting at offset. Optional: absent means "all data". */
  extent?(offset: number, length: number): Promise<ProtocolExtent>;
  /** Make [offset, offset+length) read as zeros, deallocating when `punch` allows it. */
  writeZeroes?(offset: number, length: number, punch: boolean): Promise<void>;
  /** Give [offset, offset+length) back to the host; contents become zeros on a file. */
  discard?(offset: number, length: number): Promise<void>;
  /** false: "creating" this protocol's file leaves old contents (an NBD export), so it does not start as zeros. */
  readonly zeroInit?: boolean;
  /**
   * A format above says which kind of request comes next (qemu's BLKDBG_EVENT names: "read_aio"
   * before guest data is read, "write_aio" before it is written, ...). Only debugging filters
   * (blkdebug) listen; everything else leaves it out.
   */
  debugEvent?(event: string): void;
  /** false where an offset here is no place in one host file (quorum): formats then report no host offsets. */
  readonly hostOffsets?: boolean;
  /** Take image locks (file-lock.ts) for these permissions; throws a `busy` VdiskError on a conflict. */
  lock?(perms: FilePerms, mode: LockingMode, warn?: (text: string) => void): void;
  /**
   * `pread` done before returning, for small metadata reads (L2 tables, refcount blocks) where
   * handing the request to the threadpool and back costs several times the read itself (measured:
   * 4 000 reads of 4 KiB from the page cache, 13-17 ms CPU this way against 130-220 ms through
   * fs/promises). Only a plain host file offers it: a filter (blkdebug, quorum) leaves it out, so
   * its rules still see every request.
   */
  preadSync?(buf: Uint8Array, offset: number): void;
}
