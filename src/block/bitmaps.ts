/**
 * Persistent dirty bitmap operations of the block layer (qemu's block-dirty-bitmap-* rules): names
 * must exist (or not, for add), inconsistent bitmaps are refused except for removal, merged
 * bitmaps cover the same guest size. Formats store bitmaps through `FormatLayer.bitmaps` and only
 * add their own limits. Errors carry qemu's cause text; commands add "Operation ... failed: ".
 */
import type { BitmapOps, PersistentBitmap } from './driver.js';
import { VdiskError } from './errors.js';
import type { Image } from './image.js';

/** Smallest granularity qemu's block layer accepts. */
export const MIN_BITMAP_GRANULARITY = 512;

const nodeNames = new WeakMap<Image, string>();

/**
 * The node name qemu gives an image opened without one: "#block" + a counter (1 for the first
 * node of qemu-img's chain) + two random digits, so it differs from run to run (iotests filter it).
 */
export function nodeName(img: Image): string {
  let n = nodeNames.get(img);
  if (!n) {
    // node:crypto loads only here: its load is tens of milliseconds of every command's start-up
    n = `#block1${String(process.getBuiltinModule('node:crypto').randomInt(100)).padStart(2, '0')}`;
    nodeNames.set(img, n);
  }
  return n;
}

function err(kind: 'not-found' | 'invalid-argument' | 'unsupported' | 'busy', code: string, message: string, cause?: unknown): VdiskError {
  return new VdiskError(kind, code, message, {}, cause);
}

/** A bitmap of the image by name, or qemu's "not found". */
export function findBitmap(img: Image, name: string): PersistentBitmap {
  const b = img.layer.bitmaps?.list().find((x) => x.name === name);
  if (!b) throw err('not-found', 'BITMAP_NOT_FOUND', `Dirty bitmap '${name}' not found`);
  return b;
}

function usable(b: PersistentBitmap): void {
  if (b.inconsistent) {
    throw err('busy', 'BITMAP_INCONSISTENT', `Bitmap '${b.name}' is inconsistent and cannot be used\nTry block-dirty-bitmap-remove to delete this bitmap from disk`);
  }
}

function ops(img: Image): BitmapOps {
  // only reached after findBitmap succeeded, so the layer has bitmaps
  return img.layer.bitmaps!;
}

/** The checks of addBitmap, in qemu's order, without adding; returns the granularity to use. */
export function checkAddBitmap(img: Image, name: string, granularity: number | undefined): number {
  if (granularity !== undefined && (granularity < MIN_BITMAP_GRANULARITY || (granularity & (granularity - 1)) !== 0)) {
    throw err('invalid-argument', 'BITMAP_GRANULARITY', `Granularity must be power of 2 and at least ${MIN_BITMAP_GRANULARITY}`);
  }
  const o = img.layer.bitmaps;
  if (!o) throw err('unsupported', 'BITMAPS_UNSUPPORTED', `Can't store persistent bitmaps to ${nodeName(img)}: Operation not supported`);
  const g = granularity ?? o.defaultGranularity;
  try {
    o.checkNew(name, g);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw err('unsupported', 'BITMAP_CANNOT_STORE', `Can't make bitmap '${name}' persistent in '${nodeName(img)}': ${msg}`, e);
  }
  if (o.list().some((b) => b.name === name)) throw err('invalid-argument', 'BITMAP_EXISTS', `Bitmap already exists: ${name}`);
  return g;
}

/** Add an empty persistent bitmap; without `granularity`, the format's default. */
export async function addBitmap(img: Image, name: string, granularity: number | undefined, enabled: boolean): Promise<void> {
  const g = checkAddBitmap(img, name, granularity);
  await img.layer.bitmaps!.add(name, g, enabled);
}

export async function removeBitmap(img: Image, name: string): Promise<void> {
  findBitmap(img, name);
  await ops(img).remove(name);
}

export async function clearBitmap(img: Image, name: string): Promise<void> {
  usable(findBitmap(img, name));
  await ops(img).clear(name);
}

export async function enableBitmap(img: Image, name: string, enabled: boolean): Promise<void> {
  usable(findBitmap(img, name));
  await ops(img).setEnabled(name, enabled);
}

/** Merge bitmap `srcName` of `src` (which may be `img`) into bitmap `name` of `img`. */
export async function mergeBitmap(img: Image, name: string, src: Image, srcName: string): Promise<void> {
  const dst = findBitmap(img, name);
  const from = findBitmap(src, srcName);
  usable(dst);
  usable(from);
  if (img.size !== src.size) {
    throw err('invalid-argument', 'BITMAP_SIZE_MISMATCH', `Bitmaps are of different sizes (destination size is ${img.size}, source size is ${src.size}) and can't be merged`);
  }
  const bits = await ops(src).read(srcName);
  await ops(img).merge(name, bits);
}
