/**
 * Creating qcow2 images (docs/interop/qcow2.txt), laid out as qemu-img 7.2 lays them out so the
 * files are byte-identical for the same options:
 *
 *   cluster 0: header | extensions (backing format, data file, feature names) | backing file name
 *   cluster 1: refcount table (one entry)      cluster 2: refcount block
 *   cluster 3: L1 table (exactly l1_size * 8 bytes; the file ends there)
 *
 * Preallocation (metadata, falloc, full) starts from the same empty image and grows it through the
 * qcow2 layer's own truncate, as qemu does.
 *
 * Encrypted images (encrypt.format=luks) put the LUKS header area right after the L1 table, as
 * qemu does, zero-filled and counted by the refcounts; more refcount blocks (and table clusters)
 * are laid out after cluster 1 when one block cannot count everything (small clusters).
 * encrypt.format=aes (or encryption=on) only sets crypt_method 1: legacy AES has no header.
 */
import { VdiskError } from '../../block/errors.js';
import type { CreateContext } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';
import { luksCreateParams, luksSecret } from '../../crypto/luks/options.js';
import { LuksVolume, headerSectors, type LuksCreateParams } from '../../crypto/luks/volume.js';
import { LUKS_SECTOR } from '../../crypto/luks/header.js';

export { qcow2CreateOptions, qcow2CreateSummary } from './options.js';

