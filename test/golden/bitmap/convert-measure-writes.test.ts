/**
 * Persistent bitmaps beyond `qemu-img bitmap`, vdisk against the real qemu-img on copies:
 * convert --bitmaps / --skip-broken-bitmaps (messages, exit codes, the bitmaps of the target),
 * measure's "bitmaps size", and guest writes through vdisk (convert -n, rebase, commit) into an image
 * with enabled bitmaps, which must record the written ranges as qemu's block layer does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk, type RunResult } from '../../helpers/oracle.ts';
import { markInUse, readBitmaps } from '../../helpers/qcow2-bitmaps.ts';

const base = scratch('vdisk-bitmaps-cvt-');
const q = (...args: string[]): void => {
  const r = qemuImg(args, { cwd: base });
  assert.equal(r.code, 0, r.stderr);
};
const io = (fmt: string, file: string, ...cmds: string[]): void => {
  const r = qemuIo(['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), join(base, file)]);
  assert.equal(r.code, 0, r.stderr);
};

q('create', '-q', '-f', 'qcow2', 'a.qcow2', '10M');
q('bitmap', '--add', 'a.qcow2', 'b1');
q('bitmap', '--add', '--disable', '-g', '4k', 'a.qcow2', 'b2');
q('bitmap', '--add', '-g', '1M', 'a.qcow2', 'b3');
io('qcow2', 'a.qcow2', 'write 0 64k', 'write 2M 4k');
q('create', '-q', '-f', 'qcow2', 'in-use.qcow2', '10M');
for (const n of ['u1', 'u2', 'ok']) q('bitmap', '--add', 'in-use.qcow2', n);
markInUse(join(base, 'in-use.qcow2'), ['u1', 'u2']);
q('create', '-q', '-f', 'qcow2', 'has-b1.qcow2', '10M');
q('bitmap', '--add', 'has-b1.qcow2', 'b1');
q('bitmap', '--add', 'has-b1.qcow2', 'zz');
q('create', '-q', '-f', 'qcow2', 'has-zz.qcow2', '10M');
q('bitmap', '--add', 'has-zz.qcow2', 'zz');
q('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', 'v2.qcow2', '10M');
q('create', '-q', '-f', 'raw', 'data.raw', '10M');
io('raw', 'data.raw', 'write -P 1 1M 64k', 'write -P 2 5M 3k');
q('create', '-q', '-f', 'qcow2', 'huge.qcow2', '8T');
q('bitmap', '--add', '-g', '2k', 'huge.qcow2', 'b');
q('bitmap', '--add', '-g', '4k', 'huge.qcow2', 'c');
// tracked.qcow2: an enabled and a disabled bitmap, nothing written yet
q('create', '-q', '-f', 'qcow2', 'tracked.qcow2', '10M');
q('bitmap', '--add', 'tracked.qcow2', 'en');
q('bitmap', '--add', '--disable', 'tracked.qcow2', 'dis');

const filterNode = (s: string): string => s.replace(/#block\d{3,}/g, 'NODE_NAME');

function copyBase(): string {
  const d = scratch('vdisk-bitmaps-run-');
  for (const f of readdirSync(base)) copyFileSync(join(base, f), join(d, f));
  return d;
}

function sameRun(got: RunResult, want: RunResult): void {
  assert.equal(got.stdout, want.stdout);
  assert.equal(filterNode(got.stderr), filterNode(want.stderr));
  assert.equal(got.code, want.code);
}

/** The files each tool left, and the bitmaps of every qcow2 one; every vdisk-written image checks clean. */
function sameImages(vd: string, qd: string, images: string[], identical: boolean): void {
  for (const img of images) {
    assert.equal(existsSync(join(vd, img)), existsSync(join(qd, img)), img);
    if (!existsSync(join(qd, img)) || !img.endsWith('.qcow2')) continue;
    assert.deepEqual(readBitmaps(join(vd, img)), readBitmaps(join(qd, img)), img);
    if (identical) assert.ok(readFileSync(join(vd, img)).equals(readFileSync(join(qd, img))), `${img} is byte-identical`);
    const chk = qemuImg(['check', img], { cwd: vd });
    assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  }
}

