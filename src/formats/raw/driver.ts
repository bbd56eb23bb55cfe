/**
 * raw: the guest's bytes are the file's bytes (optionally a window: the `offset` and `size` driver
 * options, as qemu's raw driver has). Holes in the host file are reported as zero, unallocated-in-
 * host but present data, like qemu's file driver does through SEEK_DATA/SEEK_HOLE.
 *
 * No header, so nothing to probe: raw is the fallback with score 1.
 */
import { VdiskError } from '../../block/errors.js';
import type {
  CreateContext, FormatDriver, FormatLayer, LayerInfo, LayerStatus, OpenContext, TruncateOptions,
} from '../../block/driver.js';
import type { Preallocation, Protocol } from '../../protocols/types.js';

/** qemu's file driver writes the first block on create so later allocation is cheaper to find. */
const FIRST_BLOCK_BYTES = 4096;
/** What qemu zeroes at the start of a "created" file that already existed (an NBD export). */
const EXISTING_HEAD_BYTES = 512;
/** The sector size O_DIRECT requests are aligned to. */
const DIRECT_IO_ALIGNMENT = 512;

class RawLayer implements FormatLayer {
  readonly granularity = 512;

  constructor(
    private readonly proto: Protocol,
    private readonly base: number,
    public size: number,
    private readonly fixedSize: boolean,
    private readonly directIo = false,
  ) {}

  /** A new raw image reads as zeros only where its protocol starts out zeroed (not an NBD export). */
  get zeroInit(): boolean {
    return this.proto.zeroInit !== false;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.proto.debugEvent?.('read_aio');
    await this.proto.pread(buf, this.base + offset);
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.proto.debugEvent?.('write_aio');
    await this.proto.pwrite(buf, this.base + offset);
  }

  async writeZeroes(offset: number, length: number, mayUnmap: boolean): Promise<void> {
    if (this.proto.writeZeroes) await this.proto.writeZeroes(this.base + offset, length, mayUnmap);
    else await this.proto.pwrite(new Uint8Array(length), this.base + offset);
  }

  async discard(offset: number, length: number): Promise<void> {
    await this.proto.discard?.(this.base + offset, length);
  }

  async blockStatus(offset: number, length: number): Promise<LayerStatus> {
    const ext = this.proto.extent
      ? await this.proto.extent(this.base + offset, length)
      : { length, data: true };
    let n = Math.min(ext.length, length);
    // with O_DIRECT (cache.direct=on) qemu's file driver never reports partial sectors: a data run
    // ending at an unaligned EOF covers the whole last sector
    if (this.directIo && ext.data && (offset + n) % DIRECT_IO_ALIGNMENT !== 0) {
      n = Math.min(length, Math.ceil((offset + n) / DIRECT_IO_ALIGNMENT) * DIRECT_IO_ALIGNMENT - offset);
    }
    const zero = ext.zero ?? !ext.data;
    // qemu counts a protocol run as allocated when it is data or reads as zeros: an NBD hole that
    // is not known to be zero (or a dirty x-dirty-bitmap run) is unallocated, contents unknown
    if (!ext.data && !zero) return { length: n, allocated: false, data: false, zero: false, unknownContents: true };
    const st: LayerStatus = { length: n, allocated: true, data: ext.data, zero };
    if (this.proto.hostOffsets !== false) st.hostOffset = this.base + offset;
    return st;
  }

  async info(): Promise<LayerInfo> {
    return {};
  }

  async flush(): Promise<void> {
    await this.proto.flush();
  }

  async truncate(size: number, opts: TruncateOptions): Promise<void> {
    if (this.fixedSize || this.base !== 0) {
      throw new VdiskError('unsupported', 'RAW_WINDOW_RESIZE', 'Cannot resize a raw image with offset or size options', { format: 'raw' });
    }
    if (opts.prealloc === 'metadata') {
      throw new VdiskError('unsupported', 'RAW_PREALLOC', 'Unsupported preallocation mode: metadata', { format: 'raw' });
    }
    await this.proto.truncate(size, opts.prealloc, true);
    this.size = size;
  }

  async close(): Promise<void> {
    // the protocol is closed by the generic layer
  }
}

function parseWindowOption(ctx: OpenContext, key: string): number | undefined {
  const v = ctx.options[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new VdiskError('invalid-argument', 'BAD_OPTION', `Parameter '${key}' expects a non-negative number below 2^64`, { path: ctx.filename });
  }
  return n;
}

export const rawDriver: FormatDriver = {
  name: 'raw',
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
  createSummary: ['size'],

  async open(proto: Protocol, ctx: OpenContext): Promise<FormatLayer> {
    if (ctx.options['snapshot.name'] !== undefined || ctx.options['snapshot.id'] !== undefined) {
      throw new VdiskError('unsupported', 'SNAPSHOT_LOAD',
        "Failed to load snapshot: Block format 'raw' used by device '' does not support temporarily loading internal snapshots",
        { path: ctx.filename, format: 'raw' });
    }
    const fileSize = await proto.size();
    const base = parseWindowOption(ctx, 'offset') ?? 0;
    const win = parseWindowOption(ctx, 'size');
    if (base > fileSize) {
      throw new VdiskError('invalid-argument', 'RAW_OFFSET', 'The sum of offset (' + base + ') and size (0) has to be smaller or equal to the  actual size of the containing file (' + fileSize + ')', { path: ctx.filename });
    }
    // the file driver counts whole sectors: a 65537-byte file is a 66048-byte disk (the tail reads zeros)
    const size = win ?? Math.ceil((fileSize - base) / 512) * 512;
    const direct = ctx.options['cache.direct'] === 'on' || ctx.options['file.cache.direct'] === 'on';
    return new RawLayer(proto, base, size, win !== undefined, direct);
  },

  async create(ctx: CreateContext): Promise<void> {
    const prealloc = ctx.options['preallocation'] ?? 'off';
    if (prealloc !== 'off' && prealloc !== 'falloc' && prealloc !== 'full') {
      throw new VdiskError('invalid-argument', 'BAD_PREALLOCATION', `invalid parameter value: ${prealloc}`, { path: ctx.filename });
    }
    // the file driver works in whole sectors
    const size = Math.ceil(ctx.size / 512) * 512;
    const proto = await ctx.createFile(ctx.filename);
    try {
      await proto.truncate(size, prealloc as Preallocation);
      if (prealloc === 'off' && size > 0) {
        // an existing export (nbd) is not created: qemu only wipes its first sector
        const head = proto.zeroInit === false ? EXISTING_HEAD_BYTES : FIRST_BLOCK_BYTES;
        await proto.pwrite(new Uint8Array(Math.min(head, size)), 0);
      }
    } finally {
      await proto.close();
    }
  },
};
