/**
 * The copy engine's fast paths against the real qemu-img: zero detection at every alignment and at
 * buffer ends (-S sizes, explicit zeros inside clusters, data in the last sector), whole runs of fresh
 * qcow2 clusters next to partly written ones, -n into empty and into already written targets,
 * --target-is-zero, -W and -m, and chains whose middle layer holds zero clusters (block status
 * answered from the run a read-only layer last found). Same argv in two directories set up alike;
 * output, messages and what the output images hold must be equal, and qcow2 outputs must check clean.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { copiesOf, guestSha256, qemuImg, qemuIo, sameAsQemuImg, vdisk } from '../../helpers/oracle.ts';

const ok = (r: { code: number | null; stderr: string }): void => assert.equal(r.code, 0, r.stderr);

function setup(dir: string): void {
  const io = (fmt: string, file: string, ...cmds: string[]): void =>
    ok(qemuIo(['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), join(dir, file)]));
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '16M']));
  io('raw', 'src.raw',
    'write -P 1 0 200k', // ends inside a cluster, 8 KiB after a 64 KiB boundary
    'write -P 0 64k 4k', // an explicit zero 4 KiB unit inside the data
    'write -P 0 132k 12k', // three zero units in the middle of a cluster
    'write -P 2 1M 1536', // a 1.5 KiB extent 512 bytes after nothing
    'write -P 3 1028k 3584', // data that stops 512 bytes short of a 4 KiB unit
    'write -P 4 3M 2M', // one whole 2 MiB request of data, then its neighbour
    'write -P 0 4M 64k', // a whole explicit zero cluster inside it
    'write -P 5 5M 3M', // runs across requests and 2 MiB L2 ranges of 4 KiB clusters
    'write -P 6 16383k 1k', // data in the last sectors of the image
  );
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '16M']));
  io('qcow2', 'base.qcow2', 'write -P 10 0 6M', 'write -P 11 8M 4M', 'write -P 12 15M 1M');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'mid.qcow2')]));
  // zero clusters in the middle layer over base data, and mid data beside them
  io('qcow2', 'mid.qcow2', 'write -z 1M 1M', 'write -z 2112k 64k', 'write -P 20 3M 512k', 'write -z 9M 2M', 'write -P 21 13M 64k');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(dir, 'top.qcow2')]));
  io('qcow2', 'top.qcow2', 'write -P 30 1536k 64k', 'write -P 31 9M 4k', 'write -z 3M 64k', 'write -P 32 14M 2M');
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', join(dir, 'ext.qcow2'), '4M']));
  io('qcow2', 'ext.qcow2', 'write -P 40 0 4k', 'write -P 41 12k 8k', 'write -z 64k 32k', 'write -P 42 1M 100k');
  ok(qemuImg(['convert', '-c', '-O', 'qcow2', join(dir, 'src.raw'), join(dir, 'comp.qcow2')]));
  // targets for -n: an empty qcow2, one already written all over, and a fresh zero raw
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'empty.qcow2'), '16M']));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'full.qcow2'), '16M']));
  io('qcow2', 'full.qcow2', 'write -P 99 0 16M');
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'zero.raw'), '16M']));
}

const prepared = copiesOf(setup);

interface Case {
  argv: string[];
  outputs: string[];
  /** -W: host clusters are allocated in completion order, so qemu-img's own layout varies run to run. */
  anyLayout?: boolean;
}

const cases: Case[] = [
  { argv: ['-O', 'qcow2', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-S', '512', '-O', 'qcow2', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-S', '8k', '-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-S', '64k', '-O', 'qcow2', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-S', '1M', '-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-S', '0', '-O', 'qcow2', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-o', 'cluster_size=4k', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-o', 'extended_l2=on', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-o', 'compat=0.10', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  // chains: zero clusters in the middle layer, data in all three
  { argv: ['-O', 'qcow2', 'top.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'raw', 'top.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-O', 'qcow2', 'mid.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-W', '-m', '16', '-O', 'qcow2', 'top.qcow2', 'o.qcow2'], outputs: ['o.qcow2'], anyLayout: true },
  { argv: ['-m', '1', '-O', 'raw', 'top.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-O', 'qcow2', 'ext.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'raw', 'comp.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-O', 'qcow2', 'src.raw', 'top.qcow2', 'ext.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  // existing targets
  { argv: ['-n', '-O', 'qcow2', 'src.raw', 'empty.qcow2'], outputs: ['empty.qcow2'] },
  { argv: ['-n', '-O', 'qcow2', 'top.qcow2', 'full.qcow2'], outputs: ['full.qcow2'] },
  { argv: ['-n', '-O', 'qcow2', 'src.raw', 'full.qcow2'], outputs: ['full.qcow2'] },
  { argv: ['--target-is-zero', '-n', '-O', 'raw', 'top.qcow2', 'zero.raw'], outputs: ['zero.raw'] },
  { argv: ['--target-is-zero', '-n', '-O', 'qcow2', 'src.raw', 'empty.qcow2'], outputs: ['empty.qcow2'] },
];

/** What an output holds, through the real qemu-img: content, allocation map, and for qcow2 its check. */
async function describe(dir: string, name: string, anyLayout = false): Promise<unknown> {
  const path = join(dir, name);
  if (!existsSync(path)) return 'missing';
  const info = JSON.parse(qemuImg(['info', '--output=json', path]).stdout) as Record<string, unknown>;
  const map = qemuImg(['map', '--output=json', path]).stdout.replace(/"offset": [0-9]+/g, '"offset": N');
  const check = info['format'] === 'qcow2' ? qemuImg(['check', path]) : undefined;
  return {
    content: await guestSha256(path, String(info['format']), dir),
    map: anyLayout ? undefined : map,
    format: info['format'],
    check: check && {
      code: check.code,
      stdout: check.stdout.replace(/^Image end offset: \d+\n/m, '').replace(anyLayout ? /[0-9.]+% fragmented/ : /^$/, ''),
      stderr: check.stderr,
    },
  };
}

for (const c of cases) {
  test(`convert fast paths match qemu-img: ${c.argv.join(' ')}`, async () => {
    const a = prepared();
    const b = prepared();
    sameAsQemuImg(['convert', ...c.argv], a, b);
    for (const o of c.outputs) {
      const d = await describe(b, o, c.anyLayout);
      assert.deepEqual(d, await describe(a, o, c.anyLayout), o);
      assert.equal((d as { check?: { code: number } }).check?.code ?? 0, 0, `${o} does not check clean`);
    }
  });
}

test('block status of a chain with zero clusters in the middle layer matches qemu-img map (json and human)', () => {
  const d = prepared();
  for (const img of ['top.qcow2', 'mid.qcow2', 'ext.qcow2', 'comp.qcow2']) {
    for (const fmt of [['--output=json'], []]) {
      const want = qemuImg(['map', ...fmt, img], { cwd: d });
      const got = vdisk(['map', ...fmt, img], { cwd: d });
      assert.equal(got.stdout, want.stdout, `map ${fmt.join(' ')} ${img}`);
      assert.equal(got.code, want.code);
    }
  }
});
