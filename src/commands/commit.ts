/** qemu-img commit: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function commitCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'commit' is not implemented by vdisk yet");
  return 1;
}
