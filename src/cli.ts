#!/usr/bin/env node
/**
 * The executable: turns on Node's module compile cache, then runs the CLI and sets the exit code
 * once output has drained. Everything else is imported after the cache is on (import() below), so
 * the modules a command loads are compiled once per Node version, not on every run.
 */
import { existsSync } from 'node:fs';
import { enableCompileCache } from 'node:module';
import { availableParallelism, homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/**
 * The cache lives in the user's own cache directory ($XDG_CACHE_HOME, else ~/.cache), never in a
 * shared or world-writable place (another user could plant code there) nor beside the installed
 * files (often read-only). Node keys the entries by its version and the source's hash, and if the
 * directory cannot be created or written it reports failure and runs on uncached: nothing is
 * thrown. Only a cache directory that already exists is used: vdisk never creates a home or a
 * ~/.cache of its own (iotest 051 runs with HOME/TMPDIR pointing at a path that must stay absent).
 * NODE_COMPILE_CACHE (a directory) and NODE_DISABLE_COMPILE_CACHE=1 still win.
 */
function compileCache(): void {
  if (process.env['NODE_COMPILE_CACHE'] || process.env['NODE_DISABLE_COMPILE_CACHE']) return;
  try {
    const xdg = process.env['XDG_CACHE_HOME'];
    const base = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
    if (existsSync(base)) enableCompileCache(join(base, 'vdisk', 'compile-cache'));
  } catch {
    // no home directory: run without the cache
  }
}

compileCache();
// compression (convert -c) runs on the libuv threadpool: one thread per core, at least libuv's 4;
// it is read when the pool first starts, which is after this line
process.env['UV_THREADPOOL_SIZE'] ??= String(Math.min(32, Math.max(4, availableParallelism())));

// stdout (and qemu-img's SIGPIPE behaviour on it) is set up by src/cli/context.ts, on first use

const { main } = await import('./cli/main.js');
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vdisk: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
