import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../../dist/nbd/client.js';
import {
  MAX_BLOCK_STATUS_CHUNK_BYTES, MAX_ERROR_CHUNK_BYTES, MAX_IN_FLIGHT, MAX_NBD_REQUEST_BYTES, MAX_OPTION_REPLIES,
  MAX_OPTION_REPLY_BYTES,
} from '../../../dist/nbd/constants.js';
import { NbdProtocol } from '../../../dist/protocols/nbd.js';
import {
  fakeServer, goodServer, greeting, negotiate, optionReply, structuredHeader, transmit, type Request,
} from './fake-server.ts';

const unix = (path: string) => ({ server: { type: 'unix' as const, path }, exportName: '' });

function isVdisk(code: string | RegExp) {
  return (e: unknown): boolean => {
    const err = e as { name?: string; code?: string; message?: string };
    assert.equal(err.name, 'VdiskError', String(err.message));
    if (typeof code === 'string') assert.equal(err.code, code, err.message);
    else assert.match(err.message ?? '', code);
    return true;
  };
}

test('reads, writes, zeroes and block status round-trip through a well-behaved server', async () => {
  const disk = Buffer.alloc(1 << 20, 0x5a);
  const srv = await goodServer(disk);
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: false });
    assert.equal(c.size, disk.length);
    await c.write(Buffer.alloc(4096, 0x11), 8192);
    const back = Buffer.alloc(8192);
    await c.read(back, 4096);
    assert.equal(back[0], 0x5a);
    assert.equal(back[4096], 0x11);
    assert.equal(await c.writeZeroes(0, 4096, { mayTrim: false }), true);
    await c.read(back, 0);
    assert.equal(back[0], 0);
    assert.deepEqual(await c.blockStatus(0, 65536), { length: 65536, flags: 0 });
    await c.close();
  } finally {
    await srv.close();
  }
});

test('requests are split at the maximum block size the server gives in NBD_INFO_BLOCK_SIZE', async () => {
  const disk = Buffer.alloc(1 << 20, 1);
  const log: Request[] = [];
  const srv = await goodServer(disk, { blockSize: [1, 4096, 65536], log });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    await c.read(Buffer.alloc(300000), 0);
    await c.close();
    const reads = log.filter((r) => r.type === 0);
    assert.ok(reads.length >= 5 && reads.every((r) => r.length <= 65536), JSON.stringify(reads.map((r) => r.length)));
  } finally {
    await srv.close();
  }
});

test('a read-only export opened for writing fails as qemu-img says it', async () => {
  const srv = await goodServer(Buffer.alloc(4096), { flags: 1 | 2 });
  try {
    await assert.rejects(NbdProtocol.open(`nbd+unix://?socket=${srv.path}`, false), /^VdiskError: Could not open image: Permission denied$|Could not open image: Permission denied/);
  } finally {
    await srv.close();
  }
});

test('an unknown export is reported with the server message, as qemu-img does', async () => {
  const srv = await fakeServer(async (peer) => {
    peer.write(greeting());
    await peer.read(4);
    for (;;) {
      const h = await peer.read(16);
      const opt = h.readUInt32BE(8);
      await peer.read(h.readUInt32BE(12));
      if (opt === 8) peer.write(optionReply(8, 1));
      else peer.write(optionReply(opt, 0x80000006, Buffer.from("export 'x' not present")));
    }
  });
  try {
    await assert.rejects(NbdClient.connect(unix(srv.path), { readOnly: true }),
      (e: Error) => e.message === "Requested export not available\nserver reported: export 'x' not present");
  } finally {
    await srv.close();
  }
});

test(`an option reply longer than MAX_OPTION_REPLY_BYTES (${MAX_OPTION_REPLY_BYTES}) is refused before it is read`, async () => {
  const srv = await fakeServer(async (peer) => {
    peer.write(greeting());
    await peer.read(4);
    await peer.read(16);
    peer.write(optionReply(8, 1, Buffer.alloc(0), MAX_OPTION_REPLY_BYTES + 1));
    await peer.read(1 << 30).catch(() => undefined);
  });
  try {
    await assert.rejects(NbdClient.connect(unix(srv.path), { readOnly: true }), isVdisk(/too long/));
  } finally {
    await srv.close();
  }
});

