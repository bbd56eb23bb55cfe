/**
 * An open qcow2 image: the read side (read, block status, info). Writes live in ./write.ts and
 * reach this state through the same object.
 */
import { VdiskError } from '../../block/errors.js';
import type { BackingReader, JsonObject, LayerInfo, LayerStatus, SecretStore } from '../../block/driver.js';
import type { Protocol } from '../../protocols/types.js';
import {
  AUTOCLEAR_DATA_FILE_RAW, COMPAT_LAZY_REFCOUNTS, CRYPT_AES, CRYPT_LUKS, INCOMPAT_CORRUPT, INCOMPAT_DATA_FILE,
  INCOMPAT_DIRTY, INCOMPAT_EXTL2,
} from './header.js';
import { ClusterMap, RUN_TYPE, RUN_TYPES, hx, type Mapping } from './l1l2.js';
import {
  RUN_ALLOCATED, RUN_COMPRESSED, RUN_DATA, RUN_HOST, RUN_NO_ASK_HOST, RUN_ZERO, type StatusRuns,
} from '../../block/status-runs.js';
import { decompressCluster } from './compress.js';
import { snapshotInfo } from './snapshot.js';
import { bitmapInfo } from './bitmap.js';
import type { Loaded } from './load.js';
import type { Qcow2Crypto } from './crypto.js';
import { changeBacking } from './backing-change.js';
import { Refcounts, getRefcountEntry } from './refcount.js';

export interface Qcow2Parts {
  path: string;
  proto: Protocol;
  /** Where guest clusters live: the external data file, or the image file itself. */
  data: Protocol | undefined;
  dataFilePath?: string;
  loaded: Loaded;
  map: ClusterMap;
  backingReader: BackingReader;
  readOnly: boolean;
  /** Encryption (LUKS or legacy AES), decoded for `info`; `unlocked` once the secret opened it. */
  luks?: Qcow2Crypto;
  /** Why reads are refused (missing key secret, missing data file), worded as qemu's open error. */
  ioBlocked?: VdiskError;
  /** The open's secrets (key-slot amend looks up new and old passphrases). */
  secrets?: SecretStore;
}

export class Qcow2Reader {
  private lastCompressed: { host: number; data: Uint8Array } | undefined;

  constructor(readonly p: Qcow2Parts) {}

  get size(): number {
    return this.p.loaded.size;
  }

  /** Preallocated clusters of an encrypted image decrypt to noise: it does not start out zero. */
  get zeroInit(): boolean {
    return !(this.p.luks && this.p.loaded.l1.some((b) => b !== 0));
  }

