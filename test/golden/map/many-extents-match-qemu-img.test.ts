/**
 * `map` of images with thousands of extents, where vdisk answers most runs without I/O
 * (FormatLayer.blockStatusSync, l1l2.ts sameRun's int32 walk over L2 entries) and streams the
 * output in 4096-byte blocks: data written cluster by cluster in a shuffled order, zero and
 * compressed clusters, an overlay over such an image (backing depth), extended L2 subclusters,
 * metadata preallocation; whole images and windows starting and ending mid-cluster. The output
 * equals qemu-img's byte for byte, through a pipe as through a file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IMG, qemuImg, qemuIo, scratch, vdiskAsQemuImg } from '../../helpers/oracle.ts';
import { shuffled } from '../../helpers/shuffle.ts';


/** `count` writes of `unit` bytes at shuffled places; every 9th a zero write, every 13th compressed when asked. */
function scatter(path: string, unit: number, span: number, count: number, seed: number, compressed: boolean): void {
  const cmds: string[] = [];
  shuffled(Math.floor(span / unit), seed).slice(0, count).forEach((s, i) => {
    const at = s * unit;
    if (i % 9 === 4) cmds.push('-c', `write -z ${at} ${unit}`);
    else if (compressed && i % 13 === 6) cmds.push('-c', `write -c -P ${(i % 200) + 1} ${at} ${unit}`);
    else cmds.push('-c', `write -P ${(i % 200) + 1} ${at} ${unit}`);
  });
  const w = qemuIo([...cmds, path]);
  assert.equal(w.code, 0, w.stderr);
}

function create(dir: string, name: string, opts: string, size: string, extra: string[] = []): string {
  const path = join(dir, name);
  const c = qemuImg(['create', '-q', '-f', 'qcow2', '-o', opts, ...extra, path, size]);
  assert.equal(c.code, 0, c.stderr);
  return path;
}

const dir = scratch('vdisk-map-many-');
scatter(create(dir, 'frag.qcow2', 'cluster_size=4k', '64M'), 4096, 60 << 20, 3000, 3, true);
scatter(create(dir, 'top.qcow2', 'cluster_size=4k', '64M', ['-b', 'frag.qcow2', '-F', 'qcow2']), 4096, 60 << 20, 800, 11, false);
scatter(create(dir, 'ext.qcow2', 'cluster_size=16k,extended_l2=on', '64M'), 2048, 32 << 20, 2000, 5, false);
scatter(create(dir, 'pre.qcow2', 'preallocation=metadata', '256M'), 65536, 200 << 20, 600, 9, false);

const IMAGES = ['frag.qcow2', 'top.qcow2', 'ext.qcow2', 'pre.qcow2'];
const WINDOWS: string[][] = [[], ['--start-offset=12345', '--max-length=20000000']];

for (const image of IMAGES) {
  for (const window of WINDOWS) {
    for (const output of [['--output=json'], []]) {
      const argv = ['map', ...output, ...window, image];
      test(`map of many extents matches qemu-img: ${argv.join(' ')}`, () => {
        const want = spawnSync(QEMU_IMG, argv, { cwd: dir, encoding: 'utf8', maxBuffer: 1 << 28 });
        const got = spawnSync(vdiskAsQemuImg(), argv, { cwd: dir, encoding: 'utf8', maxBuffer: 1 << 28 });
        // the human format refuses compressed clusters (frag, and top over it): an error after some lines
        assert.equal(got.stderr, want.stderr);
        assert.equal(got.status, want.status);
        if (output.length) assert.ok(want.stdout.split('\n').length > 100, 'the image has many extents');
        assert.equal(got.stdout, want.stdout);
      });
    }
  }
}

test('map --output=json of many extents into a file equals qemu-img\'s', () => {
  const sh = (tool: string, out: string): void => {
    const r = spawnSync('sh', ['-c', '"$0" map --output=json top.qcow2 > "$1"', tool, out], { cwd: dir });
    assert.equal(r.status, 0, String(r.stderr));
  };
  sh(QEMU_IMG, 'q.json');
  sh(vdiskAsQemuImg(), 'v.json');
  assert.ok(readFileSync(join(dir, 'v.json')).equals(readFileSync(join(dir, 'q.json'))));
});