test(`more than MAX_OPTION_REPLIES (${MAX_OPTION_REPLIES}) info replies to NBD_OPT_GO end the handshake`, async () => {
  const srv = await fakeServer(async (peer) => {
    peer.write(greeting());
    await peer.read(4);
    for (;;) {
      const h = await peer.read(16);
      const opt = h.readUInt32BE(8);
      await peer.read(h.readUInt32BE(12));
      if (opt !== 7) {
        peer.write(optionReply(opt, 0x80000001));
        continue;
      }
      const info = Buffer.from([0, 2, 0x61]); // NBD_INFO_DESCRIPTION "a", forever
      for (let i = 0; i <= MAX_OPTION_REPLIES; i++) peer.write(optionReply(7, 3, info));
      await peer.read(1 << 30).catch(() => undefined);
    }
  });
  try {
    await assert.rejects(NbdClient.connect(unix(srv.path), { readOnly: true }), isVdisk(/more than 1024 replies/));
  } finally {
    await srv.close();
  }
});

test('a server that is not an NBD server gets a clear error, not a hang', async () => {
  const srv = await fakeServer(async (peer) => {
    peer.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
  });
  try {
    await assert.rejects(NbdClient.connect(unix(srv.path), { readOnly: true }), isVdisk(/Bad initial magic/));
  } finally {
    await srv.close();
  }
});

/** A server that negotiates correctly and answers one request type with `bad`. */
async function hostileReply(bad: (handle: bigint, req: Request) => Buffer, use: (c: NbdClient) => Promise<unknown>): Promise<void> {
  const disk = Buffer.alloc(1 << 20);
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, {});
    await transmit(peer, disk, {
      reply: (p, req) => {
        p.write(bad(req.handle, req));
        return true;
      },
    });
  });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    await assert.rejects(use(c), isVdisk('NBD_PROTOCOL'));
    // the connection is failed for good: later requests fail at once too
    await assert.rejects(c.read(Buffer.alloc(512), 0), (e: Error) => e.name === 'VdiskError');
    await c.close();
  } finally {
    await srv.close();
  }
}

test(`a block status chunk over MAX_BLOCK_STATUS_CHUNK_BYTES (${MAX_BLOCK_STATUS_CHUNK_BYTES}) fails the connection`, async () => {
  await hostileReply((h) => structuredHeader(1, 5, h, MAX_BLOCK_STATUS_CHUNK_BYTES + 8), (c) => c.blockStatus(0, 4096));
});

test(`an error chunk over MAX_ERROR_CHUNK_BYTES (${MAX_ERROR_CHUNK_BYTES}) fails the connection`, async () => {
  await hostileReply((h) => structuredHeader(1, 0x8001, h, MAX_ERROR_CHUNK_BYTES + 1), (c) => c.read(Buffer.alloc(512), 0));
});

test('a data chunk that claims more bytes than were asked for fails the connection', async () => {
  await hostileReply((h, r) => structuredHeader(1, 1, h, 8 + r.length + 1), (c) => c.read(Buffer.alloc(512), 0));
});

test('a reply to a handle that was never sent fails every request in flight', async () => {
  await hostileReply((h) => structuredHeader(1, 0, h + 1000n, 0), (c) => c.read(Buffer.alloc(512), 0));
});

test('a block status extent of length zero is a protocol error', async () => {
  await hostileReply((h) => {
    const p = Buffer.alloc(12);
    p.writeUInt32BE(1, 0);
    return Buffer.concat([structuredHeader(1, 5, h, 12), p]);
  }, (c) => c.blockStatus(0, 4096));
});

