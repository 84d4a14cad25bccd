// Bundle the CLI into dist/bundle/ with esbuild:
//  - snapvisor.cjs: the whole CLI as one minified CommonJS script (cli/bundle-entry.ts); native
//    packages (koffi, cbor-extract; level stays external) are loaded on first use, so commands that
//    need no FFI never load them;
//  - snapvisor.cjs.full.cache, .light.cache: V8 code caches of it, written after evaluating it and
//    (full) every module commands import on demand: the bin compiles nothing that is in the one it
//    uses (cli/launcher.ts: full for commands that run a kernel or use the store);
//  - restore.cjs and restore.cjs.cache: the restore bundle (cli/restore-entry.ts), for `restore ID
//    [--store DIR] [--no-pool]` in this process: the kernel and the store's restore path only;
//  - main.js: the launcher (cli/launcher.ts), which compiles snapvisor.cjs with that cache and runs it;
//  - snapvisor: the bin, a native front (cli/front/front.c) that runs three commands itself and
//    execs node with main.js for the rest;
//  - verify-worker.js, page-crunch-worker.js: the restore's page verifier and the checkpoint's
//    page worker (worker threads, loaded by URL).
// A Node startup snapshot (node --snapshot-blob) of snapvisor.cjs was measured too and was slower
// here: docs/benchmarks.md ("CLI start-up").
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import path from 'node:path';

const out = 'dist/bundle';
// Clear what an older build left (e.g. the content-hashed chunks of the ESM bundle before).
rmSync(out, { recursive: true, force: true });

/**
 * Native packages, loaded on first use of a property of theirs, not when the modules that import
 * them are evaluated, through the require the bundle's entry installs (globalThis.__snapvisorRequire).
 */
