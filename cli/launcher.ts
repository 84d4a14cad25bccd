/**
 * The `snapvisor` bin, dist/bundle/main.js (scripts/bundle.mjs builds it from this file): holds
 * early signals, then compiles the CLI's bundle, dist/bundle/snapvisor.cjs (cli/bundle-entry.ts),
 * with the V8 code cache the build wrote beside it (snapvisor.cjs.cache), evaluates it and runs
 * the command. With the cache V8 deserializes the bundle's compiled code instead of parsing and
 * compiling its source; a cache V8 rejects (another node, a rebuilt bundle) or a missing one
 * costs that compile, nothing else. `__dirname` is this file's directory (its real path: npm
 * links the bin from node_modules/.bin).
 *
 * SNAPVISOR_TRACE_STARTUP=1 prints on stderr whether the cache was used (used; rejected by V8;
 * stale: older than the bundle; or none) and the process's age (ms since it started) after compiling and after evaluating.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { holdEarlySignals } from './early-signals.js';

holdEarlySignals(process.argv);

/** The CLI bundle's exports (cli/bundle-entry.ts). */
interface Bundle {
  start(bundleFile: string, argv: string[]): Promise<void>;
  loadOnDemandModules(): Promise<void>;
}

const bundleFile = path.join(__dirname, 'snapvisor.cjs');
const cacheFile = bundleFile + '.cache';
// SNAPVISOR_WRITE_CODE_CACHE=1 (the build): compile without a cache, evaluate the bundle and every
// module commands load on demand, and write the cache of all that V8 compiled.
const writeCache = !!process.env.SNAPVISOR_WRITE_CODE_CACHE;
const trace = !!process.env.SNAPVISOR_TRACE_STARTUP;
const age = () => (process.uptime() * 1000).toFixed(1);

// The cache is used only if written after the bundle (the build writes it last): V8 checks that a
// cache was made by this V8 with these flags for a source of this length, not of this content.
let cachedData: Buffer | undefined;
let stale = false;
if (!writeCache) {
  try {
    if (fs.statSync(cacheFile).mtimeMs >= fs.statSync(bundleFile).mtimeMs) cachedData = fs.readFileSync(cacheFile);
    else stale = true;
  } catch { /* no cache: compile from source */ }
}
const source = fs.readFileSync(bundleFile, 'utf8');
// The CommonJS module wrapper, as Node's loader would put around the file.
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundleFile, cachedData });
if (trace) {
  const cache = stale ? 'code cache stale' : cachedData === undefined ? 'no code cache' : script.cachedDataRejected ? 'code cache rejected' : 'code cache used';
  process.stderr.write(`snapvisor: start-up: ${cache}, compiled at ${age()} ms\n`);
}
const mod = { exports: {} as Bundle };
(script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(bundleFile), mod, bundleFile, __dirname);
if (trace) process.stderr.write(`snapvisor: start-up: evaluated at ${age()} ms\n`);
if (writeCache) {
  void mod.exports.loadOnDemandModules().then(() => fs.writeFileSync(cacheFile, script.createCachedData()));
} else {
  void mod.exports.start(bundleFile, process.argv);
}
