/**
 * Host file calls as promises over node:fs's callback API, for the file protocol and the few
 * stat/realpath calls made while opening an image. Not node:fs/promises: loading it loads
 * readline and the REPL history (for FileHandle.readLines), a noticeable part of the start-up of
 * `info` or `check`. The errors are node:fs's own (code, errno, syscall, path), the same as
 * fs/promises rejects with, so fromSystemError() maps them the same way.
 */
import { close, fdatasync, fstat, ftruncate, open, read, realpath, rm, stat, write, type Stats } from 'node:fs';

type Callback<T> = (err: NodeJS.ErrnoException | null, value: T) => void;

function call<T>(run: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    run((err, value) => (err ? reject(err) : resolve(value)));
  });
}

export function openFd(path: string, flags: number, mode: number): Promise<number> {
  return call((cb) => open(path, flags, mode, cb));
}

/** One read(2) at `position` (null: at the file's own position): the bytes read, 0 at the end of the file. */
export function readFd(fd: number, buf: Uint8Array, offset: number, length: number, position: number | null): Promise<number> {
  return call((cb) => read(fd, buf, offset, length, position, cb));
}

/** One write(2) at `position`: the bytes written, which may be fewer than asked. */
export function writeFd(fd: number, buf: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return call((cb) => write(fd, buf, offset, length, position, cb));
}

export function fstatFd(fd: number): Promise<Stats> {
  return call((cb) => fstat(fd, cb));
}

export function ftruncateFd(fd: number, length: number): Promise<void> {
  return call<void>((cb) => ftruncate(fd, length, (err) => cb(err, undefined)));
}

export function fdatasyncFd(fd: number): Promise<void> {
  return call<void>((cb) => fdatasync(fd, (err) => cb(err, undefined)));
}

export function closeFd(fd: number): Promise<void> {
  return call<void>((cb) => close(fd, (err) => cb(err, undefined)));
}

export function statPath(path: string): Promise<Stats> {
  return call((cb) => stat(path, cb));
}

export function realpathOf(path: string): Promise<string> {
  return call((cb) => realpath(path, cb));
}

/** Remove a file; a missing one is not an error. */
export function removeFile(path: string): Promise<void> {
  return call<void>((cb) => rm(path, { force: true }, (err) => cb(err, undefined)));
}
