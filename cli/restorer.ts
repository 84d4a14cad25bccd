/**
 * Any-pools (docs/pools.md, "Any-pools"): `snapvisor pool serve --any` keeps N warm restorer
 * processes (`snapvisor __restorer STORE`): node started, the CLI's bundle evaluated with the
 * restore path's modules, koffi loaded, nothing restored. A take names a checkpoint of the store
 * (`{"op":"take","checkpoint":ID}`, a full id or a unique prefix); the pool hands it, with the
 * caller's connection and stdio (SCM_RIGHTS), to a ready restorer, which makes the caller's fds
 * its own 0-2, restores the checkpoint as `snapvisor restore ID --store STORE` does (cli/run.ts
 * restoreForRun: the same checks, lines and statuses) and serves the take as a pool's clone does
 * (cli/pool.ts takeRun: signals in, exit status out). A restorer serves one take and ends; the
 * pool starts another. Unlike a checkpoint's pool (cli/pool.ts) it holds no guest memory and
 * serves every checkpoint of its store, at the price of a restore per take.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type vm from 'node:vm';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeFd, dup2, peerClosed, sendFds, waitReadable } from '../platforms/host/fd-passing.js';
import { makeDirs } from '../snapshots/make-dirs.js';
import { defaultStore, fail } from './control.js';
import { hostErrorWords, storeDirProblem } from './host-errors.js';
import { CtlReader, MAX_START_FAILURES, START_RETRY_MS, claimSocketPath, fdOf, poolServer, removeCacheDir, startServing, stopSignal, takeRun, watchWaiting } from './pool.js';
import { lines } from './pool-client.js';
import { anyPoolLink, POOLS_DIR, restoreId } from './pool-registry.js';

/** Restorers starting at once (each a node process: ~0.3 s of CPU on this machine). */
const MAX_STARTING = 2;
/**
 * How long after a take the pool starts its restorer's replacement while another restorer is
 * ready (ms): a take is a whole restore (tens of ms of CPU), which a node process starting beside
 * it on a 2-CPU machine would slow (the checkpoint pool's REFILL_DELAY_MS, cli/pool.ts, measured
 * the same race for clones). With none ready it starts at once.
 */
const REFILL_DELAY_MS = 200;
/**
 * Node flags of a restorer: the clones' V8 without its optimizing compilers and with a 1 MiB
 * semi-space (cli/pool.ts CLONE_NODE_FLAGS, without --expose-gc and --single-threaded-gc, which
 * settle a clone's garbage before it waits; a restorer has none). A restore is cold code run once:
 * TurboFan's background compiles only cost CPU. Measured on the bench's python3 (anyPoolRound, 20
 * takes each way in alternated rounds, 08:10-08:12 UTC, load 3-6), CPU of the restorer process
 * from its take to its end (restore and guest): median 93 ms with these flags against 112 ms with
 * node's defaults, both with the first take's code cache (below); CPU from the restorer's start
 * to ready, median 135 against 127 ms (the first restorers, before that cache exists, compile
 * the bundle from source under these flags: ~180 ms); spawn → first output p50 within the
 * machine's noise either way.
 */
const RESTORER_NODE_FLAGS = ['--max-semi-space-size=1', '--lite-mode', '--no-expose-wasm'];

/** A restorer process and what it is doing. */
interface Restorer { child: ChildProcess; ctl: number; pid: number; state: 'starting' | 'ready' | 'taken' | 'done'; error?: string; writesCache?: boolean }
/** A take waiting for a restorer: the caller's connection, its stdio fds, the checkpoint it names. */
interface Take { conn: net.Socket; connFd: number; stdio: number[]; checkpoint: string; requestMs: number }

/** What `{"op":"status"}` answers on an any-pool's socket. */
export interface AnyPoolStatus {
  ok: boolean; any: true; store: string; size: number; ready: number; starting: number; running: number; served: number; waiting: number;
  refillsPaused: boolean; startError: string | null; restorers: Array<{ pid: number; state: string }>;
}

/**
 * Free the store's well-known any-pool name `link` (a socket, or a symlink to one): absent, or
 * stale (nothing answers there: removed). Resolves with the problem in one line otherwise (a
 * live pool there, or another kind of file).
 */
