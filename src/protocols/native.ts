/**
 * Optional native helper for the calls Node's fs does not expose: lseek(SEEK_DATA/SEEK_HOLE),
 * fallocate (preallocation, zero range, hole punching), the size of a block device and
 * copy_file_range (convert -C), and fcntl byte-range locks (image locking, file-lock.ts).
 *
 * It is built from native/vdisk_native.c by scripts/build-native.mjs at install time (Node-API,
 * so one build serves every Node version). If it is missing, vdisk still works: files read as
 * fully allocated, and zeroing writes real zeros. Set VDISK_NO_NATIVE=1 to test that path.
 */
import { createRequire } from 'node:module';

export interface NativeHelper {
  /** One run at offset: {data:false} for a hole. `length` may exceed the request; callers clamp. */
  extent(fd: number, offset: number, length: number): { length: number; data: boolean };
  /** posix fallocate of [offset, offset+length) with `mode` 0. Throws on failure. */
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  /** Make the range read as zeros (punch a hole when `punch`). Returns false when unsupported. */
  zeroRange(fd: number, offset: number, length: number, punch: boolean): boolean;
  blockDeviceSize(fd: number): number;
  /** copy_file_range at explicit offsets: bytes copied (0 at the input's EOF). Throws on failure. Absent in older builds. */
  copyFileRange?(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number): number;
  /** Whether open file description locks (F_OFD_SETLK) work on this kernel. Absent in older builds. */
  ofdLocks?(): boolean;
  /** Take (lock) or drop a shared lock on byte `offset`; OFD or POSIX locks. Throws with `errno`. */
  lockByte?(fd: number, offset: number, ofd: boolean, lock: boolean): void;
  /** Whether another open file (OFD) or process (POSIX) holds a lock on byte `offset`. */
  testByte?(fd: number, offset: number, ofd: boolean): boolean;
}

function load(): NativeHelper | undefined {
  if (process.env['VDISK_NO_NATIVE']) return undefined;
  try {
    const require = createRequire(import.meta.url);
    return require('../../native/build/vdisk_native.node') as NativeHelper;
  } catch {
    return undefined;
  }
}

export const native: NativeHelper | undefined = load();