/** qemu's cap on the L1 table (32 MiB): larger virtual sizes need a larger cluster size. */
const MAX_L1_BYTES = 32 << 20;
const HEADER_V2_BYTES = 72;
const HEADER_V3_BYTES = 112;
const EXT_BACKING_FORMAT = 0xe2792aca;
const EXT_DATA_FILE = 0x44415441;
const EXT_FEATURE_TABLE = 0x6803f857;
const EXT_CRYPTO = 0x0537be77;
const CRYPT_AES = 1;
const CRYPT_LUKS = 2;
const ENCRYPT_PREFIX = 'encrypt.';
const FEATURE_NAMES: ReadonlyArray<[number, number, string]> = [
  [0, 0, 'dirty bit'], [0, 1, 'corrupt bit'], [0, 2, 'external data file'], [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'], [1, 0, 'lazy refcounts'], [2, 0, 'bitmaps'], [2, 1, 'raw external data'],
];
const TRUE = new Set(['on', 'yes', 'true', 'y']);

export interface Qcow2CreateParams {
  size: number;
  version: 2 | 3;
  clusterBits: number;
  refcountOrder: number;
  extendedL2: boolean;
  lazyRefcounts: boolean;
  zstd: boolean;
  backingFile?: string;
  backingFormat?: string;
  dataFile?: string;
  dataFileRaw: boolean;
  prealloc: 'off' | 'metadata' | 'falloc' | 'full';
  /** Legacy AES (crypt_method 1) or LUKS with its creation parameters. */
  encrypt?: { format: 'aes' } | { format: 'luks'; luks: LuksCreateParams };
  /** Where create placed the LUKS header area (clusters), for the crypto header extension. */
  crypto?: { offset: number; length: number };
}

function fail(msg: string): never {
  throw new VdiskError('invalid-argument', 'QCOW2_CREATE_OPTION', msg, { format: 'qcow2' });
}

const V3_HINT = 'compatibility level 1.1 and above (use version=v3 or greater)';

/**
 * Check option values and combinations with qemu-img's messages. `measure` reads the same options
 * but, as qemu's measure, does not refuse combinations only creation cannot do (backing file with
 * preallocation).
 */
export function qcow2CreateParams(size: number, o: Readonly<Record<string, string>>, purpose: 'create' | 'measure' = 'create'): Qcow2CreateParams {
  const compat = o['compat'] ?? '1.1';
  const version = compat === '0.10' || compat === 'v2' ? 2 : compat === '1.1' || compat === 'v3' ? 3 : fail(`Parameter 'version' does not accept value '${compat}'`);
  const ct = o['compression_type'] ?? 'zlib';
  if (ct !== 'zlib' && ct !== 'zstd') fail(`Parameter 'compression-type' does not accept value '${ct}'`);
  const pa = o['preallocation'] ?? 'off';
  if (pa !== 'off' && pa !== 'metadata' && pa !== 'falloc' && pa !== 'full') fail(`Parameter 'preallocation' does not accept value '${pa}'`);
  const cs = Number(o['cluster_size'] ?? 65536);
  if (!(cs >= 512 && cs <= 2 << 20 && (cs & (cs - 1)) === 0)) fail('Cluster size must be a power of two between 512 and 2048k');
  const rb = Number(o['refcount_bits'] ?? 16);
  if (!(rb >= 1 && rb <= 64 && (rb & (rb - 1)) === 0)) fail('Refcount width must be a power of two and may not exceed 64 bits');
  const p: Qcow2CreateParams = {
    size: Math.ceil(size / 512) * 512, version, clusterBits: Math.log2(cs), refcountOrder: Math.log2(rb),
    extendedL2: TRUE.has(o['extended_l2'] ?? 'off'), lazyRefcounts: TRUE.has(o['lazy_refcounts'] ?? 'off'),
    zstd: ct === 'zstd', dataFileRaw: TRUE.has(o['data_file_raw'] ?? 'off'), prealloc: pa,
  };
  if (o['backing_file'] !== undefined) p.backingFile = o['backing_file'];
  if (o['backing_fmt'] !== undefined) p.backingFormat = o['backing_fmt'];
  if (o['data_file'] !== undefined) p.dataFile = o['data_file'];
  if (version === 2 && p.lazyRefcounts) fail(`Lazy refcounts only supported with ${V3_HINT}`);
  if (version === 2 && rb !== 16) fail('Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)');
  if (p.extendedL2 && version === 2) fail(`Extended L2 entries are only supported with ${V3_HINT}`);
  if (p.extendedL2 && cs < 16384) fail('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes');
  if (p.dataFile !== undefined && version === 2) fail(`External data files are only supported with ${V3_HINT}`);
  if (p.dataFileRaw && p.dataFile === undefined) fail('data-file-raw requires data-file');
  // a raw data file must map every cluster to itself: qemu preallocates the metadata for it
  if (p.dataFileRaw && p.prealloc === 'off') p.prealloc = 'metadata';
  if (p.zstd && version === 2) fail(`Non-zlib compression type is only supported with ${V3_HINT}`);
  if (purpose === 'create' && p.backingFile !== undefined && pa !== 'off' && !p.extendedL2) {
    fail('Backing file and preallocation can only be used at the same time if extended_l2 is on');
  }
  const enc = encryptParams(o);
  if (enc) p.encrypt = enc;
  if (l1Entries(p) * 8 > MAX_L1_BYTES) {
    throw new VdiskError('invalid-argument', 'QCOW2_TOO_LARGE', "The image size is too large for file format 'qcow2' (try using a larger cluster size)", { format: 'qcow2' });
  }
  return p;
}

/** encrypt.* options with qemu's checks and messages (the key secret is looked up at creation). */
function encryptParams(o: Readonly<Record<string, string>>): Qcow2CreateParams['encrypt'] {
  const alias = o['encryption'];
  let format = o['encrypt.format'];
  if (alias !== undefined && format !== undefined) fail("'encrypt.format' and its alias 'encryption' can't be used at the same time");
  if (alias !== undefined && TRUE.has(alias)) format = 'aes';
  const others = Object.keys(o).filter((k) => k.startsWith(ENCRYPT_PREFIX) && k !== 'encrypt.format');
  if (format === undefined) {
    if (others.length > 0) fail("Parameter 'encrypt.format' is missing");
    return undefined;
  }
  if (format !== 'aes' && format !== 'luks') fail(`Parameter 'format' does not accept value '${format}'`);
  if (format === 'aes') {
    const extra = others.find((k) => k !== 'encrypt.key-secret');
    if (extra !== undefined) fail(`Parameter '${extra}' is unexpected`);
    if (o['encrypt.key-secret'] === undefined) fail("Parameter 'encrypt.key-secret' is required for cipher");
    return { format: 'aes' };
  }
  const luks = luksCreateParams(o, ENCRYPT_PREFIX);
  if (o['encrypt.key-secret'] === undefined) fail("Parameter 'encrypt.key-secret' is required for cipher");
  return { format: 'luks', luks };
}

/** Bytes of the LUKS header area qcow2 stores for these options (0 without LUKS). */
export function luksHeaderBytes(p: Qcow2CreateParams): number {
  return p.encrypt?.format === 'luks' ? headerSectors(p.encrypt.luks.spec) * LUKS_SECTOR : 0;
}

function l1Entries(p: Qcow2CreateParams): number {
  const clusterSize = 2 ** p.clusterBits;
  const l2Entries = clusterSize / (p.extendedL2 ? 16 : 8);
  return Math.ceil(p.size / (clusterSize * l2Entries));
}

function be32(b: Buffer, off: number, v: number): void {
  b.writeUInt32BE(v >>> 0, off);
}
function be64(b: Buffer, off: number, v: number): void {
  b.writeBigUInt64BE(BigInt(v), off);
}

/** Header extensions in qemu's order, each padded to 8 bytes, then the end marker. */
function extensions(p: Qcow2CreateParams): Buffer {
  const parts: Buffer[] = [];
  const ext = (magic: number, data: Buffer): void => {
    const padded = Buffer.alloc(8 + Math.ceil(data.length / 8) * 8);
    be32(padded, 0, magic);
    be32(padded, 4, data.length);
    data.copy(padded, 8);
    parts.push(padded);
  };
  if (p.backingFormat !== undefined && p.backingFile !== undefined) ext(EXT_BACKING_FORMAT, Buffer.from(p.backingFormat));
  if (p.dataFile !== undefined) ext(EXT_DATA_FILE, Buffer.from(p.dataFile));
  if (p.crypto) {
    const c = Buffer.alloc(16);
    be64(c, 0, p.crypto.offset);
    be64(c, 8, p.crypto.length);
    ext(EXT_CRYPTO, c);
  }
  // qemu adds the feature name table only when it leaves room in the header cluster (not at 512 B)
  const used = parts.reduce((n, x) => n + x.length, 0);
  const tableBytes = 8 + FEATURE_NAMES.length * 48;
  if (p.version === 3 && HEADER_V3_BYTES + used + tableBytes + 8 < 2 ** p.clusterBits) {
    const t = Buffer.alloc(FEATURE_NAMES.length * 48);
    FEATURE_NAMES.forEach(([type, bit, name], i) => {
      t[i * 48] = type;
      t[i * 48 + 1] = bit;
      t.write(name, i * 48 + 2, 46, 'ascii');
    });
    ext(EXT_FEATURE_TABLE, t);
  }
  parts.push(Buffer.alloc(8));
  return Buffer.concat(parts);
}

/** Cluster 0: the header with its extensions and the backing file name. */
export function encodeHeader(p: Qcow2CreateParams, l1Offset: number, l1Size: number, reftableClusters = 1): Buffer {
  const clusterSize = 2 ** p.clusterBits;
  const hlen = p.version === 3 ? HEADER_V3_BYTES : HEADER_V2_BYTES;
  const ext = extensions(p);
  const name = p.backingFile !== undefined ? Buffer.from(p.backingFile) : Buffer.alloc(0);
  if (hlen + ext.length + name.length > clusterSize) fail('Backing file name too long');
  const b = Buffer.alloc(hlen + ext.length + name.length);
  be32(b, 0, 0x514649fb);
  be32(b, 4, p.version);
  if (name.length) {
    be64(b, 8, hlen + ext.length);
    be32(b, 16, name.length);
  }
  be32(b, 20, p.clusterBits);
  be64(b, 24, p.size);
  if (p.encrypt) be32(b, 32, p.encrypt.format === 'aes' ? CRYPT_AES : CRYPT_LUKS);
  be32(b, 36, l1Size);
  be64(b, 40, l1Offset);
  be64(b, 48, clusterSize);
  be32(b, 56, reftableClusters);
  if (p.version === 3) {
    let incompat = 0;
    if (p.dataFile !== undefined) incompat |= 1 << 2;
    if (p.zstd) incompat |= 1 << 3;
    if (p.extendedL2) incompat |= 1 << 4;
    be64(b, 72, incompat);
    be64(b, 80, p.lazyRefcounts ? 1 : 0);
    be64(b, 88, p.dataFileRaw ? 2 : 0);
    be32(b, 96, p.refcountOrder);
    be32(b, 100, hlen);
    b[104] = p.zstd ? 1 : 0;
  }
  ext.copy(b, hlen);
  name.copy(b, hlen + ext.length);
  return b;
}

/** A refcount block with refcount 1 for the first `n` clusters (sub-byte widths fill low bits first). */
function refcountBlock(clusterSize: number, order: number, n: number): Buffer {
  const b = Buffer.alloc(clusterSize);
  const bits = 2 ** order;
  for (let i = 0; i < n; i++) {
    if (bits < 8) {
      const perByte = 8 / bits;
      b[Math.floor(i / perByte)]! |= 1 << ((i % perByte) * bits);
    } else {
      const bytes = bits / 8;
      b[(i + 1) * bytes - 1] = 1;
    }
  }
  return b;
}

/**
 * Where everything goes: header, refcount table (from cluster 1), refcount blocks, L1, LUKS area.
 * With one table cluster and one block this is qemu's layout (table 1, block 2, L1 3).
 */
interface Layout {
  tableClusters: number;
  blocks: number;
  l1Cluster: number;
  l1Clusters: number;
  cryptoCluster: number;
  cryptoClusters: number;
  total: number;
}

function layout(p: Qcow2CreateParams, l1Size: number): Layout {
  const cs = 2 ** p.clusterBits;
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const cryptoClusters = Math.ceil(luksHeaderBytes(p) / cs);
  const coverage = refblockCoverage(p);
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters + cryptoClusters;
    const nb = Math.ceil(total / coverage);
    const nt = Math.ceil((nb * 8) / cs);
    if (nb <= blocks && nt <= tableClusters) {
      const l1Cluster = 1 + tableClusters + blocks;
      return { tableClusters, blocks, l1Cluster, l1Clusters, cryptoCluster: l1Cluster + l1Clusters, cryptoClusters, total };
    }
    blocks = Math.max(blocks, nb);
    tableClusters = Math.max(tableClusters, nt);
  }
}

