/** qemu-img rebase: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function rebaseCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'rebase' is not implemented by vdisk yet");
  return 1;
}
