/**
 * Which permissions an image file takes and shares, as qemu-img 7.2 computes them for its block
 * graph (observed in the lock bytes it holds), so that src/protocols/file-lock.ts locks what
 * qemu-img would lock. The block layer decides; the file protocol only applies the result.
 *
 * - The opener (qemu's BlockBackend) takes consistent read (unless it does no I/O, like info),
 *   write when writable, resize when it resizes (qemu-img resize); it shares everything, or only
 *   read and unchanged writes for convert's sources.
 * - A backing file is read and shares everything.
 * - A format with metadata in the file (qcow2, luks...) adds read, and write and resize when
 *   writable, and never lets others write or resize the file below it; raw passes through.
 * - An external data file takes what the opener takes (plus resize when writable: qcow2 grows
 *   it) and refuses resizes to others.
 * - force-share lets others do everything.
 */
import { PERM_ALL, PERM_CONSISTENT_READ, PERM_RESIZE, PERM_WRITE, PERM_WRITE_UNCHANGED, type FilePerms } from '../protocols/file-lock.js';

export interface PermRequest {
  role: 'image' | 'backing' | 'data';
  readOnly: boolean;
  /** The format keeps metadata in the file (anything but raw and the protocol drivers). */
  metadata: boolean;
  /** Only metadata is read (qemu-img info). */
  noIo?: boolean;
  /** The command resizes the image (BDRV_O_RESIZE). */
  resize?: boolean;
  /** Others may only read or write unchanged data (convert's sources: BDRV_O_NO_SHARE). */
  noShare?: boolean;
  forceShare?: boolean;
}

export function filePerms(r: PermRequest): FilePerms {
  let perm: number;
  let shared: number;
  if (r.role === 'backing') {
    perm = PERM_CONSISTENT_READ;
    shared = PERM_ALL;
  } else {
    perm = (r.noIo ? 0 : PERM_CONSISTENT_READ) | (r.readOnly ? 0 : PERM_WRITE) | (r.resize ? PERM_RESIZE : 0);
    shared = r.noShare ? PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED : PERM_ALL;
  }
  if (r.role === 'data') {
    if (!r.readOnly) perm |= PERM_RESIZE;
    shared &= ~PERM_RESIZE;
  } else if (r.metadata) {
    if (!r.noIo) perm |= PERM_CONSISTENT_READ;
    if (!r.readOnly) perm |= PERM_WRITE | PERM_RESIZE;
    shared &= ~(PERM_WRITE | PERM_RESIZE);
  }
  if (r.forceShare) shared = PERM_ALL;
  return { perm, shared };
}

/** What `qemu-img create` (and convert's target creation) holds while it writes a new file. */
export const CREATE_PERMS: FilePerms = { perm: PERM_WRITE | PERM_RESIZE, shared: PERM_ALL & ~PERM_RESIZE };