async function writeEmpty(proto: Protocol, p: Qcow2CreateParams, withL1: boolean): Promise<Layout> {
  const cs = 2 ** p.clusterBits;
  const l1Size = withL1 ? l1Entries(p) : 0;
  const lay = layout(p, l1Size);
  if (lay.cryptoClusters > 0) p.crypto = { offset: lay.cryptoCluster * cs, length: luksHeaderBytes(p) };
  await proto.truncate(0);
  await proto.pwrite(encodeHeader(p, l1Size ? lay.l1Cluster * cs : 0, l1Size, lay.tableClusters), 0);
  const table = Buffer.alloc(lay.tableClusters * cs);
  for (let i = 0; i < lay.blocks; i++) be64(table, i * 8, (1 + lay.tableClusters + i) * cs);
  await proto.pwrite(table, cs);
  const per = refblockCoverage(p);
  for (let i = 0; i < lay.blocks; i++) {
    const n = Math.min(per, lay.total - i * per);
    await proto.pwrite(refcountBlock(cs, p.refcountOrder, n), (1 + lay.tableClusters + i) * cs);
  }
  if (l1Size) await proto.pwrite(new Uint8Array(l1Size * 8), lay.l1Cluster * cs);
  // the LUKS area is zero-filled (allocated) before the header and slot 0 are written into it
  if (lay.cryptoClusters > 0) await proto.pwrite(new Uint8Array(lay.cryptoClusters * cs), lay.cryptoCluster * cs);
  return lay;
}

