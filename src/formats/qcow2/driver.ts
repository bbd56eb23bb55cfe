/**
 * qcow2 (QEMU docs/interop/qcow2.txt), versions 2 and 3.
 *
 *   cluster 0: header | extensions | backing file name     L1 table -> L2 tables -> data clusters
 *   refcount table -> refcount blocks                        snapshot table -> snapshot L1 tables
 *   bitmap directory (info only)                             LUKS header + key material (crypto ext)
 *
 * Supported: reading every cluster kind (normal, zero, compressed zlib/zstd, extended L2
 * subclusters), backing files, external data files (raw or not), LUKS decryption and encryption,
 * internal snapshots (read-only views through the `snapshot.name`/`snapshot.id` options; create,
 * apply, delete), writes with refcounted allocation and copy-on-write, compressed writes, zero
 * clusters, discard,
 * resize (grow with preallocation, shrink), `check` with leak/refcount repair, repair of dirty
 * (lazy-refcounts) images before the first write, qemu's metadata overlap check, persistent
 * dirty bitmaps (bitmap-store.ts, bitmap-ops.ts: add/remove/clear/enable/disable/merge, guest
 * writes recorded in enabled bitmaps, stored at close as qemu does).
 * Not supported: the legacy AES encryption (crypt_method 1; info only), rebuilding refcount
 * structures from scratch (repair fixes refcounts in place).
 *
 * This file only wires the concerns together: header.ts and extensions.ts (the fixed header and
 * its extensions), load.ts (open-time checks), l1l2.ts (mapping), l2-cache.ts (bounded tables),
 * layer.ts (reads, block status, info), write.ts and l2-update.ts (writes), refcount.ts and
 * cluster-alloc.ts (allocation), resize.ts, snapshot.ts and snapshot-ops.ts, check.ts, luks.ts,
 * compress.ts, bitmap.ts; hostile-input limits are in limits.ts.
 */
import { VdiskError } from '../../block/errors.js';
import type { CreateContext, FormatDriver, FormatLayer, OpenContext } from '../../block/driver.js';
import { dirname, isAbsolute, join } from 'node:path';
import { FileProtocol } from '../../protocols/file.js';
import { measureQcow2 } from './measure.js';
import { createQcow2, qcow2CreateOptions, qcow2CreateSummary, type Qcow2CreateParams } from './create.js';
import type { Protocol } from '../../protocols/types.js';
import { CRYPT_AES, CRYPT_LUKS, INCOMPAT_DATA_FILE, INCOMPAT_EXTL2, toSafe } from './header.js';
import { loadImage } from './load.js';
import { ClusterMap, geometry } from './l1l2.js';
import { TableCache } from './l2-cache.js';
import { L2_CACHE_BYTES } from './limits.js';
import { LuksVolume } from './luks.js';
import type { Qcow2Parts } from './layer.js';
import { Qcow2Layer } from './write.js';

async function openCrypto(p: Qcow2Parts, ctx: OpenContext): Promise<void> {
  const h = p.loaded.header;
  if (h.cryptMethod === CRYPT_AES) {
    p.ioBlocked = new VdiskError('unsupported', 'QCOW2_AES', 'vdisk does not support reading qcow2 images with the legacy AES encryption', { path: p.path, format: 'qcow2' });
    return;
  }
  if (h.cryptMethod !== CRYPT_LUKS) return;
  const at = toSafe(p.loaded.ext.crypto!.offset, 'Encryption header', p.path);
  p.luks = await LuksVolume.read(p.proto, at, p.path);
  const id = ctx.options['encrypt.key-secret'];
  const missing = new VdiskError('invalid-argument', 'QCOW2_NO_KEY', "Parameter 'encrypt.key-secret' is required for cipher", { path: p.path, format: 'qcow2' });
  // like qemu, a metadata-only open (info) neither needs nor checks the key
  if (ctx.noIo) {
    p.ioBlocked = missing;
    return;
  }
  if (id === undefined) throw missing;
  const secret = ctx.secrets.get(id);
  if (!secret) throw new VdiskError('not-found', 'NO_SECRET', `No secret with id '${id}'`, { path: p.path, format: 'qcow2' });
  await p.luks.unlock(p.proto, at, secret);
}

async function openDataFile(p: Qcow2Parts, ctx: OpenContext): Promise<void> {
  const name = p.loaded.dataFileName;
  try {
    if (name === undefined) {
      throw new VdiskError('invalid-argument', 'QCOW2_NO_DATA_FILE', "'data-file' is required for this image", { path: ctx.filename, format: 'qcow2' });
    }
    p.data = await ctx.openFile(name, ctx.readOnly);
    p.dataFilePath = p.data.filename;
  } catch (e) {
    // a metadata-only open (info) does without the data file, as qemu's does
    if (!ctx.noIo || !(e instanceof VdiskError)) throw e;
    p.ioBlocked = e;
  }
}

export async function openQcow2(proto: Protocol, ctx: OpenContext): Promise<FormatLayer> {
  const loaded = await loadImage(proto, ctx);
  const h = loaded.header;
  const hasDataFile = (h.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  const geo = geometry(h.clusterBits, (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n, h.version, hasDataFile);
  const map = new ClusterMap(geo, loaded.l1, new TableCache(proto, geo.clusterSize, L2_CACHE_BYTES), ctx.filename);
  const p: Qcow2Parts = {
    path: ctx.filename, proto, data: hasDataFile ? undefined : proto, loaded, map, backingReader: ctx.backing,
    readOnly: ctx.readOnly || loaded.snapshot !== undefined,
  };
  try {
    if (hasDataFile) await openDataFile(p, ctx);
    await openCrypto(p, ctx);
    const layer = new Qcow2Layer(p);
    await layer.prepareWrites(ctx.check === true);
    return layer;
  } catch (e) {
    if (p.data && p.data !== proto) await p.data.close().catch(() => undefined);
    throw e;
  }
}

/** Grow a freshly created image through the layer, for preallocated creation (as qemu does). */
async function growNew(ctx: CreateContext, filename: string, size: number, prealloc: Qcow2CreateParams['prealloc']): Promise<void> {
  const proto = await FileProtocol.open(filename, { readOnly: false });
  const dir = dirname(filename);
  const octx: OpenContext = {
    filename, readOnly: false, options: {}, secrets: ctx.secrets,
    backing: { present: false, read: async (buf) => { buf.fill(0); } },
    openFile: (name, ro) => FileProtocol.open(isAbsolute(name) ? name : join(dir, name), { readOnly: ro }),
  };
  try {
    const layer = await openQcow2(proto, octx);
    try {
      await layer.truncate!(size, { prealloc, shrink: false });
      await layer.flush?.();
    } finally {
      await layer.close();
    }
  } finally {
    await proto.close();
  }
}

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  open: openQcow2,
  createOptions: qcow2CreateOptions,
  createSummary: qcow2CreateSummary,
  create: (ctx) => createQcow2(ctx, (f, size, pa) => growNew(ctx, f, size, pa)),
  supportsCompression: true,
  measure: measureQcow2,
};
