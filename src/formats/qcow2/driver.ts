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
 * (lazy-refcounts) images before the first write, qemu's metadata overlap check, amend (compat
 * up/downgrade, refcount width, lazy refcounts, data file fields, size, LUKS key slots), legacy
 * AES encryption (crypt_method 1) read and written, persistent dirty bitmaps (bitmap-store.ts,
 * bitmap-ops.ts: add/remove/clear/enable/disable/merge, guest writes recorded in enabled bitmaps,
 * stored at close as qemu does).
 * Not supported: LUKS ciphers other than AES (Node's crypto has no serpent, twofish or cast5).
 *
 * This file only wires the concerns together: header.ts and extensions.ts (the fixed header and
 * its extensions), load.ts (open-time checks), l1l2.ts (mapping), l2-cache.ts (bounded tables),
 * layer.ts (reads, block status, info), write.ts and l2-update.ts (writes), refcount.ts and
 * cluster-alloc.ts (allocation), resize.ts, snapshot.ts and snapshot-ops.ts, check.ts (check-tables.ts:
 * batched L2 reads), crypto.ts (LUKS and legacy AES over src/crypto), compress.ts (compress-pool.ts
 * and compress-worker.ts: convert -c on worker threads), options.ts (the -o specs), bitmap.ts, amend.ts (qemu-img amend:
 * amend-upgrade.ts, amend-downgrade.ts, amend-refcount.ts, amend-encrypt.ts, and header-write.ts
 * for qemu's whole-header rewrite); hostile-input limits are in limits.ts.
 */
import { VdiskError } from '../../block/errors.js';
import type { CreateContext, FormatDriver, FormatLayer, OpenContext } from '../../block/driver.js';
import { dirname, isAbsolute, join } from 'node:path';
import { FileProtocol } from '../../protocols/file.js';
import { qcow2AmendOptions, qcow2CreateOptions, qcow2CreateSummary } from './options.js';
import type { Qcow2CreateParams } from './create.js';
import type { Protocol } from '../../protocols/types.js';
import { INCOMPAT_DATA_FILE, INCOMPAT_EXTL2 } from './header.js';
import { loadImage } from './load.js';
import { ClusterMap, geometry } from './l1l2.js';
import { TableCache } from './l2-cache.js';
import { L2_CACHE_BYTES } from './limits.js';
import type { Qcow2Parts } from './layer.js';
import { Qcow2Layer } from './write.js';

// create and measure (and the LUKS code create needs) load on first use: commands that read
// images never need them, and every module loaded is start-up time
const createQcow2: typeof import('./create.js').createQcow2 = async (...a) => (await import('./create.js')).createQcow2(...a);
const measureQcow2: typeof import('./measure.js').measureQcow2 = async (...a) => (await import('./measure.js')).measureQcow2(...a);

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
    readOnly: ctx.readOnly || loaded.snapshot !== undefined, secrets: ctx.secrets,
  };
  try {
    if (hasDataFile) await openDataFile(p, ctx);
    // loaded on demand: node:crypto alone costs plain images tens of milliseconds of start-up
    if (loaded.header.cryptMethod !== 0) await (await import('./crypto.js')).openCrypto(p, ctx);
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
  const proto = ctx.reopenFile ? await ctx.reopenFile(filename) : await FileProtocol.open(filename, { readOnly: false });
  const dir = dirname(filename);
  const octx: OpenContext = {
    filename, readOnly: false, secrets: ctx.secrets,
    // an encrypted image is unlocked with its new key to be grown
    options: ctx.options['encrypt.key-secret'] !== undefined ? { 'encrypt.key-secret': ctx.options['encrypt.key-secret'] } : {},
    backing: { present: false, read: async (buf) => { buf.fill(0); } },
    openFile: (name, ro) => FileProtocol.open(isAbsolute(name) ? name : join(dir, name), { readOnly: ro }),
  };
  try {
    const layer = await openQcow2(proto, octx);
    try {
      await layer.truncate!(size, { prealloc, shrink: false }).catch((e: unknown) => {
        // qemu's qcow2 create grows the new image as a resize and says so when that fails
        if (!(e instanceof VdiskError)) throw e;
        throw new VdiskError(e.kind, e.code, `Could not resize image: ${e.message}`, e.context, e);
      });
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
  amendOptions: qcow2AmendOptions,
};
