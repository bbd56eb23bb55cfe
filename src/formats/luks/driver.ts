/**
 * luks: a LUKS1 volume as an image (qemu's "luks" block driver; cryptsetup's LUKS1 format).
 *
 *   0 LUKS header | key material of 8 slots | payload offset: guest sector 0, 1, ... (encrypted)
 *
 * Guest sector n is stored at payload_offset + n * 512, encrypted with n as its IV. The virtual
 * size is what the file holds past the payload offset. The header code is shared with qcow2
 * (src/crypto/luks). Supported: read, write, create (all qemu's -o options, preallocation),
 * info, resize, measure, key-slot amend. Not supported: LUKS2, ciphers other than AES (qemu's
 * build also has serpent, twofish and cast5-128; vdisk refuses them by name), detached headers.
 */
import { VdiskError } from '../../block/errors.js';
import { removeFile } from '../../block/host-fs.js';
import type {
  CreateContext, CreateOptionSpec, FormatDriver, FormatLayer, LayerInfo, LayerStatus, MeasureInput, MeasureResult,
  OpenContext, TruncateOptions,
} from '../../block/driver.js';
import type { Preallocation, Protocol } from '../../protocols/types.js';
import { LuksVolume, headerSectors } from '../../crypto/luks/volume.js';
import type { LuksIo } from '../../crypto/luks/keyslot.js';
import { luksCreateParams, luksOptionSpecs, luksSecret } from '../../crypto/luks/options.js';
import { LUKS_SECTOR } from '../../crypto/luks/header.js';
import { amendLuksKeys, luksAmendSpecs } from '../../crypto/luks/amend.js';

const SECTOR = LUKS_SECTOR;

function protoIo(proto: Protocol): LuksIo {
  return { pread: (b, o) => proto.pread(b, o), pwrite: (b, o) => proto.pwrite(b, o) };
}

class LuksLayer implements FormatLayer {
  readonly granularity = SECTOR;
  /** Zeros on disk decrypt to noise: a new volume does not read as zeros. */
  readonly zeroInit = false;

  constructor(
    private readonly proto: Protocol,
    private readonly vol: LuksVolume,
    public size: number,
    private readonly path: string,
    private readonly ioBlocked: VdiskError | undefined,
    private readonly secrets: OpenContext['secrets'],
  ) {}

  private get base(): number {
    return this.vol.payloadOffsetBytes;
  }

  private checkIo(): void {
    if (this.ioBlocked) throw this.ioBlocked;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    this.checkIo();
    const start = offset - (offset % SECTOR);
    const end = Math.ceil((offset + buf.length) / SECTOR) * SECTOR;
    const whole = start === offset && end === offset + buf.length;
    const tmp = whole ? buf : new Uint8Array(end - start);
    await this.proto.pread(tmp, this.base + start);
    this.vol.decrypt(tmp, start / SECTOR);
    if (!whole) buf.set(tmp.subarray(offset - start, offset - start + buf.length));
  }

  async write(buf: Uint8Array, offset: number): Promise<void> {
    this.checkIo();
    const start = offset - (offset % SECTOR);
    const end = Math.ceil((offset + buf.length) / SECTOR) * SECTOR;
    const tmp = new Uint8Array(end - start);
    if (start !== offset || end !== offset + buf.length) await this.read(tmp, start);
    tmp.set(buf, offset - start);
    this.vol.encrypt(tmp, start / SECTOR);
    await this.proto.pwrite(tmp, this.base + start);
  }

  /** qemu's crypto driver has no block status of its own: everything is data, and unmappable. */
  async blockStatus(_offset: number, length: number): Promise<LayerStatus> {
    this.checkIo();
    return { length, allocated: true, data: true, zero: false };
  }

  async info(): Promise<LayerInfo> {
    return { encrypted: true, dirty: false, formatSpecific: { type: 'luks', data: this.vol.info(false) } };
  }

  async flush(): Promise<void> {
    await this.proto.flush();
  }

