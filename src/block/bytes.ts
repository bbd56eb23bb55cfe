/**
 * Byte-range tests on the hot paths of copy and compare, done by memcmp (Buffer.compare) instead
 * of a JavaScript loop per byte: every byte a convert or compare moves passes through them.
 */

/** Compared against in slices; one shared, never written. */
const ZEROS_BYTES = 1 << 20;
let zeros: Buffer | undefined;

/** True when every byte of `b` is zero. */
export function isAllZero(b: Uint8Array): boolean {
  if (b.length === 0) return true;
  if (b[0] !== 0) return false;
  zeros ??= Buffer.alloc(ZEROS_BYTES);
  for (let p = 0; p < b.length; p += ZEROS_BYTES) {
    const n = Math.min(ZEROS_BYTES, b.length - p);
    if (Buffer.compare(b.subarray(p, p + n), zeros.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * True when b[start, end) is all zeros; the same test as isAllZero(b.subarray(start, end)) without
 * making a view (the copy engine asks this for every 4 KiB of the data it moves).
 */
export function isZeroRange(b: Uint8Array, start: number, end: number): boolean {
  if (start >= end) return true;
  if (b[start] !== 0 || b[end - 1] !== 0) return false;
  zeros ??= Buffer.alloc(ZEROS_BYTES);
  for (let p = start; p < end; p += ZEROS_BYTES) {
    const n = Math.min(ZEROS_BYTES, end - p);
    if (zeros.compare(b, p, p + n, 0, n) !== 0) return false;
  }
  return true;
}

/** Index of the first byte where `a` and `b` differ within their common length, -1 if none. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  if (Buffer.compare(a.subarray(0, n), b.subarray(0, n)) === 0) return -1;
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Index of the first nonzero byte of `a`, -1 if none. */
export function firstNonZero(a: Uint8Array): number {
  if (isAllZero(a)) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) return i;
  return -1;
}