async function claimWellKnown(link: string): Promise<string | undefined> {
  const st = fs.lstatSync(link, { throwIfNoEntry: false });
  if (!st) return undefined;
  if (!st.isSocket() && !st.isSymbolicLink()) return `${link} exists and is not a socket`;
  const live = await new Promise<boolean>((r) => { const c = net.createConnection(link, () => { c.destroy(); r(true); }); c.on('error', () => r(false)); });
  if (live) return `an any-pool is already serving store ${path.dirname(path.dirname(link))} on ${link}${st.isSymbolicLink() ? ` (${fs.readlinkSync(link)})` : ''}`;
  fs.rmSync(link, { force: true });
  return undefined;
}

/**
 * `snapvisor pool serve --any`: keep `size` restorers of store `store` ready and serve takes
 * naming a checkpoint on unix socket `listen` (default: the store's well-known name,
 * STORE/pools/any.sock, where `snapvisor restore ID --store STORE` finds it; with --listen that
 * name is made a symlink to it). Prints `pool serving …` once the restorers are ready and serves
 * until SIGTERM/SIGINT/SIGHUP; then the restorers waiting end, those serving a take end with it.
 * After MAX_START_FAILURES restorer starts fail in a row it stops refilling (one line) and
 * refuses the takes it has no restorer for, trying one start every START_RETRY_MS. Returns the
 * exit status (1 with one line: a bad store or socket path, a live any-pool already there,
 * restorers that cannot start).
 */
