/**
 * qemu-img snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename
 */
import type { Cli } from '../cli/context.js';
import { describe, printPreface } from '../cli/context.js';
import { getopt } from '../cli/getopt.js';
import { IMAGE_OPTS_AND_FORMAT, newImageArgs, openForCommand } from '../cli/imageargs.js';
import { printHelp } from '../cli/common.js';
import { formatSnapshotTable } from '../cli/snapshots.js';
import type { Image } from '../block/image.js';

type Action = { op: 'list' } | { op: 'create' | 'apply' | 'delete'; name: string };

const VERB = { create: 'create', apply: 'apply', delete: 'delete' } as const;

async function perform(img: Image, action: Action, cli: Cli): Promise<number> {
  if (action.op === 'list') {
    const info = await img.info();
    const list = info.snapshots ?? [];
    if (list.length > 0) cli.out('Snapshot list:\n' + formatSnapshotTable(list));
    return 0;
  }
  const ops = img.layer.snapshots;
  try {
    if (action.op === 'create') {
      if (!ops) throw new Error('-95 (Operation not supported)');
      const now = Date.now();
      await ops.create(action.name, { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 });
    } else if (action.op === 'apply') {
      if (!ops) throw new Error('Block driver does not support snapshots');
      await ops.apply(action.name);
    } else {
      if (!ops) throw new Error('snapshot not found');
      await ops.delete(action.name, (text) => cli.errRaw(text));
    }
  } catch (e) {
    printPreface(cli, e);
    cli.error(`Could not ${VERB[action.op]} snapshot '${action.name}': ${describe(e)}`);
    return 1;
  }
  return 0;
}

export default async function snapshotCommand(argv: string[], cli: Cli): Promise<number> {
  const r = getopt(argv, ':la:c:d:f:hqU', [
    { name: 'help', arg: 'none', key: 'h' },
    { name: 'object', arg: 'required', key: 'object' },
    { name: 'image-opts', arg: 'none', key: 'image-opts' },
    { name: 'force-share', arg: 'none', key: 'U' },
    { name: 'format', arg: 'required', key: 'f' },
    { name: 'quiet', arg: 'none', key: 'q' },
    { name: 'list', arg: 'none', key: 'l' },
    { name: 'apply', arg: 'required', key: 'a' },
    { name: 'create', arg: 'required', key: 'c' },
    { name: 'delete', arg: 'required', key: 'd' },
  ]);
  if (!r.ok) return cli.usageError(r.message);
  const args = newImageArgs((t) => cli.errRaw(t));
  let action: Action | undefined;
  const set = (a: Action): boolean => {
    if (action) return false;
    action = a;
    return true;
  };
  for (const o of r.options) {
    switch (o.key) {
      case 'h': return printHelp(cli);
      case 'f': args.format = o.value!; break;
      case 'q': break;
      case 'U': args.forceShare = true; break;
      case 'image-opts': args.imageOpts = true; break;
      case 'object':
        try { args.secrets.add(o.value!); } catch (e) { return cli.fail(e); }
        break;
      case 'l': if (!set({ op: 'list' })) return cli.usageError("Cannot mix '-l', '-a', '-c', '-d'"); break;
      case 'a': if (!set({ op: 'apply', name: o.value! })) return cli.usageError("Cannot mix '-l', '-a', '-c', '-d'"); break;
      case 'c': if (!set({ op: 'create', name: o.value! })) return cli.usageError("Cannot mix '-l', '-a', '-c', '-d'"); break;
      case 'd': if (!set({ op: 'delete', name: o.value! })) return cli.usageError("Cannot mix '-l', '-a', '-c', '-d'"); break;
    }
  }
  if (r.operands.length !== 1) return cli.usageError('Expecting one image file name');
  if (args.imageOpts && args.format !== undefined) return cli.usageError(IMAGE_OPTS_AND_FORMAT);
  const act: Action | undefined = action;
  const readOnly = act === undefined || act.op === 'list';
  let img: Image;
  try {
    // qemu-img snapshot opens the backing chain too (a missing or locked backing file fails it)
    img = await openForCommand(r.operands[0]!, args, { readOnly });
  } catch (e) {
    return cli.fail(e);
  }
  let code = 1;
  try {
    code = act ? await perform(img, act, cli) : 0;
    return code;
  } finally {
    // after a failed operation, the failure is what qemu-img reports: flushing what is left at
    // close fails the same way again (iotest 217) and is not reported a second time
    await img.close().catch((e: unknown) => {
      if (code === 0) throw e;
    });
  }
}
