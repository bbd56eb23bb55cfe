/**
 * convert's less common options, and its refusals, against the real qemu-img: backing files (-B,
 * -F, -o backing_file/backing_fmt), -C, -r, -n, --target-is-zero, --target-image-opts,
 * --image-opts, -l snapshots, -c -S 0, several sources. Same argv in two directories set up alike;
 * stdout, stderr and exit code must be equal, and so must what the output images hold (guest
 * content, allocation map, backing fields).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { copiesOf, qemuImg, qemuIo, guestSha256, sameAsQemuImg } from '../../helpers/oracle.ts';

function setup(dir: string): void {
  const ok = (r: { code: number | null; stderr: string }): void => assert.equal(r.code, 0, r.stderr);
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '8M']));
  ok(qemuIo(['-f', 'raw', '-c', 'write -P 1 0 1M', '-c', 'write -P 0 2M 2M', '-c', 'write -P 3 6M 64k', join(dir, 'src.raw')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '8M']));
  ok(qemuIo(['-c', 'write -P 4 0 4M', join(dir, 'base.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'ov.qcow2')]));
  ok(qemuIo(['-c', 'write -P 5 1M 64k', '-c', 'write -z 2M 64k', join(dir, 'ov.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'snap.qcow2'), '4M']));
  ok(qemuIo(['-c', 'write -P 6 0 64k', join(dir, 'snap.qcow2')]));
  ok(qemuImg(['snapshot', '-c', 'snap1', join(dir, 'snap.qcow2')]));
  ok(qemuIo(['-c', 'write -P 7 0 64k', join(dir, 'snap.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'empty.qcow2'), '8M']));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', join(dir, 'empty-v2.qcow2'), '8M']));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'empty-ov.qcow2'), '8M']));
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'zero8.raw'), '8M']));
  ok(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'full.raw'), '8M']));
  ok(qemuIo(['-f', 'raw', '-c', 'write -P 9 0 8M', join(dir, 'full.raw')]));
}

/** A fresh directory holding the images of setup(), copied (holes kept) from one made once. */
const prepared = copiesOf(setup);

interface Case {
  argv: string[];
  /** Output images whose content, map and backing fields are compared. */
  outputs?: string[];
}

