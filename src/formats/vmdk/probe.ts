/** VMDK (VMware Virtual Disk Format 1.1): sparse extent magic "KDMV", ESX "COWD", or a text descriptor. */
import { startsWith } from '../probe-util.js';

export function probeVmdk(head: Uint8Array): number {
  if (startsWith(head, 'KDMV') || startsWith(head, 'COWD')) return 100;
  // a descriptor file: text whose first lines include the descriptor header and a createType
  const text = Buffer.from(head.buffer, head.byteOffset, head.length).toString('latin1');
  if (/^# Disk DescriptorFile/m.test(text) && /createType\s*=/.test(text)) return 100;
  return 0;
}
