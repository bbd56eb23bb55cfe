/**
 * LUKS1 anti-forensic split (the spec's AFsplit/AFmerge): a key becomes `stripes` blocks of the
 * same size, all of which are needed to get it back, so wiping any part of a key slot destroys
 * the key. Each step XORs a stripe into an accumulator and diffuses it with the hash.
 */
import { nodeCrypto } from '../node-crypto.js';

/** Hash each digest-sized piece of `d` with its big-endian index in front (the last piece may be short). */
function diffuse(d: Buffer, hash: string, ds: number): void {
  const iv = Buffer.alloc(4);
  for (let j = 0, off = 0; off < d.length; j++, off += ds) {
    const n = Math.min(ds, d.length - off);
    iv.writeUInt32BE(j);
    nodeCrypto().createHash(hash).update(iv).update(d.subarray(off, off + n)).digest().copy(d, off, 0, n);
  }
}

function xorInto(d: Buffer, src: Uint8Array, at: number): void {
  for (let j = 0; j < d.length; j++) d[j]! ^= src[at + j]!;
}

export function afMerge(material: Uint8Array, keyBytes: number, stripes: number, hash: string): Buffer {
  const d = Buffer.alloc(keyBytes);
  const ds = nodeCrypto().createHash(hash).digest().length;
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, material, i * keyBytes);
    diffuse(d, hash, ds);
  }
  xorInto(d, material, (stripes - 1) * keyBytes);
  return d;
}

/** Random stripes but the last, which makes the merge come out as `key`. */
export function afSplit(key: Uint8Array, stripes: number, hash: string): Buffer {
  const n = key.length;
  const out = nodeCrypto().randomBytes(n * stripes);
  const d = Buffer.alloc(n);
  const ds = nodeCrypto().createHash(hash).digest().length;
  for (let i = 0; i < stripes - 1; i++) {
    xorInto(d, out, i * n);
    diffuse(d, hash, ds);
  }
  for (let j = 0; j < n; j++) out[(stripes - 1) * n + j] = d[j]! ^ key[j]!;
  return out;
}
