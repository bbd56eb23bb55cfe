/**
 * Issue P4's convert matrix: every readable fixture (qemu-made and real images of the formats vdisk
 * reads) converted to every target vdisk writes gives an image that is guest-identical to the real
 * qemu-img's conversion of the same input, that the real `qemu-img check` calls clean, and whose
 * allocation is within 5% of qemu-img's output (plus one file-system block, so a one-block
 * difference on a tiny image does not count as 5%).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fixturesDir, manifest, qemuImg, scratch, vdisk, type ManifestEntry } from '../../helpers/oracle.ts';

/** Formats vdisk reads today; a format joins the matrix when its driver lands. */
const READABLE = new Set(['raw', 'qcow2']);

interface Target {
  name: string;
  format: string;
  args: string[];
}
const TARGETS: Target[] = [
  { name: 'raw', format: 'raw', args: ['-O', 'raw'] },
  { name: 'qcow2', format: 'qcow2', args: ['-O', 'qcow2'] },
  { name: 'qcow2 -c (zlib)', format: 'qcow2', args: ['-O', 'qcow2', '-c'] },
  { name: 'qcow2 -c (zstd)', format: 'qcow2', args: ['-O', 'qcow2', '-c', '-o', 'compression_type=zstd'] },
];

const ALLOCATION_SLACK = 1.05;
const FS_BLOCK = 4096;

function sources(): ManifestEntry[] {
  return manifest().filter((e) => e.group !== 'hostile' && e.role !== 'component' && READABLE.has(e.format)
    && typeof e.virtual_size === 'number' && e.check?.exit_code !== 2);
}

/** The convert argv naming the source: by format, or as --image-opts with its secret. */
function sourceArgs(e: ManifestEntry): string[] {
  if (e.image_opts && e.secret_object) {
    return ['--object', e.secret_object, '--image-opts', e.image_opts.replace(`filename=${e.path}`, `filename=${basename(e.path)}`)];
  }
  return ['-f', e.format, basename(e.path)];
}

const allocated = (p: string): number => statSync(p).blocks * 512;

const out = scratch('vdisk-convert-matrix-');
const root = fixturesDir();
for (const e of sources()) {
  for (const t of TARGETS) {
    test(`convert ${e.path} to ${t.name} is guest-identical to qemu-img's, checks clean and is as sparse`, () => {
      const base = join(out, `${e.path.replace(/\//g, '_')}.${t.name.replace(/\W+/g, '_')}`);
      const mine = `${base}.vdisk`;
      const theirs = `${base}.qemu`;
      const argv = (dst: string): string[] => ['convert', ...sourceArgs(e), ...t.args, dst];
      // in the image's folder: qemu-img 7.2 opens a qcow2 external data file relative to the working directory
      const cwd = dirname(join(root, e.path));
      const q = qemuImg(argv(theirs), { cwd });
      assert.equal(q.code, 0, `qemu-img: ${q.stderr}`);
      const v = vdisk(argv(mine), { cwd });
      assert.equal(v.stderr, q.stderr);
      assert.equal(v.code, 0);
      const cmp = qemuImg(['compare', '-f', t.format, '-F', t.format, theirs, mine]);
      assert.equal(cmp.code, 0, `qemu-img compare: ${cmp.stdout}${cmp.stderr}`);
      if (t.format === 'qcow2') {
        const chk = qemuImg(['check', mine]);
        assert.equal(chk.code, 0, `qemu-img check: ${chk.stdout}${chk.stderr}`);
      }
      const a = allocated(mine);
      const b = allocated(theirs);
      assert.ok(a <= b * ALLOCATION_SLACK + FS_BLOCK, `vdisk's output allocates ${a} bytes, qemu-img's ${b}`);
    });
  }
}