  protected checkIo(): void {
    if (this.p.ioBlocked) throw this.p.ioBlocked;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkIo();
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const m = await this.p.map.lookup(pos, buf.length - done);
      const sub = buf.subarray(done, done + m.length);
      await this.readRun(sub, pos, m);
      done += m.length;
    }
  }

  private async readRun(sub: Uint8Array, pos: number, m: Mapping): Promise<void> {
    switch (m.type) {
      case 'unallocated':
      case 'unallocated-alloc':
        await this.p.backingReader.read(sub, pos);
        return;
      case 'zero-plain':
      case 'zero-alloc':
        sub.fill(0);
        return;
      case 'normal':
        this.p.data!.debugEvent?.('read_aio');
        if (this.p.luks) await this.readEncrypted(sub, m.hostOffset!, pos);
        else await this.p.data!.pread(sub, m.hostOffset!);
        return;
      case 'compressed': {
        const cs = this.p.map.geo.clusterSize;
        if (m.compressed!.exact > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new VdiskError('corrupt', 'QCOW2_DECOMPRESS', 'Input/output error', { path: this.p.path, format: 'qcow2', offset: pos, op: 'read' },
            new Error(`compressed cluster at host offset 0x${m.compressed!.exact.toString(16)} is beyond any file`));
        }
        const cluster = await this.decompressed(m.compressed!.hostOffset, m.compressed!.size, pos);
        const at = pos % cs;
        sub.set(cluster.subarray(at, at + sub.length));
        return;
      }
    }
  }

  /** Encrypted data is decrypted in whole 512-byte host sectors around the requested bytes. */
  private async readEncrypted(sub: Uint8Array, host: number, guest: number): Promise<void> {
    const start = host - (host % 512);
    const end = Math.ceil((host + sub.length) / 512) * 512;
    const tmp = start === host && end === host + sub.length ? sub : new Uint8Array(end - start);
    await this.p.data!.pread(tmp, start);
    this.p.luks!.decrypt(tmp, start, guest - (host - start));
    if (tmp !== sub) sub.set(tmp.subarray(host - start, host - start + sub.length));
  }

  private async decompressed(host: number, size: number, guest: number): Promise<Uint8Array> {
    if (this.lastCompressed?.host === host) return this.lastCompressed.data;
    const cs = this.p.map.geo.clusterSize;
    const src = new Uint8Array(Math.min(size, 2 * cs + 512));
    await this.p.proto.pread(src, host);
    const out = new Uint8Array(cs);
    if (!decompressCluster(this.p.loaded.header.compressionType, src, out)) {
      // qemu reports exactly this errno text; the context and code say which cluster failed
      throw new VdiskError('corrupt', 'QCOW2_DECOMPRESS', 'Input/output error',
        { path: this.p.path, format: 'qcow2', offset: guest, op: 'read' },
        new Error(`compressed cluster at host offset ${hx(host)} does not decompress`));
    }
    this.lastCompressed = { host, data: out };
    return out;
  }

  /** Forget the decompressed cluster cache (after a write changed the mapping). */
  protected invalidateCompressed(): void {
    this.lastCompressed = undefined;
  }

  /**
   * The run the last block-status query found, on read-only images (whose mapping cannot change).
   * A chain's status is asked top-down, each layer for as far as the layer above reaches, so a long
   * run of one layer is queried again for every shorter run below it; answering those from the
   * run already found keeps a flatten linear in the L2 entries instead of rescanning the run.
   */
  private lastRun: { start: number; end: number; m: Mapping } | undefined;

  /** The part of the last run found that starts at `offset`, if it holds `offset`. */
  private cachedRun(offset: number, length: number): Mapping | undefined {
    const r = this.lastRun;
    if (!r || offset < r.start || offset >= r.end) return undefined;
    const m: Mapping = { type: r.m.type, length: Math.min(length, r.end - offset) };
    if (r.m.hostOffset !== undefined) m.hostOffset = r.m.hostOffset + (offset - r.start);
    return m;
  }

  private async statusMapping(offset: number, length: number): Promise<Mapping> {
    const hit = this.cachedRun(offset, length);
    if (hit) return hit;
    const m = await this.p.map.lookup(offset, length);
    this.remember(offset, m);
    return m;
  }

  private remember(offset: number, m: Mapping): void {
    // a compressed run is one cluster, its descriptor not shiftable: nothing to gain
    if (this.p.readOnly && m.type !== 'compressed') this.lastRun = { start: offset, end: offset + m.length, m };
  }

  async blockStatus(offset: number, length: number): Promise<LayerStatus> {
    this.checkIo();
    const m = await this.statusMapping(offset, length);
    return this.statusOf(m, m.type === 'normal' ? await this.looksPreallocated() : false);
  }

  /** blockStatus without I/O: undefined until the first data run decided looksPreallocated, or when the L2 table is not cached. */
  blockStatusSync(offset: number, length: number): LayerStatus | undefined {
    this.checkIo();
    if (this.preallocatedKnown === undefined) return undefined;
    const hit = this.cachedRun(offset, length);
    if (hit) return this.statusOf(hit, this.preallocatedKnown);
    const m = this.p.map.lookupSync(offset, length);
    if (!m) return undefined;
    this.remember(offset, m);
    return this.statusOf(m, this.preallocatedKnown);
  }

  /** How blockStatusRunsSync reads an L2 table the cache does not hold (null: it cannot, without I/O). */
  private readTable: ((buf: Uint8Array, at: number) => void) | null | undefined;

  /**
   * blockStatusSync for many runs at once (FormatLayer.blockStatusRunsSync). Read-only images
   * only: a writable image's status waits for its queued writes (write.ts), which this cannot.
   */
  blockStatusRunsSync(offset: number, length: number, out: StatusRuns): number {
    this.checkIo();
    out.count = 0;
    out.hostFile = this.p.dataFilePath;
    if (!this.p.readOnly) return 0;
    const hit = this.cachedRun(offset, length);
    if (hit) out.push(hit.length, RUN_TYPE[hit.type], hit.hostOffset ?? -1, 0);
    const from = offset + (hit?.length ?? 0);
    // tables not cached are read in place where that is a plain blocking read of a host file (not
    // a filter's, whose rules count reads: those go through blockStatus and the cache, in order)
    if (this.readTable === undefined) {
      const proto = this.p.proto;
      this.readTable = proto.preadSync ? (buf: Uint8Array, at: number): void => proto.preadSync!(buf, at) : null;
    }
    if (from < offset + length) this.p.map.runsSync(from, offset + length - from, out, this.readTable ?? undefined);
    const pre = this.preallocatedKnown;
    // the first data run decides looksPreallocated, through blockStatus: the runs before it go now
    const firstData = pre === undefined ? out.flags.subarray(0, out.count).indexOf(RUN_TYPE['normal']) : -1;
    if (firstData >= 0) out.count = firstData;
    const n = out.count;
    if (n === 0) return 0;
    const { flags, hosts, lengths } = out;
    // as blockStatusSync leaves it: the per-call path's next query may start inside the last run
    const last: Mapping = { type: RUN_TYPES[flags[n - 1]!]!, length: lengths[n - 1]! };
    if (hosts[n - 1]! >= 0) last.hostOffset = hosts[n - 1]!;
    const plain = !this.p.luks;
    let end = offset;
    for (let i = 0; i < n; i++) {
      end += lengths[i]!;
      flags[i] = statusFlags(flags[i]!, plain, pre === true);
    }
    this.remember(end - last.length, last);
    return n;
  }

  private statusOf(m: Mapping, preallocated: boolean): LayerStatus {
    const plain = !this.p.luks;
    switch (m.type) {
      case 'unallocated':
        return { length: m.length, allocated: false, zero: false, data: false };
      case 'unallocated-alloc':
        // the subcluster has a place in an allocated cluster; map shows it when nothing is below
        return { length: m.length, allocated: false, zero: false, data: false, ...(plain && m.hostOffset !== undefined ? this.host(m.hostOffset) : {}) };
      case 'zero-plain':
        return { length: m.length, allocated: true, zero: true, data: false };
      case 'zero-alloc':
        return { length: m.length, allocated: true, zero: true, data: false, ...(plain ? this.host(m.hostOffset!) : {}) };
      case 'normal': {
        const st: LayerStatus = { length: m.length, allocated: true, zero: false, data: true };
        if (plain) {
          st.hostOffset = m.hostOffset!;
          if (this.p.dataFilePath !== undefined) st.hostFile = this.p.dataFilePath;
        }
        if (!preallocated) st.askHost = false;
        return st;
      }
      case 'compressed':
        return { length: m.length, allocated: true, zero: false, data: true, compressed: true };
    }
  }

  private preallocated: Promise<boolean> | undefined;
  private preallocatedKnown: boolean | undefined;

  /**
   * qemu asks the file below whether data clusters sit in holes only when the image looks
   * preallocated with metadata (qcow2_detect_metadata_preallocation): more clusters in use than
   * the file really holds, by a ninth and at least two. Computed once, on the first query.
   */
  private looksPreallocated(): Promise<boolean> {
    this.preallocated ??= (async () => {
      const h = this.p.loaded.header;
      const cs = this.p.loaded.clusterSize;
      const real = await this.p.proto.allocatedSize();
      if (real === undefined) return false;
      const realClusters = Math.floor(real / cs);
      const threshold = Math.max(Math.floor(realClusters * 10 / 9), realClusters + 2);
      const end = Math.ceil((await this.p.proto.size()) / cs);
      const rc = await Refcounts.load(this.p.proto, h.clusterBits, h.refcountOrder, this.p.loaded.refcountTableOffset, h.refcountTableClusters, this.p.path);
      const per = 2 ** rc.blockBits;
      let used = 0;
      for (let ti = 0; ti * per < end && used < threshold; ti++) {
        const off = rc.blockOffset(ti);
        if (off === 0) continue;
        const block = await rc.blocks.get(off);
        used += countUsed(block, h.refcountOrder, Math.min(per, end - ti * per), threshold - used);
      }
      return used >= threshold;
    })().catch(() => false).then((v) => {
      this.preallocatedKnown = v;
      return v;
    });
    return this.preallocated;
  }

  private host(off: number): { hostOffset: number; hostFile?: string } {
    return this.p.dataFilePath !== undefined ? { hostOffset: off, hostFile: this.p.dataFilePath } : { hostOffset: off };
  }

  async info(): Promise<LayerInfo> {
    const l = this.p.loaded;
    const h = l.header;
    const li: LayerInfo = { clusterSize: l.clusterSize, dirty: (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n };
    if (h.cryptMethod !== 0) li.encrypted = true;
    if (l.backing) {
      li.backingFile = l.backing.filename;
      if (l.backing.format !== undefined) li.backingFormat = l.backing.format;
    }
    li.snapshots = l.snapshots.map(snapshotInfo);
    li.formatSpecific = { type: 'qcow2', data: this.specific() };
    return li;
  }

  /** ImageInfoSpecificQCow2 in QAPI field order (the CLI reorders into qemu's hash order). */
  private specific(): JsonObject {
    const l = this.p.loaded;
    const h = l.header;
    const d: JsonObject = {};
    if (h.version === 2) {
      d['compat'] = '0.10';
    } else {
      d['compat'] = '1.1';
      if (l.ext.dataFile !== undefined) d['data-file'] = l.ext.dataFile;
      if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) d['data-file-raw'] = (h.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
      d['extended-l2'] = (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
      d['lazy-refcounts'] = (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n;
      d['corrupt'] = (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n;
    }
    d['refcount-bits'] = 2 ** h.refcountOrder;
    if ((h.cryptMethod === CRYPT_AES || h.cryptMethod === CRYPT_LUKS) && this.p.luks) d['encrypt'] = this.p.luks.info();
    if (l.bitmaps.length > 0) d['bitmaps'] = l.bitmaps.map(bitmapInfo);
    d['compression-type'] = h.compressionType === 0 ? 'zlib' : 'zstd';
    return d;
  }

  changeBacking(filename: string | null, format: string | null): Promise<void> {
    return changeBacking(this.p, filename, format);
  }
}

/**
 * statusOf's answer as RUN_* flags, for a RUN_TYPE code; the host offset stays where runsSync put
 * it and counts where RUN_HOST is set (plain images: encrypted data has no place to show).
 */
function statusFlags(code: number, plain: boolean, preallocated: boolean): number {
  switch (code) {
    case RUN_TYPE['unallocated']: return 0;
    case RUN_TYPE['unallocated-alloc']: return plain ? RUN_HOST : 0;
    case RUN_TYPE['zero-plain']: return RUN_ALLOCATED | RUN_ZERO;
    case RUN_TYPE['zero-alloc']: return RUN_ALLOCATED | RUN_ZERO | (plain ? RUN_HOST : 0);
    case RUN_TYPE['normal']: return RUN_ALLOCATED | RUN_DATA | (plain ? RUN_HOST : 0) | (preallocated ? 0 : RUN_NO_ASK_HOST);
    default: return RUN_ALLOCATED | RUN_DATA | RUN_COMPRESSED;
  }
}

/**
 * How many of the first `n` refcounts of `block` are not zero, counting no further than `limit`.
 * Refcounts of 8 bits and more are not zero when one of their bytes is not: a byte loop, which
 * the baseline compiler runs fast enough (this runs once per image, mostly before any optimizing).
 */
function countUsed(block: Uint8Array, order: number, n: number, limit: number): number {
  let used = 0;
  if (order < 3) {
    for (let i = 0; i < n && used < limit; i++) if (getRefcountEntry(block, i, order) !== 0) used++;
    return used;
  }
  const width = 1 << (order - 3);
  const end = n * width;
  for (let j = 0; j < end && used < limit; j += width) {
    let any = 0;
    for (let k = 0; k < width; k++) any |= block[j + k]!;
    if (any !== 0) used++;
  }
  return used;
}
