/** qcow (version 1): the qcow magic "QFI\xfb" with version 1 (versions 2 and 3 are qcow2). */
import { be32 } from '../probe-util.js';

export function probeQcow(head: Uint8Array): number {
  return be32(head, 0) === 0x514649fb && be32(head, 4) === 1 ? 100 : 0;
}