  async truncate(size: number, opts: TruncateOptions): Promise<void> {
    this.checkIo();
    await this.proto.truncate(this.base + size, opts.prealloc);
    this.size = size;
  }

  async amend(values: Readonly<Record<string, string>>, force: boolean): Promise<void> {
    await amendLuksKeys(this.vol, protoIo(this.proto), values, '', this.secrets, force, this.path);
  }

  async close(): Promise<void> {
    // the protocol is closed by the generic layer
  }
}

async function openLuks(proto: Protocol, ctx: OpenContext): Promise<FormatLayer> {
  const where = { path: ctx.filename, format: 'luks' };
  const vol = await LuksVolume.read(protoIo(proto), where);
  const fileSize = await proto.size();
  if (vol.payloadOffsetBytes > fileSize) {
    throw new VdiskError('invalid-format', 'LUKS_PAYLOAD_PAST_EOF', 'Could not refresh total sector count: Input/output error', where);
  }
  const size = Math.ceil((fileSize - vol.payloadOffsetBytes) / SECTOR) * SECTOR;
  let blocked: VdiskError | undefined;
  try {
    const secret = luksSecret(ctx.options, 'key-secret', ctx.secrets);
    if (!ctx.noIo) await vol.unlock(protoIo(proto), secret);
  } catch (e) {
    // like qemu, a metadata-only open (info) neither needs nor checks the key
    if (!ctx.noIo || !(e instanceof VdiskError)) throw e;
    blocked = e;
  }
  return new LuksLayer(proto, vol, size, ctx.filename, blocked, ctx.secrets);
}

const PREALLOC = new Set(['off', 'metadata', 'falloc', 'full']);

async function createLuks(ctx: CreateContext): Promise<void> {
  const o = ctx.options;
  const params = luksCreateParams(o, '');
  const prealloc = o['preallocation'] ?? 'off';
  if (!PREALLOC.has(prealloc)) throw new VdiskError('invalid-argument', 'BAD_PREALLOCATION', `invalid parameter value: ${prealloc}`);
  const proto = await ctx.createFile(ctx.filename);
  try {
    const secret = luksSecret(o, 'key-secret', ctx.secrets);
    const vol = await LuksVolume.create(protoIo(proto), params, secret, { path: ctx.filename, format: 'luks' });
    const size = Math.ceil(ctx.size / SECTOR) * SECTOR;
    // metadata preallocation means nothing to the file below: qemu passes it on as "off"
    const mode = (prealloc === 'metadata' ? 'off' : prealloc) as Preallocation;
    await proto.truncate(vol.payloadOffsetBytes + size, mode);
    await proto.flush();
  } catch (e) {
    // as qemu's luks create, a failed volume is not left behind (even where a file existed)
    await proto.close();
    await removeFile(ctx.filename).catch(() => undefined);
    throw e;
  }
  await proto.close();
}

/** A LUKS image holds its header area plus every guest byte (encryption makes nothing sparse). */
async function measureLuks(input: MeasureInput): Promise<MeasureResult> {
  const params = luksCreateParams(input.options, '');
  if (input.options['key-secret'] === undefined) throw new VdiskError('invalid-argument', 'LUKS_NO_KEY', "Parameter 'key-secret' is required for cipher");
  const total = headerSectors(params.spec) * SECTOR + Math.ceil(input.size / SECTOR) * SECTOR;
  return { required: total, fullyAllocated: total };
}

const createOptions: CreateOptionSpec[] = [
  { name: 'size', type: 'size', help: 'Virtual disk size' },
  ...luksOptionSpecs('', 'ID of the secret that provides the keyslot passphrase'),
];

export const luksDriver: FormatDriver = {
  name: 'luks',
  open: openLuks,
  createOptions,
  createSummary: ['size', 'key-secret', 'cipher-alg', 'cipher-mode', 'ivgen-alg', 'ivgen-hash-alg', 'hash-alg', 'iter-time', 'preallocation'],
  create: createLuks,
  measure: measureLuks,
  amendOptions: luksAmendSpecs(''),
};
