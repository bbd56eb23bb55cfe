/** qemu-img compare: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function compareCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'compare' is not implemented by vdisk yet");
  return 1;
}
