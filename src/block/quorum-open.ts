/**
 * Opening a quorum: its children (each a whole image with its own driver and options, opened like
 * any other image), then the voting protocol over them, under a raw format (`file.driver=quorum`)
 * or reported as the format itself (`driver=quorum`).
 */
import { Image, MutableBackingReader } from './image.js';
import type { OpenOptions } from './open.js';
import { QuorumProtocol, quorumOptions } from './quorum.js';
import { findFormat } from '../formats/index.js';
import { VdiskError } from './errors.js';

type OpenFn = (name: string, opts: OpenOptions) => Promise<Image>;

export async function openQuorum(name: string, opts: OpenOptions, open: OpenFn): Promise<Image> {
  const asFormat = opts.format === 'quorum';
  const prefix = asFormat ? '' : 'file.';
  const all = opts.options ?? {};
  const { settings, children: specs } = quorumOptions(all, prefix);
  const readOnly = opts.readOnly ?? true;
  const children: Image[] = [];
  let proto: QuorumProtocol;
  try {
    for (const c of specs) {
      children.push(await open(c.filename ?? '', {
        readOnly,
        ...(c.driver !== undefined ? { format: c.driver } : {}),
        options: c.options,
        ...(opts.secrets ? { secrets: opts.secrets } : {}),
        ...(opts.cache !== undefined ? { cache: opts.cache } : {}),
      }));
    }
    proto = await QuorumProtocol.open(children, settings, name, readOnly);
  } catch (e) {
    for (const c of children) await c.close().catch(() => undefined);
    throw e;
  }
  // the format above the quorum sees only its own options
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(all)) if (!asFormat && !k.startsWith('file.')) options[k] = v;
  const entry = asFormat ? findFormat('raw') : findFormat(opts.format ?? 'raw');
  if (!entry) {
    await proto.close();
    throw new VdiskError('invalid-argument', 'UNKNOWN_DRIVER', `Unknown driver '${opts.format}'`, { format: opts.format ?? '' });
  }
  try {
    const driver = await entry.load();
    const backing = new MutableBackingReader();
    const layer = await driver.open(proto, {
      filename: name, readOnly, options, secrets: opts.secrets ?? { get: () => undefined }, backing,
      openFile: () => Promise.reject(new VdiskError('unsupported', 'QUORUM_NO_DIR', 'Cannot generate a base directory for quorum nodes')),
      ...(opts.noIo ? { noIo: true } : {}),
    });
    return new Image(layer, proto, {
      filename: name, format: asFormat ? 'quorum' : entry.name, probed: false, readOnly,
      ...(opts.displayName !== undefined ? { displayName: opts.displayName } : {}),
    }, backing);
  } catch (e) {
    await proto.close();
    throw e;
  }
}
