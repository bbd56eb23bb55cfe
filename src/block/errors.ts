/**
 * The one error type of vdisk.
 *
 * Every failure that crosses a module boundary is a VdiskError with a small, stable `kind` (what a
 * program branches on), a `code` (a finer, stable name for logs and tests), the context it happened
 * in, and the underlying `cause`. The message is written the way qemu-img words the same failure,
 * without the program-name prefix: the CLI alone adds `qemu-img: ` / `vdisk: ` and maps kinds to
 * exit codes, so the library never prints.
 */

export type ErrorKind =
  /** An operating-system I/O failure (EIO, ENOSPC, ...). */
  | 'io'
  /** A file, backing file, snapshot or object that does not exist. */
  | 'not-found'
  /** Bad input from the caller: option values, sizes, ranges. */
  | 'invalid-argument'
  /** The bytes are not a valid image of the claimed format. */
  | 'invalid-format'
  /** A valid image using a feature (or a whole format) vdisk does not implement. */
  | 'unsupported'
  /** An image whose metadata contradicts itself (qcow2 "corrupt" territory). */
  | 'corrupt'
  /** A request outside the image. */
  | 'out-of-bounds'
  /** The OS refused access, or a read-only image was asked to write. */
  | 'permission'
  /** A hostile-input limit was hit (huge table, deep chain, loop). */
  | 'limit'
  /** Another process holds a lock on the image. */
  | 'busy';

export interface ErrorContext {
  path?: string;
  format?: string;
  offset?: number;
  op?: string;
  /** The OS errno name (ENOENT, EACCES...) when the cause is a system error. */
  errno?: string;
  /**
   * Lines qemu prints on stderr before the message of the failure itself: a corruption event
   * (unprefixed, "qcow2: Marking image as corrupt: ...") or an error it reports on its own line
   * (`prefixed`: the CLI adds the program name).
   */
  preface?: readonly PrefaceLine[];
}

export interface PrefaceLine {
  text: string;
  prefixed?: boolean;
}

export class VdiskError extends Error {
  override readonly name = 'VdiskError';
  readonly kind: ErrorKind;
  readonly code: string;
  readonly context: ErrorContext;

  constructor(kind: ErrorKind, code: string, message: string, context: ErrorContext = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.kind = kind;
    this.code = code;
    this.context = context;
  }

  toJSON(): { kind: ErrorKind; code: string; message: string; context: ErrorContext } {
    return { kind: this.kind, code: this.code, message: this.message, context: this.context };
  }
}

export function isVdiskError(e: unknown): e is VdiskError {
  return e instanceof VdiskError;
}

/** strerror() wording for the errno names qemu-img messages show. */
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOTDIR: 'Not a directory',
  EEXIST: 'File exists',
  ENOSPC: 'No space left on device',
  EIO: 'Input/output error',
  EINVAL: 'Invalid argument',
  EROFS: 'Read-only file system',
  EFBIG: 'File too large',
  ENOTSUP: 'Operation not supported',
  EOPNOTSUPP: 'Operation not supported',
  ENOMEM: 'Cannot allocate memory',
  EAGAIN: 'Resource temporarily unavailable',
  EBUSY: 'Device or resource busy',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EMFILE: 'Too many open files',
  ENXIO: 'No such device or address',
  ETIMEDOUT: 'Connection timed out',
  ECONNREFUSED: 'Connection refused',
  E2BIG: 'Argument list too long',
  ERANGE: 'Numerical result out of range',
  ENOLCK: 'No locks available',
};

export function strerror(errno: string | undefined): string {
  if (errno === undefined) return 'Unknown error';
  return STRERROR[errno] ?? errno;
}

/** The errno name carried by a Node system error, if any. */
export function errnoOf(e: unknown): string | undefined {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    const code = (e as { code: string }).code;
    if (/^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

const ERRNO_KIND: Record<string, ErrorKind> = {
  ENOENT: 'not-found',
  ENOTDIR: 'not-found',
  EACCES: 'permission',
  EPERM: 'permission',
  EROFS: 'permission',
  EINVAL: 'invalid-argument',
  EAGAIN: 'busy',
  EBUSY: 'busy',
};

/** Wrap an OS error: `prefix: strerror` with the errno's kind. */
export function fromSystemError(e: unknown, prefix: string, context: ErrorContext = {}): VdiskError {
  if (e instanceof VdiskError) return e;
  const errno = errnoOf(e);
  const kind = (errno && ERRNO_KIND[errno]) || 'io';
  const detail = errno ? strerror(errno) : e instanceof Error ? e.message : String(e);
  return new VdiskError(kind, errno ?? 'EUNKNOWN', `${prefix}: ${detail}`, { ...context, ...(errno ? { errno } : {}) }, e);
}
