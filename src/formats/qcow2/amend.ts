/**
 * qemu-img amend for qcow2: which options can change, the checks qemu makes on them (in the order
 * of qemu's option table, so the first failing one names the error), and the order the changes
 * are made in: upgrade first (features may need v3), then encryption, the refcount width, the data
 * file fields and the header, the backing check, lazy refcounts, the size, and the downgrade last
 * (after what would stop it has gone). Each step leaves a consistent image on its own.
 *
 * The downgrade is in ./amend-downgrade.ts, the refcount width change in ./amend-refcount.ts; LUKS
 * key slot changes (encrypt.*) are ./amend-encrypt.ts's.
 */
import { VdiskError } from '../../block/errors.js';
import type { AmendHooks } from '../../block/driver.js';
import {
  AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, CRYPT_LUKS, INCOMPAT_DATA_FILE, INCOMPAT_DIRTY,
} from './header.js';
import { writeWholeHeader } from './header-write.js';
import { checkQcow2 } from './check.js';
import { downgradeToV2 } from './amend-downgrade.js';
import { upgradeToV3 } from './amend-upgrade.js';
import { changeRefcountOrder } from './amend-refcount.js';
import type { Qcow2Parts } from './layer.js';
import { amendEncryption } from './amend-encrypt.js';
import type { MetadataWriter } from './l2-update.js';

export { qcow2AmendOptions } from './options.js';

/** What the layer lends the amend: its metadata writer, resize and clean marking, under its lock. */
export interface AmendContext {
  readonly p: Qcow2Parts;
  writer(): Promise<MetadataWriter>;
  /** Flush and forget the metadata writer (the refcount structure changed under it). */
  resetWriter(): Promise<void>;
  resize(size: number): Promise<void>;
  markClean(): Promise<void>;
}

interface Plan {
  version: number;
  size: number;
  backingFile?: string;
  backingFmt?: string;
  backingGiven: boolean;
  lazy: boolean;
  refcountOrder: number;
  dataFile?: string;
  dataFileRaw: boolean;
  encryption: Record<string, string>;
}

const TRUE = new Set(['on', 'yes', 'true', 'y']);

function fail(p: Qcow2Parts, code: string, message: string, kind: 'invalid-argument' | 'unsupported' = 'invalid-argument'): VdiskError {
  return new VdiskError(kind, code, message, { path: p.path, format: 'qcow2', op: 'amend' });
}

