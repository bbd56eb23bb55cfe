/** qemu-img snapshot: not implemented yet (see the README's compatibility table). */
import type { Cli } from '../cli/context.js';

export default async function snapshotCommand(_argv: string[], cli: Cli): Promise<number> {
  cli.error("'snapshot' is not implemented by vdisk yet");
  return 1;
}