const converts: string[][] = [
  ['--bitmaps', '-O', 'qcow2', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-O', 'qcow2', '-o', 'cluster_size=4k', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-c', '-O', 'qcow2', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-O', 'raw', 'a.qcow2', 'o.raw'],
  ['--bitmaps', '-O', 'qcow2', '-o', 'compat=0.10', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-O', 'qcow2', 'in-use.qcow2', 'o.qcow2'],
  ['--bitmaps', '--skip-broken-bitmaps', '-O', 'qcow2', 'in-use.qcow2', 'o.qcow2'],
  ['--skip-broken-bitmaps', '-O', 'qcow2', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-O', 'qcow2', 'data.raw', 'o.qcow2'],
  ['--bitmaps', '-O', 'qcow2', 'v2.qcow2', 'o.qcow2'],
  ['--bitmaps', '-O', 'qcow2', 'a.qcow2', 'a.qcow2', 'o.qcow2'],
  ['--bitmaps', '-n', '-O', 'qcow2', 'a.qcow2', 'has-b1.qcow2'],
  ['--bitmaps', '-n', '-O', 'qcow2', 'a.qcow2', 'has-zz.qcow2'],
];

/** vdisk's convert lays data out differently from qemu's with -c or other cluster sizes, bitmaps or not. */
const dataLayoutDiffers = (argv: string[]): boolean => argv.includes('-c') || argv.includes('cluster_size=4k');

for (const argv of converts) {
  test(`convert matches qemu-img: ${argv.join(' ')}`, () => {
    const qd = copyBase();
    const vd = copyBase();
    sameRun(vdisk(['convert', ...argv], { cwd: vd }), qemuImg(['convert', ...argv], { cwd: qd }));
    sameImages(vd, qd, ['o.qcow2', 'o.raw', 'has-b1.qcow2', 'has-zz.qcow2'], !dataLayoutDiffers(argv));
  });
}

const measures: string[][] = [
  ['-O', 'qcow2', 'a.qcow2'], ['--output=json', '-O', 'qcow2', 'a.qcow2'], ['-O', 'qcow2', '-o', 'cluster_size=2M', 'a.qcow2'],
  ['-O', 'qcow2', 'huge.qcow2'], ['-O', 'qcow2', '-o', 'cluster_size=4k', 'huge.qcow2'], ['-O', 'qcow2', 'in-use.qcow2'],
  ['-O', 'raw', 'a.qcow2'], ['-O', 'qcow2', 'v2.qcow2'], ['-O', 'qcow2', 'data.raw'],
];

for (const argv of measures) {
  test(`measure counts bitmaps as qemu-img does: ${argv.join(' ')}`, () => {
    sameRun(vdisk(['measure', ...argv], { cwd: base }), qemuImg(['measure', ...argv], { cwd: base }));
  });
}

// files must come out byte-identical unless `identical: false` says why not
const writes: Array<{ what: string; identical?: false; run: (tool: (a: string[]) => RunResult, dir: string) => RunResult }> = [
  // convert -n writes its data in another order than qemu's (with or without bitmaps)
  { what: 'convert -n into it', identical: false, run: (tool) => tool(['convert', '-n', '-f', 'raw', '-O', 'qcow2', 'data.raw', 'tracked.qcow2']) },
  {
    what: 'rebase onto no backing file (the backing data is copied in)',
    run: (tool, dir) => {
      assert.equal(qemuImg(['rebase', '-u', '-b', 'data.raw', '-F', 'raw', 'tracked.qcow2'], { cwd: dir }).code, 0);
      return tool(['rebase', '-b', '', 'tracked.qcow2']);
    },
  },
  {
    // the order in which a commit allocates its clusters varies between runs: not identical
    what: 'commit of an overlay into it',
    identical: false,
    run: (tool, dir) => {
      assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'tracked.qcow2', '-F', 'qcow2', 'top.qcow2'], { cwd: dir }).code, 0);
      assert.equal(qemuIo(['-c', 'write 2M 4k', '-c', 'write 7M 1', join(dir, 'top.qcow2')]).code, 0);
      return tool(['commit', 'top.qcow2']);
    },
  },
];

for (const w of writes) {
  test(`enabled bitmaps record writes like qemu-img's: ${w.what}`, () => {
    const qd = copyBase();
    const vd = copyBase();
    sameRun(w.run((a) => vdisk(a, { cwd: vd }), vd), w.run((a) => qemuImg(a, { cwd: qd }), qd));
    sameImages(vd, qd, ['tracked.qcow2'], w.identical ?? true);
    const en = readBitmaps(join(vd, 'tracked.qcow2')).bitmaps.find((b) => b.name === 'en')!;
    assert.ok(en.setCount > 0 && en.flags === 2, 'the enabled bitmap is dirty and no longer in use');
  });
}