/** Write the LUKS header and key slot 0 into the area writeEmpty reserved. */
async function writeLuks(ctx: CreateContext, proto: Protocol, p: Qcow2CreateParams): Promise<void> {
  if (p.encrypt?.format !== 'luks' || !p.crypto) return;
  const secret = luksSecret(ctx.options, 'encrypt.key-secret', ctx.secrets);
  const at = p.crypto.offset;
  const io = { pread: (b: Uint8Array, o: number) => proto.pread(b, at + o), pwrite: (b: Uint8Array, o: number) => proto.pwrite(b, at + o) };
  await LuksVolume.create(io, p.encrypt.luks, secret, { path: ctx.filename, format: 'qcow2' });
}

/** Clusters one refcount block can describe. */
function refblockCoverage(p: Qcow2CreateParams): number {
  return ((2 ** p.clusterBits) * 8) / 2 ** p.refcountOrder;
}

export type GrowHook = (filename: string, size: number, prealloc: Qcow2CreateParams['prealloc']) => Promise<void>;

/**
 * Create the image. `grow` opens the new image with the qcow2 layer and truncates it to the
 * requested size with preallocation (used when the simple layout does not apply).
 */
export async function createQcow2(ctx: CreateContext, grow?: GrowHook): Promise<void> {
  const p = qcow2CreateParams(ctx.size, ctx.options);
  const l1c = Math.ceil((l1Entries(p) * 8) / 2 ** p.clusterBits);
  // encrypted images always get the laid-out refcounts; plain ones keep qemu's exact bytes
  const simple = p.prealloc === 'off' && (p.encrypt !== undefined || 3 + l1c <= refblockCoverage(p));
  if (p.dataFile !== undefined) {
    const df = await ctx.createFile(p.dataFile);
    try {
      // qemu's creation ends with a resize to the full size, which grows the data file too
      if (simple) await df.truncate(p.size);
    } finally {
      await df.close();
    }
  }
  const grows = !simple && p.size > 0;
  // a growing image starts empty (size 0); the layer grows L1, refcounts and preallocates like a resize
  const first = grows ? { ...p, size: 0 } : p;
  const proto = await ctx.createFile(ctx.filename);
  try {
    await writeEmpty(proto, first, simple);
    await writeLuks(ctx, proto, first);
    await proto.flush();
  } finally {
    await proto.close();
  }
  if (grows) {
    if (!grow) throw new VdiskError('unsupported', 'QCOW2_CREATE_GROW', 'qcow2 preallocation needs the qcow2 layer', { format: 'qcow2' });
    await grow(ctx.filename, p.size, p.prealloc);
  }
}
