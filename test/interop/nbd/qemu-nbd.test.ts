/**
 * vdisk's NBD client against the real qemu-nbd: the same command lines through vdisk and the
 * real qemu-img give the same output, exit codes and bytes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, run, scratch, vdisk } from '../../helpers/oracle.ts';

const dir = scratch('vdisk-nbd-');
const servers: number[] = [];

/** Start a forked qemu-nbd on a unix socket; its pid is killed after the file's tests. */
function serve(name: string, args: string[]): string {
  const sock = join(dir, `${name}.sock`);
  const pidFile = join(dir, `${name}.pid`);
  const r = run('/usr/bin/qemu-nbd', ['-k', sock, '-t', '--fork', `--pid-file=${pidFile}`, ...args]);
  assert.equal(r.code, 0, r.stderr);
  servers.push(Number(readFileSync(pidFile, 'utf8')));
  return sock;
}

after(() => {
  for (const pid of servers) {
    try {
      process.kill(pid);
    } catch { /* already gone */ }
  }
});

function same(args: string[]): void {
  const v = vdisk(args, { cwd: dir });
  const q = qemuImg(args, { cwd: dir });
  assert.deepEqual({ code: v.code, stdout: v.stdout, stderr: v.stderr }, { code: q.code, stdout: q.stdout, stderr: q.stderr }, args.join(' '));
}

qemuImg(['create', '-f', 'qcow2', join(dir, 'src.qcow2'), '64M']);
qemuIo(['-c', 'write -P 0x11 0 1M', '-c', 'write -z 4M 1M', '-c', 'write -P 0x22 8M 64k', join(dir, 'src.qcow2')]);
const ro = serve('ro', ['-r', '-f', 'qcow2', '-x', 'exp', join(dir, 'src.qcow2')]);
const roUri = `nbd+unix:///exp?socket=${ro}`;

test('info and map over nbd+unix:// print what qemu-img prints', () => {
  same(['info', roUri]);
  same(['info', '--output=json', roUri]);
  same(['map', roUri]);
  same(['map', '--output=json', roUri]);
});

test('the legacy nbd:unix: name, json: and --image-opts name the same export as qemu-img', () => {
  same(['info', `nbd:unix:${ro}:exportname=exp`]);
  same(['info', `json:{"driver":"nbd","server":{"type":"unix","path":"${ro}"},"export":"exp"}`]);
  same(['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${ro},export=exp`]);
  same(['info', '--image-opts', `driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=${ro},file.export=exp`]);
});

test('open errors are worded as qemu-img words them', () => {
  same(['info', `nbd+unix:///nope?socket=${ro}`]);
  same(['info', `nbd+unix:///?socket=${join(dir, 'absent.sock')}`]);
  same(['info', 'nbd+unix:///exp']);
  same(['info', '--image-opts', `driver=nbd,server.type=unix,server.path=${ro},export=exp,x-dirty-bitmap=qemu:dirty-bitmap:none`]);
  same(['info', '--image-opts', `driver=nbd,server.type=unix,server.path=${ro},export=exp,foo=1`]);
  same(['info', `json:{"driver":"nbd","path":"${ro}","export":"exp","server":{"type":"unix","path":"${ro}"}}`]);
});

test('an export cannot be resized or grown, as qemu-img says', () => {
  qemuImg(['create', '-f', 'raw', join(dir, 'fixed.raw'), '1M']);
  const s = serve('fixed', ['-f', 'raw', join(dir, 'fixed.raw')]);
  const uri = `nbd+unix://?socket=${s}`;
  same(['resize', '-f', 'raw', uri, '2M']);
  same(['resize', '-f', 'raw', uri, '1M']);
  same(['create', '-f', 'raw', uri, '2M']);
  same(['create', '-f', 'raw', '-o', 'preallocation=full', uri, '1M']);
  same(['create', '-f', 'raw', uri, '1M']);
});

test('convert from nbd gives the same bytes and the same holes as qemu-img', () => {
  const v = vdisk(['convert', '-O', 'raw', roUri, join(dir, 'v.raw')]);
  const q = qemuImg(['convert', '-O', 'raw', roUri, join(dir, 'q.raw')]);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(q.code, 0, q.stderr);
  assert.ok(readFileSync(join(dir, 'v.raw')).equals(readFileSync(join(dir, 'q.raw'))));
  assert.equal(qemuImg(['map', '--output=json', join(dir, 'v.raw')]).stdout, qemuImg(['map', '--output=json', join(dir, 'q.raw')]).stdout);
  same(['compare', '-f', 'raw', '-F', 'raw', roUri, join(dir, 'q.raw')]);
});

test('writing to a read-only export is refused as qemu-img refuses it', () => {
  same(['convert', '-n', '-O', 'raw', join(dir, 'q.raw'), roUri]);
});

test('convert into a writable export writes what qemu-img compare then finds identical', () => {
  qemuImg(['create', '-f', 'raw', join(dir, 'dst.raw'), '64M']);
  const rw = serve('rw', ['-f', 'raw', join(dir, 'dst.raw')]);
  const uri = `nbd+unix://?socket=${rw}`;
  const c = vdisk(['convert', '-n', '-f', 'qcow2', '-O', 'raw', join(dir, 'src.qcow2'), uri]);
  assert.equal(c.code, 0, c.stderr);
  const cmp = qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'src.qcow2'), uri]);
  assert.equal(cmp.stdout, 'Images are identical.\n', cmp.stderr);
});

