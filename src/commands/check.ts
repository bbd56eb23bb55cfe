/** qemu-img check: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function checkCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'check' is not implemented by vdisk yet");
  return 1;
}
