#!/usr/bin/env node
/** The executable: runs the CLI and sets the exit code once output has drained. */
import { availableParallelism } from 'node:os';
import { main } from './cli/main.js';

// compression (convert -c) runs on the libuv threadpool: one thread per core, at least libuv's 4;
// it is read when the pool first starts, which is after this line
process.env['UV_THREADPOOL_SIZE'] ??= String(Math.min(32, Math.max(4, availableParallelism())));

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vdisk: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
