/** qemu-img bitmap: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function bitmapCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'bitmap' is not implemented by vdisk yet");
  return 1;
}
