#!/usr/bin/env node
// Bundles the CLI from dist/ (the tsc output) into dist/bundle/, which bin/vdisk runs while it is
// newer than dist/cli.js. Start-up of a short command (`vdisk info`) was mostly Node resolving,
// reading and linking ~57 ES modules; the bundle is a few files. esbuild does the bundling (a pinned
// devDependency: a widely used, maintained tool; an ESM bundler of our own would not pay for itself).
//
// Usage: node scripts/bundle.mjs [--outdir DIR]   (DIR must sit two levels below the package root,
// like dist/bundle, so that the package-relative paths in the modules resolve the same; checked.)
//
// The layout it keeps, and checks after each build (the build fails otherwise):
// - Code splitting: every `import()` of the sources stays a separate chunk loaded on first use, so
//   `info` does not compile the copy engine or the qcow2 writer.
// - Chunks are .mjs: Node takes them for ES modules by the name, without looking up the package
//   scope's "type" for each one.
// - The entry, cli.mjs, is dist/cli.js, which turns on the module compile cache before it import()s
//   the rest: the entry chunk must not statically import another chunk (it would be compiled
//   before the cache is on).
// - Every chunk is written flat into DIR, so `new URL('./x.js', import.meta.url)` (a worker)
//   resolves next to any chunk: each such target becomes an entry of its own under its basename
//   (renamed back to .js after the build, since the URL names it so).
// - createRequire paths (`require('../../native/build/vdisk_native.node')`) resolve from DIR to the
//   same file as from the module they were written in.
// - No other import.meta use is let through unreviewed (a new one must be added here once checked).
// - Source maps are linked (`node --enable-source-maps` maps stack traces back to dist/); without
//   that flag Node does not read them. The code is not minified, so plain stack traces name our
//   functions and `// dist/<module>.js` comments in the chunks show where each came from.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const args = process.argv.slice(2);
const outdir = resolve(args[0] === '--outdir' && args[1] ? args[1] : join(dist, 'bundle'));

