/**
 * Child of the qcow2 crash test: runs a seed's workload (./qcow2-crash-ops.ts) on an image through
 * vdisk's library and appends one line to a journal file after each flush() returns, with
 * writeSync so the line is in the file before the next operation starts (a SIGKILL cannot
 * lose it or see it early). The parent kills it, either on a timer or by asking it to SIGKILL
 * itself right after its Nth write to the image file (a reproducible crash point).
 *
 * usage: node qcow2-crash-child.ts IMAGE JOURNAL SEED OPS [KILL_AFTER_WRITES [WRITE_LOG]]
 * journal lines: "ready", "flushed <op index> <model digest>", "done".
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { openImage } from '../../dist/block/open.js';
import { FileProtocol } from '../../dist/protocols/file.js';
import { applyOp, digest, initialModel, layoutFor, opBytes, opsFor } from './qcow2-crash-ops.ts';

const [image, journalPath, seedArg, opsArg, killArg, logArg] = process.argv.slice(2);
if (!image || !journalPath || !seedArg || !opsArg) {
  process.stderr.write('usage: qcow2-crash-child.ts IMAGE JOURNAL SEED OPS [KILL_AFTER_WRITES]\n');
  process.exit(2);
}
const seed = Number(seedArg);
const killAfter = killArg ? Number(killArg) : 0;
const target = resolve(image);
const journal = openSync(journalPath, 'a');
const note = (line: string): void => {
  writeSync(journal, line + '\n');
};

/**
 * Count every call that changes the image file; the Nth one is the crash point. With a write log
 * (simulated power loss), each completed call is also recorded with its bytes, and each fsync as
 * a barrier, so the parent can rebuild the file as a disk that lost unsynced writes would hold it.
 * Records: u8 kind (1 write, 2 fsync, 3 zero range, 4 truncate), f64 offset, f64 length, bytes.
 */
let writes = 0;
const log = logArg ? openSync(logArg, 'w') : undefined;
function record(kind: number, offset: number, length: number, data?: Uint8Array): void {
  if (log === undefined) return;
  const h = Buffer.alloc(17);
  h.writeUInt8(kind, 0);
  h.writeDoubleLE(offset, 1);
  h.writeDoubleLE(length, 9);
  writeSync(log, h);
  if (data) writeSync(log, data);
}
type Method = (this: FileProtocol, ...a: unknown[]) => Promise<unknown>;
function patch(name: 'pwrite' | 'writeZeroes' | 'discard' | 'truncate' | 'flush', rec: (a: unknown[]) => void): void {
  const proto = FileProtocol.prototype as unknown as Record<string, Method>;
  const orig = proto[name]!;
  proto[name] = async function (this: FileProtocol, ...args: unknown[]): Promise<unknown> {
    const r = await orig.apply(this, args);
    if (resolve(this.filename) !== target) return r;
    rec(args);
    if (name !== 'flush' && ++writes === killAfter) process.kill(process.pid, 'SIGKILL');
    return r;
  };
}
patch('pwrite', ([buf, off]) => record(1, off as number, (buf as Uint8Array).length, buf as Uint8Array));
patch('flush', () => record(2, 0, 0));
patch('writeZeroes', ([off, len]) => record(3, off as number, len as number));
patch('discard', ([off, len]) => record(3, off as number, len as number));
patch('truncate', ([size]) => record(4, size as number, 0));

const lay = layoutFor(seed);
const ops = opsFor(seed, Number(opsArg));
let model = initialModel(lay);
const img = await openImage(image, { readOnly: false });
note('ready');
for (let i = 0; i < ops.length; i++) {
  const op = ops[i]!;
  switch (op.kind) {
    case 'write':
      await img.write(opBytes(op), op.offset);
      break;
    case 'compressed':
      await img.writeCompressed(opBytes(op), op.offset);
      break;
    case 'zeroes':
      await img.writeZeroes(op.offset, op.length, op.unmap);
      break;
    case 'discard':
      await img.discard(op.offset, op.length);
      break;
    case 'grow':
      await img.truncate(op.size);
      break;
    case 'flush':
      await img.flush();
      break;
  }
  model = applyOp(model, op);
  if (op.kind === 'flush') note(`flushed ${i} ${digest(model)}`);
}
await img.close();
note(`done ${writes}`);
closeSync(journal);
