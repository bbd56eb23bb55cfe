import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, vdisk } from '../../helpers/oracle.ts';

/** base (4M, qcow2 or raw) <- mid (4M) <- top (8M), with data in every layer. */
function chain(baseFmt: 'qcow2' | 'raw'): string {
  const d = scratch();
  const q = (args: string[]): void => {
    const r = qemuImg(args, { cwd: d });
    assert.equal(r.code, 0, r.stderr);
  };
  q(['create', '-q', '-f', baseFmt, 'base.img', '4M']);
  q(['create', '-q', '-f', 'qcow2', '-b', 'base.img', '-F', baseFmt, 'mid.qcow2']);
  q(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', 'top.qcow2', '8M']);
  qemuIo(['-f', baseFmt, '-c', 'write -P 9 512k 64k', join(d, 'base.img')]);
  qemuIo(['-f', 'qcow2', '-c', 'write -P 1 0 64k', '-c', 'write -z 512k 32k', join(d, 'mid.qcow2')]);
  qemuIo(['-f', 'qcow2', '-c', 'write -P 2 1M 64k', '-c', 'write -P 3 6M 64k', join(d, 'top.qcow2')]);
  return d;
}

const CASES: Array<{ base: 'qcow2' | 'raw'; argv: string[] }> = [
  { base: 'qcow2', argv: ['top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'base.img', 'top.qcow2'] },
  { base: 'raw', argv: ['-b', 'base.img', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-d', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-q', 'mid.qcow2'] },
  { base: 'raw', argv: ['mid.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'nonexist', 'top.qcow2'] },
  { base: 'qcow2', argv: ['-b', 'top.qcow2', 'top.qcow2'] },
  { base: 'raw', argv: ['-f', 'raw', 'base.img'] },
  { base: 'qcow2', argv: ['-r', 'foo', 'top.qcow2'] },
  { base: 'qcow2', argv: [] },
];

for (const c of CASES) {
  test(`commit matches qemu-img on a 3-deep chain over ${c.base}: ${c.argv.join(' ')}`, () => {
    const a = chain(c.base);
    const b = chain(c.base);
    const want = qemuImg(['commit', ...c.argv], { cwd: a });
    const got = vdisk(['commit', ...c.argv], { cwd: b });
    assert.equal(got.stdout, want.stdout);
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    for (const [f, fmt] of [['base.img', c.base], ['mid.qcow2', 'qcow2'], ['top.qcow2', 'qcow2']] as const) {
      const cmp = qemuImg(['compare', '-f', fmt, '-F', fmt, join(a, f), join(b, f)]);
      assert.equal(cmp.code, 0, `${f}: ${cmp.stdout}`);
      const ia = qemuImg(['info', '--output=json', '-f', fmt, f], { cwd: a }).stdout.replace(/"actual-size": \d+/, '');
      const ib = qemuImg(['info', '--output=json', '-f', fmt, f], { cwd: b }).stdout.replace(/"actual-size": \d+/, '');
      assert.equal(ib, ia, f);
      if (fmt === 'qcow2') {
        const map = (d: string): string => qemuImg(['map', '--output=json', '-f', fmt, f], { cwd: d }).stdout.replace(/"offset": \d+/g, '');
        assert.equal(map(b), map(a), `${f} allocation`);
        assert.equal(qemuImg(['check', '-f', fmt, f], { cwd: b }).code, 0, `${f} check`);
      }
    }
  });
}
