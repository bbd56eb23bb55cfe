/** qemu-img map: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function mapCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'map' is not implemented by vdisk yet");
  return 1;
}
