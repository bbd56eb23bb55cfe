/**
 * The command table: the one source of truth for command names, their usage lines (as qemu-img
 * 7.2's --help prints them) and where each is implemented (loaded lazily, so `vdisk info` never
 * loads the convert engine).
 */
import type { CommandFn } from './context.js';

export interface CommandEntry {
  name: string;
  /** Usage line after the command name, as in `qemu-img --help`. */
  usage: string;
  load: () => Promise<CommandFn>;
  /** vdisk extension (not in qemu-img 7.2): listed separately in help. */
  extension?: boolean;
}

export const COMMANDS: readonly CommandEntry[] = [
  { name: 'amend', usage: '[--object objectdef] [--image-opts] [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename', load: async () => (await import('../commands/amend.js')).default },
  { name: 'bench', usage: '[-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename', load: async () => (await import('../commands/bench.js')).default },
  { name: 'bitmap', usage: '(--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | -f fmt] filename bitmap', load: async () => (await import('../commands/bitmap.js')).default },
  { name: 'check', usage: '[--object objectdef] [--image-opts] [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename', load: async () => (await import('../commands/check.js')).default },
  { name: 'commit', usage: '[--object objectdef] [--image-opts] [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename', load: async () => (await import('../commands/commit.js')).default },
  { name: 'compare', usage: '[--object objectdef] [--image-opts] [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2', load: async () => (await import('../commands/compare.js')).default },
  { name: 'convert', usage: '[--object objectdef] [--image-opts] [--target-image-opts] [--target-is-zero] [--bitmaps] [-U] [-C] [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-r rate_limit] [-m num_coroutines] [-W] [--salvage] filename [filename2 [...]] output_filename', load: async () => (await import('../commands/convert.js')).default },
  { name: 'create', usage: '[--object objectdef] [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]', load: async () => (await import('../commands/create.js')).default },
  { name: 'dd', usage: '[--image-opts] [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output', load: async () => (await import('../commands/dd.js')).default },
  { name: 'info', usage: '[--object objectdef] [--image-opts] [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename', load: async () => (await import('../commands/info.js')).default },
  { name: 'map', usage: '[--object objectdef] [--image-opts] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename', load: async () => (await import('../commands/map.js')).default },
  { name: 'measure', usage: '[--output=ofmt] [-O output_fmt] [-o options] [--size N | [--object objectdef] [--image-opts] [-f fmt] [-l snapshot_param] filename]', load: async () => (await import('../commands/measure.js')).default },
  { name: 'snapshot', usage: '[--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename', load: async () => (await import('../commands/snapshot.js')).default },
  { name: 'rebase', usage: '[--object objectdef] [--image-opts] [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename', load: async () => (await import('../commands/rebase.js')).default },
  { name: 'resize', usage: '[--object objectdef] [--image-opts] [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size', load: async () => (await import('../commands/resize.js')).default },
];

export function findCommand(name: string): CommandEntry | undefined {
  return COMMANDS.find((c) => c.name === name);
}
