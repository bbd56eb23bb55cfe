/**
 * The `file` protocol: a host file descriptor through node:fs's callback calls (src/block/host-fs.ts:
 * not fs/promises, whose load is a noticeable part of a short command's start-up), with holes
 * reported via SEEK_DATA/SEEK_HOLE and preallocation via fallocate when the optional native helper
 * (src/protocols/native.ts) loaded.
 */
import { constants as fsConstants, readSync, type Stats } from 'node:fs';
import { VdiskError, fromSystemError } from '../block/errors.js';
import { closeFd, fdatasyncFd, fstatFd, ftruncateFd, openFd, readFd, statPath, writeFd } from '../block/host-fs.js';
import type { CacheMode, Preallocation, Protocol, ProtocolExtent } from './types.js';
import { native } from './native.js';
import { applyFileLocks, type FilePerms, type LockingMode } from './file-lock.js';

/** Zero buffer reused for zero-filling writes; bounded so memory stays flat. */
const ZERO_CHUNK = 1 << 20;
let zeroBuf: Uint8Array | undefined;
function zeros(n: number): Uint8Array {
  zeroBuf ??= new Uint8Array(ZERO_CHUNK);
  return n >= ZERO_CHUNK ? zeroBuf : zeroBuf.subarray(0, n);
}

export interface FileOpenOptions {
  readOnly: boolean;
  /** Create (or truncate to zero) the file. */
  create?: boolean;
  /** qemu's cache mode (default writeback: flushes reach the disk). */
  cache?: CacheMode;
  /** Image locks to take right after opening (with `create`: before the file is emptied). */
  lock?: { perms: FilePerms; mode: LockingMode; warn?: (text: string) => void };
}

function openFlags(opts: FileOpenOptions): number {
  const c = fsConstants;
  // a new file is emptied only once it is locked: a file in use elsewhere is left as it was
  let flags = opts.create ? c.O_RDWR | c.O_CREAT : opts.readOnly ? c.O_RDONLY : c.O_RDWR;
  if (!opts.readOnly && (opts.cache === 'writethrough' || opts.cache === 'directsync')) flags |= c.O_DSYNC;
  return flags;
}

export class FileProtocol implements Protocol {
  readonly protocol = 'file';
  private closed = false;
  /**
   * Calls in flight on the descriptor. close() waits for them (as a FileHandle did), so a queued
   * read or write never runs on the number after it was closed and perhaps reused by another open.
   */
  private inFlight = 0;
  private idle: (() => void) | undefined;

  private constructor(
    readonly filename: string,
    readonly readOnly: boolean,
    /** -1 once closed. */
    private fdNum: number,
    /** cache=unsafe: flushes are not passed to the host. */
    private readonly noFlush: boolean,
  ) {}

  static async open(filename: string, opts: FileOpenOptions): Promise<FileProtocol> {
    let fd: number;
    try {
      fd = await openFd(filename, openFlags(opts), 0o666);
    } catch (e) {
      throw fromSystemError(e, `Could not ${opts.create ? 'create' : 'open'} '${filename}'`, { path: filename, op: opts.create ? 'create' : 'open' });
    }
    try {
      const st = await fstatFd(fd);
      if (!st.isFile() && !st.isBlockDevice() && !st.isCharacterDevice()) {
        throw new VdiskError('invalid-argument', 'NOT_REGULAR_FILE',
          `'file' driver requires '${filename}' to be a regular file`, { path: filename, op: 'open' });
      }
      if (opts.lock) applyFileLocks(fd, filename, opts.lock.perms, opts.lock.mode, opts.lock.warn);
      if (opts.create && st.isFile()) await ftruncateFd(fd, 0);
    } catch (e) {
      await closeFd(fd).catch(() => undefined);
      throw e instanceof VdiskError ? e : fromSystemError(e, `Could not ${opts.create ? 'create' : 'open'} '${filename}'`, { path: filename });
    }
    return new FileProtocol(filename, opts.readOnly, fd, opts.cache === 'unsafe');
  }

  /** Take image locks once the format (and so the permissions) is known; see file-lock.ts. */
  lock(perms: FilePerms, mode: LockingMode, warn?: (text: string) => void): void {
    applyFileLocks(this.fdNum, this.filename, perms, mode, warn);
  }

  /** The OS file descriptor, for the copy engine's copy_file_range fast path; -1 once closed. */
  get fd(): number {
    return this.fdNum;
  }

  /**
   * Run calls on the descriptor, counted in flight so close() waits for them (a closed one rejects
   * with EBADF naming `syscall`, as a FileHandle's did).
   */
  private async onFd<T>(syscall: string, run: (fd: number) => Promise<T>): Promise<T> {
    if (this.closed) throw closedError(syscall);
    this.inFlight++;
    try {
      return await run(this.fdNum);
    } finally {
      if (--this.inFlight === 0) this.idle?.();
    }
  }

