/** LUKS1 (the cryptsetup on-disk format): magic "LUKS\xba\xbe" and version 1. */
export function probeLuks(head: Uint8Array): number {
  const magic = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe];
  if (head.length < 8 || magic.some((b, i) => head[i] !== b)) return 0;
  return head[6] === 0 && head[7] === 1 ? 100 : 0;
}
