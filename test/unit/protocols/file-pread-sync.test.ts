/**
 * The file protocol's synchronous pread (metadata tables) reads what pread reads: the same
 * bytes inside the file, zeros past its end, and an I/O error as a VdiskError naming the byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileProtocol } from '../../../dist/protocols/file.js';
import { VdiskError } from '../../../dist/block/errors.js';
import { scratch } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-pread-sync-');

test('preadSync reads the bytes pread reads, and zeros past the end of the file', async () => {
  const path = join(dir, 'f.bin');
  const data = Buffer.alloc(10000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  writeFileSync(path, data);
  const p = await FileProtocol.open(path, { readOnly: true });
  try {
    for (const [off, n] of [[0, 4096], [4000, 4096], [9000, 4096], [20000, 512]] as const) {
      const a = new Uint8Array(n).fill(0xee);
      const b = new Uint8Array(n).fill(0x11);
      await p.pread(a, off);
      p.preadSync(b, off);
      assert.deepEqual(b, a, `at ${off}`);
    }
  } finally {
    await p.close();
  }
});

test('preadSync reports a failed read as an I/O VdiskError at the byte it failed at', async () => {
  // a closed descriptor: EBADF
  const path = join(dir, 'g.bin');
  writeFileSync(path, Buffer.alloc(100));
  const q = await FileProtocol.open(path, { readOnly: true });
  await q.close();
  assert.throws(() => q.preadSync(new Uint8Array(10), 50), (e: unknown) => e instanceof VdiskError && /at byte 50/.test(e.message));
});
