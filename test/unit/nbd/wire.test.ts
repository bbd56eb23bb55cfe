import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, createConnection, type Socket } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  decodeBlockStatus, decodeErrorChunk, decodeInfo, encodeGoData, encodeMetaContextData, encodeOption, encodeRequest,
  REQUEST_HEADER_BYTES,
} from '../../../dist/nbd/wire.js';
import { MAX_BLOCK_STATUS_CHUNK_BYTES, MAX_UNREAD_BYTES, NBD_MAX_STRING_BYTES } from '../../../dist/nbd/constants.js';
import { SocketReader } from '../../../dist/nbd/reader.js';
import { canonicalNbdName, parseNbdFilename, targetFromOptions } from '../../../dist/nbd/address.js';

test('a request header is 28 bytes: magic, flags, type, handle, offset, length', () => {
  const b = encodeRequest(0x0002, 6, 0x0001020304050607, 2 ** 40 + 5, 4096);
  assert.equal(b.length, REQUEST_HEADER_BYTES);
  assert.equal(b.toString('hex'), '25609513' + '0002' + '0006' + '0001020304050607' + '0000010000000005' + '00001000');
});

test('an option is IHAVEOPT, its number, its length and its data', () => {
  assert.equal(encodeOption(7, Buffer.from([9])).toString('hex'), '49484156454f5054' + '00000007' + '00000001' + '09');
});

test('NBD_OPT_GO data carries the export name and the info requests', () => {
  assert.equal(encodeGoData('ab', [3]).toString('hex'), '00000002' + '6162' + '0001' + '0003');
});

test('SET_META_CONTEXT data carries the export name and each query with its length', () => {
  assert.equal(encodeMetaContextData('', ['ab']).toString('hex'), '00000000' + '00000001' + '00000002' + '6162');
});

test('names longer than the protocol allows are refused before anything is sent', () => {
  assert.throws(() => encodeGoData('x'.repeat(NBD_MAX_STRING_BYTES + 1), []), (e: Error) => e.name === 'VdiskError');
});

test('export and block-size infos decode; wrong lengths are protocol errors', () => {
  const exp = Buffer.from('0000' + '0000000000100000' + '0003', 'hex');
  assert.deepEqual(decodeInfo(exp), { type: 'export', size: 1 << 20, flags: 3 });
  const bs = Buffer.from('0003' + '00000200' + '00001000' + '02000000', 'hex');
  assert.deepEqual(decodeInfo(bs), { type: 'block-size', min: 512, preferred: 4096, max: 32 << 20 });
  assert.throws(() => decodeInfo(exp.subarray(0, 11)), /Invalid length/);
  assert.deepEqual(decodeInfo(Buffer.from('0002616263', 'hex')), { type: 'other', code: 2 });
});

test('an export size past 2^53 is refused rather than rounded', () => {
  assert.throws(() => decodeInfo(Buffer.from('0000' + 'ffffffffffffffff' + '0001', 'hex')), /out-of-range export size/);
  assert.throws(() => decodeInfo(Buffer.from('0000' + '0020000000000000' + '0001', 'hex')), /out-of-range export size \(9007199254740992\)/);
  assert.deepEqual(decodeInfo(Buffer.from('0000' + '001fffffffffffff' + '0001', 'hex')), { type: 'export', size: Number.MAX_SAFE_INTEGER, flags: 1 });
});

test('block status payloads are a context id and whole 8-byte descriptors', () => {
  const ok = Buffer.from('00000001' + '00010000' + '00000003' + '00020000' + '00000000', 'hex');
  assert.deepEqual(decodeBlockStatus(ok), { contextId: 1, extents: [{ length: 65536, flags: 3 }, { length: 131072, flags: 0 }] });
  assert.throws(() => decodeBlockStatus(ok.subarray(0, 10)), /invalid payload/);
  assert.throws(() => decodeBlockStatus(ok.subarray(0, 4)), /invalid payload/);
  assert.throws(() => decodeBlockStatus(Buffer.alloc(MAX_BLOCK_STATUS_CHUNK_BYTES + 4)), /too large/);
});

