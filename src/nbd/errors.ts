/**
 * How NBD failures become VdiskErrors: a server breaking the protocol (kind `io`, code
 * NBD_PROTOCOL), an error value in a reply (the errno it stands for, as qemu reports it), the
 * socket going away.
 */
import { VdiskError, strerror } from '../block/errors.js';
import { NBD_ERRNO } from './constants.js';

/** The server broke the protocol: the connection is unusable afterwards. */
export class NbdProtocolError extends VdiskError {
  constructor(message: string) {
    super('io', 'NBD_PROTOCOL', message, { op: 'nbd' });
  }
}

/** The errno name an NBD error value stands for; unknown values read as EINVAL, as the spec says. */
export function nbdErrno(value: number): string {
  return NBD_ERRNO[value] ?? 'EINVAL';
}

/** A request the server answered with an error value. */
export function replyError(value: number, op: string, offset: number, message?: string): VdiskError {
  const errno = nbdErrno(value);
  const kind = errno === 'EPERM' ? 'permission' : errno === 'EINVAL' ? 'invalid-argument' : 'io';
  return new VdiskError(kind, errno, message !== undefined && message !== '' ? message : strerror(errno), { op, offset, errno });
}