export async function anyPoolServe(opts: { store?: string; size: number; listen?: string }): Promise<number> {
  const store = path.resolve(opts.store ?? defaultStore());
  const storeProblem = storeDirProblem(store);
  if (storeProblem) { fail(`pool: ${storeProblem}`); return 1; }
  const link = anyPoolLink(store);
  const sockPath = opts.listen !== undefined ? path.resolve(opts.listen) : link;
  try { makeDirs(path.join(store, POOLS_DIR)); } catch (e) { fail(`pool: cannot make ${path.join(store, POOLS_DIR)}: ${hostErrorWords(e as NodeJS.ErrnoException)}`); return 1; }
  const nameProblem = await claimWellKnown(link);
  if (nameProblem) { fail(`pool: ${nameProblem}`); return 1; }
  if (sockPath !== link) {
    const sockProblem = await claimSocketPath(sockPath);
    if (sockProblem) { fail(`pool: ${sockProblem}`); return 1; }
  }

  // A restorer makes no TLS connections: loading a CA bundle would only slow its start.
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const restorers = new Set<Restorer>();
  const waiting: Take[] = [];
  let served = 0, failedInARow = 0, everReady = false, closing = false;
  let cannotStart: string | undefined, lastStartError: string | undefined;
  let retryTimer: NodeJS.Timeout | undefined, refillTimer: NodeJS.Timeout | undefined;
  let startFailure: ((msg: string) => void) | undefined;
  /**
   * The V8 code cache of the bundle that the first restorer to serve a take writes after it
   * (every function its restore and its guest's syscalls compiled: cli/launcher.ts
   * SNAPVISOR_CODE_CACHE), for the restorers started after it, whose takes then compile nothing
   * the first one ran; in a directory of its own under os.tmpdir() (named as a checkpoint pool's,
   * whose start removes those of dead pools: cli/pool.ts), removed when the pool stops.
   */
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), `snapvisor-pool-${process.pid}-`));
  const dropCache = () => removeCacheDir(cacheDir);
  process.once('exit', dropCache);
  const cacheFile = path.join(cacheDir, 'restorer.cache');
  let codeCache: 'none' | 'asked' | 'written' = 'none';
  /** `{"op":"pause-refills"}` until `{"op":"resume-refills"}`: no restorer is started (as a checkpoint's pool, docs/pools.md "The socket protocol"). */
  let refillsPaused = false;
  const inState = (s: Restorer['state']) => [...restorers].filter((r) => r.state === s);
  const cannotStartAnswer = () => ({ ok: false, error: `no restorer can start (${MAX_START_FAILURES} attempts in a row failed, the last: ${cannotStart}); the pool tries again every ${START_RETRY_MS / 1000} s` });
  const refuse = (t: Take, v: Record<string, unknown>) => { t.stdio.forEach(closeFd); t.conn.resume(); t.conn.end(JSON.stringify(v) + '\n'); };

  const refill = () => {
    if (refillTimer) { clearTimeout(refillTimer); refillTimer = undefined; }
    if (closing || cannotStart || refillsPaused) return;
    for (let missing = opts.size - inState('ready').length - inState('starting').length; missing > 0 && inState('starting').length < MAX_STARTING; missing--) start();
  };
  const retryStart = () => {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => { retryTimer = undefined; if (!closing && cannotStart && !refillsPaused && !inState('starting').length) start(); }, START_RETRY_MS);
  };
  const start = () => {
    // Detached, its own session: the terminal's ^C to `pool serve` is not its business.
    const child = spawn(process.execPath, [...process.execArgv, ...RESTORER_NODE_FLAGS, process.argv[1], '__restorer', store], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], detached: true, env: codeCache === 'written' ? { ...env, SNAPVISOR_CODE_CACHE: cacheFile } : env });
    const r: Restorer = { child, ctl: fdOf(child.stdio[3] as net.Socket), pid: child.pid ?? 0, state: 'starting' };
    restorers.add(r);
    const ctl = child.stdio[3] as net.Socket;
    ctl.on('error', () => undefined);
    lines(ctl, (m) => {
      if (m.event === 'ready' && r.state === 'starting') {
        r.state = 'ready';
        failedInARow = 0;
        lastStartError = undefined;
        everReady = true;
        if (cannotStart) { cannotStart = undefined; fail('pool: a restorer started again: refilling'); }
        dispatch();
        refill();
      } else if (m.event === 'code-cache') codeCache = m.ok === true ? 'written' : 'none';
      else if (m.event === 'failed') r.error = String(m.error);
    });
    child.on('exit', (code, signal) => {
      const wasStarting = r.state === 'starting';
      // It ended before saying whether it wrote the code cache: the next take's restorer writes it.
      if (r.writesCache && codeCache === 'asked') codeCache = 'none';
      r.state = 'done';
      restorers.delete(r);
      if (closing) return;
      if (wasStarting) {
        failedInARow++;
        lastStartError = r.error ?? (signal ? `restorer ${r.pid} was killed (${signal})` : `restorer ${r.pid} ended with status ${code}`);
        // Once per run of failures: a pool that stopped refilling retries quietly.
        if (!cannotStart && failedInARow === 1) fail(`pool: a restorer failed to start: ${lastStartError}`);
        if (startFailure && (!everReady && failedInARow >= 2 || failedInARow >= MAX_START_FAILURES)) { startFailure('restorers cannot start (see above)'); return; }
        if (cannotStart) { retryStart(); return; }
        if (failedInARow >= MAX_START_FAILURES) {
          cannotStart = lastStartError;
          fail(`pool: restorers cannot start (${MAX_START_FAILURES} attempts in a row failed: ${cannotStart}): refilling stopped; takes with no restorer ready are refused until one starts (one is tried every ${START_RETRY_MS / 1000} s)`);
          for (const t of waiting.splice(0)) refuse(t, cannotStartAnswer());
          retryStart();
          return;
        }
      }
      // A restorer ended (its take done, or it died waiting): replaced; a run of failures backs off.
      setTimeout(refill, failedInARow ? Math.min(5000, 100 * 2 ** failedInARow) : 0).unref();
    });
  };
  /** Hand waiting takes to ready restorers (the newest first: the oldest waited longest in poll(2) and is the slowest to wake). */
  const dispatch = () => {
    while (waiting.length) {
      const r = inState('ready').pop();
      if (!r) return;
      const t = waiting.shift()!;
      if (t.conn.destroyed || peerClosed(t.connFd)) { t.stdio.forEach(closeFd); t.conn.destroy(); continue; }
      const writeCache = codeCache === 'none';
      const sent = sendFds(r.ctl, Buffer.from(JSON.stringify({ op: 'take', checkpoint: t.checkpoint, requestMs: t.requestMs, ...(writeCache ? { codeCache: cacheFile } : {}) }) + '\n'), [t.connFd, ...t.stdio]);
      if (sent < 0) {
        r.state = 'done';
        r.child.kill('SIGKILL');
        waiting.unshift(t);
        fail(`pool: handing a take to restorer ${r.pid} failed (errno ${-sent}); trying another`);
        continue;
      }
      t.stdio.forEach(closeFd);
      r.state = 'taken';
      if (writeCache) { codeCache = 'asked'; r.writesCache = true; }
      served++;
      // The restorer holds the caller's connection now; this copy goes.
      t.conn.destroy();
      if (!inState('ready').length) refill();
      else refillTimer ??= setTimeout(refill, REFILL_DELAY_MS);
    }
  };
  const waitingWatch = watchWaiting(waiting);

  const server = poolServer(({ conn, fd, req, fds, requestMs, answer }) => {
    if (req.op === 'status') {
      const status: AnyPoolStatus = {
        ok: true, any: true, store, size: opts.size, ready: inState('ready').length, starting: inState('starting').length, running: inState('taken').length,
        served, waiting: waiting.length, refillsPaused, startError: cannotStart ?? null, restorers: [...restorers].map((r) => ({ pid: r.pid, state: r.state })),
      };
      answer(status as unknown as Record<string, unknown>);
      return;
    }
    if (req.op === 'pause-refills' || req.op === 'resume-refills') {
      const was = refillsPaused;
      refillsPaused = req.op === 'pause-refills';
      if (was && !refillsPaused) refill();
      // A pool that stopped refilling tries one restorer now (its operator may have fixed the cause).
      if (!refillsPaused && cannotStart && !inState('starting').length) start();
      answer({ ok: true, refillsPaused, starting: inState('starting').length });
      return;
    }
    if (req.op !== 'take') { answer({ ok: false, error: `unknown op ${JSON.stringify(req.op ?? null)}` }); return; }
    if (fds.length !== 3) { answer({ ok: false, error: `a take sends 3 fds (stdin, stdout, stderr) with SCM_RIGHTS, got ${fds.length}` }); return; }
    if (typeof req.checkpoint !== 'string' || !req.checkpoint) { answer({ ok: false, error: `this pool serves any checkpoint of store ${store}: a take names one (\`pool take SOCKET --checkpoint ID\`, or "checkpoint":ID in the request)` }); return; }
    if (closing) { answer({ ok: false, error: 'the pool is shutting down' }); return; }
    // A restore through the pool (cli/pool-client.ts restoreFromPool, the native front): only a
    // restorer ready now; else it restores in its own process, sooner than a refill.
    if (req.ifReady === true && (waiting.length || !inState('ready').length)) { answer({ ok: false, error: 'no restorer is ready' }); return; }
    // A restore's take of an id the store does not hold (the native front sends any full id):
    // refused, so that it restores in its own process and says so with the store as its caller
    // named it, rather than spending a restorer on it.
    if (req.ifReady === true && !(/^[0-9a-f]{16}$/.test(req.checkpoint) ? fs.existsSync(path.join(store, 'meta', req.checkpoint)) : restoreId(store, req.checkpoint))) { answer({ ok: false, error: `no checkpoint ${req.checkpoint} in store ${store}` }); return; }
    if (cannotStart && !inState('ready').length) { answer(cannotStartAnswer()); return; }
    waiting.push({ conn, connFd: fd, stdio: fds, checkpoint: req.checkpoint, requestMs });
    dispatch();
    if (waiting.length) waitingWatch.start();
  });

  // Start the restorers; the first ones prove they can start here.
  const problem = await startServing(server, sockPath, () => inState('ready').length >= opts.size, (failed) => { startFailure = failed; refill(); });
  startFailure = undefined;
  if (problem) {
    closing = true;
    dropCache();
    for (const r of restorers) r.child.kill('SIGKILL');
    fail(`pool: ${problem}`);
    return 1;
  }
  // The well-known name: the socket itself, or a symlink to --listen's (made after listening: a
  // restore that finds the name finds a pool). Removed when this process ends, if still ours.
  let published = sockPath === link;
  if (!published) {
    const tmp = `${link}.${process.pid}.tmp`;
    try { fs.rmSync(tmp, { force: true }); fs.symlinkSync(sockPath, tmp); fs.renameSync(tmp, link); published = true; } catch (e) {
      fs.rmSync(tmp, { force: true });
      fail(`pool: not published as ${link} (restores will not use this pool): ${hostErrorWords(e as NodeJS.ErrnoException)}`);
    }
  }
  const unpublish = () => {
    if (sockPath === link) { fs.rmSync(link, { force: true }); return; }
    try { if (published && fs.readlinkSync(link) === sockPath) fs.rmSync(link, { force: true }); } catch { /* gone already */ }
  };
  process.once('exit', unpublish);
  process.stdout.write(`pool serving any checkpoint of store ${store} on ${sockPath} (${opts.size} ${opts.size === 1 ? 'restorer' : 'restorers'} ready)\n`);

  await stopSignal();
  closing = true;
  clearTimeout(retryTimer);
  clearTimeout(refillTimer);
  waitingWatch.stop();
  await new Promise<void>((r) => server.close(() => r()));
  unpublish();
  dropCache();
  if (sockPath !== link) fs.rmSync(sockPath, { force: true });
  // Restorers waiting go (their control socket closes with this process too); those serving a take belong to its caller.
  for (const r of restorers) if (r.state !== 'taken') r.child.kill('SIGKILL');
  for (const t of waiting) { t.stdio.forEach(closeFd); t.conn.destroy(); }
  return 0;
}

