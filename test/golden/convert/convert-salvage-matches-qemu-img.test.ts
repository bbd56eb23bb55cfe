/**
 * convert over read and block-status errors injected with blkdebug, against the real qemu-img:
 * the failure messages without --salvage (request start, "block status at offset"), the warnings
 * and zero-filled sectors with it, and blkdebug's own refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { qemuImg, qemuIo, scratch, sha256File, vdisk } from '../../helpers/oracle.ts';

function setup(dir: string): void {
  assert.equal(qemuImg(['create', '-q', '-f', 'raw', join(dir, 'src.raw'), '8M']).code, 0);
  assert.equal(qemuIo(['-f', 'raw', '-c', 'write -P 42 0 8M', join(dir, 'src.raw')]).code, 0);
  assert.equal(qemuImg(['create', '-q', '-f', 'qcow2', join(dir, 'src.qcow2'), '8M']).code, 0);
  assert.equal(qemuIo(['-c', 'write -P 43 0 3M', '-c', 'write -P 44 5M 1M', join(dir, 'src.qcow2')]).code, 0);
  writeFileSync(join(dir, 'read.conf'), '[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "2048"\n');
  writeFileSync(join(dir, 'none.conf'), '[inject-error]\nevent = "none"\niotype = "read"\nerrno = "28"\nsector = "12289"\n');
  writeFileSync(join(dir, 'status.conf'), '[inject-error]\nevent = "none"\niotype = "block-status"\nsector = "100"\n');
  writeFileSync(join(dir, 'badkey.conf'), '[inject-error]\nevent = "none"\nbogus = "1"\n');
  writeFileSync(join(dir, 'badevent.conf'), '[inject-error]\nevent = "foo"\n');
}

type Rule = { iotype: string; sector: number; errno?: number };
function blkdebugJson(fmt: string, file: string, rules: Rule[]): string {
  const inject = rules.map((r) => `{'event': 'none', 'iotype': '${r.iotype}', 'errno': ${r.errno ?? 5}, 'sector': ${r.sector}}`);
  return `json:{'driver': 'blkdebug', 'image': {'driver': '${fmt}', 'file': {'driver': 'file', 'filename': '${file}'}}, 'inject-error': [${inject.join(', ')}]}`;
}

const manyErrors: Rule[] = [
  { iotype: 'block-status', sector: 2050 },
  { iotype: 'block-status', sector: 9000 },
  { iotype: 'read', sector: 3000 },
  { iotype: 'read', sector: 9000 },
  ...Array.from({ length: 6 }, (_, i) => ({ iotype: 'read', sector: 12000 + i })),
];

const cases: string[][] = [
  ['-O', 'raw', blkdebugJson('raw', 'src.raw', [{ iotype: 'read', sector: 10240 }]), 'o.raw'],
  ['-O', 'raw', blkdebugJson('raw', 'src.raw', [{ iotype: 'read', sector: 12288, errno: 28 }]), 'o.raw'],
  ['-O', 'raw', blkdebugJson('raw', 'src.raw', [{ iotype: 'block-status', sector: 2050 }]), 'o.raw'],
  ['-O', 'raw', blkdebugJson('raw', 'src.raw', manyErrors), 'o.raw'],
  ['--salvage', '-O', 'raw', blkdebugJson('raw', 'src.raw', manyErrors), 'o.raw'],
  ['--salvage', '-q', '-O', 'raw', blkdebugJson('raw', 'src.raw', manyErrors), 'o.raw'],
  ['--salvage', '-O', 'qcow2', blkdebugJson('raw', 'src.raw', manyErrors), 'o.qcow2'],
  ['--salvage', '-O', 'raw', blkdebugJson('qcow2', 'src.qcow2', manyErrors), 'o.raw'],
  ['-O', 'raw', blkdebugJson('qcow2', 'src.qcow2', [{ iotype: 'read', sector: 10500 }]), 'o.raw'],
  ['-O', 'raw', 'blkdebug:read.conf:src.raw', 'o.raw'],
  ['--salvage', '-O', 'raw', 'blkdebug:read.conf:src.raw', 'o.raw'],
  ['--salvage', '-O', 'raw', 'blkdebug:none.conf:src.raw', 'o.raw'],
  ['-O', 'raw', 'blkdebug:status.conf:src.raw', 'o.raw'],
  ['-O', 'raw', 'blkdebug::src.raw', 'o.raw'],
  ['-O', 'raw', 'blkdebug:badkey.conf:src.raw', 'o.raw'],
  ['-O', 'raw', 'blkdebug:badevent.conf:src.raw', 'o.raw'],
  ['-O', 'raw', 'blkdebug:nonexist.conf:src.raw', 'o.raw'],
];

for (const argv of cases) {
  test(`convert over injected errors matches qemu-img: ${argv.join(' ')}`, async () => {
    const a = scratch();
    const b = scratch();
    setup(a);
    setup(b);
    const want = qemuImg(['convert', ...argv], { cwd: a });
    const got = vdisk(['convert', ...argv], { cwd: b });
    assert.equal(got.stderr, want.stderr);
    assert.equal(got.code, want.code);
    assert.equal(got.stdout, want.stdout);
    const out = argv[argv.length - 1]!;
    assert.equal(existsSync(join(b, out)), existsSync(join(a, out)));
    if (want.code === 0 && out.endsWith('.raw')) assert.equal(await sha256File(join(b, out)), await sha256File(join(a, out)));
    if (want.code === 0 && out.endsWith('.qcow2')) {
      assert.equal(qemuImg(['compare', join(a, out), join(b, out)]).code, 0);
      assert.equal(qemuImg(['check', join(b, out)]).code, 0);
    }
  });
}

test('compare and map report injected errors as qemu-img does', () => {
  const a = scratch();
  const b = scratch();
  setup(a);
  setup(b);
  for (const argv of [
    ['compare', 'blkdebug:none.conf:src.raw', 'src.raw'],
    ['compare', '-f', 'raw', '-F', 'raw', 'src.raw', 'blkdebug:read.conf:src.raw'],
    ['map', 'blkdebug:status.conf:src.raw'],
    ['map', '--output=json', 'blkdebug:status.conf:src.raw'],
    ['info', 'blkdebug:read.conf:src.raw'],
  ]) {
    const want = qemuImg(argv, { cwd: a });
    const got = vdisk(argv, { cwd: b });
    assert.deepEqual(got, want, argv.join(' '));
  }
});