// zlib: a restore of a flat page file needs none of it, and loading it loads node:stream too (~3 ms);
// page-format.ts takes zlib.crc32 from the stand-in once, not a lookup per page.
// net: only the control socket, published ports, pools and the OCI runtime use it (a restore
// without --name never does; loading it cost 2.5-6.5 ms of every restore).
// fs/promises: only directory making off the event loop (makeDirsAsync), export and the OCI
// runtime use it; loading it (11 modules: fs/dir, watchers, readline's interface…) cost ~2 ms of
// every restore.
const LAZY_BUILTINS = /^(node:)?(child_process|crypto|dgram|fs\/promises|net|perf_hooks|readline|worker_threads|zlib)$/;
/** CBOR documents smaller than this (bytes) are decoded without cbor-extract (see its stand-in below). */
const SMALL_CBOR_BYTES = 1 << 20;
const lazyNative = ({ builtins }) => ({
  name: 'lazy-native',
  setup(b) {
    b.onResolve({ filter: /^(koffi|cbor-extract)$/ }, (a) => ({ path: a.path, namespace: 'lazy-native' }));
    // cbor-x's node entry (node-index.js) re-exports its EncoderStream and DecoderStream, so
    // evaluating it loads node:stream (~3 ms of a restore), which snapvisor never uses: its index.js
    // (the same exports but the streams) instead, with the native string extractor set up as
    // node-index.js does.
    b.onResolve({ filter: /^cbor-x$/ }, (a) => (a.importer.includes('node_modules') ? undefined : { path: 'cbor-x', namespace: 'cbor-x-without-streams' }));
    b.onLoad({ filter: /.*/, namespace: 'cbor-x-without-streams' }, () => {
      const dir = path.resolve('node_modules/cbor-x');
      return {
        loader: 'js',
        resolveDir: dir,
        contents: `export * from ${JSON.stringify(path.join(dir, 'index.js'))};
import { setExtractor } from ${JSON.stringify(path.join(dir, 'decode.js'))};
if ((process.env.CBOR_NATIVE_ACCELERATION_DISABLED ?? '').toLowerCase() !== 'true') {
  try { const e = require('cbor-extract'); if (e) setExtractor(e.extractStrings); } catch { /* optional, as in cbor-x */ }
}`,
      };
    });
    if (builtins) {
      b.onResolve({ filter: LAZY_BUILTINS }, (a) => ({ path: a.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }));
      // Every other built-in an ES module imports: through an ES module of its own (below).
      b.onResolve({ filter: /.*/ }, (a) => (a.kind === 'import-statement' && isBuiltin(a.path) ? { path: a.path.replace(/^node:/, ''), namespace: 'esm-builtin' } : undefined));
    }
    // An import of a CommonJS module (a built-in is one to esbuild) becomes, in every importing
    // module, a fresh namespace object with a getter per property of the module (esbuild's
    // __toESM): 21 modules of a restore import node:fs (~100 properties), 10 node:os, 9 the crypto
    // stand-in… ~3,300 getters made while the bundle is evaluated. These stand-ins are ES modules
    // instead, imported directly: the default export is the module itself, a named one its
    // property (data properties only: a getter, such as fs.promises, is not evaluated; importing
    // one by name fails the build).
    b.onLoad({ filter: /.*/, namespace: 'esm-builtin' }, (a) => {
      const id = 'node:' + a.path;
      const m = process.getBuiltinModule(id);
      const names = Object.getOwnPropertyNames(m).filter((k) => k !== 'default' && 'value' in Object.getOwnPropertyDescriptor(m, k));
      return {
        loader: 'js',
        contents: `const m = require(${JSON.stringify(id)});
export default m;
${names.map((k, i) => `const x${i} = m[${JSON.stringify(k)}];`).join('\n')}
export { ${names.map((k, i) => `x${i} as ${k}`).join(', ')} };`,
      };
    });
    // Built-ins that most commands never use and Node does not load by itself: loaded (and, for
    // most, compiled) on first use of a property. The default export lists the names the module has
    // in the node building this (process.getBuiltinModule, the same node as the bin's, or one with
    // the same names) without loading it; a named export is a function that loads the module when
    // called (or constructed: it then gives the real class's instance). Only functions can be
    // imported by name.
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (a) => {
      const id = 'node:' + a.path;
      const m = process.getBuiltinModule(id);
      const names = Object.keys(m);
      const fns = Object.getOwnPropertyNames(m).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k) && typeof Object.getOwnPropertyDescriptor(m, k).value === 'function');
      return {
        loader: 'js',
        contents: `let m; const load = () => m ??= process.getBuiltinModule(${JSON.stringify(id)});
const names = new Set(${JSON.stringify(names)});
export default new Proxy({}, {
  get: (_, p) => load()[p],
  has: (_, p) => p in load(),
  ownKeys: () => [...names],
  getOwnPropertyDescriptor: (_, p) => (names.has(p) ? { configurable: true, enumerable: true, get: () => load()[p] } : undefined),
});
${fns.map((k) => `export function ${k}(...a) { return new.target ? Reflect.construct(load().${k}, a) : load().${k}.apply(this, a); }`).join('\n')}`,
      };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-native' }, (a) => {
      if (a.path === 'cbor-extract') {
        // cbor-x takes the native string extractor when its module is evaluated: give it a stand-in
        // that loads cbor-extract on its first call, if cbor-extract loads here at all.
        let loads = true;
        try { createRequire(path.resolve('node_modules/cbor-x/package.json'))('cbor-extract'); } catch { loads = false; }
        return {
          loader: 'js',
          contents: loads
            // The addon its build made, loaded directly: cbor-extract's own loader
            // (node-gyp-build-optional-packages) first asks detect-libc, which loads child_process
            // (~10 ms of a restore); a prebuilt package, or anything unusual, still goes through it.
            ? `let m; const load = () => { const r = globalThis.__snapvisorRequire; try { return r(require("path").join(require("path").dirname(r.resolve("cbor-extract/package.json")), "build/Release/extract.node")); } catch { return r("cbor-extract"); } };
// A small document (a restore's manifest and graph: a few hundred strings) has its strings read
// one by one here instead: loading the addon (dlopen, its resolution) cost 1.7 ms of a restore
// whose graph took 0.6 ms to decode. cbor-x takes a string as the one it asked for.
module.exports = { extractStrings: (position, end, length, src) => end < ${SMALL_CBOR_BYTES} ? Buffer.prototype.utf8Slice.call(src, position, position + length) : (m ??= load()).extractStrings(position, end, length, src) };`
            : 'throw new Error("cbor-extract does not load here");',
        };
      }
      if (a.path === 'koffi') {
        // koffi's own loader finds its addon by reading the ELF headers of node's binary (glibc or
        // musl) and wraps it in deprecation shims snapvisor never calls: 13 ms of every command that
        // runs a guest, 4-5 ms for the addon alone. The addon of this platform's package is loaded
        // directly when it is there and is the version the bundle was built with; anything else
        // (musl, another layout, another version) goes through koffi itself.
        const version = JSON.parse(readFileSync(path.resolve('node_modules/koffi/package.json'), 'utf8')).version;
        return {
          loader: 'js',
          contents: `let m; const direct = () => { const r = globalThis.__snapvisorRequire, p = require("path");
  try { const k = r(p.join(p.dirname(r.resolve(\`@koromix/koffi-\${process.platform}-\${process.arch}/package.json\`)), \`\${process.platform}_\${process.arch}/koffi.node\`));
    return k && k.version === ${JSON.stringify(version)} && typeof k.load === "function" ? k : undefined; } catch { return undefined; } };
const load = () => m ??= direct() ?? globalThis.__snapvisorRequire("koffi");
module.exports = new Proxy({}, { get: (_, p) => (typeof p === 'symbol' || p === '__esModule' ? undefined : load()[p]) });`,
        };
      }
      return {
        loader: 'js',
        contents: `let m; const load = () => m ??= globalThis.__snapvisorRequire(${JSON.stringify(a.path)});
module.exports = new Proxy({}, { get: (_, p) => (typeof p === 'symbol' || p === '__esModule' ? undefined : load()[p]) });`,
      };
    });
  },
});

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
/** What the CLI bundle and the workers' bundles share: CommonJS for node 20, with source maps. */
const COMMON = { bundle: true, format: 'cjs', platform: 'node', target: 'node20', outdir: out, sourcemap: true };