const cases: Case[] = [
  // backing files for the target
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', 'ov.qcow2', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', '-o', 'backing_fmt=qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-B', 'nonexist.qcow2', '-F', 'qcow2', 'ov.qcow2', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', '-o', 'backing_fmt=qcow2', '-c', 'ov.qcow2', 'src.raw', 'o.qcow2'] },
  { argv: ['-O', 'raw', '-c', '-B', 'base.qcow2', 'src.raw', 'o.raw'] },
  { argv: ['-O', 'raw', '-o', 'backing_file=base.qcow2', 'src.raw', 'o.raw'] },
  { argv: ['-O', 'qcow2', '-o', 'backing_fmt=qcow2', 'src.raw', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-n', '-B', 'base.qcow2', 'ov.qcow2', 'empty.qcow2'], outputs: ['empty.qcow2'] },
  { argv: ['-O', 'qcow2', '-o', 'backing_file=base.qcow2', 'ov.qcow2', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-o', 'backing_file=base.qcow2,backing_fmt=qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', '-o', 'backing_file=src.raw', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'raw', '-B', 'base.qcow2', '-F', 'qcow2', 'ov.qcow2', 'o.raw'] },
  { argv: ['-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', 'ov.qcow2', 'src.raw', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-F', 'qcow2', 'ov.qcow2', 'o.qcow2'] },
  { argv: ['-O', 'qcow2', '-S', '0', '-B', 'base.qcow2', '-F', 'qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  // -n: no image creation
  { argv: ['-O', 'qcow2', '-n', '-o', 'cluster_size=4k', 'ov.qcow2', 'empty.qcow2'] },
  { argv: ['-n', '-O', 'raw', 'src.raw', 'missing.raw'] },
  { argv: ['-n', '-O', 'qcow2', 'zero8.raw', 'empty.qcow2'], outputs: ['empty.qcow2'] },
  { argv: ['-n', '-O', 'qcow2', 'zero8.raw', 'empty-v2.qcow2'], outputs: ['empty-v2.qcow2'] },
  { argv: ['-n', '-O', 'qcow2', 'zero8.raw', 'empty-ov.qcow2'], outputs: ['empty-ov.qcow2'] },
  { argv: ['-n', '-O', 'raw', 'src.raw', 'full.raw'], outputs: ['full.raw'] },
  { argv: ['--target-is-zero', '-n', '-O', 'raw', 'zero8.raw', 'full.raw'], outputs: ['full.raw'] },
  // target and source option strings
  { argv: ['--target-image-opts', '-O', 'raw', 'src.raw', 'driver=raw,file.filename=o.raw'] },
  { argv: ['--target-image-opts', '-n', 'src.raw', 'driver=raw,file.filename=full.raw'], outputs: ['full.raw'] },
  { argv: ['--target-image-opts', '-n', 'src.raw', 'driver=raw,file.filename=missing.raw'] },
  { argv: ['--image-opts', '-O', 'raw', 'driver=raw,file.filename=src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['--image-opts', '-f', 'raw', '-O', 'raw', 'driver=raw,file.filename=src.raw', 'o.raw'] },
  // internal snapshots as the source
  { argv: ['-l', 'snap1', '-O', 'raw', 'snap.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-l', 'snapshot.id=1', '-O', 'raw', 'snap.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-l', 'snapshot.name=snap1', '-O', 'raw', 'snap.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-l', 'snapshot.id=1,snapshot.name=snap1', '-O', 'raw', 'snap.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-l', 'snapshot.id=1,snapshot.name=other', '-O', 'raw', 'snap.qcow2', 'o.raw'] },
  { argv: ['-l', 'snapshot.id=99', '-O', 'raw', 'snap.qcow2', 'o.raw'] },
  { argv: ['-l', 'nosuch', '-O', 'raw', 'snap.qcow2', 'o.raw'] },
  { argv: ['-l', 'snap1', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-s', 'snap1', '-O', 'raw', 'snap.qcow2', 'o.raw'] },
  // -C copy offloading
  { argv: ['-C', '-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-C', '-O', 'raw', 'ov.qcow2', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-C', '-O', 'qcow2', 'src.raw', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-C', '-c', '-O', 'qcow2', 'src.raw', 'o.qcow2'] },
  { argv: ['-C', '-S', '0', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-C', '-S', '4k', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-C', '--salvage', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-C', '-c', '-S', '0', '--salvage', '-O', 'raw', 'nonexist', 'o.raw'] },
  { argv: ['-C', '-c'] },
  // -r rate limit
  { argv: ['-r', 'foo', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-r', '-1', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-r', '20E', '-O', 'raw', 'src.raw', 'o.raw'] },
  { argv: ['-r', '0', '-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  { argv: ['-r', '1E', '-O', 'raw', 'src.raw', 'o.raw'], outputs: ['o.raw'] },
  // compression and full allocation
  { argv: ['-c', '-S', '0', '-O', 'qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-S', '0', '-O', 'qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-O', 'qcow2', 'src.raw', 'ov.qcow2', 'snap.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-c', '-O', 'qcow2', 'src.raw', 'snap.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
  { argv: ['-m', '1', '-W', '-O', 'qcow2', 'ov.qcow2', 'o.qcow2'], outputs: ['o.qcow2'] },
];

/** What an output image holds, through the real qemu-img: guest content, allocation, backing. */
async function describe(dir: string, name: string): Promise<unknown> {
  const path = join(dir, name);
  if (!existsSync(path)) return 'missing';
  const info = JSON.parse(qemuImg(['info', '--output=json', path]).stdout) as Record<string, unknown>;
  const map = qemuImg(['map', '--output=json', path]).stdout.replace(/"offset": [0-9]+/g, '"offset": N');
  return {
    content: await guestSha256(path, String(info['format']), dir),
    map,
    format: info['format'],
    backing: info['backing-filename'],
    backingFormat: info['backing-filename-format'],
    size: info['virtual-size'],
  };
}

for (const c of cases) {
  test(`convert matches qemu-img: ${c.argv.join(' ')}`, async () => {
    const a = prepared();
    const b = prepared();
    sameAsQemuImg(['convert', ...c.argv], a, b);
    for (const o of ['o.raw', 'o.qcow2']) assert.equal(existsSync(join(b, o)), existsSync(join(a, o)), `${o} left behind`);
    for (const o of c.outputs ?? []) assert.deepEqual(await describe(b, o), await describe(a, o), o);
  });
}
