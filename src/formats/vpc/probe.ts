/** VHD / Virtual PC: the "conectix" cookie of the footer copy at offset 0 (dynamic and differencing disks). */
import { startsWith } from '../probe-util.js';

export function probeVpc(head: Uint8Array): number {
  return startsWith(head, 'conectix') ? 100 : 0;
}
