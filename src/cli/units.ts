/**
 * Sizes as qemu-img reads and prints them: `qemu_strtosz` suffixes (k K M G T P E, b = bytes,
 * binary multiples) and `size_to_str` (three significant digits, "1.43 MiB").
 */

const SUFFIX: Record<string, number> = { b: 1, B: 1, k: 2 ** 10, K: 2 ** 10, m: 2 ** 20, M: 2 ** 20, g: 2 ** 30, G: 2 ** 30, t: 2 ** 40, T: 2 ** 40, p: 2 ** 50, P: 2 ** 50, e: 2 ** 60, E: 2 ** 60 };

/** The largest size qemu accepts on the command line (INT64_MAX). */
export const QEMU_MAX_SIZE = 2n ** 63n - 1n;

export type SizeParse = { ok: true; value: bigint } | { ok: false; reason: 'invalid' | 'range' };

/**
 * Parse a size with an optional suffix (default unit: bytes). Fractions need a suffix other than
 * bytes, hex takes no fraction, and the result must fit in int64, as qemu_strtosz requires.
 */
export function parseSize(text: string, defaultUnit = 1): SizeParse {
  const m = /^\s*(0[xX][0-9a-fA-F]+|[0-9]+)(\.[0-9]*)?([bBkKmMgGtTpPeE])?$/.exec(text);
  if (!m) return { ok: false, reason: 'invalid' };
  const [, intPart, frac, suffix] = m;
  const isHex = /^0[xX]/.test(intPart!);
  if (isHex && (frac !== undefined || suffix !== undefined)) return { ok: false, reason: 'invalid' };
  const mul = suffix !== undefined ? SUFFIX[suffix]! : defaultUnit;
  if (frac !== undefined && (mul === 1 || frac === '.')) return { ok: false, reason: 'invalid' };
  let value = BigInt(intPart!) * BigInt(mul);
  if (frac !== undefined && frac.length > 1) {
    // qemu computes the fraction in double precision and truncates
    value += BigInt(Math.floor(Number(`0${frac}`) * mul));
  }
  if (value > QEMU_MAX_SIZE) return { ok: false, reason: 'range' };
  return { ok: true, value };
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** qemu's size_to_str: "0 B", "512 B", "1.5 KiB", "1.43 MiB", "115 GiB". */
export function humanSize(bytes: number | bigint): string {
  let v = Number(bytes);
  let i = 0;
  // qemu switches unit once the value reaches 1000 of the current unit (so 1000 KiB prints 0.977 MiB)
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${formatG3(v)} ${UNITS[i]}`;
}

/** printf("%0.3g") for the non-negative values humanSize produces. */
export function formatG3(v: number): string {
  if (v === 0) return '0';
  const exp = Math.floor(Math.log10(v));
  if (exp >= 3 || exp < -4) {
    return v.toExponential(2).replace(/\.?0+e/, 'e').replace(/e\+?(-?)(\d)$/, 'e$10$2').replace('e', 'e+').replace('e+-', 'e-');
  }
  // printf rounds the exact binary value half to even: 4.625 prints as 4.62, not 4.63
  const decimals = Math.max(0, 2 - exp);
  const scale = 10 ** decimals;
  const x = v * scale;
  const floor = Math.floor(x);
  const r = x - floor === 0.5 ? (floor % 2 === 0 ? floor : floor + 1) : Math.round(x);
  const s = (r / scale).toFixed(decimals);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}
