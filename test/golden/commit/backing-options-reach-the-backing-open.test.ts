import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

// backing.* options of --image-opts (and json:) go to the backing file's open, as in qemu (iotest
// 198): an encrypted base gets its key from backing.encrypt.key-secret, and backing.file.filename
// names the file instead of the header's name
const S0 = 'secret,id=sec0,data=astrochicken';
const S1 = 'secret,id=sec1,data=furby';
const OBJ = ['--object', S0, '--object', S1];

function chain(dir: string): { base: string; layer: string; spec: string } {
  const base = join(dir, 'base.qcow2');
  const layer = join(dir, 'layer.qcow2');
  assert.equal(qemuImg(['create', '-q', '--object', S0, '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', base, '4M']).code, 0);
  assert.equal(qemuIo(['--object', S0, '--image-opts', '-c', 'write -P 0xa 0 4M', `driver=qcow2,file.filename=${base},encrypt.key-secret=sec0`]).code, 0);
  assert.equal(qemuImg(['create', '-q', '--object', S1, '-f', 'qcow2', '-o', 'encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10', '-b', base, '-F', 'qcow2', layer]).code, 0);
  const spec = `driver=qcow2,file.filename=${layer},encrypt.key-secret=sec1,backing.driver=qcow2,backing.file.filename=${base},backing.encrypt.key-secret=sec0`;
  assert.equal(qemuIo([...OBJ, '--image-opts', '-c', 'write -P 0x9 1M 1M', spec]).code, 0);
  return { base, layer, spec };
}

test('commit --image-opts with backing.encrypt.key-secret commits into the encrypted base as qemu-img does', () => {
  const v = chain(scratch());
  const q = chain(scratch());
  assert.deepEqual(vdisk(['commit', ...OBJ, '--image-opts', v.spec]), qemuImg(['commit', ...OBJ, '--image-opts', q.spec]));
  const read = (b: string, pattern: string, off: string): number | null =>
    qemuIo(['--object', S0, '--image-opts', '-c', `read -P ${pattern} ${off} 1M`, `driver=qcow2,file.filename=${b},encrypt.key-secret=sec0`]).code;
  assert.equal(read(v.base, '0x9', '1M'), 0);
  assert.equal(read(v.base, '0xa', '0'), 0);
  assert.equal(qemuImg(['check', '--object', S0, '--image-opts', `driver=qcow2,file.filename=${v.base},encrypt.key-secret=sec0`]).code, 0);
});

test('compare --image-opts reads the backing file that backing.file.filename names', () => {
  const d = scratch();
  const c = chain(d);
  assert.equal(qemuImg(['convert', '--object', S0, '--image-opts', `driver=qcow2,file.filename=${c.base},encrypt.key-secret=sec0`, '-O', 'raw', join(d, 'other.raw')]).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 0x5 0 64k', join(d, 'other.raw')]).code, 0);
  const spec = c.spec.replace(`backing.driver=qcow2,backing.file.filename=${c.base},backing.encrypt.key-secret=sec0`, `backing.driver=raw,backing.file.filename=${join(d, 'other.raw')}`);
  const argv = ['compare', ...OBJ, '--image-opts', spec, `driver=raw,file.filename=${join(d, 'other.raw')}`];
  assert.deepEqual(vdisk(argv), qemuImg(argv));
});
