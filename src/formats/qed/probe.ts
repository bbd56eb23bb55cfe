/** QED (docs/interop/qed_spec.txt): magic "QED\0" at offset 0. */
import { startsWith } from '../probe-util.js';

export function probeQed(head: Uint8Array): number {
  return startsWith(head, 'QED\0') ? 100 : 0;
}