/** The requested state, with qemu's checks in the order of its option table. */
function plan(p: Qcow2Parts, v: Readonly<Record<string, string>>): Plan {
  const h = p.loaded.header;
  const hasDataFile = (h.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  const isRaw = hasDataFile && (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
  const out: Plan = {
    version: h.version, size: 0, backingGiven: false, lazy: (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    refcountOrder: h.refcountOrder, dataFileRaw: isRaw, encryption: {},
  };
  for (const [k, val] of Object.entries(v)) if (k.startsWith('encrypt.')) out.encryption[k] = val;
  if (Object.keys(out.encryption).length > 0) {
    if (h.cryptMethod === 0) throw fail(p, 'QCOW2_AMEND_NO_CRYPTO', "Can't amend encryption options - encryption not present");
    if (h.cryptMethod !== CRYPT_LUKS) throw fail(p, 'QCOW2_AMEND_CRYPTO', 'Only LUKS encryption options can be amended', 'unsupported');
  }
  if (v['size'] !== undefined) out.size = Number(v['size']);
  const compat = v['compat'];
  if (compat === '0.10' || compat === 'v2') out.version = 2;
  else if (compat === '1.1' || compat === 'v3') out.version = 3;
  else if (compat !== undefined) throw fail(p, 'QCOW2_AMEND_COMPAT', `Unknown compatibility level ${compat}`);
  if (v['backing_file'] !== undefined || v['backing_fmt'] !== undefined) {
    out.backingGiven = true;
    if (v['backing_file'] !== undefined) out.backingFile = v['backing_file'];
    if (v['backing_fmt'] !== undefined) out.backingFmt = v['backing_fmt'];
  }
  if (v['data_file'] !== undefined) {
    if (!hasDataFile) throw fail(p, 'QCOW2_AMEND_DATA_FILE', 'data-file can only be set for images that use an external data file');
    out.dataFile = v['data_file'];
  }
  if (v['data_file_raw'] !== undefined) {
    out.dataFileRaw = TRUE.has(v['data_file_raw']);
    if (out.dataFileRaw && !isRaw) throw fail(p, 'QCOW2_AMEND_DATA_FILE_RAW', 'data-file-raw cannot be set on existing images');
  }
  if (v['lazy_refcounts'] !== undefined) out.lazy = TRUE.has(v['lazy_refcounts']);
  if (v['refcount_bits'] !== undefined) {
    const bits = Number(v['refcount_bits']);
    if (!(bits > 0 && bits <= 64 && (bits & (bits - 1)) === 0)) {
      throw fail(p, 'QCOW2_AMEND_REFCOUNT_BITS', 'Refcount width must be a power of two and may not exceed 64 bits');
    }
    out.refcountOrder = Math.log2(bits);
  }
  return out;
}

/** A dirty image is repaired first, as qemu repairs one when it opens it read-write. */
async function repairIfDirty(c: AmendContext, hooks: AmendHooks): Promise<void> {
  const p = c.p;
  if (!(p.loaded.header.incompatibleFeatures & INCOMPAT_DIRTY)) return;
  await c.resetWriter();
  const r = await checkQcow2(p, 'all', undefined);
  for (const m of r.messages) hooks.message?.(m);
  if (r.failure || r.corruptions || r.checkErrors) {
    throw new VdiskError('corrupt', 'QCOW2_DIRTY', 'Could not repair dirty image', { path: p.path, format: 'qcow2', op: 'amend' }, r.failure);
  }
  await c.markClean();
}

/**
 * Progress over the operations of one amend, as qemu's helper projects it: the work of the
 * operations done so far plus the current one's, scaled up for those still to come.
 */
class Steps {
  private op = -1;
  private doneOps = 0;
  private doneWork = 0;
  private lastWork = 0;
  constructor(private readonly total: number, private readonly hooks: AmendHooks) {}

  reporter(op: number): (done: number, total: number) => void {
    return (done, work) => {
      if (op !== this.op) {
        if (this.op >= 0) {
          this.doneWork += this.lastWork;
          this.doneOps++;
        }
        this.op = op;
      }
      this.lastWork = work;
      const current = this.doneWork + work;
      const projected = Math.floor((current * (this.total - this.doneOps - 1)) / (this.doneOps + 1));
      this.hooks.progress?.(this.doneWork + done, current + projected);
    };
  }
}

export async function amendQcow2(c: AmendContext, values: Readonly<Record<string, string>>, force: boolean, hooks: AmendHooks): Promise<void> {
  const p = c.p;
  await repairIfDirty(c, hooks);
  const want = plan(p, values);
  const h = p.loaded.header;
  const oldVersion = h.version;
  const encrypt = Object.keys(want.encryption).length > 0;
  const steps = new Steps(Number(want.version !== oldVersion) + Number(want.refcountOrder !== h.refcountOrder) + Number(encrypt), hooks);
  if (want.version > oldVersion) {
    await upgradeToV3(c, steps.reporter(0));
  }
  if (encrypt) {
    await amendEncryption(p, want.encryption, force, p.secrets ?? { get: () => undefined });
  }
  if (want.refcountOrder !== h.refcountOrder) {
    if (want.version < 3 && want.refcountOrder !== 4) {
      throw fail(p, 'QCOW2_AMEND_REFCOUNT_V2', 'Refcount widths other than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)');
    }
    await changeRefcountOrder(c, want.refcountOrder, steps.reporter(2));
  }
  await dataFileFields(c, want);
  if (want.backingGiven && (want.backingFile !== p.loaded.backing?.filename || want.backingFmt !== p.loaded.backing?.format)) {
    throw fail(p, 'QCOW2_AMEND_BACKING', "Cannot amend the backing file\nYou can use 'qemu-img rebase' instead.");
  }
  await lazyRefcounts(c, want);
  if (want.size !== 0) await c.resize(want.size);
  if (want.version < oldVersion) {
    await downgradeToV2(c, steps.reporter(3), hooks);
  }
}

/** data-file-raw is cleared (or kept), the data file name changed, and the header rewritten in any case. */
async function dataFileFields(c: AmendContext, want: Plan): Promise<void> {
  const p = c.p;
  const h = p.loaded.header;
  await c.resetWriter();
  const autoclear = want.dataFileRaw ? h.autoclearFeatures | AUTOCLEAR_DATA_FILE_RAW : h.autoclearFeatures & ~AUTOCLEAR_DATA_FILE_RAW;
  if (want.dataFile !== undefined) {
    if (want.dataFile === '') delete p.loaded.ext.dataFile;
    else p.loaded.ext.dataFile = want.dataFile;
  }
  await writeWholeHeader(p, { ...h, autoclearFeatures: autoclear });
}

async function lazyRefcounts(c: AmendContext, want: Plan): Promise<void> {
  const p = c.p;
  const h = p.loaded.header;
  const now = (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
  if (want.lazy === now) return;
  if (want.lazy) {
    if (want.version < 3) {
      throw fail(p, 'QCOW2_AMEND_LAZY_V2', 'Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)');
    }
    await writeWholeHeader(p, { ...h, compatibleFeatures: h.compatibleFeatures | COMPAT_LAZY_REFCOUNTS });
    return;
  }
  await c.resetWriter();
  if (h.incompatibleFeatures & INCOMPAT_DIRTY) await c.markClean();
  await writeWholeHeader(p, { ...h, compatibleFeatures: h.compatibleFeatures & ~COMPAT_LAZY_REFCOUNTS });
}
