/** Small pieces several commands share. */
import type { Cli } from './context.js';
import { helpText } from './help.js';

export type OutputFormat = 'human' | 'json';

/** `--output` values qemu-img accepts. */
export function parseOutputFormat(s: string): OutputFormat | undefined {
  return s === 'human' || s === 'json' ? s : undefined;
}

/** `-h` inside a command: qemu-img 7.2 prints the full help and exits 0. */
export function printHelp(cli: Cli): number {
  cli.out(helpText(cli.prog));
  return 0;
}
