/** qemu-img measure: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function measureCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'measure' is not implemented by vdisk yet");
  return 1;
}
