import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, scratch, vdiskAsQemuImg } from '../../helpers/oracle.ts';

// qemu-img's stdout is a stdio stream written in blocks when it is not a terminal, its stderr is
// not: with both in one pipe, an error comes out before the lines printed ahead of it (iotest 074)
function merged(tool: string, args: string[], cwd: string): string {
  const r = spawnSync('sh', ['-c', '"$0" "$@" 2>&1; echo "rc=$?"', tool, ...args], { cwd, encoding: 'utf8' });
  return r.stdout;
}

function setup(d: string): void {
  const buf = Buffer.alloc(1 << 20);
  buf.write('abc', 70000);
  writeFileSync(join(d, 'a.raw'), buf);
  writeFileSync(join(d, 'short.raw'), buf.subarray(0, 512 << 10));
  writeFileSync(join(d, 'status.conf'), '[inject-error]\nevent = "none"\niotype = "block-status"\nsector = "100"\n');
  writeFileSync(join(d, 'read.conf'), '[inject-error]\nevent = "read_aio"\nerrno = "5"\n');
}

test('map and compare errors come before their buffered stdout lines, as with qemu-img', () => {
  const a = scratch();
  const b = scratch();
  setup(a);
  setup(b);
  for (const args of [
    ['map', '-f', 'raw', 'blkdebug:status.conf:a.raw'],
    ['map', '--output=json', '-f', 'raw', 'blkdebug:status.conf:a.raw'],
    ['compare', '-f', 'raw', '-F', 'raw', 'a.raw', 'blkdebug:read.conf:short.raw'],
    ['compare', '-f', 'raw', '-F', 'raw', 'short.raw', 'a.raw'],
    ['compare', '-p', '-f', 'raw', '-F', 'raw', 'short.raw', 'a.raw'],
  ]) {
    assert.equal(merged(vdiskAsQemuImg(), args, b), merged(QEMU_IMG, args, a), args.join(' '));
  }
});
