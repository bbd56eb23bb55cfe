/** Byte patches for building damaged images in tests (as qemu's iotests do with poke_file). */
import { closeSync, openSync, writeSync } from 'node:fs';

/** Overwrite `bytes` at `offset` of `file`, in place. */
export function poke(file: string, offset: number, bytes: readonly number[]): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Uint8Array.from(bytes), 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}
