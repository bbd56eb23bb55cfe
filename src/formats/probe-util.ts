/** Helpers shared by the format probes: byte comparisons that never read past the buffer. */
export function startsWith(head: Uint8Array, ascii: string, at = 0): boolean {
  if (head.length < at + ascii.length) return false;
  for (let i = 0; i < ascii.length; i++) if (head[at + i] !== ascii.charCodeAt(i)) return false;
  return true;
}

export function le32(head: Uint8Array, at: number): number {
  if (head.length < at + 4) return -1;
  return (head[at]! | (head[at + 1]! << 8) | (head[at + 2]! << 16) | (head[at + 3]! << 24)) >>> 0;
}

export function be32(head: Uint8Array, at: number): number {
  if (head.length < at + 4) return -1;
  return ((head[at]! << 24) | (head[at + 1]! << 16) | (head[at + 2]! << 8) | head[at + 3]!) >>> 0;
}
