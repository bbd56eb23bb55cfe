import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { probeFormat } from '../../../dist/block/open.js';
import { fixturesDir, manifest, qemuImg, scratch, vdisk } from '../../helpers/oracle.ts';

function head(path: string): Uint8Array {
  const buf = new Uint8Array(2048);
  const fd = openSync(path, 'r');
  try {
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
  } finally {
    closeSync(fd);
  }
}

test('every real and made fixture probes to the format qemu-img detects', () => {
  const root = fixturesDir();
  let checked = 0;
  for (const e of manifest()) {
    if ((e.group !== 'real' && e.group !== 'made') || e.role === 'component') continue;
    const q = qemuImg(['info', '--output=json', e.path], { cwd: root });
    if (q.code !== 0) continue; // qemu-img cannot probe it either (fuzzed or dirty images)
    const want = (JSON.parse(q.stdout) as { format: string }).format;
    assert.equal(probeFormat(head(join(root, e.path)), e.path).name, want, e.path);
    checked++;
  }
  assert.ok(checked > 60, `only ${checked} fixtures checked`);
});

test('probes never throw and fall back to raw on short or empty heads', () => {
  assert.equal(probeFormat(new Uint8Array(0), 'x').name, 'raw');
  assert.equal(probeFormat(new Uint8Array([0x51, 0x46, 0x49]), 'x').name, 'raw');
  assert.equal(probeFormat(new Uint8Array(16), 'disk.dmg').name, 'dmg');
});

test('images of formats vdisk cannot read yet are refused by name, never read as raw', () => {
  const root = fixturesDir();
  for (const path of ['real/test-disk2vhd.vhdx', 'real/virtualpc-dynamic.vhd', 'made/vdi-dynamic.vdi', 'made/qed.qed']) {
    const h = head(join(root, path));
    const name = probeFormat(h, path).name;
    assert.notEqual(name, 'raw', path);
    const r = vdisk(['convert', '-O', 'raw', path, join(scratch(), 'out.raw')], { cwd: root });
    assert.equal(r.code, 1, path);
    assert.equal(r.stderr, `qemu-img: Could not open '${path}': vdisk does not support the '${name}' format yet\n`);
  }
});
