/**
 * The LUKS1 on-disk header (cryptsetup's "LUKS On-Disk Format Specification" version 1.2.3), as
 * one declarative field table with decode and encode derived from it. All integers big-endian.
 *
 *   0 magic "LUKS\xba\xbe" | 6 version u16 | 8 cipher_name[32] | 40 cipher_mode[32] | 72 hash_spec[32]
 * 104 payload_offset u32 (sectors) | 108 key_bytes u32 | 112 mk_digest[20] | 132 mk_digest_salt[32]
 * 164 mk_digest_iter u32 | 168 uuid[40] | 208 8 key slots of 48 bytes:
 *     0 active u32 | 4 iterations u32 | 8 salt[32] | 40 key_material_offset u32 (sectors) | 44 stripes u32
 *
 * Used by every format that carries LUKS (the luks format at offset 0, qcow2 in the clusters its
 * crypto header extension names); offsets inside are relative to the header's start.
 */

export const LUKS_MAGIC = Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe);
export const LUKS_VERSION = 1;
export const LUKS_SECTOR = 512;
export const LUKS_SLOT_COUNT = 8;
export const LUKS_SLOT_BYTES = 48;
export const LUKS_SLOTS_OFFSET = 208;
/** Fixed part plus the slot table. */
export const LUKS_HEADER_BYTES = LUKS_SLOTS_OFFSET + LUKS_SLOT_COUNT * LUKS_SLOT_BYTES;
export const LUKS_SALT_BYTES = 32;
export const LUKS_DIGEST_BYTES = 20;
export const SLOT_ACTIVE = 0x00ac71f3;
export const SLOT_DISABLED = 0x0000dead;
/** Anti-forensic stripes per key slot: the spec's (and qemu's, and cryptsetup's) only value. */
export const LUKS_STRIPES = 4000;

type FieldType = 'u16' | 'u32' | 'bytes' | 'cstr';

interface Field<K extends string> {
  readonly name: K;
  readonly offset: number;
  readonly type: FieldType;
  /** Length of bytes/cstr fields. */
  readonly length?: number;
}

export interface LuksSlot {
  active: number;
  iterations: number;
  salt: Uint8Array;
  /** In sectors from the header's start. */
  keyMaterialOffset: number;
  stripes: number;
}

export interface LuksHeader {
  magic: Uint8Array;
  version: number;
  cipherName: string;
  cipherMode: string;
  hashSpec: string;
  /** In sectors from the header's start. */
  payloadOffset: number;
  keyBytes: number;
  mkDigest: Uint8Array;
  mkDigestSalt: Uint8Array;
  mkDigestIterations: number;
  uuid: string;
  slots: LuksSlot[];
}

type ScalarHeader = Omit<LuksHeader, 'slots'>;

export const HEADER_FIELDS: readonly Field<keyof ScalarHeader>[] = [
  { name: 'magic', offset: 0, type: 'bytes', length: 6 },
  { name: 'version', offset: 6, type: 'u16' },
  { name: 'cipherName', offset: 8, type: 'cstr', length: 32 },
  { name: 'cipherMode', offset: 40, type: 'cstr', length: 32 },
  { name: 'hashSpec', offset: 72, type: 'cstr', length: 32 },
  { name: 'payloadOffset', offset: 104, type: 'u32' },
  { name: 'keyBytes', offset: 108, type: 'u32' },
  { name: 'mkDigest', offset: 112, type: 'bytes', length: LUKS_DIGEST_BYTES },
  { name: 'mkDigestSalt', offset: 132, type: 'bytes', length: LUKS_SALT_BYTES },
  { name: 'mkDigestIterations', offset: 164, type: 'u32' },
  { name: 'uuid', offset: 168, type: 'cstr', length: 40 },
];

export const SLOT_FIELDS: readonly Field<keyof LuksSlot>[] = [
  { name: 'active', offset: 0, type: 'u32' },
  { name: 'iterations', offset: 4, type: 'u32' },
  { name: 'salt', offset: 8, type: 'bytes', length: LUKS_SALT_BYTES },
  { name: 'keyMaterialOffset', offset: 40, type: 'u32' },
  { name: 'stripes', offset: 44, type: 'u32' },
];

export function fieldBytes(f: Field<string>): number {
  return f.type === 'u16' ? 2 : f.type === 'u32' ? 4 : f.length!;
}

function decodeFields<K extends string>(fields: readonly Field<K>[], b: Uint8Array, base: number): Record<K, number | string | Uint8Array> {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = {} as Record<K, number | string | Uint8Array>;
  for (const f of fields) {
    const at = base + f.offset;
    if (f.type === 'u16') out[f.name] = dv.getUint16(at);
    else if (f.type === 'u32') out[f.name] = dv.getUint32(at);
    else if (f.type === 'bytes') out[f.name] = b.slice(at, at + f.length!);
    else {
      // strings stop at the first NUL, as C reads them; the raw bytes are latin1
      const raw = b.subarray(at, at + f.length!);
      const nul = raw.indexOf(0);
      out[f.name] = Buffer.from(nul < 0 ? raw : raw.subarray(0, nul)).toString('latin1');
    }
  }
  return out;
}

function encodeFields<K extends string>(fields: readonly Field<K>[], v: Record<K, unknown>, b: Uint8Array, base: number): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (const f of fields) {
    const at = base + f.offset;
    const x = v[f.name];
    if (f.type === 'u16') dv.setUint16(at, x as number);
    else if (f.type === 'u32') dv.setUint32(at, (x as number) >>> 0);
    else {
      const bytes = f.type === 'bytes' ? (x as Uint8Array) : Buffer.from(x as string, 'latin1');
      b.fill(0, at, at + f.length!);
      b.set(bytes.subarray(0, f.length!), at);
    }
  }
}

export function decodeLuksHeader(b: Uint8Array): LuksHeader {
  const h = decodeFields(HEADER_FIELDS, b, 0) as unknown as ScalarHeader;
  const slots: LuksSlot[] = [];
  for (let i = 0; i < LUKS_SLOT_COUNT; i++) {
    slots.push(decodeFields(SLOT_FIELDS, b, LUKS_SLOTS_OFFSET + i * LUKS_SLOT_BYTES) as unknown as LuksSlot);
  }
  return { ...h, slots };
}

export function encodeLuksHeader(h: LuksHeader): Uint8Array {
  const b = new Uint8Array(LUKS_HEADER_BYTES);
  encodeFields(HEADER_FIELDS, h as unknown as Record<keyof ScalarHeader, unknown>, b, 0);
  h.slots.forEach((s, i) => encodeFields(SLOT_FIELDS, s as unknown as Record<keyof LuksSlot, unknown>, b, LUKS_SLOTS_OFFSET + i * LUKS_SLOT_BYTES));
  return b;
}

export function hasLuksMagic(b: Uint8Array): boolean {
  return b.length >= LUKS_MAGIC.length && LUKS_MAGIC.every((m, i) => b[i] === m);
}
