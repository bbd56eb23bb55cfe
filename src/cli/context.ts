/**
 * What a command sees of the process: its program name (for qemu-img's message prefix), the
 * output streams, and error helpers with qemu-img's wording. Commands return their exit code.
 */
import { fstatSync, writeSync } from 'node:fs';
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

/**
 * process.stdout with qemu-img's SIGPIPE behaviour: when its reader goes away (`qemu-img map ... |
 * head`) its writes fail, it finishes the command and exits with the command's status. Node
 * reports the failed write as a stream error, which would crash with a stack trace; the output is
 * dropped the same way instead.
 */
function stdoutStream(): NodeJS.WriteStream {
  const s = process.stdout;
  if (s.listenerCount('error') === 0) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') return;
      throw e;
    });
  }
  return s;
}

/**
 * stdout as a plain descriptor while it is a file, a pipe or a socket. Node writes to those
 * synchronously anyway (a file through writeSync, a pipe or socket in blocking mode), but creating
 * process.stdout loads the stream modules, a noticeable part of a short command's start-up. A
 * terminal, a device such as /dev/null, or a pipe left non-blocking by another process (a write
 * that would block: EAGAIN) goes through process.stdout from then on.
 */
class Stdout {
  private direct: boolean;
  /** The reader went away (EPIPE): the rest of the output is dropped, as qemu-img's writes fail. */
  private broken = false;

  constructor() {
    let direct = false;
    try {
      const st = fstatSync(1);
      direct = st.isFile() || st.isFIFO() || st.isSocket();
    } catch {
      // no descriptor 1: let process.stdout deal with it
    }
    this.direct = direct;
  }

  get isTTY(): boolean {
    return !this.direct && Boolean(stdoutStream().isTTY);
  }

  write(data: string | Uint8Array): boolean {
    if (!this.direct) return stdoutStream().write(data);
    if (this.broken) return true;
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let done = 0;
    try {
      while (done < b.length) done += writeSync(1, b, done, b.length - done);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') {
        this.broken = true;
        return true;
      }
      if (code !== 'EAGAIN') throw e;
      this.direct = false;
      return stdoutStream().write(b.subarray(done));
    }
    return true;
  }

  drain(): Promise<void> {
    if (this.direct) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const s = stdoutStream();
      if (!s.writableNeedDrain || s.destroyed) {
        resolve();
        return;
      }
      // a reader that went away fails the stream instead (its error is dropped): go on then too
      const done = (): void => {
        s.off('drain', done);
        s.off('error', done);
        s.off('close', done);
        resolve();
      };
      s.on('drain', done);
      s.on('error', done);
      s.on('close', done);
    });
  }
}

export function makeCli(prog: string): Cli {
  const stdout = new Stdout();
  const cli: Cli = {
    prog,
    isTTY: stdout.isTTY,
    out: (s) => {
      stdout.write(s);
    },
    outBytes: (b) => stdout.write(b),
    drain: () => stdout.drain(),
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
