/**
 * PBKDF2 for LUKS: derivation (async, on libuv's pool) and the iteration count a volume is created
 * with. Like qemu, the count comes from a benchmark: PBKDF2 is timed on this machine (CPU time)
 * with doubling iteration counts until one run takes over half a second, and the measured rate is
 * scaled to the requested time. Two images made with the same options so differ in their counts.
 */
import { nodeCrypto } from '../node-crypto.js';
import { VdiskError } from '../../block/errors.js';

/**
 * Most PBKDF2 iterations one key slot (or the master key digest) may ask for: 2^26 takes about
 * 20 s of CPU here with sha256, ten times what qemu's default iter-time (2 s) writes on this
 * machine; a hostile header with up to 2^32 would otherwise hold the opener for twenty minutes.
 */
export const MAX_LUKS_ITERATIONS = 1 << 26;
/** Iterations tried over all slots while unlocking (a wrong password tries every active slot). */
export const MAX_LUKS_UNLOCK_ITERATIONS = 1 << 27;
/** qemu's floors for what it writes. */
export const MIN_SLOT_ITERATIONS = 1000;
export const MIN_MASTER_KEY_ITERATIONS = 1000;
/** The benchmark stops at the first run over this much CPU time. */
const BENCH_MIN_MS = 500;
const BENCH_START_ITERATIONS = 1 << 15;

export function derive(secret: Uint8Array, salt: Uint8Array, iterations: number, bytes: number, hash: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    nodeCrypto().pbkdf2(secret, salt, iterations, bytes, hash, (e, key) => (e ? reject(e) : resolve(key)));
  });
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return u.user / 1000;
}

/** Iterations per second of PBKDF2 with these inputs, on this machine. */
export function iterationsPerSecond(secret: Uint8Array, salt: Uint8Array, bytes: number, hash: string): number {
  for (let iterations = BENCH_START_ITERATIONS; ; iterations *= 2) {
    const t0 = cpuMs();
    nodeCrypto().pbkdf2Sync(secret, salt, iterations, bytes, hash);
    const ms = cpuMs() - t0;
    if (ms > BENCH_MIN_MS) return Math.floor((iterations * 1000) / ms);
  }
}

/**
 * The iteration count for `iterTimeMs` of PBKDF2 (divided by `divisor`: qemu gives the master key
 * digest an eighth, as cryptsetup does), with qemu's messages for counts that overflow.
 */
export function scaledIterations(rate: number, iterTimeMs: bigint, divisor: number, floor: number): number {
  const U64 = (1n << 64n) - 1n;
  const r = BigInt(rate);
  if (iterTimeMs > 0n && r > U64 / iterTimeMs) {
    throw new VdiskError('invalid-argument', 'LUKS_ITERATIONS', `PBKDF iterations ${rate} too large to scale: Numerical result out of range`);
  }
  const n = (r * iterTimeMs) / 1000n / BigInt(divisor);
  if (n > 0xffffffffn) {
    throw new VdiskError('invalid-argument', 'LUKS_ITERATIONS', `PBKDF iterations ${n} larger than ${0xffffffff}: Numerical result out of range`);
  }
  return Math.max(Number(n), floor);
}
