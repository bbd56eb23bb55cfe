/**
 * 3-deep backing chains made by the real qemu-img and qemu-io (base raw or qcow2, mid qcow2, top
 * qcow2 larger than the base), and the comparison of two such directories after a command ran in each.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { guestSha256, qemuImg, qemuIo, scratch } from '../../helpers/oracle.ts';

export type BaseFormat = 'raw' | 'qcow2';

export const LAYERS = ['base', 'mid', 'top'] as const;

export function fileOf(layer: string, baseFmt: BaseFormat): string {
  return layer === 'base' ? `base.${baseFmt === 'raw' ? 'raw' : 'qcow2'}` : `${layer}.qcow2`;
}

/** Patterns overlap on purpose: top hides mid, mid hides base, top zeroes and grows past the base. */
export function makeChain(baseFmt: BaseFormat): string {
  const d = scratch('vdisk-chain-');
  const base = join(d, fileOf('base', baseFmt));
  const ok = (r: { code: number | null; stderr: string }): void => assert.equal(r.code, 0, r.stderr);
  ok(qemuImg(['create', '-q', '-f', baseFmt, base, '1M']));
  ok(qemuIo(['-f', baseFmt, '-c', 'write -P 0x33 0 768k', base]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', fileOf('base', baseFmt), '-F', baseFmt, join(d, 'mid.qcow2')]));
  ok(qemuIo(['-c', 'write -P 0x22 64k 128k', '-c', 'write -z 512k 64k', join(d, 'mid.qcow2')]));
  ok(qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', join(d, 'top.qcow2'), '2M']));
  ok(qemuIo(['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x12 160k 8k', '-c', 'write -z 256k 64k',
    '-c', 'write -P 0x44 1536k 64k', join(d, 'top.qcow2')]));
  return d;
}

function infoJson(dir: string, file: string): unknown {
  const r = qemuImg(['info', '--output=json', file], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  delete j['actual-size'];
  return j;
}

/** Every layer: same info (minus actual-size), same guest content, and a clean check for qcow2. */
export async function assertSameImages(want: string, got: string, baseFmt: BaseFormat): Promise<void> {
  for (const layer of LAYERS) {
    const f = fileOf(layer, baseFmt);
    assert.deepEqual(infoJson(got, f), infoJson(want, f), `info of ${f}`);
    assert.equal(await guestSha256(join(got, f)), await guestSha256(join(want, f)), `guest content of ${f}`);
    if (f.endsWith('.qcow2')) {
      const c = qemuImg(['check', f], { cwd: got });
      assert.equal(c.code, 0, `check of ${f}: ${c.stdout}${c.stderr}`);
    }
  }
}
