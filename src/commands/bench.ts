/** qemu-img bench: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function benchCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'bench' is not implemented by vdisk yet");
  return 1;
}