test('an error value in a reply becomes the errno it stands for', async () => {
  const disk = Buffer.alloc(65536);
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, {});
    await transmit(peer, disk, {
      reply: (p, req) => {
        if (req.type !== 0) return false;
        const msg = Buffer.from('bad sector');
        const payload = Buffer.alloc(6 + msg.length);
        payload.writeUInt32BE(5, 0);
        payload.writeUInt16BE(msg.length, 4);
        msg.copy(payload, 6);
        p.write(Buffer.concat([structuredHeader(1, 0x8001, req.handle, payload.length), payload]));
        return true;
      },
    });
  });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    await assert.rejects(c.read(Buffer.alloc(512), 0), (e: Error & { context?: { errno?: string } }) => e.context?.errno === 'EIO');
    // an error reply is not a protocol error: the connection goes on
    assert.deepEqual(await c.blockStatus(0, 512), { length: 512, flags: 0 });
    await c.close();
  } finally {
    await srv.close();
  }
});

test('a server that drops the connection mid-request fails the request instead of hanging', async () => {
  const disk = Buffer.alloc(65536);
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, {});
    await peer.read(28);
    peer.sock.destroy();
  });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    await assert.rejects(c.read(Buffer.alloc(512), 0), (e: Error) => e.name === 'VdiskError');
    await c.close();
  } finally {
    await srv.close();
  }
});

test('block status runs are cut to the minimum block size, a split block counting as data', async () => {
  const disk = Buffer.alloc(1024);
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, { blockSize: [512, 4096, 1 << 20] });
    await transmit(peer, disk, {
      reply: (p, req) => {
        if (req.type !== 7) return false;
        const body = Buffer.alloc(20);
        body.writeUInt32BE(1, 0);
        body.writeUInt32BE(1000 - (req.offset > 0 ? req.offset : 0), 4); // data up to byte 1000
        body.writeUInt32BE(0, 8);
        body.writeUInt32BE(24, 12); // then a zero hole to the end
        body.writeUInt32BE(3, 16);
        p.write(Buffer.concat([structuredHeader(1, 5, req.handle, body.length), body]));
        return true;
      },
    });
  });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    assert.deepEqual(await c.blockStatus(0, 1024), { length: 512, flags: 0 });
    assert.deepEqual(await c.blockStatus(512, 512), { length: 512, flags: 0 });
    await c.close();
  } finally {
    await srv.close();
  }
});

test(`no request is larger than MAX_NBD_REQUEST_BYTES (${MAX_NBD_REQUEST_BYTES}) even when the server allows more`, async () => {
  const disk = Buffer.alloc(MAX_NBD_REQUEST_BYTES + 4096, 7);
  const log: Request[] = [];
  const srv = await goodServer(disk, { blockSize: [1, 4096, 0x80000000], log });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: true });
    const buf = Buffer.alloc(disk.length);
    await c.read(buf, 0);
    assert.equal(buf[buf.length - 1], 7);
    await c.close();
    assert.deepEqual(log.filter((r) => r.type === 0).map((r) => r.length), [MAX_NBD_REQUEST_BYTES, 4096]);
  } finally {
    await srv.close();
  }
});

test(`at most MAX_IN_FLIGHT (${MAX_IN_FLIGHT}) requests wait on one connection`, async () => {
  const disk = Buffer.alloc(1 << 20);
  let waiting = 0;
  let most = 0;
  const held: Array<() => void> = [];
  const srv = await fakeServer(async (peer) => {
    await negotiate(peer, disk, {});
    await transmit(peer, disk, {
      reply: (p, req) => {
        if (req.type !== 0) return false;
        waiting++;
        most = Math.max(most, waiting);
        // answer nothing until the client has sent all it may, then everything
        held.push(() => {
          waiting--;
          const off = Buffer.alloc(8);
          off.writeBigUInt64BE(BigInt(req.offset));
          p.write(Buffer.concat([structuredHeader(1, 1, req.handle, 8 + req.length), off, disk.subarray(req.offset, req.offset + req.length)]));
        });
        if (held.length >= MAX_IN_FLIGHT) for (const h of held.splice(0)) h();
        return true;
      },
    });
  });
  try {
    const c = await NbdClient.connect(unix(srv.path), { readOnly: false });
    await Promise.all(Array.from({ length: 3 * MAX_IN_FLIGHT }, (_, i) => c.read(Buffer.alloc(512), i * 512)));
    await c.close();
    assert.equal(most, MAX_IN_FLIGHT);
  } finally {
    await srv.close();
  }
});
