import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../../dist/nbd/client.js';
import { fakeServer, negotiate, structuredHeader, transmit, MAGIC, type Peer, type Request } from './fake-server.ts';

const unix = (path: string) => ({ server: { type: 'unix' as const, path }, exportName: '' });

/** Send `b` in pieces of the given sizes (cycled), letting the client read between pieces. */
async function dribble(peer: Peer, b: Buffer, sizes: readonly number[]): Promise<void> {
  for (let at = 0, i = 0; at < b.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, b.length - at);
    peer.write(b.subarray(at, at + n));
    at += n;
    await new Promise((r) => setImmediate(r));
  }
}

function dataChunk(req: Request, disk: Buffer, from: number, to: number, done: boolean): Buffer {
  const off = Buffer.alloc(8);
  off.writeBigUInt64BE(BigInt(from));
  return Buffer.concat([structuredHeader(done ? 1 : 0, 1, req.handle, 8 + to - from), off, disk.subarray(from, to)]);
}

function holeChunk(req: Request, from: number, to: number): Buffer {
  const p = Buffer.alloc(12);
  p.writeBigUInt64BE(BigInt(from));
  p.writeUInt32BE(to - from, 8);
  return Buffer.concat([structuredHeader(0, 2, req.handle, 12), p]);
}

/**
 * A server that answers every read with data, hole, data chunks and block status with two
 * extents, all sent in pieces of `sizes` bytes, so reply boundaries fall everywhere in the reads.
 */
async function splittingServer(disk: Buffer, sizes: readonly number[]) {
  return fakeServer(async (peer) => {
    await negotiate(peer, disk, {});
    await transmit(peer, disk, {
      reply: async (p, req) => {
        if (req.type === 0) {
          const a = req.offset + Math.floor(req.length / 3);
          const b = req.offset + Math.floor((2 * req.length) / 3);
          await dribble(p, Buffer.concat([
            dataChunk(req, disk, req.offset, a, false), holeChunk(req, a, b), dataChunk(req, disk, b, req.offset + req.length, true),
          ]), sizes);
          return true;
        }
        if (req.type === 7) {
          const body = Buffer.alloc(20);
          body.writeUInt32BE(1, 0);
          body.writeUInt32BE(4096, 4);
          body.writeUInt32BE(0, 8);
          body.writeUInt32BE(req.length - 4096, 12);
          body.writeUInt32BE(3, 16);
          await dribble(p, Buffer.concat([structuredHeader(1, 5, req.handle, body.length), body]), sizes);
          return true;
        }
        if (req.type === 3) {
          const simple = Buffer.alloc(16);
          simple.writeUInt32BE(MAGIC.simple, 0);
          simple.writeBigUInt64BE(req.handle, 8);
          await dribble(p, simple, sizes);
          return true;
        }
        return false;
      },
    });
  });
}

function expected(disk: Buffer, offset: number, length: number): Buffer {
  const want = Buffer.from(disk.subarray(offset, offset + length));
  want.fill(0, Math.floor(length / 3), Math.floor((2 * length) / 3));
  return want;
}

test('replies split at every byte boundary reach the caller intact: data, holes, block status, simple replies', async () => {
  const disk = Buffer.alloc(1 << 20);
  for (let i = 0; i < disk.length; i++) disk[i] = (i * 7 + (i >> 9)) & 0xff;
  const srv = await splittingServer(disk, [1]);
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: false });
    for (const [off, len] of [[1000, 3000], [0, 96], [65536, 12000]] as const) {
      const buf = Buffer.alloc(len, 0xee);
      await c.read(buf, off);
      assert.ok(buf.equals(expected(disk, off, len)), `read ${len} at ${off}`);
    }
    assert.deepEqual(await c.blockStatus(0, 65536), { length: 4096, flags: 0 });
    assert.deepEqual(await c.blockStatus(4096, 61440), { length: 61440, flags: 3 });
    await c.flush();
    await c.close();
  } finally {
    await srv.close();
  }
});

test('large read replies arriving in uneven pieces land in the caller buffer, whatever the split', async () => {
  const disk = Buffer.alloc(4 << 20);
  for (let i = 0; i < disk.length; i++) disk[i] = (i * 13 + (i >> 12)) & 0xff;
  // pieces that straddle headers, offsets and payloads at shifting places
  const srv = await splittingServer(disk, [3, 20, 27, 65536 + 5, 1, 131071, 9, 300000]);
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    const reads = [[0, 2 << 20], [(2 << 20) + 17, 1_000_001], [3 << 20, 1 << 20]] as const;
    const bufs = reads.map(([, len]) => Buffer.alloc(len, 0xee));
    // concurrently: replies follow each other on the stream without a pause between them
    await Promise.all(reads.map(([off], i) => c.read(bufs[i]!, off)));
    reads.forEach(([off, len], i) => assert.ok(bufs[i]!.equals(expected(disk, off, len)), `read ${len} at ${off}`));
    await c.close();
  } finally {
    await srv.close();
  }
});
