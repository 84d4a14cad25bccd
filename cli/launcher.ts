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
 * clone of the pool; else that shape, `--no-pool` too, loads the restore bundle, restore.cjs with
 * restore.cjs.cache (cli/restore-entry.ts: the kernel and the store's restore path, no argument
 * parser), and any other option the CLI's bundle, either restoring it in this process).
 * `__dirname` is this file's directory (its real path: npm links the bin from node_modules/.bin).
 *
 * SNAPVISOR_TRACE_STARTUP=1 prints on stderr whether the cache was used (used; rejected by V8;
 * stale: older than the bundle; or none) and the process's age (ms since it started) after compiling and after evaluating,
 * and when a process wrote a run-time cache (restore.cjs.run.cache, snapvisor.cjs.full.run.cache: below).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { commandOf, holdEarlySignals } from './early-signals.js';
import { restoreHeldCaCerts } from './node-env.js';

holdEarlySignals(process.argv);
// The native front (cli/front/front.c exec_node) and snapvisor's node children pass
// NODE_EXTRA_CA_CERTS under another name, so that node did not load that CA bundle as it started:
// it is the environment's again for what this process starts (a guest inherits it).
restoreHeldCaCerts();
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

/** The restore bundle's exports (cli/restore-entry.ts). */
interface RestoreBundle {
  restore(bundleFile: string, root: string | undefined, id: string, store: string | undefined): Promise<void>;
}

/**
 * Commands that run or restore a kernel, or use the store, in this process: they load the modules
 * other commands never evaluate (cli/bundle-entry.ts loadOnDemandModules), and use the full cache.
 * Not `delete`: engines delete every container they ran, and only `delete ID --store` opens a store.
 */
const FULL = new Set(['run', 'restore', '__oci-init', '__pool-host', '__restorer', 'pool', 'demo', 'inspect', 'checkpoints', 'gc', 'export', 'import', 'store', 'syscalls']);

const bundleFile = path.join(__dirname, 'snapvisor.cjs');
/** The restore bundle (cli/restore-entry.ts). */
const restoreBundleFile = path.join(__dirname, 'restore.cjs');
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
  // bundle. Else that shape (and `--no-pool`) restores in this process with the restore bundle
  // (cli/restore-entry.ts: no argument parser, OCI runtime, pools…), any other the CLI's.
  void import('./pool-registry.js').then((r) => {
    const light = r.parseLightRestore(args, true);
    const inProcess = (): void => { if (light) loadBundle('restore', light); else loadBundle(); };
    const pools = light && !light.noPool ? r.poolsForRestore(args) : undefined;
    if (!pools) { inProcess(); return; }
    (globalThis as { __snapvisorRequire?: NodeJS.Require }).__snapvisorRequire ??= createRequire(bundleFile);
    void import('./pool-client.js').then((m) => m.restoreFromPool(pools)).then((served) => { if (!served) inProcess(); });
  });
} else {
  loadBundle();
}

/**
 * Compile a bundle (with its code cache), evaluate it and run the command: the CLI's
 * (snapvisor.cjs), or with `restore` the restore bundle (restore.cjs, cli/restore-entry.ts) for
 * the restore `light` names (cli/pool-registry.ts parseLightRestore).
 */
/**
 * Remove the temporary files of run-time cache writers that died before renaming theirs
 * (`CACHE.PID.tmp`, PID no longer running: a restore killed at its first output, as the bench
 * and tests do, may die inside the write). Only a process about to write one looks.
 */
function dropDeadWriters(cache: string): void {
  const dir = path.dirname(cache), prefix = `${path.basename(cache)}.`;
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return; }
  for (const n of names) {
    const pid = n.startsWith(prefix) && n.endsWith('.tmp') ? Number(n.slice(prefix.length, -4)) : NaN;
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try { process.kill(pid, 0); continue; } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue; }
    fs.rmSync(path.join(dir, n), { force: true });
  }
}

