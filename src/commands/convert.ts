/** qemu-img convert: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function convertCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'convert' is not implemented by vdisk yet");
  return 1;
}
