/**
 * qemu-img amend on qcow2 images made by the real qemu-img: the same argv through vdisk and
 * qemu-img on copies of the same files must print the same, exit the same, and leave images that
 * the real qemu-img describes (info), judges (check) and reads (guest content) the same, with the
 * same header cluster.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { QEMU_IO, guestSha256, qemuImg, run, scratch, vdisk } from '../../helpers/oracle.ts';

type Step = readonly string[];
const img = (...a: string[]): Step => ['qemu-img', ...a];
const io = (...a: string[]): Step => ['qemu-io', ...a];
const create = (opts: string, size = '64M', name = 't.qcow2'): Step => img('create', '-q', '-f', 'qcow2', '-o', opts, name, size);

function setUp(dir: string, steps: readonly Step[]): void {
  for (const [cmd, ...args] of steps) {
    const r = cmd === 'qemu-io' ? run(QEMU_IO, args, { cwd: dir }) : qemuImg(args, { cwd: dir });
    // a qemu-io that kills itself (sigraise) leaves a dirty image on purpose
    const killed = args.includes('sigraise 9') && r.code === null;
    assert.ok(r.code === 0 || killed, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  }
}

function info(dir: string, name: string): string {
  const r = qemuImg(['info', '--output=json', name], { cwd: dir });
  return (r.stderr + r.stdout).replace(/\s*"actual-size": \d+,?/, '');
}

interface Case {
  name: string;
  steps: readonly Step[];
  argv: readonly string[];
  /**
   * Whether qemu's layout is reproduced (header cluster, check's cluster numbers); not with
   * persistent bitmaps, which qemu moves when it closes the image.
   */
  layout?: boolean;
}

const base = [create('compat=1.1', '64M', 'b.qcow2'), io('-c', 'write -P 0x2a 0 128k', 'b.qcow2')];
const dirty = [create('compat=1.1,lazy_refcounts=on'), io('-c', 'write -P 0x2a 0 128k', '-c', 'flush', '-c', 'sigraise 9', 't.qcow2')];

