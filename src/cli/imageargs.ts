/**
 * The image-opening options most commands share (-f, --image-opts, --object, -U) and opening an
 * image with qemu-img's error wording ("Could not open 'x': ...").
 */
import { VdiskError } from '../block/errors.js';
import { openImage, type OpenOptions } from '../block/open.js';
import type { Image } from '../block/image.js';
import { parseImageSpec, Secrets } from './optstr.js';

export interface ImageArgs {
  format?: string;
  imageOpts: boolean;
  secrets: Secrets;
  forceShare: boolean;
  /** Where open-time warnings go (stderr, unprefixed, as qemu-img prints them). */
  warn?: (text: string) => void;
}

export function newImageArgs(warn?: (text: string) => void): ImageArgs {
  return { imageOpts: false, secrets: new Secrets(), forceShare: false, ...(warn ? { warn } : {}) };
}

/** qemu-img's message when -f and --image-opts are combined. */
export const IMAGE_OPTS_AND_FORMAT = '--image-opts and --format are mutually exclusive';

export async function openForCommand(
  name: string,
  args: ImageArgs,
  extra: Omit<OpenOptions, 'format' | 'secrets'> & { format?: string } = {},
): Promise<Image> {
  let spec;
  try {
    spec = parseImageSpec(name, args.imageOpts);
  } catch (e) {
    throw wrapOpen(name, e);
  }
  const format = extra.format ?? spec.format ?? args.format;
  const fs = spec.options['force-share'];
  if (args.forceShare && args.imageOpts && fs !== undefined && fs !== 'on') {
    throw new VdiskError('invalid-argument', 'FORCE_SHARE_CONFLICT', '--force-share/-U conflicts with image options');
  }
  const forceShare = args.forceShare || fs === 'on' || fs === 'true' || extra.forceShare === true;
  try {
    return await openImage(spec.filename, {
      ...extra,
      ...(forceShare ? { forceShare: true } : {}),
      ...(format !== undefined ? { format } : {}),
      options: { ...spec.options, ...(extra.options ?? {}) },
      secrets: args.secrets,
      ...(args.warn ? { warn: args.warn } : {}),
      ...(spec.displayName !== undefined ? { displayName: spec.displayName } : {}),
      ...(spec.fileDisplayName !== undefined ? { fileDisplayName: spec.fileDisplayName } : {}),
    });
  } catch (e) {
    // with --image-opts or json: qemu names the image by the whole string it was given
    throw wrapOpen(args.imageOpts || name.startsWith('json:') ? name : spec.openName ?? spec.filename, e);
  }
}

/** "Could not open 'NAME': <cause>", keeping the cause's kind. */
export function wrapOpen(name: string, e: unknown): VdiskError {
  // qemu loads -l snapshots after opening, so their errors carry no "Could not open" prefix
  if (e instanceof VdiskError && e.code === 'SNAPSHOT_LOAD') return e;
  if (e instanceof VdiskError && e.code === 'QCOW2_NO_SNAPSHOT') {
    return new VdiskError(e.kind, 'SNAPSHOT_LOAD', `Failed to load snapshot: ${e.message}`, e.context, e);
  }
  if (e instanceof VdiskError) {
    return new VdiskError(e.kind, e.code, `Could not open '${name}': ${e.message}`, { ...e.context, path: e.context.path ?? name }, e);
  }
  return new VdiskError('io', 'OPEN_FAILED', `Could not open '${name}': ${e instanceof Error ? e.message : String(e)}`, { path: name }, e);
}
