/**
 * The CLI's launcher, dist/bundle/main.js (scripts/bundle.mjs builds it from this file), which the
 * `snapvisor` bin (dist/bundle/snapvisor, the native front cli/front/front.c) execs with node for
 * whatever it does not run itself (docs/cli.md, "How the bin starts"); `node main.js …` works
 * the same. It holds
 * early signals, then compiles the CLI's bundle, dist/bundle/snapvisor.cjs (cli/bundle-entry.ts),
 * with a V8 code cache the build wrote beside it (snapvisor.cjs.{full,light}.cache), evaluates it and runs
 * the command. With the cache V8 deserializes the bundle's compiled code instead of parsing and
 * compiling its source (two caches: a full one for commands that run a kernel or use the store,
 * a light one for the rest); a cache V8 rejects (another node, a rebuilt bundle) or a missing one
 * costs that compile, nothing else. `checkpoint NAME` in its usual shapes loads no bundle at all: it
 * is one request on the sandbox's control socket (cli/checkpoint-client.ts); nor does `pool take
 * SOCKET`: its fds passed on the pool's socket, then JSON lines (cli/pool-client.ts), nor `restore
 * ID [--store DIR]` while a warm pool of that checkpoint serves (cli/pool-registry.ts: it takes a
 * clone of the pool; else, or with any other option, the bundle restores it in this process).
 * `__dirname` is this file's directory (its real path: npm links the bin from node_modules/.bin).
 *
 * SNAPVISOR_TRACE_STARTUP=1 prints on stderr whether the cache was used (used; rejected by V8;
 * stale: older than the bundle; or none) and the process's age (ms since it started) after compiling and after evaluating.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { commandOf, holdEarlySignals } from './early-signals.js';

holdEarlySignals(process.argv);
// SIGTERM/SIGHUP the native front (cli/front/front.c) held while a restore's take of a pool ran
// nothing: held on here, as if they came now.
const frontHeld = process.env.SNAPVISOR_FRONT_HELD;
if (frontHeld !== undefined) {
  delete process.env.SNAPVISOR_FRONT_HELD;
  for (const sig of frontHeld.split(',')) if (sig === 'SIGTERM' || sig === 'SIGHUP') process.emit(sig, sig);
}

/** The CLI bundle's exports (cli/bundle-entry.ts). */
interface Bundle {
  start(bundleFile: string, argv: string[]): Promise<void>;
  loadOnDemandModules(): Promise<void>;
}

/**
 * Commands that run or restore a kernel, or use the store, in this process: they load the modules
 * other commands never evaluate (cli/bundle-entry.ts loadOnDemandModules), and use the full cache.
 * Not `delete`: engines delete every container they ran, and only `delete ID --store` opens a store.
 */
const FULL = new Set(['run', 'restore', '__oci-init', '__pool-host', 'pool', 'demo', 'inspect', 'checkpoints', 'gc', 'export', 'import', 'store', 'syscalls']);

const bundleFile = path.join(__dirname, 'snapvisor.cjs');
const args = process.argv.slice(2);
const command = process.env.SNAPVISOR_WRITE_CODE_CACHE ? undefined : commandOf(args);
// `checkpoint NAME` in its usual shapes needs only the control socket, and `pool take SOCKET` only
// the pool's socket and koffi (SCM_RIGHTS): no bundle at all (each module is evaluated only for its
// command: esbuild bundles a dynamic import as a lazy one).
if (command === 'checkpoint') {
  void import('./checkpoint-client.js').then((m) => { if (!m.lightCheckpoint(args)) loadBundle(); });
} else if (command === 'pool' && args[args.indexOf('pool') + 1] === 'take') {
  // koffi's stand-in in this file (scripts/bundle.mjs) loads the package through this require.
  (globalThis as { __snapvisorRequire?: NodeJS.Require }).__snapvisorRequire ??= createRequire(bundleFile);
  void import('./pool-client.js').then((m) => { if (!m.lightPoolTake(args)) loadBundle(); });
} else if (command === 'restore') {
  // `restore ID [--store DIR]` with a warm pool of that checkpoint serving (registered in the
  // store, cli/pool-registry.ts): a clone of the pool, taken as `pool take` takes one, without the
  // bundle; in any other case, or if no clone of it starts, the restore runs in this process.
  void import('./pool-registry.js').then((r) => {
    const pools = r.poolsForRestore(args);
    if (!pools) { loadBundle(); return; }
    (globalThis as { __snapvisorRequire?: NodeJS.Require }).__snapvisorRequire ??= createRequire(bundleFile);
    void import('./pool-client.js').then((m) => m.restoreFromPool(pools)).then((served) => { if (!served) loadBundle(); });
  });
} else {
  loadBundle();
}

/** Compile the bundle (with its code cache), evaluate it and run the command. */
function loadBundle(): void {
  // SNAPVISOR_WRITE_CODE_CACHE=light|full (the build): compile without a cache, evaluate the bundle
  // (full: and every module commands load on demand), and write the cache of what V8 compiled. The
  // light cache holds about a third as much (--help, state, kill… read and deserialize less).
  const writeCache = process.env.SNAPVISOR_WRITE_CODE_CACHE;
  const kind = writeCache ?? (FULL.has(commandOf(process.argv.slice(2)) ?? '') ? 'full' : 'light');
  // SNAPVISOR_CODE_CACHE: another cache of the same bundle, made by a process with other V8 flags (a
  // warm pool's clones use the one its probe wrote, cli/pool.ts).
  const cacheFile = process.env.SNAPVISOR_CODE_CACHE || `${bundleFile}.${kind}.cache`;
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
  // The file is all ASCII, and holds the CommonJS module wrapper (a function expression) itself.
  const script = new vm.Script(fs.readFileSync(bundleFile, 'latin1'), { filename: bundleFile, cachedData });
  if (trace) {
    const cache = stale ? 'code cache stale' : cachedData === undefined ? 'no code cache' : script.cachedDataRejected ? 'code cache rejected' : 'code cache used';
    process.stderr.write(`snapvisor: start-up: ${cache} (${kind}), compiled at ${age()} ms\n`);
  }
  // The compiled bundle, for a process that writes a code cache of what it ran (a warm pool's probe).
  (globalThis as { __snapvisorScript?: vm.Script }).__snapvisorScript = script;
  const mod = { exports: {} as Bundle };
  (script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(bundleFile), mod, bundleFile, __dirname);
  if (trace) process.stderr.write(`snapvisor: start-up: evaluated at ${age()} ms\n`);
  if (writeCache) {
    const write = () => fs.writeFileSync(cacheFile, script.createCachedData());
    if (writeCache === 'full') void mod.exports.loadOnDemandModules().then(write);
    else write();
  } else {
    void mod.exports.start(bundleFile, process.argv);
  }
}