const cases: Case[] = [
  { name: 'downgrade expands zero clusters of an image without backing', steps: [create('compat=1.1'), io('-c', 'write -z 0 128k', '-c', 'write -P 1 1M 64k', 't.qcow2')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade gives zero clusters over a backing file clusters of zeros', steps: [...base, img('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2', '64M'), io('-c', 'write -z 0 64k', 't.qcow2')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade expands zero clusters in an L2 table shared with a snapshot', steps: [...base, img('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2', '64M'), io('-c', 'write -z 0 128k', 't.qcow2'), img('snapshot', '-c', 'foo', 't.qcow2')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade of preallocated zero clusters writes zeros in place', steps: [create('compat=1.1', '8M'), io('-c', 'write -P 0x2a 0 8M', '-c', 'write -z 0 8M', 't.qcow2')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade of a dirty image repairs it first and prints the repair', steps: dirty, argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'lazy_refcounts=off on a dirty image makes it clean', steps: dirty, argv: ['-o', 'lazy_refcounts=off', 't.qcow2'] },
  { name: 'upgrade with lazy refcounts and a larger size', steps: [create('compat=0.10'), io('-c', 'write -P 0x2a 42M 64k', 't.qcow2')], argv: ['-o', 'compat=1.1,lazy_refcounts=on,size=128M', 't.qcow2'] },
  { name: 'refcount_bits 16 to 1', steps: [create('compat=1.1'), io('-c', 'write 16M 32M', 't.qcow2')], argv: ['-o', 'refcount_bits=1', 't.qcow2'] },
  { name: 'refcount_bits 1 to 64 needing several walks, with progress', steps: [create('refcount_bits=1,cluster_size=512', '64k'), io('-c', 'write 0 29696', 't.qcow2')], argv: ['-p', '-o', 'refcount_bits=64', 't.qcow2'] },
  { name: 'refcount_bits=1 refused when a snapshot shares clusters', steps: [create('compat=1.1'), img('snapshot', '-c', 'foo', 't.qcow2'), io('-c', 'write 0 1M', 't.qcow2')], argv: ['-o', 'refcount_bits=1', 't.qcow2'] },
  { name: 'upgrade and refcount change report progress over both operations', steps: [create('compat=0.10')], argv: ['-p', '-o', 'compat=1.1,refcount_bits=8', 't.qcow2'] },
  { name: 'downgrade with a snapshot reports progress per L1 entry', steps: [create('compat=1.1', '4G', 'b.qcow2'), img('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2', '4G'), io('-c', 'write -z 0 64k', '-c', 'write -z 3G 64k', 't.qcow2'), img('snapshot', '-c', 'foo', 't.qcow2')], argv: ['-p', '-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade refused by a snapshot of another size after the resize was done', steps: [create('compat=1.1', '32M'), img('snapshot', '-c', 'foo', 't.qcow2'), img('resize', '-q', 't.qcow2', '128M'), img('snapshot', '-c', 'bar', 't.qcow2')], argv: ['-o', 'compat=0.10,size=32M', 't.qcow2'] },
  { name: 'downgrade refused with a data file', steps: [create('compat=1.1,data_file=t.data')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade refused with extended L2 entries', steps: [create('compat=1.1,extended_l2=on')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade of a zstd image without compressed clusters', steps: [create('compat=1.1,compression_type=zstd')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'downgrade refused with refcount_bits other than 16', steps: [create('refcount_bits=64')], argv: ['-o', 'compat=0.10', 't.qcow2'] },
  { name: 'data_file name changed', steps: [create('compat=1.1,data_file=t.data')], argv: ['-o', 'data_file=foo', 't.qcow2'] },
  { name: 'data_file_raw cleared', steps: [create('compat=1.1,data_file=t.data,data_file_raw=on')], argv: ['-o', 'data_file_raw=off', 't.qcow2'] },
  { name: 'data_file_raw cannot be set', steps: [create('compat=1.1,data_file=t.data')], argv: ['-o', 'data_file_raw=on', 't.qcow2'] },
  { name: 'backing file cannot change', steps: [...base, create('compat=1.1')], argv: ['-o', 'backing_file=b.qcow2,backing_fmt=qcow2', 't.qcow2'] },
  { name: 'backing file named as it is', steps: [...base, img('create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 't.qcow2', '64M')], argv: ['-o', 'backing_file=b.qcow2,backing_fmt=qcow2', 't.qcow2'] },
  { name: 'lazy refcounts need compat 1.1', steps: [create('compat=0.10')], argv: ['-o', 'lazy_refcounts=on', 't.qcow2'] },
  { name: 'create-only option gets the creation hint', steps: [create('compat=1.1')], argv: ['-o', 'cluster_size=4k', 't.qcow2'] },
  { name: 'encryption options on an unencrypted image', steps: [create('compat=1.1')], argv: ['-o', 'encrypt.new-secret=sec0', 't.qcow2'] },
  { name: 'help lists the amend options', steps: [create('compat=1.1')], argv: ['-p', '-o', 'help', 't.qcow2'] },
  { name: 'a bad value with -p still ends the progress line', steps: [create('compat=1.1')], argv: ['-p', '-o', 'lazy_refcounts=maybe', 't.qcow2'] },
  { name: 'downgrade with a persistent bitmap succeeds as in qemu', steps: [create('compat=1.1'), img('bitmap', '--add', 't.qcow2', 'b0')], argv: ['-o', 'compat=0.10', 't.qcow2'], layout: false },
];

for (const c of cases) {
  test(`amend: ${c.name} (${c.argv.join(' ')}) matches qemu-img`, async () => {
    const q = scratch('vdisk-amend-q-');
    setUp(q, c.steps);
    const v = scratch('vdisk-amend-v-');
    cpSync(q, v, { recursive: true });
    const argv = ['amend', ...c.argv];
    const want = qemuImg(argv, { cwd: q });
    const got = vdisk(argv, { cwd: v });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    for (const f of readdirSync(q).filter((n) => n.endsWith('.qcow2'))) {
      assert.equal(info(v, f), info(q, f), `info ${f}`);
      const cq = qemuImg(['check', f], { cwd: q });
      const cv = qemuImg(['check', f], { cwd: v });
      if (c.layout !== false) assert.equal(cv.stdout + cv.stderr, cq.stdout + cq.stderr, `check ${f}`);
      assert.equal(cv.code, cq.code, `check ${f} exit code`);
      if (cq.code === 0 && !c.argv.some((a) => a.startsWith('data_file='))) {
        assert.equal(await guestSha256(f, 'qcow2', v), await guestSha256(f, 'qcow2', q), `guest content of ${f}`);
      }
      if (c.layout !== false) {
        const fq = readFileSync(join(q, f));
        const cs = 2 ** fq.readUInt32BE(20);
        const hq = fq.subarray(0, cs);
        const hv = readFileSync(join(v, f)).subarray(0, cs);
        assert.deepEqual(hv, hq, `header of ${f}`);
      }
    }
  });
}
