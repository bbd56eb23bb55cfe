/**
 * Regression (found by the crash test's power-loss mode: "ERROR cluster 33 refcount=0
 * reference=1" after losing writes since the last fsync): a metadata flush wrote refcount
 * blocks, L2 tables and L1 entries back to back with no fsync between them, so a disk free to
 * reorder could persist an L2 entry before the refcount (or the COW data) of the cluster it
 * names. Each dependent step must now sit in a later fsync epoch than what it depends on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openImage } from '../../../../dist/block/open.js';
import { FileProtocol } from '../../../../dist/protocols/file.js';
import { qemuImg, scratch } from '../../../helpers/oracle.ts';

const dir = scratch('vdisk-qcow2-barriers-');

type Event = { kind: 'write'; offset: number; length: number } | { kind: 'sync' };

/** Record every pwrite and fsync on `file` while `fn` runs. */
async function recording(file: string, fn: () => Promise<void>): Promise<Event[]> {
  const proto = FileProtocol.prototype as unknown as Record<string, (this: FileProtocol, ...a: unknown[]) => Promise<unknown>>;
  const orig = { pwrite: proto['pwrite']!, flush: proto['flush']! };
  const events: Event[] = [];
  proto['pwrite'] = async function (this: FileProtocol, ...a: unknown[]) {
    if (resolve(this.filename) === resolve(file)) events.push({ kind: 'write', offset: a[1] as number, length: (a[0] as Uint8Array).length });
    return orig.pwrite.apply(this, a);
  };
  proto['flush'] = async function (this: FileProtocol, ...a: unknown[]) {
    if (resolve(this.filename) === resolve(file)) events.push({ kind: 'sync' });
    return orig.flush.apply(this, a);
  };
  try {
    await fn();
  } finally {
    proto['pwrite'] = orig.pwrite;
    proto['flush'] = orig.flush;
  }
  return events;
}

/** The fsync epoch (count of fsyncs before it) of the first and last write touching [start, end). */
function epochs(events: Event[], start: number, end: number): number[] {
  const out: number[] = [];
  let epoch = 0;
  for (const e of events) {
    if (e.kind === 'sync') epoch++;
    else if (e.offset < end && e.offset + e.length > start) out.push(epoch);
  }
  return out;
}

const first = (xs: number[]): number => Math.min(...xs);
const last = (xs: number[]): number => Math.max(...xs);
const be64 = (b: Buffer, off: number): number => Number(b.readBigUInt64BE(off));

test('a new cluster\'s data and refcount are synced before its L2 table, and the L2 table before its L1 entry', async () => {
  const back = join(dir, 'back.raw');
  writeFileSync(back, Buffer.alloc(1 << 20, 0x33));
  const f = join(dir, 'img.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', back, '-F', 'raw', f, '1M']).code, 0);
  const events = await recording(f, async () => {
    const img = await openImage(f, { readOnly: false });
    // a partial-cluster write: COW from the backing file into a new cluster, a new L2 table
    await img.write(new Uint8Array(4096).fill(7), 70000);
    await img.flush();
    await img.close();
  });
  const h = readFileSync(f);
  const cs = 2 ** h.readUInt32BE(20);
  const l1 = be64(h, 40);
  const l2 = be64(h, l1) & 0x00fffffffffffe00;
  const data = be64(h, l2 + 8) & 0x00fffffffffffe00;
  const reftable = be64(h, 48);
  const block = be64(h, reftable);
  assert.ok(first(epochs(events, l2, l2 + cs)) > last(epochs(events, data, data + cs)), 'COW data synced before the L2 table');
  assert.ok(first(epochs(events, l2, l2 + cs)) > last(epochs(events, block, block + cs)), 'refcount block synced before the L2 table');
  assert.ok(first(epochs(events, l1, l1 + 8)) > last(epochs(events, l2, l2 + cs)), 'L2 table synced before the L1 entry');
  assert.equal(qemuImg(['check', f]).code, 0);
});

test('a discard\'s refcount decrement is written only after the L2 table that drops the cluster is synced', async () => {
  const f = join(dir, 'free.qcow2');
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', f, '1M']).code, 0);
  const img0 = await openImage(f, { readOnly: false });
  await img0.write(new Uint8Array(65536).fill(9), 0);
  await img0.close();
  const h = readFileSync(f);
  const l2 = be64(h, be64(h, 40)) & 0x00fffffffffffe00;
  const block = be64(h, be64(h, 48));
  const events = await recording(f, async () => {
    const img = await openImage(f, { readOnly: false });
    await img.discard(0, 65536);
    await img.flush();
    await img.close();
  });
  assert.ok(first(epochs(events, block, block + 65536)) > last(epochs(events, l2, l2 + 65536)), 'L2 synced before the decrement');
  assert.equal(qemuImg(['check', f]).code, 0);
});