/** The CLI's bundle and the restore bundle: minified CommonJS scripts in a module wrapper, compiled by the launcher. */
const SCRIPT = {
  ...COMMON,
  outExtension: { '.js': '.cjs' },
  external: EXTERNAL,
  plugins: [lazyNative({ builtins: true }), importAsRequire],
  // rxjs's ES module build, not the CommonJS one its "node" export condition picks: esbuild keeps
  // only the operators the kernel imports (sideEffects: false), and no module wraps rxjs's ~250
  // exports in a namespace copy of its own (esbuild's __toESM: 27 importers did). Evaluating the
  // whole CommonJS rxjs and those copies took ~20 ms of CPU of every restore (load 7-13, A/B).
  alias: { rxjs: path.resolve('node_modules/rxjs/dist/esm/index.js') },
  // The file is CommonJS's module wrapper around the bundle: the launcher compiles it as it is.
  banner: { js: '(function (exports, require, module, __filename, __dirname) {' },
  footer: { js: '})' },
  // Nothing but ASCII, so the launcher reads it as latin1 straight into a one-byte string.
  charset: 'ascii',
  // Half the source to read and compile; no code depends on function or class names.
  minify: true,
  // import.meta.url of bundled modules (the verifier worker's URL, the demo's CLI): the bundle's own
  // URL, set by the entry.
  define: { 'import.meta.url': 'globalThis.__snapvisorBundleUrl' },
  logLevel: 'warning',
};
await build({ ...SCRIPT, entryPoints: { snapvisor: 'cli/bundle-entry.ts' } });
// `restore ID [--store DIR] [--no-pool]` (the launcher's light shapes): the kernel and the store's
// restore path without the CLI's argument parser, OCI runtime, pools… (cli/restore-entry.ts).
await build({ ...SCRIPT, entryPoints: { restore: 'cli/restore-entry.ts' } });

await build({
  // The checkpoint's page worker (snapshots/page-crunch-worker.ts) too: both loaded by URL.
  ...COMMON,
  entryPoints: { 'verify-worker': 'snapshots/verify-worker.ts', 'page-crunch-worker': 'snapshots/page-crunch-worker.ts' },
  logLevel: 'warning',
});
// The .js files here are CommonJS (the package's own "type" is module).
writeFileSync(`${out}/package.json`, '{ "type": "commonjs" }\n');

// The bin: compiles snapvisor.cjs with its code cache and runs it (cli/launcher.ts), or runs `pool
// take` (cli/pool-client.ts) and `checkpoint` itself; koffi, which `pool take` needs, and the
// built-ins as in the bundle (a restore's pool lookup imports makeDirs, whose fs/promises it never calls).
await build({
  entryPoints: { main: 'cli/launcher.ts' },
  plugins: [lazyNative({ builtins: true })],
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  outdir: out,
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
// Run directly by container engines (ctr --runc-binary, podman --runtime) as before the front.
chmodSync(`${out}/main.js`, 0o755);

// The `bin` entry: the native front (cli/front/front.c, docs/cli.md "How the bin starts"), which
// runs `pool take`, `restore` through a pool and `checkpoint NAME` without node and execs this
// node with main.js for anything else. Its bytes come from tsc's output of cli/front/front-elf.ts
// (no assembler needed here).
const { frontElf } = await import(new URL('../dist/cli/front/front-elf.js', import.meta.url).href);
writeFileSync(`${out}/snapvisor`, frontElf(process.execPath), { mode: 0o755 });
chmodSync(`${out}/snapvisor`, 0o755);

// The code caches: the launcher compiles and evaluates the bundle (and, full, what commands load on
// demand) and writes what V8 compiled.
for (const kind of ['light', 'full', 'restore']) {
  const cache = spawnSync(process.execPath, [`${out}/main.js`], { env: { ...process.env, SNAPVISOR_WRITE_CODE_CACHE: kind }, stdio: 'inherit' });
  if (cache.status !== 0) throw new Error(`writing the ${kind} code cache failed (status ${cache.status})`);
}

