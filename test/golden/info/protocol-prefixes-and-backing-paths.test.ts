import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';

// "file:" names a host path (a colon left in it gets "./" before it), other prefixes name
// protocols, and relative backing names are joined to the overlay's name as written
function twin(steps: string[][]): void {
  const a = scratch();
  const b = scratch();
  for (const d of [a, b]) mkdirSync(join(d, 'sub'));
  const clean = (r: RunResult, d: string): RunResult => ({ code: r.code, stdout: r.stdout.replaceAll(d, 'D').replace(/disk size: .*\n/, '').replace(/"actual-size": \d+/, '"actual-size": N'), stderr: r.stderr.replaceAll(d, 'D') });
  for (const argv of steps) {
    const withDir = (d: string): string[] => argv.map((x) => x.replace('$D', d));
    const want = clean(qemuImg(withDir(a), { cwd: a }), a);
    const got = clean(vdisk(withDir(b), { cwd: b }), b);
    assert.deepEqual(got, want, argv.join(' '));
  }
}

test('create and info through file: prefixes match qemu-img', () => {
  twin([
    ['create', '-f', 'qcow2', 'file:a:b.qcow2', '1M'], ['info', 'a:b.qcow2'], ['info', './a:b.qcow2'],
    ['create', '-f', 'qcow2', 'base.qcow2', '1M'],
    ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'file:image:top.qcow2'],
    ['info', 'file:image:top.qcow2'], ['info', '--output=json', 'file:image:top.qcow2'], ['info', 'file:./image:top.qcow2'],
    ['info', 'file:$D/image:top.qcow2'], ['convert', '-O', 'qcow2', 'file:a:b.qcow2', 'file:c:d.qcow2'], ['compare', 'a:b.qcow2', 'file:c:d.qcow2'],
  ]);
});

test('unknown protocols and empty file names fail as in qemu-img', () => {
  twin([
    ['info', 'foo:bar.qcow2'], ['create', '-f', 'qcow2', 'foo:bar.qcow2', '1M'], ['create', '-f', 'qcow2', '-o', 'bogus=1', 'foo:bar.qcow2', '1M'],
    ['info', 'file:'], ['create', '-f', 'qcow2', 'file:', '1M'], ['info', 'file:foo:x/y.qcow2'], ['create', '-f', 'qcow2', 'file:foo:x/y.qcow2', '1M'],
    ['info', 'x/foo:bar'],
  ]);
});

test('relative backing names are joined to the overlay name without normalizing, as qemu-img shows them', () => {
  twin([
    ['create', '-f', 'qcow2', 'image:base.qcow2', '1M'],
    ['create', '-f', 'qcow2', '-b', './image:base.qcow2', '-F', 'qcow2', '$D/image:top.qcow2'],
    ['info', '$D/image:top.qcow2'], ['info', '--output=json', '$D/image:top.qcow2'],
    ['create', '-f', 'qcow2', '-b', 'image:top.qcow2', '-F', 'qcow2', 'sub/../o.qcow2'],
    ['create', '-f', 'qcow2', '-b', './image:top.qcow2', '-F', 'qcow2', 'sub/../o.qcow2'],
    ['info', 'sub/../o.qcow2'], ['info', '--backing-chain', './o.qcow2'], ['info', '$D/sub/../o.qcow2'],
  ]);
});
