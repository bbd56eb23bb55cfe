/**
 * What a command sees of the process: its program name (for qemu-img's message prefix), the
 * output streams, and error helpers with qemu-img's wording. Commands return their exit code.
 */
import { VdiskError } from '../block/errors.js';

export interface Cli {
  /** Basename of the name the program was invoked as: "qemu-img" through the symlink, else "vdisk". */
  readonly prog: string;
  out(s: string): void;
  /** Raw stderr text. */
  errRaw(s: string): void;
  /** `prog: msg` on stderr. */
  error(msg: string): void;
  /** `prog: msg` + the "Try ... --help" hint; returns exit code 1 (qemu-img's error_exit). */
  usageError(msg: string): number;
  /** Print a caught error as qemu-img would and return 1. */
  fail(e: unknown, prefix?: string): number;
  /** stdout is a terminal (progress bars, warnings). */
  readonly isTTY: boolean;
  /**
   * Bytes to stdout; the caller leaves them unchanged afterwards (a pipe may still hold them).
   * false: stdout holds more than it wants, wait for `drain` before writing more.
   */
  outBytes?(b: Uint8Array): boolean;
  /** Resolves once stdout has written what it held (at once when it holds nothing or failed). */
  drain?(): Promise<void>;
}

export type CommandFn = (args: string[], cli: Cli) => Promise<number>;

export function makeCli(prog: string): Cli {
  const cli: Cli = {
    prog,
    isTTY: Boolean(process.stdout.isTTY),
    out: (s) => {
      process.stdout.write(s);
    },
    outBytes: (b) => process.stdout.write(b),
    drain: () => new Promise<void>((resolve) => {
      const s = process.stdout;
      if (!s.writableNeedDrain || s.destroyed) {
        resolve();
        return;
      }
      // a reader that went away fails the stream instead (cli.ts drops that error): go on then too
      const done = (): void => {
        s.off('drain', done);
        s.off('error', done);
        s.off('close', done);
        resolve();
      };
      s.on('drain', done);
      s.on('error', done);
      s.on('close', done);
    }),
    errRaw: (s) => {
      process.stderr.write(s);
    },
    error: (msg) => {
      process.stderr.write(`${prog}: ${msg}\n`);
    },
    usageError: (msg) => {
      process.stderr.write(`${prog}: ${msg}\nTry '${prog} --help' for more information\n`);
      return 1;
    },
    fail: (e, prefix) => {
      printPreface(cli, e);
      const msg = describe(e);
      cli.error(prefix ? `${prefix}${msg}` : msg);
      if (process.env['VDISK_DEBUG'] && e instanceof Error) process.stderr.write(`${e.stack}\n`);
      return 1;
    },
  };
  return cli;
}

/** The lines qemu prints before the failure's own message (see ErrorContext.preface). */
export function printPreface(cli: Cli, e: unknown): void {
  if (!(e instanceof VdiskError)) return;
  for (const l of e.context.preface ?? []) {
    if (l.prefixed) cli.error(l.text);
    else cli.errRaw(`${l.text}\n`);
  }
}

export function describe(e: unknown): string {
  if (e instanceof VdiskError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