test('error chunks must hold exactly their message (and offset)', () => {
  const p = Buffer.from('00000005' + '0002' + '6869', 'hex');
  assert.deepEqual(decodeErrorChunk(p, false), { error: 5, message: 'hi' });
  assert.throws(() => decodeErrorChunk(p, true), /invalid payload/);
  assert.deepEqual(decodeErrorChunk(Buffer.concat([p, Buffer.alloc(8)]), true), { error: 5, message: 'hi' });
});

test(`a server streaming unread bytes is paused near MAX_UNREAD_BYTES (${MAX_UNREAD_BYTES})`, async () => {
  const path = join(mkdtempSync(join(tmpdir(), 'vdisk-nbd-')), 's.sock');
  let serverSock: Socket | undefined;
  const server = createServer((s) => {
    serverSock = s;
    const chunk = Buffer.alloc(1 << 20);
    const pump = (): void => {
      while (s.write(chunk)) { /* until the kernel buffers fill */ }
      s.once('drain', pump);
    };
    s.on('error', () => undefined);
    pump();
  });
  await new Promise<void>((r) => server.listen(path, r));
  const reader = new SocketReader();
  const sock = createConnection({ path, onread: reader.onread });
  reader.attach(sock);
  await reader.read(16);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(reader.pending <= MAX_UNREAD_BYTES + (1 << 20), `buffered ${reader.pending}`);
  assert.ok(reader.isPaused);
  sock.destroy();
  serverSock?.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

test('nbd URIs and legacy names give the export and server qemu reads from them', () => {
  assert.deepEqual(parseNbdFilename('nbd://h:1234/a%20b'), { server: { type: 'inet', host: 'h', port: '1234' }, exportName: 'a b' });
  assert.deepEqual(parseNbdFilename('nbd+tcp://h/'), { server: { type: 'inet', host: 'h', port: '10809' }, exportName: '' });
  assert.deepEqual(parseNbdFilename('nbd+unix:///e?socket=/s'), { server: { type: 'unix', path: '/s' }, exportName: 'e' });
  assert.deepEqual(parseNbdFilename('nbd:unix:/s:exportname=e'), { server: { type: 'unix', path: '/s' }, exportName: 'e' });
  assert.deepEqual(parseNbdFilename('nbd:h:99'), { server: { type: 'inet', host: 'h', port: '99' }, exportName: '' });
  for (const bad of ['nbd+unix:///e', 'nbd://', 'nbd://h:x/', 'nbd://h/?socket=/s', 'nbd+unix://h/?socket=/s']) {
    assert.throws(() => parseNbdFilename(bad), /No valid URL specified/, bad);
  }
  assert.throws(() => parseNbdFilename('nbd:'), /NBD server address missing/);
  assert.throws(() => parseNbdFilename('nbd:h'), /error parsing address 'h'/);
});

test('options name the server with server.* or the legacy keys, never both', () => {
  assert.equal(canonicalNbdName(targetFromOptions({ 'server.type': 'unix', 'server.path': '/s', export: 'e' })), 'nbd+unix:///e?socket=/s');
  assert.equal(canonicalNbdName(targetFromOptions({ 'file.host': 'h' }, 'file.')), 'nbd://h:10809');
  assert.equal(canonicalNbdName(targetFromOptions({ path: '42' })), 'nbd+unix://?socket=42');
  assert.throws(() => targetFromOptions({ 'server.type': 'inet', 'server.host': 'h', host: 'x' }), /Cannot use 'server' and path\/host\/port/);
  assert.throws(() => targetFromOptions({}), /NBD server address missing/);
  assert.throws(() => targetFromOptions({ 'server.type': 'vsock' }), /does not accept value 'vsock'/);
});