test('convert into an export that held data overwrites the holes too (an export is not zero-initialized)', () => {
  qemuImg(['create', '-f', 'raw', join(dir, 'dirty.raw'), '64M']);
  qemuIo(['-f', 'raw', '-c', 'write -P 0x77 0 64M', join(dir, 'dirty.raw')]);
  const rw = serve('dirty', ['-f', 'raw', join(dir, 'dirty.raw')]);
  const uri = `nbd+unix://?socket=${rw}`;
  const c = vdisk(['convert', '-f', 'qcow2', '-O', 'raw', join(dir, 'src.qcow2'), uri]);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'src.qcow2'), uri]).stdout, 'Images are identical.\n');
});

test('a busy read-only copy from a multi-conn export (qemu-nbd -e 4) gives the same bytes', () => {
  const s = serve('multi', ['-r', '-e', '4', '-f', 'qcow2', join(dir, 'src.qcow2')]);
  const c = vdisk(['convert', '-m', '16', '-W', '-O', 'raw', `nbd+unix://?socket=${s}`, join(dir, 'multi.raw')]);
  assert.equal(c.code, 0, c.stderr);
  assert.equal(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'src.qcow2'), join(dir, 'multi.raw')]).stdout, 'Images are identical.\n');
});

test('qcow2 created over nbd passes the real qemu-img check', () => {
  qemuImg(['create', '-f', 'raw', join(dir, 'box.raw'), '16M']);
  const rw = serve('box', ['-f', 'raw', join(dir, 'box.raw')]);
  const uri = `nbd+unix://?socket=${rw}`;
  const c = vdisk(['convert', '-f', 'qcow2', '-O', 'qcow2', '-c', join(dir, 'src.qcow2'), uri]);
  assert.equal(c.code, 0, c.stderr);
  same(['check', uri]);
  same(['compare', join(dir, 'src.qcow2'), uri]);
  assert.ok(existsSync(join(dir, 'box.raw')));
});

test('a persistent dirty bitmap read through x-dirty-bitmap maps as in qemu-img', () => {
  const img = join(dir, 'bm.qcow2');
  qemuImg(['create', '-f', 'qcow2', img, '4M']);
  qemuImg(['bitmap', '--add', img, 'b0']);
  qemuIo(['-c', 'write 1M 1M', img]);
  const s = serve('bm', ['-r', '-f', 'qcow2', '-B', 'b0', img]);
  same(['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${s},x-dirty-bitmap=qemu:dirty-bitmap:b0`]);
});
