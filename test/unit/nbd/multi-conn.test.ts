import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { NbdClient } from '../../../dist/nbd/client.js';
import { MAX_CONNECTIONS } from '../../../dist/nbd/constants.js';
import { copyImage } from '../../../dist/block/copy.js';
import { createImage } from '../../../dist/block/create.js';
import { openImage } from '../../../dist/block/open.js';
import { scratch } from '../../helpers/oracle.ts';
import { fakeServer, negotiate, structuredHeader, transmit, type Peer, type Request } from './fake-server.ts';

const unix = (path: string) => ({ server: { type: 'unix' as const, path }, exportName: '' });
/** HAS_FLAGS | READ_ONLY | SEND_FLUSH | CAN_MULTI_CONN */
const MULTI_CONN_RO = 1 | 2 | 4 | 256;
const STRIPE = 65536;

function pattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + (i >> 11)) & 0xff;
  return b;
}

/** Block status of a disk whose odd 64 KiB stripes are holes that read as zeros. */
function stripeStatus(p: Peer, req: Request): void {
  const body = Buffer.alloc(12);
  const end = Math.min(req.offset + req.length, (Math.floor(req.offset / STRIPE) + 1) * STRIPE);
  body.writeUInt32BE(1, 0);
  body.writeUInt32BE(end - req.offset, 4);
  body.writeUInt32BE(Math.floor(req.offset / STRIPE) % 2 === 1 ? 3 : 0, 8);
  p.write(Buffer.concat([structuredHeader(1, 5, req.handle, body.length), body]));
}

interface Sessions {
  /** Read requests served, per connection in the order they connected. */
  reads: number[];
}

/** A multi-conn read-only server; `onRead` may replace the reply (true: handled). */
async function multiConnServer(disk: Buffer, s: Sessions, onRead?: (conn: number, n: number, p: Peer) => boolean) {
  return fakeServer(async (peer) => {
    await negotiate(peer, disk, { flags: MULTI_CONN_RO });
    const conn = s.reads.push(0) - 1;
    await transmit(peer, disk, {
      reply: (p, req) => {
        if (req.type === 7) {
          stripeStatus(p, req);
          return true;
        }
        if (req.type !== 0) return false;
        s.reads[conn]!++;
        return onRead?.(conn, s.reads[conn]!, p) ?? false;
      },
    });
  });
}

test('reads and block status spread over the connections of a multi-conn export return the right answers', async () => {
  const disk = pattern(4 << 20);
  const s: Sessions = { reads: [] };
  const srv = await multiConnServer(disk, s);
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    // waves of requests keep the client busy until its extra connections are up and used
    for (let wave = 0; wave < 50 && s.reads.filter((n) => n > 0).length < 2; wave++) {
      const reads = Array.from({ length: 48 }, (_, i) => ((wave * 48 + i) * 40_961) % (disk.length - 8192));
      const bufs = reads.map(() => Buffer.alloc(8192));
      const status = Array.from({ length: 8 }, (_, i) => c.blockStatus(((wave * 8 + i) * 12_345) % disk.length, 1 << 20));
      await Promise.all(reads.map((off, i) => c.read(bufs[i]!, off)));
      reads.forEach((off, i) => assert.ok(bufs[i]!.equals(disk.subarray(off, off + 8192)), `read at ${off}`));
      for (const [i, st] of (await Promise.all(status)).entries()) {
        const off = ((wave * 8 + i) * 12_345) % disk.length;
        const stripe = Math.floor(off / STRIPE);
        assert.deepEqual(st, { length: (stripe + 1) * STRIPE - off, flags: stripe % 2 === 1 ? 3 : 0 }, `status at ${off}`);
      }
    }
    await c.close();
    assert.ok(s.reads.filter((n) => n > 0).length >= 2, `reads per connection: ${s.reads.join(',')}`);
    assert.ok(s.reads.length <= MAX_CONNECTIONS, `${s.reads.length} connections`);
  } finally {
    await srv.close();
  }
});

/** Copies the export at `socket` into a fresh raw file in a scratch directory, as convert does; returns the file. */
async function copyExportToRaw(socket: string, size: number): Promise<string> {
  const src = await openImage(`nbd+unix:///?socket=${socket}`, { format: 'raw' });
  const dst = join(scratch(), 'out.raw');
  try {
    await createImage({ format: 'raw', filename: dst, size });
    const tgt = await openImage(dst, { format: 'raw', readOnly: false });
    try {
      await copyImage([{ image: src, targetOffset: 0 }], { target: tgt, sparseSize: 4096, targetIsZero: true });
    } finally {
      await tgt.close();
    }
  } finally {
    await src.close();
  }
  return dst;
}

test('a connection that drops mid-copy fails the copy with a read error instead of hanging', async () => {
  const disk = pattern(48 << 20);
  const s: Sessions = { reads: [] };
  let dropped = false;
  const srv = await multiConnServer(disk, s, (conn, n, p) => {
    if (conn !== 0 || n < 6) return false;
    dropped = true;
    p.sock.destroy();
    return true;
  });
  try {
    await assert.rejects(copyExportToRaw(srv.path, disk.length),
      (e: Error) => e.name === 'VdiskError' && /^error while reading (at byte|block status at offset) \d+: /.test(e.message));
    assert.ok(dropped);
  } finally {
    await srv.close();
  }
});

test('a copy from a multi-conn export over all its connections gives the bytes and holes of the export', async () => {
  const disk = pattern(24 << 20);
  for (let at = STRIPE; at < disk.length; at += 2 * STRIPE) disk.fill(0, at, at + STRIPE);
  const s: Sessions = { reads: [] };
  const srv = await multiConnServer(disk, s);
  try {
    const dst = await copyExportToRaw(srv.path, disk.length);
    assert.ok(readFileSync(dst).equals(disk));
    assert.ok(statSync(dst).blocks * 512 <= disk.length / 2 + (1 << 20), `${statSync(dst).blocks * 512} bytes allocated`);
    // the holes were neither read nor written: only the data stripes were asked for
    const total = s.reads.reduce((a, b) => a + b, 0);
    assert.ok(total > 0 && total <= disk.length / (2 * STRIPE), `${total} reads`);
  } finally {
    await srv.close();
  }
});
