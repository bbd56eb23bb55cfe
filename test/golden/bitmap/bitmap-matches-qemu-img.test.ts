/**
 * qemu-img bitmap through vdisk and the real qemu-img on copies of the same images: same stdout,
 * stderr (qemu's generated node name filtered, as iotests do), exit code, and the same result:
 * `info --output=json`, a clean `qemu-img check`, the same stored bitmaps (names, flags,
 * granularity, set bits) read from the files' bytes, and in the end byte-identical files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';
import { markInUse, readBitmaps } from '../../helpers/qcow2-bitmaps.ts';

const base = scratch('vdisk-bitmap-base-');
const q = (args: string[]): void => {
  const r = qemuImg(args, { cwd: base });
  assert.equal(r.code, 0, r.stderr);
};
const io = (file: string, ...cmds: string[]): void => {
  const r = qemuIo(['-f', 'qcow2', ...cmds.flatMap((c) => ['-c', c]), join(base, file)]);
  assert.equal(r.code, 0, r.stderr);
};

// img.qcow2: an enabled bitmap with dirty bits, a disabled one with another granularity, an empty one
q(['create', '-q', '-f', 'qcow2', 'img.qcow2', '10M']);
q(['bitmap', '--add', 'img.qcow2', 'b1']);
q(['bitmap', '--add', '-g', '1k', '--disable', 'img.qcow2', 'b2']);
io('img.qcow2', 'write 0 64k', 'write 3M 1');
q(['bitmap', '--add', '-g', '1M', 'img.qcow2', 'b3']);
// in-use.qcow2: bitmaps left in use (as after a crash)
q(['create', '-q', '-f', 'qcow2', 'in-use.qcow2', '10M']);
for (const [name, extra] of [['u1', []], ['u2', ['--disable']], ['ok', []]] as const) q(['bitmap', '--add', ...extra, 'in-use.qcow2', name]);
io('in-use.qcow2', 'write 0 1M');
markInUse(join(base, 'in-use.qcow2'), ['u1', 'u2']);
q(['create', '-q', '-f', 'qcow2', 'empty.qcow2', '10M']);
q(['create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '10M']);
q(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', 'small-clusters.qcow2', '10M']);
q(['create', '-q', '-f', 'qcow2', 'huge.qcow2', '8T']);
q(['create', '-q', '-f', 'raw', 'r.raw', '10M']);
// an overlay whose backing file is missing: qemu-img bitmap opens no backing chain
q(['create', '-q', '-f', 'qcow2', '-u', '-b', 'missing.qcow2', '-F', 'qcow2', 'orphan.qcow2', '10M']);
q(['bitmap', '--add', 'orphan.qcow2', 'o']);
// merge sources in other files: same size, other granularity; another size
q(['create', '-q', '-f', 'qcow2', 'src.qcow2', '10M']);
q(['bitmap', '--add', '-g', '1k', 'src.qcow2', 'y']);
io('src.qcow2', 'write 5000 1', 'write 9M 100k');
q(['create', '-q', '-f', 'qcow2', 'src-20M.qcow2', '20M']);
q(['bitmap', '--add', 'src-20M.qcow2', 'x']);

const long = 'x'.repeat(1024);
const cases: Array<{ image: string; argv: string[] }> = [
  ...[
    ['--add', 'T', 'new'], ['--add', 'T', 'b1'], ['--add', '-g', '512', 'T', 'new'], ['--add', '-g', '2M', 'T', 'new'],
    ['--add', '-g', '256', 'T', 'new'], ['--add', '-g', '3000', 'T', 'new'], ['--add', '-g', '4G', 'T', 'new'],
    ['--add', '-g', '4294967808', 'T', 'new'], ['--add', '-g', '0', 'T', 'new'], ['--add', '-g', '1x', 'T', 'new'],
    ['--add', '-g', '99999999999999999999', 'T', 'new'], ['--add', 'T', long], ['--add', 'T', 'x'.repeat(1023)],
    ['--add', 'T', 'é'.repeat(512)], ['--add', '--disable', 'T', 'new'], ['--add', '--add', 'T', 'new'],
    ['--remove', 'T', 'b1'], ['--remove', 'T', 'nope'], ['--clear', 'T', 'b1'], ['--clear', 'T', 'nope'],
    ['--disable', 'T', 'b1'], ['--enable', 'T', 'b2'], ['--enable', 'T', 'b1'], ['--disable', 'T', 'nope'],
    ['--merge', 'b1', 'T', 'b2'], ['--merge', 'b2', 'T', 'b3'], ['--merge', 'b1', 'T', 'b1'], ['--merge', 'nope', 'T', 'b1'],
    ['--merge', 'b1', '--add', 'T', 'new'], ['--add', '-g', '512', '--merge', 'b1', '--merge', 'b3', 'T', 'new'],
    ['--merge', 'b1', '--remove', '--add', '--merge', 'b2', '--disable', '--clear', 'T', 'b3'],
    ['--merge', 'y', '-b', 'src.qcow2', 'T', 'b3'], ['--merge', 'y', '-b', 'src.qcow2', '-F', 'qcow2', 'T', 'b1'],
    ['--merge', 'y', '-b', 'src.qcow2', '-F', 'raw', 'T', 'b1'], ['--merge', 'x', '-b', 'src-20M.qcow2', 'T', 'b1'],
    ['--merge', 'y', '-b', 'nonexistent', 'T', 'b1'],
    ['T', 'b1'], ['--add', 'T'], ['--add', 'T', 'b1', 'extra'], ['-g', '64k', '--remove', 'T', 'b1'],
    ['-F', 'qcow2', '--add', 'T', 'new'], ['-b', 'src.qcow2', '--add', 'T', 'new'], ['-q', '--add', 'T', 'new'],
    ['--merge'], ['--add', '-f', 'qcow2', '--image-opts', 'T', 'new'], ['--add', '-f', 'qcow2', 'T', 'new'],
    ['--add', '--image-opts', 'driver=qcow2,file.filename=T', 'new'], ['--add', 'nonexistent.qcow2', 'new'],
  ].map((argv) => ({ image: 'img.qcow2', argv })),
  ...[
    ['--add', 'T', 'u1'], ['--clear', 'T', 'u1'], ['--enable', 'T', 'u1'], ['--disable', 'T', 'u2'], ['--remove', 'T', 'u1'],
    ['--remove', 'T', 'u2'], ['--merge', 'u1', 'T', 'ok'], ['--merge', 'ok', 'T', 'u1'], ['--add', 'T', 'new'], ['--clear', 'T', 'ok'],
  ].map((argv) => ({ image: 'in-use.qcow2', argv })),
  { image: 'empty.qcow2', argv: ['--add', 'T', 'first'] },
  { image: 'empty.qcow2', argv: ['--add', '--remove', 'T', 'first'] },
  { image: 'small-clusters.qcow2', argv: ['--add', 'T', 'default-granularity'] },
  { image: 'v2.qcow2', argv: ['--add', 'T', 'b'] },
  { image: 'v2.qcow2', argv: ['--remove', 'T', 'b'] },
  { image: 'huge.qcow2', argv: ['--add', '-g', '1k', 'T', 'b'] },
  { image: 'huge.qcow2', argv: ['--add', '-g', '64k', 'T', 'b'] },
  { image: 'orphan.qcow2', argv: ['--add', 'T', 'b'] },
  { image: 'img.qcow2', argv: ['--merge', 'o', '-b', 'orphan.qcow2', 'T', 'b1'] },
  { image: 'r.raw', argv: ['--add', 'T', 'b'] },
  { image: 'r.raw', argv: ['--add', '-f', 'raw', 'T', 'b'] },
  { image: 'r.raw', argv: ['--remove', '-f', 'raw', 'T', 'b'] },
  { image: 'r.raw', argv: ['--add', '-g', '100', '-f', 'raw', 'T', 'b'] },
];

/** qemu names the image's node "#block1" + two random digits. */
const filterNode = (s: string): string => s.replace(/#block\d{3,}/g, 'NODE_NAME');

function copyBase(): string {
  const d = scratch('vdisk-bitmap-');
  for (const f of readdirSync(base)) copyFileSync(join(base, f), join(d, f));
  return d;
}

function infoJson(dir: string, image: string): unknown {
  const r = qemuImg(['info', '--output=json', image], { cwd: dir });
  if (r.code !== 0) return r.stderr;
  const o = JSON.parse(r.stdout) as Record<string, unknown>;
  delete o['actual-size'];
  return o;
}

function sameRun(got: RunResult, want: RunResult): void {
  assert.equal(got.stdout, want.stdout);
  assert.equal(filterNode(got.stderr), filterNode(want.stderr));
  assert.equal(got.code, want.code);
}

for (const c of cases) {
  const label = c.argv.map((a) => (a.length > 40 ? `${a.slice(0, 8)}...(${a.length})` : a)).join(' ');
  test(`bitmap matches qemu-img on ${c.image}: ${label}`, () => {
    const argv = ['bitmap', ...c.argv.map((a) => a.replace(/\bT\b/, c.image))];
    const qd = copyBase();
    const vd = copyBase();
    sameRun(vdisk(argv, { cwd: vd }), qemuImg(argv, { cwd: qd }));
    assert.deepEqual(infoJson(vd, c.image), infoJson(qd, c.image));
    if (c.image.endsWith('.qcow2') && existsSync(join(qd, c.image))) {
      assert.deepEqual(readBitmaps(join(vd, c.image)), readBitmaps(join(qd, c.image)));
      // vdisk allocates, writes and frees as qemu does, so the files come out the same
      assert.ok(readFileSync(join(vd, c.image)).equals(readFileSync(join(qd, c.image))), 'the image files are identical');
      // checked without its backing chain (orphan.qcow2 has none to open)
      const chk = qemuImg(['check', `json:{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"${c.image}"}}`], { cwd: vd });
      assert.equal(chk.code, 0, chk.stdout + chk.stderr);
      // vdisk's own info shows what the real one does
      const vi = vdisk(['info', '--output=json', c.image], { cwd: vd });
      const qi = qemuImg(['info', '--output=json', c.image], { cwd: vd });
      assert.equal(vi.stdout.replace(/"actual-size": \d+/, ''), qi.stdout.replace(/"actual-size": \d+/, ''));
    }
  });
}
