import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// convert -c -S 0 allocates every cluster, zero ones as compressed clusters, as qemu-img does
const dir = scratch();
const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
q(['create', '-q', '-f', 'qcow2', 't.qcow2', '64M']);
assert.equal(qemuIo(['-c', 'write -P 0x22 0 3M', '-c', 'write -P 0 3M 3M', join(dir, 't.qcow2')]).code, 0);
q(['create', '-q', '-f', 'qcow2', 'b.qcow2', '64M']);
assert.equal(qemuIo(['-c', 'write -P 0x11 0 32M', join(dir, 'b.qcow2')]).code, 0);
q(['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'u.qcow2']);
assert.equal(qemuIo(['-c', 'write -P 0x22 0 3M', join(dir, 'u.qcow2')]).code, 0);

for (const src of ['t.qcow2', 'u.qcow2']) {
  for (const extra of [['-S', '0'], []]) {
    test(`convert -c ${extra.join(' ')} ${src} allocates as qemu-img does`, () => {
      const args = ['convert', '-O', 'qcow2', '-c', ...extra, src];
      const tag = `${src}${extra.length}`;
      assert.deepEqual(vdisk([...args, `v-${tag}`], { cwd: dir }), qemuImg([...args, `q-${tag}`], { cwd: dir }));
      const mapOf = (n: string): string => qemuImg(['map', '--output=json', n], { cwd: dir }).stdout;
      assert.equal(mapOf(`v-${tag}`), mapOf(`q-${tag}`));
      assert.equal(qemuImg(['compare', `v-${tag}`, src], { cwd: dir }).code, 0);
    });
  }
}
