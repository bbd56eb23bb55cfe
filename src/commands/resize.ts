/** qemu-img resize: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function resizeCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'resize' is not implemented by vdisk yet");
  return 1;
}
