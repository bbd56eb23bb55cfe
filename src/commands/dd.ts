/** qemu-img dd: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function ddCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'dd' is not implemented by vdisk yet");
  return 1;
}
