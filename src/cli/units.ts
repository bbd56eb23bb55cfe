/**
 * Sizes as qemu-img reads and prints them: `qemu_strtosz` suffixes (k K M G T P E, b = bytes,
 * binary multiples) and `size_to_str` (three significant digits, "1.43 MiB").
 */

const SUFFIX: Record<string, number> = { b: 1, B: 1, k: 2 ** 10, K: 2 ** 10, m: 2 ** 20, M: 2 ** 20, g: 2 ** 30, G: 2 ** 30, t: 2 ** 40, T: 2 ** 40, p: 2 ** 50, P: 2 ** 50, e: 2 ** 60, E: 2 ** 60 };

/** The largest size qemu accepts on the command line (INT64_MAX). */
export const QEMU_MAX_SIZE = 2n ** 63n - 1n;

export type SizeParse = { ok: true; value: bigint; hexSuffix?: true } | { ok: false; reason: 'invalid' | 'range' };

const UINT64_MAX = 2n ** 64n - 1n;

/**
 * qemu_strtosz: a decimal integer (strtoull: leading blanks and '+' allowed, no '-'), or hex
 * without a fraction; then an optional fraction parsed as a C double (exponents refused, "1." is
 * allowed) that needs a unit other than bytes unless it is zero; then an optional suffix. Hex with
 * a suffix is accepted with a deprecation warning (hexSuffix). Values must fit in uint64.
 */
export function strtosz(text: string, defaultUnit = 1): SizeParse {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)/.exec(text);
  if (!m || m[1] === '-') return { ok: false, reason: 'invalid' };
  let rest = text.slice(m[0].length);
  let value: bigint;
  let hex = false;
  let fraction = 0;
  if (/^0+$/.test(m[2]!) && m[2]!.length === 1 && /^[xX][0-9a-fA-F]/.test(rest)) {
    const h = /^[xX]([0-9a-fA-F]+)/.exec(rest)!;
    value = BigInt(`0x${h[1]}`);
    rest = rest.slice(h[0].length);
    if (rest.startsWith('.')) return { ok: false, reason: 'invalid' };
    hex = true;
  } else {
    value = BigInt(m[2]!);
    if (rest.startsWith('.')) {
      // strtod on ".digits[e...]": an exponent makes the whole input invalid; "e" without digits
      // is not part of the number (so "1.5e" is 1.5 exabytes)
      const f = /^\.[0-9]*/.exec(rest)![0];
      if (f === '.') rest = rest.slice(1);
      else {
        if (/^[eE][+-]?[0-9]/.test(rest.slice(f.length))) return { ok: false, reason: 'invalid' };
        fraction = Number(`0${f}`);
        rest = rest.slice(f.length);
      }
    }
  }
  if (value > UINT64_MAX) return { ok: false, reason: 'range' };
  let mul = defaultUnit;
  const suffix = rest.length > 0 ? SUFFIX[rest[0]!] : undefined;
  if (suffix !== undefined) {
    mul = suffix;
    rest = rest.slice(1);
  }
  if (rest.length > 0) return { ok: false, reason: 'invalid' };
  if (mul === 1 && fraction !== 0) return { ok: false, reason: 'invalid' };
  // qemu computes the fraction in double precision and truncates
  const frac = BigInt(Math.floor(fraction * mul));
  const big = BigInt(mul);
  if (value > (UINT64_MAX - frac) / big) return { ok: false, reason: 'range' };
  const result: SizeParse = { ok: true, value: value * big + frac };
  if (hex && suffix !== undefined) result.hexSuffix = true;
  return result;
}

/** qemu's deprecation warning for hex sizes with a suffix ("0x10k"). */
export function hexSuffixWarning(text: string): string {
  return `warning: Using a multiplier suffix on hex numbers is deprecated: ${text}`;
}

/** A size on the command line: qemu_strtosz, and the result must fit in int64. */
export function parseSize(text: string, defaultUnit = 1): SizeParse {
  const r = strtosz(text, defaultUnit);
  if (r.ok && r.value > QEMU_MAX_SIZE) return { ok: false, reason: 'range' };
  return r;
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
