import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// Regression (iotest 122): convert -c of several sources whose sizes are not cluster aligned. The
// compressed writer takes whole target clusters, so a cluster that straddles two sources must be
// assembled from both; a walk aligned per source lost the data of every source after the first.
const dir = scratch();
const q = (args: string[]): void => assert.equal(qemuImg(args, { cwd: dir }).code, 0);
const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) % 251 + 1;
  return b;
};
// odd sizes: 512-aligned but not cluster aligned, and one not even sector aligned
writeFileSync(join(dir, 'a.raw'), pattern(1000448, 1));
writeFileSync(join(dir, 'z.raw'), Buffer.alloc(70 * 1024)); // zeros across two cluster boundaries
writeFileSync(join(dir, 'c.raw'), pattern(70001, 3));
q(['create', '-q', '-f', 'qcow2', 'b.qcow2', String(3 * 1024 * 1024 + 512)]);
assert.equal(qemuIo(['-c', 'write -P 0x41 0 4k', '-c', 'write -P 0x42 2097000 100k', '-c', 'write -P 0x43 3145728 512',
  join(dir, 'b.qcow2')]).code, 0);
const sources = ['a.raw', 'b.qcow2', 'z.raw', 'c.raw', 'a.raw'];

for (const ct of ['zlib', 'zstd']) {
  for (const sparse of [[], ['-S', '0'], ['-S', '4k'], ['-S', '1M']]) {
    test(`convert -c -o compression_type=${ct} ${sparse.join(' ')} of odd-sized sources keeps every source's bytes`, () => {
      const tag = `${ct}${sparse.join('')}`;
      const args = ['convert', '-O', 'qcow2', '-c', '-o', `compression_type=${ct}`, ...sparse, ...sources];
      assert.deepEqual(vdisk([...args, `v-${tag}.qcow2`], { cwd: dir }), qemuImg([...args, `q-${tag}.qcow2`], { cwd: dir }));
      const cmp = qemuImg(['compare', '-f', 'qcow2', '-F', 'qcow2', `v-${tag}.qcow2`, `q-${tag}.qcow2`], { cwd: dir });
      assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr);
      const check = qemuImg(['check', `v-${tag}.qcow2`], { cwd: dir });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      const mapOf = (n: string): string => qemuImg(['map', '--output=json', n], { cwd: dir }).stdout.replace(/"offset": \d+/g, '"offset": X');
      assert.equal(mapOf(`v-${tag}.qcow2`), mapOf(`q-${tag}.qcow2`));
    });
  }
}

test('convert of odd-sized sources into raw equals the sources laid end to end', () => {
  const args = ['convert', '-O', 'raw', ...sources];
  assert.deepEqual(vdisk([...args, 'v.raw'], { cwd: dir }), qemuImg([...args, 'q.raw'], { cwd: dir }));
  const cmp = qemuImg(['compare', '-f', 'raw', '-F', 'raw', 'v.raw', 'q.raw'], { cwd: dir });
  assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr);
});
