/**
 * Apple disk images (UDIF): the "koly" trailer is at the end of the file, out of the probe's reach,
 * so, like qemu, a ".dmg" name gives a weak score that any real magic outranks.
 */
export function probeDmg(_head: Uint8Array, filename: string): number {
  return filename.length >= 4 && filename.endsWith('.dmg') ? 2 : 0;
}
