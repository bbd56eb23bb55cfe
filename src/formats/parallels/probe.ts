/** Parallels / Virtuozzo expanding disks: "WithoutFreeSpace" or "WithouFreSpacExt", header version 2. */
import { le32, startsWith } from '../probe-util.js';

export function probeParallels(head: Uint8Array): number {
  if (!startsWith(head, 'WithoutFreeSpace') && !startsWith(head, 'WithouFreSpacExt')) return 0;
  return le32(head, 16) === 2 ? 100 : 0;
}
