/** qcow2 probe: the magic "QFI\xfb" and a version of 2 or 3. */
export function probeQcow2(head: Uint8Array): number {
  if (head.length < 8) return 0;
  if (head[0] !== 0x51 || head[1] !== 0x46 || head[2] !== 0x49 || head[3] !== 0xfb) return 0;
  const version = ((head[4]! << 24) | (head[5]! << 16) | (head[6]! << 8) | head[7]!) >>> 0;
  return version >= 2 ? 100 : 0;
}
