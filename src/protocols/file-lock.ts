/**
 * Image locking as QEMU's file-posix driver does it, so vdisk and QEMU processes see each other.
 *
 * An opener holds one shared (read) lock on a single byte per permission it takes, at
 * LOCK_PERM_BASE + bit, and one per permission it refuses to share, at LOCK_SHARED_BASE + bit.
 * Before it proceeds it asks whether anyone else locks LOCK_SHARED_BASE + bit for a permission it
 * wants ("Failed to get "write" lock": someone refuses writers) or LOCK_PERM_BASE + bit for a
 * permission it refuses ("Failed to get shared "write" lock": someone writes). Locks are shared,
 * so openers never block each other while taking them; only the checks fail. Open file
 * description (OFD) locks make two opens of one file in one process conflict like two processes.
 *
 * locking=auto (the default) locks only where OFD locks exist; locking=on falls back to POSIX
 * locks (per process: a second open in vdisk itself is not seen) with qemu's warning; off never
 * locks. Without the native helper there is no fcntl: vdisk does not lock (docs/architecture.md).
 */
import { constants as osConstants } from 'node:os';
import { VdiskError, strerror } from '../block/errors.js';
import { native } from './native.js';

/** qemu's BlockPermission bits, in lock-byte order. */
export const PERM_CONSISTENT_READ = 1 << 0;
export const PERM_WRITE = 1 << 1;
export const PERM_WRITE_UNCHANGED = 1 << 2;
export const PERM_RESIZE = 1 << 3;
export const PERM_ALL = PERM_CONSISTENT_READ | PERM_WRITE | PERM_WRITE_UNCHANGED | PERM_RESIZE;
/** The names qemu prints for each bit, in bit order. */
export const PERM_NAMES: readonly string[] = ['consistent read', 'write', 'write unchanged', 'resize'];

/** First byte standing for a permission held. */
export const LOCK_PERM_BASE = 100;
/** First byte standing for a permission refused to others. */
export const LOCK_SHARED_BASE = 200;

export type LockingMode = 'on' | 'off' | 'auto';

/** What one open file takes (`perm`) and lets others take (`shared`), as BlockPermission bits. */
export interface FilePerms {
  perm: number;
  shared: number;
}

export interface LockCheck {
  byte: number;
  /** qemu's message when another opener holds the byte. */
  message: string;
}

/** The bytes to lock, in qemu's order, and the checks to make after. */
export interface LockPlan {
  take: number[];
  checks: LockCheck[];
}

function bits(mask: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < PERM_NAMES.length; i++) if (mask & (1 << i)) out.push(i);
  return out;
}

export function lockPlan(p: FilePerms): LockPlan {
  const unshared = PERM_ALL & ~p.shared;
  const take = [...bits(p.perm).map((i) => LOCK_PERM_BASE + i), ...bits(unshared).map((i) => LOCK_SHARED_BASE + i)];
  const checks = [
    ...bits(p.perm).map((i) => ({ byte: LOCK_SHARED_BASE + i, message: `Failed to get "${PERM_NAMES[i]}" lock` })),
    ...bits(unshared).map((i) => ({ byte: LOCK_PERM_BASE + i, message: `Failed to get shared "${PERM_NAMES[i]}" lock` })),
  ];
  return { take, checks };
}

/** `locking=` as qemu reads it; undefined for a value it rejects. */
export function parseLockingMode(s: string): LockingMode | undefined {
  return s === 'on' || s === 'off' || s === 'auto' ? s : undefined;
}

let ofd: boolean | undefined;
function ofdAvailable(): boolean {
  ofd ??= native?.ofdLocks?.() ?? false;
  return ofd;
}

/** The lock calls, replaceable so the fallbacks can be tested on a kernel that has OFD locks. */
export interface LockOps {
  ofdLocks(): boolean;
  lockByte(fd: number, offset: number, ofd: boolean, lock: boolean): void;
  testByte(fd: number, offset: number, ofd: boolean): boolean;
}

function nativeOps(): LockOps | undefined {
  const n = native;
  if (!n?.lockByte || !n.testByte) return undefined;
  return { ofdLocks: ofdAvailable, lockByte: n.lockByte.bind(n), testByte: n.testByte.bind(n) };
}

export const LOCK_FALLBACK_WARNING =
  'File lock requested but OFD locking syscall is unavailable, falling back to POSIX file locks';

/**
 * Take `perms` on the open file `fd` and check them against other openers. Throws qemu's error
 * (kind `busy`) on a conflict; the caller closes the file, which releases what was taken.
 * Returns whether locks were taken.
 */
export function applyFileLocks(fd: number, filename: string, perms: FilePerms, mode: LockingMode,
  warn?: (text: string) => void, ops: LockOps | null = nativeOps() ?? null): boolean {
  if (mode === 'off' || !ops) return false;
  const useOfd = ops.ofdLocks();
  if (!useOfd) {
    if (mode === 'auto') return false;
    // qemu prints it as `qemu-img: warning: ...`; the block layer's warnings carry no program name
    warn?.(`warning: ${LOCK_FALLBACK_WARNING}\n`);
  }
  const plan = lockPlan(perms);
  for (const byte of plan.take) {
    try {
      ops.lockByte(fd, byte, useOfd, true);
    } catch (e) {
      throw lockError(`Failed to lock byte ${byte}`, e, filename);
    }
  }
  for (const c of plan.checks) {
    let held: boolean;
    try {
      held = ops.testByte(fd, c.byte, useOfd);
    } catch (e) {
      throw lockError(c.message, e, filename);
    }
    if (held) {
      throw new VdiskError('busy', 'IMAGE_LOCKED', `${c.message}\nIs another process using the image [${filename}]?`,
        { path: filename, op: 'lock' });
    }
  }
  return true;
}

function lockError(what: string, e: unknown, filename: string): VdiskError {
  const num = (e as { errno?: unknown }).errno;
  const name = typeof num === 'number' ? Object.entries(osConstants.errno).find(([, v]) => v === num)?.[0] : undefined;
  const detail = name !== undefined ? strerror(name) : e instanceof Error ? e.message : String(e);
  return new VdiskError('io', 'LOCK_FAILED', `${what}: ${detail}`, { path: filename, op: 'lock' }, e);
}