  async pread(buf: Uint8Array, offset: number): Promise<void> {
    let done = 0;
    try {
      await this.onFd('read', async (fd) => {
        while (done < buf.length) {
          const n = await readFd(fd, buf, done, buf.length - done, offset + done);
          if (n === 0) {
            buf.fill(0, done);
            return;
          }
          done += n;
        }
      });
    } catch (e) {
      throw this.readFailed(e, offset + done);
    }
  }

  private readFailed(e: unknown, at: number): Error {
    return fromSystemError(e, `error while reading at byte ${at}`, { path: this.filename, offset: at, op: 'read' });
  }

  /** pread's loop with a blocking read (metadata tables: a few KiB from the page cache cost far less this way). */
  preadSync(buf: Uint8Array, offset: number): void {
    let done = 0;
    while (done < buf.length) {
      let n: number;
      try {
        n = readSync(this.fdNum, buf, done, buf.length - done, offset + done);
      } catch (e) {
        throw this.readFailed(e, offset + done);
      }
      if (n === 0) {
        buf.fill(0, done);
        return;
      }
      done += n;
    }
  }

  async pwrite(buf: Uint8Array, offset: number): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.filename);
    let done = 0;
    try {
      await this.onFd('write', async (fd) => {
        while (done < buf.length) done += await writeFd(fd, buf, done, buf.length - done, offset + done);
      });
    } catch (e) {
      throw this.writeFailed(e, offset + done);
    }
  }

  private writeFailed(e: unknown, at: number): Error {
    return fromSystemError(e, `error while writing at byte ${at}`, { path: this.filename, offset: at, op: 'write' });
  }

  /** fstat of the descriptor (a closed one rejects with EBADF, as a FileHandle's did). */
  private fstat(): Promise<Stats> {
    return this.onFd('fstat', fstatFd);
  }

  async size(): Promise<number> {
    const st = await this.fstat();
    if (st.isBlockDevice() && native) return native.blockDeviceSize(this.fdNum);
    return st.size;
  }

  async truncate(size: number, prealloc: Preallocation = 'off'): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.filename);
    const old = await this.size();
    try {
      await this.onFd('ftruncate', (fd) => ftruncateFd(fd, size));
    } catch (e) {
      throw fromSystemError(e, `Could not resize file`, { path: this.filename, op: 'truncate' });
    }
    if (size <= old || prealloc === 'off' || prealloc === 'metadata') return;
    if (prealloc === 'falloc' && native) {
      native.fallocate(this.fdNum, 0, old, size - old);
      return;
    }
    // 'full' (and 'falloc' without fallocate): write real zeros, as qemu does for full.
    for (let off = old; off < size; off += ZERO_CHUNK) {
      await this.pwrite(zeros(Math.min(ZERO_CHUNK, size - off)), off);
    }
  }

  async flush(): Promise<void> {
    if (this.readOnly || this.noFlush) return;
    try {
      await this.onFd('fdatasync', fdatasyncFd);
    } catch (e) {
      throw fromSystemError(e, 'Failed to flush', { path: this.filename, op: 'flush' });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
    const fd = this.fdNum;
    this.fdNum = -1;
    await closeFd(fd);
  }

  async allocatedSize(): Promise<number | undefined> {
    const st = await this.fstat();
    return st.blocks * 512;
  }

  async extent(offset: number, length: number): Promise<ProtocolExtent> {
    if (!native) return { length, data: true };
    const r = native.extent(this.fdNum, offset, length);
    return { length: Math.min(length, r.length), data: r.data };
  }

  async writeZeroes(offset: number, length: number, punch: boolean): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.filename);
    if (native) {
      try {
        if (native.zeroRange(this.fdNum, offset, length, punch)) return;
      } catch {
        // fall through to writing zeros: some file systems support neither operation
      }
    }
    for (let off = offset; off < offset + length; off += ZERO_CHUNK) {
      await this.pwrite(zeros(Math.min(ZERO_CHUNK, offset + length - off)), off);
    }
  }

  async discard(offset: number, length: number): Promise<void> {
    if (this.readOnly) throw readOnlyError(this.filename);
    if (native) {
      try {
        native.zeroRange(this.fdNum, offset, length, true);
      } catch {
        // discard is advisory
      }
    }
  }
}

/** What a FileHandle's call rejected with once it was closed. */
function closedError(syscall: string): Error {
  return Object.assign(new Error('file closed'), { code: 'EBADF', syscall });
}

function readOnlyError(filename: string): VdiskError {
  return new VdiskError('permission', 'READ_ONLY', `Could not write to '${filename}': Permission denied`, { path: filename, op: 'write' });
}

/** stat() that maps errors like qemu-img's messages; used before opening. */
export async function fileExists(filename: string): Promise<boolean> {
  try {
    await statPath(filename);
    return true;
  } catch {
    return false;
  }
}