/**
 * A restorer process (`snapvisor __restorer STORE`, started by an any-pool with its control
 * socket as fd 3): load what a restore runs (the store's and the restore's modules, koffi),
 * say `ready`, and wait in poll(2) for one take (`{"op":"take","checkpoint":ID,"requestMs":T}`
 * with the caller's connection, stdin, stdout and stderr). The caller's stdio becomes this
 * process's fds 0-2, so that the restore writes its lines where an in-process restore would;
 * the checkpoint is restored as `snapvisor restore ID --store STORE` restores it (restoreForRun)
 * and its guest run for the take (takeRun); a restore that fails sends its status (125, 2) as
 * the take's exit line after its one line on the caller's stderr. Returns the exit status: 0
 * once the take ended or the pool went (its socket closed) before one came.
 */
export async function restorerHost(store: string): Promise<number> {
  const CTL = 3;
  const say = (v: unknown) => { try { fs.writeSync(CTL, JSON.stringify(v) + '\n'); } catch { /* the pool is gone */ } };
  const stray = (e: unknown) => { try { fs.writeSync(2, `snapvisor: restorer process ${process.pid}: ${(e as Error)?.stack ?? e}\n`); } catch { /* nowhere to say it */ } };
  process.on('uncaughtException', stray);
  process.on('unhandledRejection', stray);
  let restoreForRun: typeof import('./run.js').restoreForRun;
  try {
    // What the take's restore would load first: the restore path, the store (LevelDB, cbor-x), the platform (koffi).
    ({ restoreForRun } = await import('./run.js'));
    await Promise.all([import('../snapshots/checkpoint.js'), import('../snapshots/store.js'), import('../platforms/registry.js')]);
    // koffi's asynchronous call (the wait below, and a take's stdin) with its set-up, now.
    await waitReadable(CTL, 0);
  } catch (e) {
    say({ event: 'failed', error: (e as Error).message });
    return 125;
  }
  say({ event: 'ready' });
  const msg = await new CtlReader(CTL).next(() => true);
  if (msg === 'eof') return 0;
  let req: Record<string, unknown> = {};
  try { req = JSON.parse(msg.line); } catch { /* below */ }
  if (req.op !== 'take' || msg.fds.length !== 4 || typeof req.checkpoint !== 'string') { msg.fds.forEach(closeFd); return 0; }
  const [connFd, ...stdio] = msg.fds;
  // The caller's stdio as this process's own: the restore's lines, and the kernel's host services, use fds 0-2.
  for (let i = 0; i < 3; i++) { dup2(stdio[i], i); closeFd(stdio[i]); }
  const restored = await restoreForRun(undefined, req.checkpoint, { store });
  if (typeof restored === 'number') {
    try { fs.writeSync(connFd, JSON.stringify({ event: 'exit', status: restored }) + '\n'); } catch { /* the caller is gone */ }
    closeFd(connFd);
    if (typeof req.codeCache === 'string') say({ event: 'code-cache', ok: false });
    return 0;
  }
  await takeRun({ kernel: restored.kernel }, [connFd, 0, 1, 2], say, 0, Number(req.requestMs) || 0, false, restored.finalStatus);
  // Asked for the code cache (the pool's first take): what this process compiled, for the restorers after it.
  if (typeof req.codeCache === 'string') say({ event: 'code-cache', ok: writeCodeCache(req.codeCache) });
  return 0;
}

/**
 * Write the V8 code cache of the bundle this process was compiled from (cli/launcher.ts keeps its
 * vm.Script) to `file`, as a temporary file renamed into place. False when there is no such
 * script (the unbundled dist/ the tests may load) or it cannot be written.
 */
function writeCodeCache(file: string): boolean {
  const script = (globalThis as { __snapvisorScript?: vm.Script }).__snapvisorScript;
  if (!script) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, script.createCachedData());
    fs.renameSync(tmp, file);
    return true;
  } catch {
    fs.rmSync(tmp, { force: true });
    return false;
  }
}
