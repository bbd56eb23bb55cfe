/** qemu-img create: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function createCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'create' is not implemented by vdisk yet");
  return 1;
}
