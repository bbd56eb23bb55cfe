import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyImage, COPY_DEFAULT_IN_FLIGHT } from '../../../dist/block/copy.js';
import { createImage } from '../../../dist/block/create.js';
import { openImage } from '../../../dist/block/open.js';
import { MAX_IN_FLIGHT } from '../../../dist/nbd/constants.js';
import { scratch } from '../../helpers/oracle.ts';
import { fakeServer, negotiate, structuredHeader, transmit } from '../nbd/fake-server.ts';

/**
 * Copy a 64 MiB export whose server holds every read until no new one has come for a while, and
 * return the most reads it held at once: how many the copy keeps in flight.
 */
async function readsHeld(inFlight: number | undefined): Promise<number> {
  const disk = Buffer.alloc(64 << 20);
  for (let i = 0; i < disk.length; i += 4096) disk[i] = 1 + ((i >> 12) % 255);
  let most = 0;
  const held: Array<() => void> = [];
  let timer: NodeJS.Timeout | undefined;
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, { flags: 1 | 2 });
    await transmit(peer, disk, {
      reply: (p, req) => {
        if (req.type !== 0) return false;
        held.push(() => {
          const off = Buffer.alloc(8);
          off.writeBigUInt64BE(BigInt(req.offset));
          p.write(Buffer.concat([structuredHeader(1, 1, req.handle, 8 + req.length), off, disk.subarray(req.offset, req.offset + req.length)]));
        });
        most = Math.max(most, held.length);
        clearTimeout(timer);
        timer = setTimeout(() => { for (const h of held.splice(0)) h(); }, 150);
        return true;
      },
    });
  });
  const dir = scratch();
  try {
    const src = await openImage(`nbd+unix:///?socket=${srv.path}`, { format: 'raw' });
    const dst = join(dir, 'out.raw');
    await createImage({ format: 'raw', filename: dst, size: disk.length });
    const tgt = await openImage(dst, { format: 'raw', readOnly: false });
    await copyImage([{ image: src, targetOffset: 0 }], { target: tgt, sparseSize: 4096, targetIsZero: true, ...(inFlight ? { inFlight } : {}) });
    await tgt.close();
    await src.close();
    assert.ok(readFileSync(dst).equals(disk));
    return most;
  } finally {
    clearTimeout(timer);
    await srv.close();
  }
}

test(`a copy from an NBD export keeps MAX_IN_FLIGHT (${MAX_IN_FLIGHT}) reads going, more than a file's ${COPY_DEFAULT_IN_FLIGHT}`, async () => {
  assert.equal(await readsHeld(undefined), MAX_IN_FLIGHT);
});

test('convert -m still sets how many reads a copy from an NBD export keeps going', async () => {
  assert.equal(await readsHeld(3), 3);
});
