/** qemu-img amend: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function amendCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'amend' is not implemented by vdisk yet");
  return 1;
}
