import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, writeSync, closeSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// quorum reads every child and returns the bytes enough of them agree on (vote-threshold); a tie
// goes to the version seen last for the first time; read-pattern=fifo takes the first child;
// options are checked in qemu's order with its messages
function files(d: string): void {
  const put = (name: string, text: string): void => {
    writeFileSync(join(d, name), '');
    truncateSync(join(d, name), 1 << 20);
    if (text === '') return;
    const fd = openSync(join(d, name), 'r+');
    writeSync(fd, Buffer.from(text), 0, text.length, 70000);
    closeSync(fd);
  };
  put('z.raw', '');
  put('a.raw', 'abc');
  put('a2.raw', 'abc');
  put('b.raw', 'def');
  writeFileSync(join(d, 'small.raw'), Buffer.alloc(4096));
}

const kids = (d: string, names: string[], prefix = 'file.'): string =>
  names.map((n, i) => `${prefix}children.${i}.driver=file,${prefix}children.${i}.filename=${d}/${n}`).join(',');

function convertBoth(opts: (d: string) => string): void {
  const a = scratch();
  const b = scratch();
  files(a);
  files(b);
  const clean = (r: RunResult, d: string): RunResult => ({ code: r.code, stdout: r.stdout, stderr: r.stderr.replaceAll(d, 'D') });
  const want = clean(qemuImg(['convert', '-O', 'raw', '--image-opts', opts(a), 'out.raw'], { cwd: a }), a);
  const got = clean(vdisk(['convert', '-O', 'raw', '--image-opts', opts(b), 'out.raw'], { cwd: b }), b);
  assert.deepEqual(got, want, opts('D'));
  if (want.code === 0) assert.ok(readFileSync(join(b, 'out.raw')).equals(readFileSync(join(a, 'out.raw'))), `output of ${opts('D')}`);
}

test('a quorum read returns the majority, or fails when no version reaches the threshold', () => {
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=2,${kids(d, ['a.raw', 'z.raw', 'a2.raw'])}`);
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=2,${kids(d, ['a.raw', 'z.raw'])}`);
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=2,${kids(d, ['a.raw', 'z.raw', 'b.raw'])}`);
});

test('a tied quorum vote goes to the version first seen last', () => {
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=1,${kids(d, ['z.raw', 'a.raw', 'b.raw'])}`);
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=1,${kids(d, ['a.raw', 'b.raw', 'b.raw', 'a2.raw'])}`);
});

test('read-pattern=fifo reads the first child only; quorum as the format reads the same', () => {
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.read-pattern=fifo,${kids(d, ['a.raw', 'b.raw'])}`);
  convertBoth((d) => `driver=quorum,vote-threshold=2,${kids(d, ['b.raw', 'z.raw', 'b.raw'], '')}`);
});

test('quorum options are refused with qemu-img\'s messages', () => {
  for (const o of [
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1`,
    (d: string) => `driver=raw,file.driver=quorum,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=x,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=2,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.blkverify=on,${kids(d, ['a.raw', 'b.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.read-pattern=lifo,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.bogus=1,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.rewrite-corrupted=on,${kids(d, ['a.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,${kids(d, ['a.raw', 'small.raw'])}`,
    (d: string) => `driver=raw,file.driver=quorum,file.vote-threshold=1,file.children.0.filename=${d}/a.raw`,
  ]) convertBoth(o);
});

test('blkverify mode stops at the first mismatch with qemu\'s message', () => {
  convertBoth((d) => `driver=raw,file.driver=quorum,file.vote-threshold=2,file.blkverify=on,${kids(d, ['a.raw', 'b.raw'])}`);
});
