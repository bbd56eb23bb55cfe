/**
 * qemu-img rebase [--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache]
 *   [-p] [-u] -b backing_file [-F backing_fmt] filename
 *
 * Safe mode keeps the guest view: every cluster the overlay does not define and where the old and
 * the new backing differ is written into the overlay first; then only the header changes. The
 * name is stored as given and resolved against the overlay's directory for opening. As in
 * qemu-img 7.2 a new backing file needs -F (the data copy of safe mode still happens first).
 */
import type { Cli } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { findFormat } from '../formats/index.js';
import { openImage, resolveBackingName } from '../block/open.js';
import type { Image } from '../block/image.js';
import { VdiskError } from '../block/errors.js';
import { isQemuDriverName } from '../block/filenames.js';

/** Bytes examined per step: bounds memory whatever the image size. */
const REBASE_CHUNK = 1 << 20;
const DEFAULT_CLUSTER = 65536;

/** Reads `buf.length` bytes of `img` at `off`, zeros past its end or without an image. */
async function readClipped(img: Image | null, buf: Uint8Array, off: number): Promise<void> {
  buf.fill(0);
  if (!img || off >= img.size) return;
  await img.read(buf.subarray(0, Math.min(buf.length, img.size - off)), off);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** Writes into `top` every cluster it leaves to its backing where old and new backing differ. */
async function preserveContent(top: Image, next: Image | null): Promise<void> {
  const cs = top.layer.granularity ?? DEFAULT_CLUSTER;
  const step = Math.max(cs, Math.floor(REBASE_CHUNK / cs) * cs);
  const a = new Uint8Array(step);
  const b = new Uint8Array(step);
  for (let off = 0; off < top.size;) {
    const st = await top.layerStatus(off, Math.min(step, top.size - off));
    if (!st.allocated) await preserveRange(top, next, off, st.length, cs, a, b);
    off += st.length;
  }
}

/**
 * One unallocated range of `top` (at most one step long): both backings are read whole, compared
 * cluster by cluster, and each run of adjacent differing clusters is written with one request
 * (the same bytes, cluster-aligned, as one write per cluster would leave).
 */
async function preserveRange(top: Image, next: Image | null, off: number, length: number, cs: number, a: Uint8Array, b: Uint8Array): Promise<void> {
  const old = top.backing;
  const oa = a.subarray(0, length);
  const nb = b.subarray(0, length);
  await Promise.all([readClipped(old, oa, off), readClipped(next, nb, off)]);
  const oldEnd = old?.size ?? 0;
  let run: { start: number; end: number; zero: boolean } | undefined;
  const flush = async (): Promise<void> => {
    if (!run) return;
    // past the end of the old backing file (or without one) qemu-img writes zeros as zeros
    if (run.zero) await top.writeZeroes(run.start, run.end - run.start, false);
    else await top.write(oa.subarray(run.start - off, run.end - off), run.start);
    run = undefined;
  };
  for (let pos = off; pos < off + length;) {
    const n = Math.min(cs - (pos % cs), off + length - pos);
    if (!same(oa.subarray(pos - off, pos - off + n), nb.subarray(pos - off, pos - off + n))) {
      const zero = pos >= oldEnd;
      if (run && (run.zero !== zero || run.end !== pos)) await flush();
      if (run) run.end = pos + n;
      else run = { start: pos, end: pos + n, zero };
    } else {
      await flush();
    }
    pos += n;
  }
  await flush();
}

export default async function rebaseCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':hf:F:b:upt:T:qU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let quiet = false;
  let unsafe = false;
  let newName: string | undefined;
  let newFmt: string | undefined;
  for (const o of r.options) {
    const v = o.value ?? '';
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = v; break;
      case 'F': newFmt = v; break;
      case 'b': newName = v; break;
      case 'u': unsafe = true; break;
      case 'q': quiet = true; break;
      case 'U': args.forceShare = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(v); } catch (e) { return cli.fail(e); }
        break;
    }
  }
  void quiet;
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  if (!unsafe && newName === undefined) return cli.usageError('Must specify backing file (-b) or use unsafe mode (-u)');
  if (args.imageOpts && args.format !== undefined) {
    cli.error(IMAGE_OPTS_AND_FORMAT);
    return 1;
  }
  const target = newName !== undefined && newName !== '' ? newName : null;
  const name = r.operands[0]!;
  let top: Image;
  try {
    // as in qemu-img, -U reaches only the new backing file: the image rebased (and its chain) is not shared
    top = await openForCommand(name, { ...args, forceShare: false }, { readOnly: false, noBacking: unsafe });
  } catch (e) {
    return cli.fail(e);
  }
  // qemu opens the image before it looks the new backing format up
  if (newFmt !== undefined && !findFormat(newFmt) && !isQemuDriverName(newFmt)) {
    await top.close();
    cli.error(`Invalid format name: '${newFmt}'`);
    return 1;
  }
  let next: Image | null = null;
  try {
    if (!unsafe && target !== null) {
      const path = resolveBackingName(top.filename, target);
      try {
        next = await openImage(path, { readOnly: true, ...(newFmt !== undefined ? { format: newFmt } : {}), secrets: args.secrets, forceShare: args.forceShare });
      } catch (e) {
        const msg = e instanceof VdiskError ? e.message : e instanceof Error ? e.message : String(e);
        cli.error(`Could not open new backing file '${path}': ${msg}`);
        return 1;
      }
    }
    try {
      if (!unsafe) {
        await preserveContent(top, next);
        await top.flush();
      }
      if (!top.layer.changeBacking) {
        throw new VdiskError('unsupported', 'OP_UNSUPPORTED', 'Operation not supported', { path: name });
      }
      if (target !== null && newFmt === undefined) {
        throw new VdiskError('invalid-argument', 'BACKING_FORMAT_REQUIRED', 'backing format must be specified', { path: name });
      }
      await top.layer.changeBacking(target, target !== null ? newFmt ?? null : null);
    } catch (e) {
      const msg = e instanceof VdiskError ? e.message : e instanceof Error ? e.message : String(e);
      cli.error(`Could not change the backing file to '${newName ?? ''}': ${msg}`);
      return 1;
    }
    return 0;
  } finally {
    await next?.close();
    await top.close();
  }
}
