/** VHDX (MS-VHDX 1.0): the file type identifier "vhdxfile" at offset 0. */
import { startsWith } from '../probe-util.js';

export function probeVhdx(head: Uint8Array): number {
  return startsWith(head, 'vhdxfile') ? 100 : 0;
}
