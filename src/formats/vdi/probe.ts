/** VDI (VirtualBox): signature 0xbeda107f (little-endian) at offset 0x40. */
import { le32 } from '../probe-util.js';

export function probeVdi(head: Uint8Array): number {
  return le32(head, 0x40) === 0xbeda107f ? 100 : 0;
}
