/** Bochs growing images: "Bochs Virtual HD Image", type "Redolog", subtype "Growing". */
import { startsWith } from '../probe-util.js';

export function probeBochs(head: Uint8Array): number {
  if (!startsWith(head, 'Bochs Virtual HD Image') || !startsWith(head, 'Redolog', 32)) return 0;
  return startsWith(head, 'Growing', 48) ? 100 : 0;
}