function loadBundle(restore?: 'restore', light?: { id: string; store?: string; root?: string }): void {
  // SNAPVISOR_WRITE_CODE_CACHE=light|full|restore (the build): compile without a cache, evaluate
  // the bundle (full, restore: and every module its commands load on demand), and write the cache
  // of what V8 compiled. The light cache holds about a third as much as the full one (--help,
  // state, kill… read and deserialize less).
  const writeCache = process.env.SNAPVISOR_WRITE_CODE_CACHE;
  const kind = writeCache ?? restore ?? (FULL.has(commandOf(process.argv.slice(2)) ?? '') ? 'full' : 'light');
  const file = kind === 'restore' ? restoreBundleFile : bundleFile;
  // SNAPVISOR_CODE_CACHE: another cache of the CLI's bundle, made by a process with other V8 flags
  // (a warm pool's clones use the one its probe wrote, cli/pool.ts).
  const cacheFile = kind === 'restore' ? `${file}.cache` : process.env.SNAPVISOR_CODE_CACHE || `${file}.${kind}.cache`;
  const trace = !!process.env.SNAPVISOR_TRACE_STARTUP;
  const age = () => (process.uptime() * 1000).toFixed(1);
  /**
   * Put `data` at run-time cache `file`: written to a temporary name and renamed (processes at
   * once each write a whole one), writers that died mid-write cleaned up first. Where the bundle's
   * directory is not writable (an install of root's), nothing: the build's cache goes on serving.
   */
  const writeRunCache = (file: string, data: Buffer): void => {
    const tmp = `${file}.${process.pid}.tmp`;
    dropDeadWriters(file);
    try {
      fs.writeFileSync(tmp, data);
      fs.renameSync(tmp, file);
      if (trace) process.stderr.write(`snapvisor: start-up: wrote the run-time code cache (${kind}) at ${age()} ms\n`);
    } catch {
      fs.rmSync(tmp, { force: true });
    }
  };

  // The restore bundle's run-time cache (restore.cjs.run.cache): written by a restore once its guest
  // answered, so it holds every function a restore runs, not only those the build's evaluation
  // compiled (those a restore calls first are compiled while it runs: ~20 ms of CPU at load 10,
  // 587 KB of cache against 420). Preferred to the build's when it is as new as the bundle.
  const runCache = kind === 'restore' && !writeCache ? `${file}.run.cache` : undefined;
  // The full bundle's run-time cache (snapvisor.cjs.full.run.cache): written at exit by a process
  // that took a checkpoint (checkpointed(), below), so that it holds the checkpoint's code too:
  // the build's evaluation compiles none of it, and a checkpoint compiled ~200 functions as it ran
  // (capture, page scan, pack, catalogue: ~25 ms of the kernel's thread, in the middle of the scan).
  // Only for node without flags (the bin execs it so): a V8 flag is part of what a code cache is
  // checked against, and a pool's processes (other flags, SNAPVISOR_CODE_CACHE) would write one
  // every plain run rejects.
  const fullRunCache = kind === 'full' && !writeCache && !process.env.SNAPVISOR_CODE_CACHE && process.execArgv.length === 0 ? `${file}.full.run.cache` : undefined;
  if (kind === 'full') {
    // Bytecode kept, not flushed once unused for a while (V8's default): a sandbox checkpointed
    // minutes after it started would find the cache's checkpoint code gone, and the cache it writes
    // at exit would lack its start-up code. A V8 flag is part of what a code cache is checked
    // against, so every process of this kind sets it before compiling, the build's writer too.
    (require('node:v8') as typeof import('node:v8')).setFlagsFromString('--no-flush-bytecode');
  }
  // The cache is used only if written after the bundle (the build writes it last): V8 checks that a
  // cache was made by this V8 with these flags for a source of this length, not of this content.
  let cachedData: Buffer | undefined;
  let stale = false;
  let fromRun = false;
  if (!writeCache) {
    try {
      const bundleTime = fs.statSync(file).mtimeMs;
      const preferred = runCache ?? fullRunCache;
      if (preferred && (fs.statSync(preferred, { throwIfNoEntry: false })?.mtimeMs ?? -1) >= bundleTime) {
        try { cachedData = fs.readFileSync(preferred); fromRun = true; } catch { /* the build's, below */ }
      }
      if (!cachedData) {
        if (fs.statSync(cacheFile).mtimeMs >= bundleTime) cachedData = fs.readFileSync(cacheFile);
        else stale = true;
      }
    } catch { /* no cache: compile from source */ }
  }
  // The file is all ASCII, and holds the CommonJS module wrapper (a function expression) itself.
  const script = new vm.Script(fs.readFileSync(file, 'latin1'), { filename: file, cachedData });
  if (trace) {
    const cache = stale ? 'code cache stale' : cachedData === undefined ? 'no code cache' : script.cachedDataRejected ? 'code cache rejected' : 'code cache used';
    process.stderr.write(`snapvisor: start-up: ${cache} (${kind}), compiled at ${age()} ms\n`);
    if (fromRun) process.stderr.write(`snapvisor: start-up: that cache is the run-time one (${path.basename(runCache ?? fullRunCache!)})\n`);
  }
  if (runCache && (!fromRun || script.cachedDataRejected)) {
    // Called by the restore once its guest answered (cli/restore-entry.ts).
    (globalThis as { __snapvisorSaveRestoreCache?: () => void }).__snapvisorSaveRestoreCache = () => {
      try { writeRunCache(runCache, script.createCachedData()); } catch { /* a cache: the build's goes on serving */ }
    };
  }
  if (fullRunCache) {
    // Called by the CLI once a checkpoint of this process's sandbox is written (cli/control.ts,
    // cli/run.ts): at exit, the cache of what this process compiled replaces the one it loaded
    // unless it was the run-time one already and holds as much (a process that did nothing new).
    const loaded = fromRun && !script.cachedDataRejected ? cachedData!.length : -1;
    let armed = false;
    (globalThis as { __snapvisorCheckpointed?: () => void }).__snapvisorCheckpointed = () => {
      if (armed) return;
      armed = true;
      process.once('exit', () => {
        try {
          const data = script.createCachedData();
          if (data.length > loaded) writeRunCache(fullRunCache, data);
        } catch { /* a cache: the build's goes on serving */ }
      });
    };
  }
  // The compiled bundle, for a process that writes a code cache of what it ran (a warm pool's probe).
  (globalThis as { __snapvisorScript?: vm.Script }).__snapvisorScript = script;
  const mod = { exports: {} as Bundle & RestoreBundle };
  (script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(file), mod, file, __dirname);
  if (trace) process.stderr.write(`snapvisor: start-up: evaluated at ${age()} ms\n`);
  if (writeCache) {
    const write = () => fs.writeFileSync(cacheFile, script.createCachedData());
    if (writeCache !== 'light') void mod.exports.loadOnDemandModules().then(write);
    else write();
  } else if (light) {
    void mod.exports.restore(file, light.root, light.id, light.store);
  } else {
    void mod.exports.start(file, process.argv);
  }
}
