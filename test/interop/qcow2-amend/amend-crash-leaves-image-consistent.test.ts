/**
 * A crash at any point of a qcow2 amend leaves an image the real qemu-img judges consistent (at
 * worst leaking clusters) and reading the same guest content: the amend is run again and again on
 * copies of one image, each time with the file refusing every write after the first k (as if the
 * machine stopped there), for every k up to the number of writes the whole amend makes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { openQcow2 } from '../../../dist/formats/qcow2/driver.js';
import { FileProtocol } from '../../../dist/protocols/file.js';
import type { OpenContext } from '../../../dist/block/driver.js';
import type { Protocol } from '../../../dist/protocols/types.js';
import { qemuImg, qemuIo, scratch } from '../../helpers/oracle.ts';

const WRITES = new Set(['pwrite', 'writeZeroes', 'discard', 'truncate']);

/** The file, with every write after the first `limit` failing (Infinity: none fails); counts writes. */
function stopping(inner: Protocol, limit: number, seen: { writes: number }): Protocol {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      if (!WRITES.has(String(prop))) return (v as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        if (seen.writes >= limit) throw new Error('simulated crash');
        seen.writes++;
        return (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
}

/** Amend `file` through the library with writes stopping after `limit`; returns the writes made. */
async function amendUntil(file: string, values: Record<string, string>, limit: number, backed: boolean): Promise<number> {
  const seen = { writes: 0 };
  const real = await FileProtocol.open(file, { readOnly: false });
  const ctx: OpenContext = {
    filename: file, readOnly: false, options: {}, secrets: { get: () => undefined },
    backing: { present: backed, read: async (b) => { b.fill(0); } },
    openFile: (n, ro) => FileProtocol.open(n, { readOnly: ro }),
  };
  try {
    const layer = await openQcow2(stopping(real, limit, seen), ctx);
    await layer.amend!(values, false).catch((e: Error) => {
      if (e.message !== 'simulated crash') throw e;
    });
  } finally {
    await real.close();
  }
  return seen.writes;
}

interface Case {
  name: string;
  make(dir: string): void;
  values: Record<string, string>;
  backed?: boolean;
}

function ok(r: { code: number | null; stderr: string }): void {
  assert.equal(r.code, 0, r.stderr);
}

const cases: Case[] = [
  {
    name: 'refcount_bits 16 to 1',
    make: (d) => {
      ok(qemuImg(['create', '-q', '-f', 'qcow2', join(d, 't.qcow2'), '8M']));
      ok(qemuIo(['-c', 'write -P 7 1M 3M', join(d, 't.qcow2')]));
    },
    values: { refcount_bits: '1' },
  },
  {
    name: 'refcount_bits 1 to 64 over several walks (512-byte clusters)',
    make: (d) => {
      ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1,cluster_size=512', join(d, 't.qcow2'), '64k']));
      ok(qemuIo(['-c', 'write -P 9 0 29696', join(d, 't.qcow2')]));
    },
    values: { refcount_bits: '64' },
  },
  {
    name: 'compat=0.10 expanding zero clusters over a backing file, with a snapshot',
    make: (d) => {
      ok(qemuImg(['create', '-q', '-f', 'qcow2', join(d, 'b.qcow2'), '8M']));
      ok(qemuIo(['-c', 'write -P 0x2a 0 1M', join(d, 'b.qcow2')]));
      ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', join(d, 't.qcow2'), '8M']));
      ok(qemuIo(['-c', 'write -z 0 256k', '-c', 'write -P 5 512k 64k', join(d, 't.qcow2')]));
      ok(qemuImg(['snapshot', '-c', 'foo', join(d, 't.qcow2')]));
      ok(qemuIo(['-c', 'write -z 2M 128k', join(d, 't.qcow2')]));
    },
    values: { compat: '0.10' },
    backed: true,
  },
];

for (const c of cases) {
  test(`amend ${c.name}: a crash after any write leaves a consistent image with the same content`, async () => {
    const d = scratch('vdisk-amend-crash-');
    c.make(d);
    const orig = join(d, 'orig.qcow2');
    copyFileSync(join(d, 't.qcow2'), orig);
    const work = join(d, 'w.qcow2');
    copyFileSync(orig, work);
    const total = await amendUntil(work, c.values, Infinity, c.backed ?? false);
    assert.ok(total > 2, `the amend wrote ${total} times`);
    for (let k = 0; k <= total; k++) {
      copyFileSync(orig, work);
      await amendUntil(work, c.values, k, c.backed ?? false);
      const check = qemuImg(['check', 'w.qcow2'], { cwd: d });
      assert.ok(check.code === 0 || check.code === 3, `after ${k} of ${total} writes: ${check.stdout}${check.stderr}`);
      const cmp = qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', 'orig.qcow2', 'w.qcow2'], { cwd: d });
      assert.equal(cmp.code, 0, `after ${k} of ${total} writes: ${cmp.stdout}${cmp.stderr}`);
    }
  });
}
