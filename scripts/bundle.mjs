// Bundle the CLI into dist/bundle/ with esbuild:
//  - snapvisor.cjs: the whole CLI as one minified CommonJS script (cli/bundle-entry.ts); native
//    packages (koffi, cbor-extract; level stays external) are loaded on first use, so commands that
//    need no FFI never load them;
//  - snapvisor.cjs.cache: a V8 code cache of it, written after evaluating it and every module
//    commands import on demand: the bin compiles nothing that is in it;
//  - main.js: the bin (cli/launcher.ts), which compiles snapvisor.cjs with that cache and runs it;
//  - verify-worker.js, page-crunch-worker.js: the restore's page verifier and the checkpoint's
//    page worker (worker threads, loaded by URL).
// A Node startup snapshot (node --snapshot-blob) of snapvisor.cjs was measured too and was slower
// here: docs/benchmarks.md ("CLI start-up").
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';

const out = 'dist/bundle';
// Clear what an older build left (e.g. the content-hashed chunks of the ESM bundle before).
rmSync(out, { recursive: true, force: true });

/**
 * Native packages, loaded on first use of a property of theirs, not when the modules that import
 * them are evaluated, through the require the bundle's entry installs (globalThis.__snapvisorRequire).
 */
const lazyNative = {
  name: 'lazy-native',
  setup(b) {
    b.onResolve({ filter: /^(koffi|cbor-extract)$/ }, (a) => ({ path: a.path, namespace: 'lazy-native' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy-native' }, (a) => {
      if (a.path === 'cbor-extract') {
        // cbor-x takes the native string extractor when its module is evaluated: give it a stand-in
        // that loads cbor-extract on its first call, if cbor-extract loads here at all.
        let loads = true;
        try { createRequire(path.resolve('node_modules/cbor-x/package.json'))('cbor-extract'); } catch { loads = false; }
        return {
          loader: 'js',
          contents: loads
            ? 'let m; module.exports = { extractStrings: (...a) => (m ??= globalThis.__snapvisorRequire("cbor-extract")).extractStrings(...a) };'
            : 'throw new Error("cbor-extract does not load here");',
        };
      }
      return {
        loader: 'js',
        contents: `let m; const load = () => m ??= globalThis.__snapvisorRequire(${JSON.stringify(a.path)});
module.exports = new Proxy({}, { get: (_, p) => (typeof p === 'symbol' || p === '__esModule' ? undefined : load()[p]) });`,
      };
    });
  },
};

/**
 * import() of a built-in or an external package becomes a require: a script compiled by vm.Script
 * (the launcher, for its code cache) has no import() of its own.
 */
const importAsRequire = {
  name: 'import-as-require',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) => (a.kind === 'dynamic-import' && (isBuiltin(a.path) || EXTERNAL.includes(a.path)) ? { path: a.path, namespace: 'import-as-require' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'import-as-require' }, (a) => ({ loader: 'js', contents: `module.exports = require(${JSON.stringify(a.path)});` }));
  },
};
const EXTERNAL = ['level', 'classic-level'];

await build({
  entryPoints: { snapvisor: 'cli/bundle-entry.ts' },
  outExtension: { '.js': '.cjs' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir: out,
  sourcemap: true,
  external: EXTERNAL,
  plugins: [lazyNative, importAsRequire],
  // Half the source to read and compile; no code depends on function or class names.
  minify: true,
  // import.meta.url of bundled modules (the verifier worker's URL, the demo's CLI): the bundle's own
  // URL, set by the entry.
  define: { 'import.meta.url': 'globalThis.__snapvisorBundleUrl' },
  logLevel: 'warning',
});

await build({
  // The checkpoint's page worker (snapshots/page-crunch-worker.ts) too: both loaded by URL.
  entryPoints: { 'verify-worker': 'snapshots/verify-worker.ts', 'page-crunch-worker': 'snapshots/page-crunch-worker.ts' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir: out,
  sourcemap: true,
  logLevel: 'warning',
});
// The .js files here are CommonJS (the package's own "type" is module).
writeFileSync(`${out}/package.json`, '{ "type": "commonjs" }\n');

// The bin: compiles snapvisor.cjs with its code cache and runs it (cli/launcher.ts).
await build({
  entryPoints: { main: 'cli/launcher.ts' },
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir: out,
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
// The `bin` entry is run directly by container engines (ctr --runc-binary, podman --runtime).
chmodSync(`${out}/main.js`, 0o755);

// The code cache: the launcher compiles and evaluates the bundle (and what commands load on demand)
// and writes what V8 compiled.
const cache = spawnSync(process.execPath, [`${out}/main.js`], { env: { ...process.env, SNAPVISOR_WRITE_CODE_CACHE: '1' }, stdio: 'inherit' });
if (cache.status !== 0) throw new Error(`writing the code cache failed (status ${cache.status})`);

