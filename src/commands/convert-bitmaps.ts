/**
 * qemu-img convert --bitmaps [--skip-broken-bitmaps]: the persistent bitmaps of the (single)
 * source's top layer are created in the target with the same name, granularity and enabled state
 * and filled with the source's bits, after the data is copied (the target stores them when it is
 * closed, after its own, in the source's order). The checks come at qemu-img's
 * points: source support and inconsistent bitmaps before the target is created, target support
 * once it is open.
 */
import { VdiskError } from '../block/errors.js';
import type { Image } from '../block/image.js';
import { addBitmap, mergeBitmap } from '../block/bitmaps.js';
import type { PersistentBitmap } from '../block/driver.js';

function fail(code: string, message: string, cause?: unknown): VdiskError {
  return new VdiskError('unsupported', code, message, {}, cause);
}

/** qemu lists an image's bitmaps newest first: the reverse of the directory order. */
function inQemuOrder(img: Image): PersistentBitmap[] {
  return [...(img.layer.bitmaps?.list() ?? [])].reverse();
}

export function checkSourceBitmaps(src: Image, skipBroken: boolean): void {
  if (!src.layer.bitmaps?.supported) throw fail('CONVERT_SOURCE_BITMAPS', 'Source lacks bitmap support');
  if (skipBroken) return;
  const broken = inQemuOrder(src).find((b) => b.inconsistent);
  if (broken) {
    throw fail('CONVERT_INCONSISTENT_BITMAP', `Cannot copy inconsistent bitmap '${broken.name}'\nTry --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' to delete it`);
  }
}

export function checkTargetBitmaps(target: Image): void {
  if (!target.layer.bitmaps?.supported) throw fail('CONVERT_TARGET_BITMAPS', `Format driver '${target.format}' does not support bitmaps`);
}

/** Bitmaps are created in qemu's list order; the first failure stops the copy. */
export async function copyBitmaps(src: Image, target: Image, skipBroken: boolean, warn: (msg: string) => void): Promise<void> {
  for (const b of inQemuOrder(src)) {
    if (skipBroken && b.inconsistent) {
      warn(`Skipping inconsistent bitmap '${b.name}'`);
      continue;
    }
    try {
      await addBitmap(target, b.name, b.granularity, b.enabled);
    } catch (e) {
      throw fail('CONVERT_BITMAP_CREATE', `Failed to create bitmap ${b.name}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    try {
      await mergeBitmap(target, b.name, src, b.name);
    } catch (e) {
      await target.layer.bitmaps?.remove(b.name).catch(() => undefined);
      throw fail('CONVERT_BITMAP_POPULATE', `Failed to populate bitmap ${b.name}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }
}
