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
import { preserveContent } from './rebase-content.js';

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
