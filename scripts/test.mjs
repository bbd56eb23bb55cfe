#!/usr/bin/env node
// Runs every test/**/*.test.ts with Node's test runner (Node >= 22.18 strips types itself).
// Usage: node scripts/test.mjs [tier ...]   (tiers: unit golden interop; default: all)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const tiers = process.argv.slice(2);
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.ts')) files.push(p);
  }
}
for (const t of tiers.length ? tiers : ['unit', 'golden', 'interop']) {
  try { walk(join(root, 'test', t)); } catch { /* tier not present yet */ }
}
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