const WORKER_URL = /new URL\((['"])(\.\/[^'"]+)\1,\s*import\.meta\.url\)/g;
const RELATIVE_REQUIRE = /\brequire\((['"])(\.\.?\/[^'"]+)\1\)/g;
/** import.meta uses that are known to work from the bundle (or not to be in it). */
const IMPORT_META_OK = [WORKER_URL, /createRequire\(import\.meta\.url\)/g];

function fail(msg) {
  console.error(`bundle: ${msg}`);
  process.exit(1);
}

function jsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    // not a bundle (this one, its temporaries, the default one)
    if (e.isDirectory()) return [outdir, join(dist, 'bundle')].some((b) => p === b || p.startsWith(`${b}.`)) ? [] : jsFiles(p);
    return e.name.endsWith('.js') ? [p] : [];
  });
}

if (!existsSync(join(dist, 'cli.js'))) fail('dist/cli.js is missing: run tsc -p tsconfig.json first');
const { build } = await import('esbuild').catch(() => fail('esbuild is not installed (a devDependency): run npm ci or npm install'));

// Worker scripts named by URL next to their module become entries of their own.
const entries = { cli: join(dist, 'cli.js') };
for (const file of jsFiles(dist)) {
  for (const m of readFileSync(file, 'utf8').matchAll(WORKER_URL)) {
    const target = resolve(dirname(file), m[2]);
    const name = basename(m[2]).replace(/\.js$/, '');
    if (entries[name] && entries[name] !== target) fail(`two worker scripts named ${name}.js`);
    if (!existsSync(target)) fail(`${relative(root, file)} names ${m[2]}, which does not exist`);
    entries[name] = target;
  }
}

const tmp = `${outdir}.tmp-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });
const result = await build({
  entryPoints: entries,
  // metafile paths are relative to this directory: the package's, whatever the caller's cwd
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  splitting: true,
  outdir: tmp,
  entryNames: '[name]',
  outExtension: { '.js': '.mjs' },
  chunkNames: '[name]-[hash]',
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
}).catch((e) => fail(e.message));

const outputs = result.metafile.outputs;
const entryOut = Object.entries(outputs).find(([, o]) => o.entryPoint && resolve(root, o.entryPoint) === entries.cli);
if (!entryOut) fail('no output for dist/cli.js');
const staticChunks = entryOut[1].imports.filter((i) => !i.external && i.kind === 'import-statement');
if (staticChunks.length > 0) fail(`cli.mjs imports ${staticChunks.map((i) => i.path).join(', ')} statically: they would compile before the compile cache is on`);

for (const input of Object.keys(result.metafile.inputs)) {
  const file = resolve(root, input);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(RELATIVE_REQUIRE)) {
    if (resolve(dirname(file), m[2]) !== resolve(outdir, m[2])) fail(`${input}: require('${m[2]}') would not find the same file from ${relative(root, outdir)}/`);
  }
  let rest = text;
  for (const ok of IMPORT_META_OK) rest = rest.replace(ok, '');
  if (rest.includes('import.meta')) fail(`${input} uses import.meta in a way this script does not know to work from the bundle: check it and add it to IMPORT_META_OK`);
}

// Builtin imports become process.getBuiltinModule() calls. An ES import of a builtin makes Node
// build its ESM facade, which reads every export: for node:fs that runs the lazy getters of
// fs.promises (readline, the REPL history) and the stream classes, ~35 modules `info` never uses
// (and node:util's likewise). A chunk's imports are at its top, so the constants exist before any
// of its code runs; only a cycle between chunks could run code earlier, and the build fails on one.
// The rewrite keeps the line count, so the source maps stay right.
const BUILTIN_IMPORT = /^import (\{[^}\n]*\}|\* as [\w$]+|[\w$]+) from "(node:[\w/]+)";$/gm;
function builtinsToGetBuiltinModule(file) {
  const text = readFileSync(file, 'utf8');
  const out = text.replace(BUILTIN_IMPORT, (_, what, id) => {
    const binding = what.startsWith('{') ? what.replace(/\s+as\s+/g, ': ') : what.replace(/^\* as /, '');
    return `const ${binding} = process.getBuiltinModule("${id}");`;
  });
  const left = out.match(/^(import|export)\b[^\n]*"node:[^\n]*$/m);
  if (left) fail(`${relative(tmp, file)}: a builtin import this script does not rewrite: ${left[0]}`);
  if (out !== text) writeFileSync(file, out);
}
const chunkImports = new Map();
for (const [out, o] of Object.entries(outputs)) {
  if (!out.endsWith('.mjs')) continue;
  builtinsToGetBuiltinModule(resolve(root, out));
  chunkImports.set(out, o.imports.filter((i) => !i.external && i.kind === 'import-statement').map((i) => i.path));
}
const done = new Set();
function noCycle(chunk, path) {
  if (path.includes(chunk)) fail(`chunks import each other in a cycle: ${[...path.slice(path.indexOf(chunk)), chunk].join(' -> ')}`);
  if (done.has(chunk)) return;
  for (const next of chunkImports.get(chunk) ?? []) noCycle(next, [...path, chunk]);
  done.add(chunk);
}
for (const chunk of chunkImports.keys()) noCycle(chunk, []);

for (const name of Object.keys(entries)) {
  if (name === 'cli') continue;
  const from = join(tmp, `${name}.mjs`);
  const text = readFileSync(from, 'utf8').replace(`//# sourceMappingURL=${name}.mjs.map`, `//# sourceMappingURL=${name}.js.map`);
  writeFileSync(join(tmp, `${name}.js`), text);
  rmSync(from);
  renameSync(`${from}.map`, join(tmp, `${name}.js.map`));
}

// Swap in the new bundle whole: bin/vdisk falls back to dist/cli.js while the directory is absent.
const old = `${outdir}.old-${process.pid}`;
if (existsSync(outdir)) renameSync(outdir, old);
renameSync(tmp, outdir);
rmSync(old, { recursive: true, force: true });
const files = readdirSync(outdir).filter((f) => /\.m?js$/.test(f));
const bytes = files.reduce((n, f) => n + statSync(join(outdir, f)).size, 0);
console.log(`bundle: ${relative(root, outdir) || '.'}/: ${files.length} files, ${(bytes / 1024).toFixed(0)} KiB`);
