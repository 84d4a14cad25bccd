/**
 * Warm pools (docs/pools.md): `snapvisor pool serve` keeps N clones of a checkpoint restored and
 * paused in hosting processes (`snapvisor __pool-host`), each restoring a batch of up to
 * `--per-process` clones as kernels of its own (rebuilt, stubs started, registers set, not yet
 * run) and then only serving them; `snapvisor pool take` hands one to the caller. The caller's
 * stdin/stdout/stderr and its connection travel over the pool's unix socket with SCM_RIGHTS
 * (platforms/host/fd-passing.ts) to the hosting process, whose clone sees them as its guest's
 * stdio, resumes the guest and from then on talks to the caller directly (signals in, exit
 * status out). The pool refills in the background, in new hosting processes; a clone that dies
 * is only a clone lost.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeFd, peerClosed, recvFdsNow, sendFds, waitReadable, waitReadableSync } from '../platforms/host/fd-passing.js';
import { LinuxHostServices } from '../platforms/host/host-services.js';
import { defaultStore, fail } from './control.js';
import { hostErrorWords, socketPathProblem } from './host-errors.js';
import { alive, registerPool } from './pool-registry.js';
import { lines } from './pool-client.js';
import type vm from 'node:vm';
import type { Kernel } from '../src/kernel/kernel.js';
import type { KernelState } from '../src/kernel/state.js';
import { PAGE_SIZE, pageCheck } from '../snapshots/page-format.js';

/**
 * CLOCK_MONOTONIC in ms with sub-ms resolution: comparable between processes of one host. (Not
 * performance.timeOrigin + now(): each process fixes its wall-clock origin at its start, and the
 * bench saw a take "received" 8 ms before its client sent it.)
 */
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Signals a take relays that go to the guest's foreground process group (the rest go to its init). */
const KEYBOARD = new Set<number>(['SIGINT', 'SIGQUIT', 'SIGTSTP', 'SIGWINCH'].map((n) => os.constants.signals[n as NodeJS.Signals]));

/**
 * Node flags of a clone's process. --expose-gc: a clone collects its restore's garbage before it
 * counts as ready (settle). The rest trade V8 speed for memory, since a pool keeps many clones
 * waiting: --max-semi-space-size=1 (MiB) keeps the young generation at 2 MiB instead of 16, and
 * --lite-mode (V8 without its optimizing compilers; --no-expose-wasm, which it conflicts with,
 * keeps it from printing a warning) keeps no optimized code or feedback. Measured on one restored
 * clone of the bench's python3 after a full GC: private (anonymous) memory 26.7 → 15.3 MiB; a
 * pool of 20 clones 535 → 424 MiB (docs/benchmarks.md). A clone's work is mostly cold code run
 * once, and its trapped syscalls cost host calls more than JavaScript (a guest making 50,000
 * getppid calls used the same CPU time either way, within this machine's noise). V8 refuses the
 * build's code cache of the bundle under other flags: clones after the probe load the probe's.
 * --single-threaded-gc: the settle GC finishes its work before the clones count as ready, instead
 * of leaving V8's sweeper and marker threads to run beside the first take (on a 2-CPU machine,
 * beside the guest's tracer). The bench's python3, request → first output byte, 40 takes each
 * once the pool was full, three rounds alternated with the build without it (11:53 UTC, load
 * ~1.5): p90 6.3, 18.4, 12.2 ms and worst 8.7, 30.3, 26.3 ms with it; p90 27.8, 23.3, 21.5 and
 * worst 41.8, 39.3, 35.8 without; p50 4.8-7.8 against 7.7-8.1; a pool of 20 170.7 against 171.3 MiB.
 */
const CLONE_NODE_FLAGS = ['--expose-gc', '--max-semi-space-size=1', '--lite-mode', '--no-expose-wasm', '--single-threaded-gc'];
/** Clones restoring at once while refilling (the machine's other work goes on meanwhile). */
const MAX_STARTING = 2;
/**
 * How long after handing a clone to a take the pool starts restoring its replacement (ms), while
 * other clones are still ready: a restore (a node process starting, ~1 s of CPU) begun at the
 * take competes with the taken clone's first steps for this machine's CPUs. The bench's
 * python3, request → first output byte, p50 of 10 takes in three alternated rounds at load 9-11:
 * 49.4, 59.6, 45.6 ms with the replacement started at once; 34.8, 34.0, 33.6 ms 100 ms later.
 * With no clone left ready it starts at once.
 */
const REFILL_DELAY_MS = 100;
/** How long without a take before the pool gathers the clones of small idle processes into one (consolidate), ms. */
const CONSOLIDATE_IDLE_MS = 2000;
/** Processes holding clones beyond ceil(size / per-process) before a refill gathers small idle ones even while takes come. */
const MAX_EXTRA_HOSTS = 4;
/** How long after resuming its guest a clone starts watching the caller's connection (signals, its close), ms. */
const CONN_WATCH_DELAY_MS = 50;
/** A request must arrive within this long after connecting (ms). */
const REQUEST_TIMEOUT_MS = 5000;
/**
 * Clone starts failing in a row (each after a back-off: 200, 400 ms…) after which a serving pool
 * stops refilling and refuses the takes it has no clone for (docs/pools.md, step 7): a checkpoint
 * deleted or made unreadable under a pool had it start a hosting process every 5 s for ever
 * (617 `failed to start` lines in 10 minutes) while its takes waited for ever.
 */
export const MAX_START_FAILURES = 3;
/** How often a pool that stopped refilling tries one clone again, quietly (ms): a start that succeeds makes it refill and serve again. */
export const START_RETRY_MS = 60_000;
/** How often the pool looks whether the callers of takes still waiting are gone (ms): such a take is forgotten. */
const WAITING_CHECK_MS = 200;

/**
 * Clones one hosting process restores by default (`pool serve --per-process`). Each clone in a
 * process of its own cost ~18 MiB more per clone (its node process ~15 MiB: V8 heap, node's
 * own state); in one process they share that, at the price of one event loop for all their
 * guests (see docs/pools.md, "Costs and limits").
 */
export const DEFAULT_CLONES_PER_PROCESS = 20;
/** A hosting process (`snapvisor __pool-host STORE ID COUNT`): the clones it restored, by slot. */
interface Host {
  child: ChildProcess; ctl: number; pid: number; seq: number; slots: Clone[]; prefetched: boolean;
  /** Why its clones failed to start (its `failed` event), if they did. */
  error?: string;
  /** Gathered into a new batch (consolidate, or a refill past MAX_EXTRA_HOSTS): its waiting clones go once that batch is ready. */
  retiring: boolean;
  /** The processes whose waiting clones this one's batch replaces (see refill). */
  replaces: Host[];
}
/** One clone: slot `slot` of `host`. 'done': its take (or probe) ended, or it was lost. */
interface Clone { host: Host; slot: number; state: 'starting' | 'ready' | 'taken' | 'probing' | 'done' }

/** A write fault to replay: [address space id, guest address]. */
type Fault = [number, number];
/** Pages a guest touched, to touch in a waiting clone's stubs: [address space id, guest address, pages]. */
type PageRun = [number, number, number];
/** Most pages a working set touches in each waiting clone (256 MiB). */
const MAX_WORKING_PAGES = 65536;
/** What the first take's guest did early on: its write faults and the pages it touched. */
interface WorkingSet { faults: Fault[]; pages: PageRun[] }
/** Most write faults a working set holds (each copies at most one 64 KiB chunk: 128 MiB). */
const MAX_WORKING_SET = 2048;
/** How long after resuming its guest a clone records the write faults it takes (ms). */
const WORKING_SET_WINDOW_MS = 1000;
interface Take { conn: net.Socket; connFd: number; stdio: number[]; requestMs: number }

/** The fd under a Node socket (libuv's; stable on Linux since Node 0.x). */
export const fdOf = (s: net.Socket | NodeJS.ReadableStream | null | undefined): number => (s as unknown as { _handle?: { fd?: number } })?._handle?.fd ?? -1;

/** A request read from a pool's socket (poolServer): its connection, the JSON object of its first line, the fds that came with it. */
export interface PoolRequest {
  conn: net.Socket; fd: number; req: Record<string, unknown>; fds: number[];
  /** When it was read (nowMs). */
  requestMs: number;
  /** Close the fds, write `v` as the one answer line and end the connection. */
  answer(v: Record<string, unknown>): void;
}

/**
 * The unix-socket server of a pool (cli/pool.ts, and an any-pool, cli/restorer.ts): on each
 * connection, read one message with its fds (SCM_RIGHTS) within REQUEST_TIMEOUT_MS (else the
 * connection is closed), parse its first line (not JSON: `{}`), and call `onRequest`; the
 * connection stays paused for it.
 */
export function poolServer(onRequest: (r: PoolRequest) => void): net.Server {
  return net.createServer({ pauseOnConnect: true }, (conn) => {
    void (async () => {
      const fd = fdOf(conn);
      conn.on('error', () => undefined);
      const deadline = Date.now() + REQUEST_TIMEOUT_MS;
      let msg: Awaited<ReturnType<typeof recvFdsNow>>;
      for (;;) {
        try { msg = recvFdsNow(fd); } catch { conn.destroy(); return; }
        if (msg !== 'again') break;
        const left = deadline - Date.now();
        if (left <= 0 || !(await waitReadable(fd, left))) { msg = 'eof'; break; }
      }
      const requestMs = nowMs();
      if (msg === 'eof') { conn.destroy(); return; }
      const { data, fds } = msg;
      let req: Record<string, unknown> = {};
      try { req = JSON.parse(data.toString().split('\n')[0]); } catch { /* an empty request: the caller answers it */ }
      const answer = (v: Record<string, unknown>) => { fds.forEach(closeFd); conn.resume(); conn.end(JSON.stringify(v) + '\n'); };
      onRequest({ conn, fd, req, fds, requestMs, answer });
    })();
  });
}

/**
 * Make `server` listen on unix socket path `sockPath`; resolves with the problem in one line (the
 * path taken meanwhile by another program: EADDRINUSE; another errno in words), or undefined.
 * From then on an error of the server ends this process with one line and status 1.
 */
async function listenPool(server: net.Server, sockPath: string): Promise<string | undefined> {
  const e = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => { server.once('error', resolve); server.listen(sockPath, () => resolve(undefined)); });
  // The path was taken while the clones (restorers) started (another program bound it meanwhile).
  if (e) return e.code === 'EADDRINUSE' ? `${sockPath} is already in use (another program listens there)` : `cannot listen on ${sockPath}: ${hostErrorWords(e)}`;
  server.on('error', (err) => { fail(`pool: ${sockPath}: ${err.message}`); process.exit(1); });
  return undefined;
}

/**
 * A pool's start: `begin(failed)` starts its first processes; once `full()` (checked every 20 ms)
 * `server` listens on `sockPath` (listenPool). Resolves with undefined once it listens, or with
 * the problem in one line: the line `failed` was called with (its processes cannot start), or
 * the listen's.
 */
export async function startServing(server: net.Server, sockPath: string, full: () => boolean, begin: (failed: (line: string) => void) => void): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const failure = await new Promise<string | undefined>((resolve) => {
    timer = setInterval(() => { if (full()) resolve(undefined); }, 20);
    begin(resolve);
  });
  clearInterval(timer);
  return failure ?? listenPool(server, sockPath);
}

/**
 * Forget the takes of `waiting` (a pool's queue, changed in place) whose callers are gone (a `pool
 * take` ended by a signal, a platform's connection closed): looked at every WAITING_CHECK_MS from
 * `start()` while any wait; `stop()` ends the looking.
 */
export function watchWaiting(waiting: Array<{ conn: net.Socket; connFd: number; stdio: number[] }>): { start(): void; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  const stop = () => { clearInterval(timer); timer = undefined; };
  return {
    start: () => {
      timer ??= setInterval(() => {
        for (let i = waiting.length - 1; i >= 0; i--) {
          const t = waiting[i];
          if (t.conn.destroyed || peerClosed(t.connFd)) { waiting.splice(i, 1); t.stdio.forEach(closeFd); t.conn.destroy(); }
        }
        if (!waiting.length) stop();
      }, WAITING_CHECK_MS);
    },
    stop,
  };
}

/** Resolves at the first SIGTERM, SIGINT or SIGHUP this process receives (a pool's stop). */
export function stopSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.once('SIGHUP', stop);
  });
}

/**
 * Make unix socket path `sockPath` (absolute) ready for a pool to listen on: its directory must
 * exist (libuv's bind reports a missing one as EACCES, and only after the clones started), the
 * path must fit a sockaddr_un, and what is there must be a socket no one answers on (a stale one
 * is removed). Resolves with the problem in one line, or undefined when the path is free.
 */
export async function claimSocketPath(sockPath: string): Promise<string | undefined> {
  const parent = path.dirname(sockPath);
  if (!fs.statSync(parent, { throwIfNoEntry: false })?.isDirectory()) return `cannot listen on ${sockPath}: ${fs.existsSync(parent) ? `${parent} is not a directory` : `no directory ${parent}`}`;
  const tooLong = socketPathProblem(sockPath);
  if (tooLong) return `cannot listen on ${tooLong}`;
  const st = fs.lstatSync(sockPath, { throwIfNoEntry: false });
  if (st) {
    if (!st.isSocket()) return `${sockPath} exists and is not a socket`;
    const live = await new Promise<boolean>((r) => { const c = net.createConnection(sockPath, () => { c.destroy(); r(true); }); c.on('error', () => r(false)); });
    if (live) return `a pool (or another program) is already serving on ${sockPath}`;
    fs.rmSync(sockPath, { force: true });
  }
  return undefined;
}

/**
 * `snapvisor pool serve`: check the checkpoint (every page) and the socket path, start `size`
 * clones, run the probe (unless `probe` is false), print `pool serving …` once the clones are
 * ready and hold the working set, and serve until SIGTERM/SIGINT. After MAX_START_FAILURES
 * clone starts fail in a row it stops refilling and refuses the takes it has no clone for, trying
 * one clone every START_RETRY_MS until one starts.
 * Returns the exit status (1 with one line for a bad checkpoint, a taken socket, clones that
 * cannot start).
 */
export async function poolServe(opts: { checkpoint: string; store?: string; size: number; listen: string; probe?: boolean; perProcess?: number }): Promise<number> {
  const store = path.resolve(opts.store ?? defaultStore());
  const sockPath = path.resolve(opts.listen);
  // 1. The checkpoint: records and every page, once; clones then skip the page check.
  const { openCheckpoint, chunkCheckedLayers, SnapshotError } = await import('../snapshots/store.js');
  const { verifyPages } = await import('../snapshots/pages.js');
  const { checkRestorable } = await import('../snapshots/checkpoint.js');
  let id: string;
  try {
    // A compressed checkpoint's restore cache is made whole now: every clone maps all of it.
    const opened = await openCheckpoint(store, opts.checkpoint, 'complete');
    id = opened.id;
    try {
      const bad = verifyPages(opened.pageFd, opened.runs, opened.pageFileBytes, opened.layers.map((l) => l.fd), chunkCheckedLayers(store, opened.manifest));
      if (bad !== undefined) throw new SnapshotError(`checkpoint ${id} is corrupt: ${bad}`);
      checkRestorable(id, opened.graph as KernelState);
    } finally {
      fs.closeSync(opened.pageFd);
      for (const l of opened.layers) fs.closeSync(l.fd);
    }
  } catch (e) {
    fail(`pool: ${(e as Error).message}`);
    return 1;
  }
  // 2. The socket path: refuse one a live pool serves or that is not a socket; remove a stale one.
  const sockProblem = await claimSocketPath(sockPath);
  if (sockProblem) { fail(`pool: ${sockProblem}`); return 1; }

  // A clone makes no TLS connections: loading a CA bundle would only slow its start (~50 ms).
  const cloneEnv = { ...process.env };
  delete cloneEnv.NODE_EXTRA_CA_CERTS;
  const perProcess = Math.max(1, Math.min(opts.perProcess ?? DEFAULT_CLONES_PER_PROCESS, opts.size));
  const hosts = new Set<Host>();
  const clones = new Set<Clone>();
  const waiting: Take[] = [];
  let served = 0, failedInARow = 0, everReady = false, closing = false, hostSeq = 0;
  /**
   * `{"op":"pause-refills"}` until `{"op":"resume-refills"}` (docs/pools.md, "The socket
   * protocol"): no hosting process is started (refill, consolidate), so the clones ready stay the
   * only ones and takes beyond them wait. A test (or an operator draining a host) holds the pool
   * in a state that otherwise depends on how fast a refill is.
   */
  let refillsPaused = false;
  /**
   * Set once MAX_START_FAILURES clone starts in a row failed while serving (the last one's error):
   * no refill, takes with no clone ready refused with it, waiting ones too; one clone tried again
   * every START_RETRY_MS (retryStart), and cleared once a start succeeds.
   */
  let cannotStart: string | undefined;
  /** The error of the last start that failed in this run of failures (said once, not at every retry). */
  let lastStartError: string | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  const cannotStartAnswer = () => ({ ok: false, error: `no clone of checkpoint ${id} can start (${MAX_START_FAILURES} attempts in a row failed, the last: ${cannotStart}); the pool tries again every ${START_RETRY_MS / 1000} s` });
  /** Answer a take that will get no clone (`{"ok":false,…}`) and drop it. */
  const refuse = (t: Take, v: Record<string, unknown>) => {
    t.stdio.forEach(closeFd);
    t.conn.resume();
    t.conn.end(JSON.stringify(v) + '\n');
  };
  /** MAX_START_FAILURES starts in a row failed: stop refilling, say so once, refuse the takes waiting. */
  const stopRefilling = () => {
    cannotStart = lastStartError ?? 'its hosting process ended';
    if (refillTimer) { clearTimeout(refillTimer); refillTimer = undefined; }
    fail(`pool: clones of checkpoint ${id} cannot start (${MAX_START_FAILURES} attempts in a row failed: ${cannotStart}): refilling stopped; takes with no clone ready are refused until a clone starts (one is tried every ${START_RETRY_MS / 1000} s)`);
    for (const t of waiting.splice(0)) refuse(t, cannotStartAnswer());
    retryStart();
  };
  /** While cannotStart: one clone, START_RETRY_MS from now (or at once: `resume-refills`; none while refills are paused). */
  const retryStart = (ms = START_RETRY_MS) => {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      if (!closing && cannotStart && !refillsPaused && !startingHosts()) startHost(1);
    }, ms);
  };
  const waitingWatch = watchWaiting(waiting);
  /** The write faults the first take's guest made early on: replayed by every clone before it is ready. */
  let workingSet: WorkingSet | undefined;
  /** Send the working set to a host whose clones all wait (a prefetch is synchronous work in that process: no guest of it may be running). */
  const sendPrefetch = (host: Host) => {
    host.prefetched = true;
    for (const c of host.slots) if (c.state === 'ready') c.state = 'starting';
    (host.child.stdio[3] as net.Socket).write(JSON.stringify({ op: 'prefetch', ...workingSet }) + '\n');
  };
  /**
   * The probe (docs/pools.md, "The working set"): the first clone ready runs its guest once, before
   * the pool serves, with stdin at end of file and its output discarded, so that even the first
   * take meets clones holding the working set. 'done' once it reported or died (or with --no-probe).
   */
  let probe: 'pending' | 'running' | 'done' = opts.probe === false ? 'done' : 'pending';
  /**
   * The V8 code cache the probe writes once its guest has run (the bundle with every function it
   * compiled, restore and take: cli/launcher.ts, SNAPVISOR_CODE_CACHE), for the hosting processes
   * started after it; in a directory of its own under os.tmpdir(), removed when the pool stops.
   */
  let cacheDir: string | undefined, codeCache: string | undefined;
  const dropCache = () => { if (cacheDir) removeCacheDir(cacheDir); };
  process.once('exit', dropCache);
  const startProbe = (clone: Clone): boolean => {
    let r = -1;
    if (!cacheDir) {
      dropOrphanCacheDirs();
      cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), `snapvisor-pool-${process.pid}-`));
    }
    const nulIn = fs.openSync('/dev/null', 'r'), nulOut = fs.openSync('/dev/null', 'w');
    try { r = sendFds(clone.host.ctl, Buffer.from(JSON.stringify({ op: 'probe', slot: clone.slot, codeCache: path.join(cacheDir, 'clone.cache') }) + '\n'), [nulIn, nulOut, nulOut]); } finally { fs.closeSync(nulIn); fs.closeSync(nulOut); }
    if (r < 0) return false;
    clone.state = 'probing';
    probe = 'running';
    return true;
  };
  let startFailure: ((msg: string) => void) | undefined;
  const ready = () => [...clones].filter((c) => c.state === 'ready');
  const starting = () => [...clones].filter((c) => c.state === 'starting').length;
  const startingHosts = () => [...hosts].filter((h) => h.slots.some((c) => c.state === 'starting')).length;
  const runningIn = (h: Host) => h.slots.filter((c) => c.state === 'taken' || c.state === 'probing').length;

  let refillTimer: NodeJS.Timeout | undefined;
  const refill = () => {
    if (refillTimer) { clearTimeout(refillTimer); refillTimer = undefined; }
    if (closing || refillsPaused || cannotStart) return;
    // Until the probe is done, only the process whose one clone runs it: the others start with its code cache.
    if (probe !== 'done') { if (!hosts.size) startHost(1); return; }
    // What is missing, in processes of up to perProcess clones each (a batch restored at once).
    // Takes waiting with no clone ready: smaller batches, restored in parallel, are ready sooner
    // (a process reports its clones only once it has restored them all). While takes come, a
    // batch holds only what is missing (see consolidate), unless the processes holding clones
    // are more than MAX_EXTRA_HOSTS beyond what the size needs: then it also takes over small
    // idle ones, as consolidate does, so that memory stays bounded under a steady stream of takes.
    const missing0 = opts.size - ready().length - starting();
    const batch = waiting.length && !ready().length ? Math.min(perProcess, Math.ceil(missing0 / MAX_STARTING)) : perProcess;
    for (let missing = missing0; missing > 0 && startingHosts() < MAX_STARTING; missing -= batch) {
      const count = Math.min(missing, batch);
      const holding = [...hosts].filter((h) => !h.retiring && readyIn(h) > 0).length;
      const replaces = holding > Math.ceil(opts.size / perProcess) + MAX_EXTRA_HOSTS ? smallIdle(perProcess - count, perProcess / 2) : [];
      startHost(count + replaces.reduce((n, h) => n + readyIn(h), 0), replaces);
    }
  };
  const readyIn = (h: Host) => h.slots.filter((c) => c.state === 'ready').length;
  /**
   * Processes that have nothing else (no guest running, none starting) and at most `most`
   * clones waiting, fewest clones first, up to `room` clones in all: marked retiring, for a new
   * batch to restore their clones again and replace them once it is ready.
   */
  const smallIdle = (room: number, most: number): Host[] => {
    const out: Host[] = [];
    const idle = [...hosts].filter((h) => !h.retiring && readyIn(h) > 0 && readyIn(h) <= most && h.slots.every((c) => c.state === 'ready' || c.state === 'done'));
    for (const h of idle.sort((a, b) => readyIn(a) - readyIn(b))) {
      if (readyIn(h) > room) break;
      room -= readyIn(h);
      out.push(h);
    }
    for (const h of out) h.retiring = true;
    return out;
  };
  /** When the last take was handed to a clone (Date.now()). */
  let lastTakeAt = 0;
  let consolidateTimer: NodeJS.Timeout | undefined;
  /**
   * Once no take came for CONSOLIDATE_IDLE_MS: gather the waiting clones of idle processes
   * holding at most half a batch, fewest first, as many as fit one batch (smallIdle), into one
   * new batch that replaces them once it is ready; again until no two fit together (a process
   * holding more than half a batch is left as it is: restoring all its clones again for one
   * process less is not worth it). A refill adds a
   * process per take (its batch holds what is missing), so a pool refilled one take at a time
   * would end with a process, and its node runtime (~20 MiB), per clone; the price is those
   * clones' restores again (tens of ms each, beside the ~1 s of CPU a new process costs). Done
   * when takes pause rather than at every refill: a batch that merged processes became ready,
   * and their teardown began, just as the next take arrived (the bench's takes, each once the
   * pool is full again, met it every second take: p99 32–35 ms against a p50 of 6–7).
   */
  const consolidate = () => {
    consolidateTimer = undefined;
    if (closing || refillsPaused || cannotStart || probe !== 'done' || waiting.length || startingHosts()) return;
    const wait = lastTakeAt + CONSOLIDATE_IDLE_MS - Date.now();
    if (wait > 0) { consolidateTimer = setTimeout(consolidate, wait); return; }
    const replaces = smallIdle(perProcess, perProcess / 2);
    // One process replaced by another gains nothing.
    if (replaces.length < 2) { for (const h of replaces) h.retiring = false; return; }
    startHost(replaces.reduce((n, h) => n + readyIn(h), 0), replaces);
  };
  const armConsolidate = () => { consolidateTimer ??= setTimeout(consolidate, Math.max(0, lastTakeAt + CONSOLIDATE_IDLE_MS - Date.now())); };
  /** Drop the waiting clones of `h` (it ends once no guest of it runs). */
  const retire = (h: Host) => {
    for (const c of h.slots) if (c.state === 'ready') { c.state = 'done'; clones.delete(c); }
    (h.child.stdio[3] as net.Socket).write(JSON.stringify({ op: 'retire' }) + '\n');
  };
  const startHost = (count: number, replaces: Host[] = []) => {
    // Its own session: the terminal's ^C to `pool serve` is not the clones' business. Each clone's
    // caller's stdin waits on a thread of libuv's pool (platforms/host/host-streams.ts), as does the
    // control socket while a guest runs: room for all of them.
    const env = { ...cloneEnv, UV_THREADPOOL_SIZE: String(Math.max(Number(cloneEnv.UV_THREADPOOL_SIZE) || 4, Math.min(128, 4 + 2 * count))), ...(codeCache ? { SNAPVISOR_CODE_CACHE: codeCache } : {}) };
    const child = spawn(process.execPath, [...process.execArgv, ...CLONE_NODE_FLAGS, process.argv[1], '__pool-host', store, id, String(count)], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], detached: true, env });
    const host: Host = { child, ctl: fdOf(child.stdio[3] as net.Socket), pid: child.pid ?? 0, seq: hostSeq++, slots: [], prefetched: false, retiring: false, replaces };
    for (let i = 0; i < count; i++) host.slots.push({ host, slot: i, state: 'starting' });
    hosts.add(host);
    for (const c of host.slots) clones.add(c);
    const ctl = child.stdio[3] as net.Socket;
    const slotOf = (m: Record<string, unknown>): Clone | undefined => host.slots[Number(m.slot)];
    lines(ctl, (m) => {
      if (m.event === 'ready') {
        const waitingSlots = host.slots.filter((c) => c.state === 'starting');
        if (!waitingSlots.length) return;
        if (workingSet && !host.prefetched) { sendPrefetch(host); return; }
        if (probe === 'pending' && !workingSet && startProbe(waitingSlots[0])) { refill(); return; }
        for (const c of waitingSlots) c.state = 'ready';
        for (const h of host.replaces) if (hosts.has(h)) retire(h);
        host.replaces = [];
        failedInARow = 0;
        lastStartError = undefined;
        if (cannotStart) { cannotStart = undefined; fail(`pool: a clone of checkpoint ${id} started again: refilling`); }
        everReady = true;
        dispatch();
        refill();
        armConsolidate();
      } else if (m.event === 'working-set') {
        if (!workingSet && Array.isArray(m.faults) && Array.isArray(m.pages) && (m.faults.length || m.pages.length)) {
          workingSet = {
            faults: (m.faults as Fault[]).filter((f) => Array.isArray(f) && f.length === 2 && f.every(Number.isSafeInteger)).slice(0, MAX_WORKING_SET),
            pages: (m.pages as PageRun[]).filter((f) => Array.isArray(f) && f.length === 3 && f.every(Number.isSafeInteger)),
          };
          // Processes whose clones all wait take it now; one with a guest running keeps its clones as they are.
          for (const h of hosts) if (!h.prefetched && h.slots.some((c) => c.state === 'ready') && !runningIn(h) && !h.slots.some((c) => c.state === 'starting')) sendPrefetch(h);
        }
        const clone = slotOf(m);
        if (clone?.state === 'probing') {
          if (m.codeCache === true && cacheDir) codeCache = path.join(cacheDir, 'clone.cache');
          probe = 'done';
          clone.state = 'done';
          clones.delete(clone);
          refill();
        }
      } else if (m.event === 'ended') {
        const clone = slotOf(m);
        if (clone) { clone.state = 'done'; clones.delete(clone); }
      } else if (m.event === 'failed') {
        host.error = String(m.error);
        // Once per run of failures and error: the retries of a pool that stopped refilling are quiet.
        if (!cannotStart && host.error !== lastStartError) fail(`pool: a clone of checkpoint ${id} failed to start: ${host.error}`);
        lastStartError = host.error;
      }
    });
    ctl.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      // Its takes' callers each say their clone died; which way the process went is said here.
      const taken = host.slots.filter((c) => c.state === 'taken').length;
      if (taken && (signal || code !== 0)) fail(`pool: clone process ${host.pid} ended (${signal ? `signal ${signal}` : `status ${code}`}) while ${taken} ${taken === 1 ? 'take was' : 'takes were'} running`);
      hosts.delete(host);
      let failedStart = false;
      for (const c of host.slots) {
        if (c.state === 'probing') probe = 'done';
        if (c.state === 'starting') failedStart = true;
        clones.delete(c);
        c.state = 'done';
      }
      // A batch that never became ready replaces nothing.
      for (const h of host.replaces) h.retiring = false;
      if (failedStart) {
        failedInARow++;
        lastStartError = host.error ?? (signal ? `its hosting process ${host.pid} was killed (${signal})` : `its hosting process ${host.pid} ended with status ${code}`);
        // Before serving: the pool's start fails (the first clones show the checkpoint cannot restore here).
        if (startFailure && (!everReady && failedInARow >= 2 || failedInARow >= MAX_START_FAILURES)) { startFailure(`clones of checkpoint ${id} cannot start (see above)`); return; }
        if (cannotStart) { if (!closing) retryStart(); return; }
        if (failedInARow >= MAX_START_FAILURES && !closing) { stopRefilling(); return; }
      }
      // Lost clones (killed while waiting, or their process gone) are replaced; a run of failures backs off.
      setTimeout(refill, failedInARow ? Math.min(5000, 100 * 2 ** failedInARow) : 0).unref();
    });
  };
  /**
   * The ready clone for the next take: one in the process running the fewest guests (they share
   * its event loop and its CPU), the most recently started process first among equals. A process
   * that waited seconds in poll(2) was slower to take a clone than one that just became ready:
   * two interleaved rounds of 50 takes of the bench's python3 (two pools side by side, load
   * ~3.4), request → guest resumed p50 2.6 and 2.8 ms newest first against 4.1 and 5.0 oldest
   * first, request → first output p50 9.9/12.2 against 14.4/17.6, worst 29.9/24.7 against
   * 43.6/71.7 (the oldest-first order let a refill's process drain and end; consolidate now
   * gathers what is left).
   */
  const pick = (): Clone | undefined => {
    let best: Clone | undefined, bestRunning = Infinity;
    for (const c of ready()) {
      const r = runningIn(c.host);
      if (r < bestRunning || (r === bestRunning && c.host.seq > best!.host.seq)) { best = c; bestRunning = r; }
    }
    return best;
  };
  /** Hand waiting takes to ready clones. */
  const dispatch = () => {
    while (waiting.length) {
      const clone = pick();
      if (!clone) return;
      const t = waiting.shift()!;
      if (t.conn.destroyed || peerClosed(t.connFd)) { t.stdio.forEach(closeFd); t.conn.destroy(); continue; }
      const r = sendFds(clone.host.ctl, Buffer.from(JSON.stringify({ op: 'take', slot: clone.slot, requestMs: t.requestMs, record: !workingSet }) + '\n'), [t.connFd, ...t.stdio]);
      if (r < 0) {
        // The process is gone (its exit handler replaces its clones): the take goes to another one.
        for (const c of clone.host.slots) if (c.state === 'ready') c.state = 'done';
        clone.host.child.kill('SIGKILL');
        waiting.unshift(t);
        fail(`pool: handing a take to clone ${clone.host.pid}/${clone.slot} failed (errno ${-r}); trying another`);
        continue;
      }
      t.stdio.forEach(closeFd);
      clone.state = 'taken';
      served++;
      lastTakeAt = Date.now();
      armConsolidate();
      // The clone holds the caller's connection now; this copy goes.
      t.conn.destroy();
      if (!ready().length) refill();
      else refillTimer ??= setTimeout(refill, REFILL_DELAY_MS);
    }
  };

  const server = poolServer(({ conn, fd, req, fds, requestMs, answer }) => {
    if (req.op === 'status') {
      answer({ ok: true, checkpoint: id, size: opts.size, ready: ready().length, starting: starting(), running: [...clones].filter((c) => c.state === 'taken').length, processes: hosts.size, probe, served, waiting: waiting.length, refillsPaused, startError: cannotStart ?? null, workingSet: workingSet?.faults.length ?? 0, workingSetPages: workingSet?.pages.reduce((n, r) => n + r[2], 0) ?? 0, clones: [...clones].map((c) => ({ pid: c.host.pid, slot: c.slot, state: c.state })) });
      return;
    }
    if (req.op === 'pause-refills' || req.op === 'resume-refills') {
      const was = refillsPaused;
      refillsPaused = req.op === 'pause-refills';
      // Clones already starting finish (and serve); what is missing is restored from now on. A
      // pool that stopped refilling tries one clone now (its operator may have fixed the cause).
      if (was && !refillsPaused) { refill(); armConsolidate(); }
      if (!refillsPaused && cannotStart) retryStart(0);
      answer({ ok: true, refillsPaused, starting: starting() });
      return;
    }
    if (req.op !== 'take') { answer({ ok: false, error: `unknown op ${JSON.stringify(req.op ?? null)}` }); return; }
    if (fds.length !== 3) { answer({ ok: false, error: `a take sends 3 fds (stdin, stdout, stderr) with SCM_RIGHTS, got ${fds.length}` }); return; }
    if (closing) { answer({ ok: false, error: 'the pool is shutting down' }); return; }
    // A restore through the pool (cli/pool-client.ts restoreFromPool): of this checkpoint only,
    // and only a clone ready now; else it restores in its own process, sooner than a refill.
    if (req.checkpoint !== undefined && req.checkpoint !== id) { answer({ ok: false, error: `this pool serves checkpoint ${id}, not ${String(req.checkpoint)}` }); return; }
    if (req.ifReady === true && (waiting.length || !ready().length)) { answer({ ok: false, error: 'no clone is ready' }); return; }
    // No clone ready and none can start: refused now rather than queued for ever.
    if (cannotStart && !ready().length) { answer(cannotStartAnswer()); return; }
    waiting.push({ conn, connFd: fd, stdio: fds, requestMs });
    dispatch();
    if (waiting.length) waitingWatch.start();
  });

  // 3. Start the clones; the first ones prove the checkpoint restores here.
  const problem = await startServing(server, sockPath, () => ready().length >= opts.size && probe === 'done', (failed) => { startFailure = failed; refill(); });
  startFailure = undefined;
  if (problem) {
    // Give up before serving: no clone left, the code cache removed, one line; status 1.
    closing = true;
    dropCache();
    for (const h of hosts) h.child.kill('SIGKILL');
    fail(`pool: ${problem}`);
    return 1;
  }
  // Found by `snapvisor restore ID` (cli/pool-registry.ts); removed when this process ends.
  const registered = registerPool(store, id, sockPath);
  if (typeof registered === 'string') fail(`pool: not registered in the store (restores of ${id} will not use this pool): ${registered}`);
  process.stdout.write(`pool serving checkpoint ${id} on ${sockPath} (${opts.size} ${opts.size === 1 ? 'clone' : 'clones'} ready)\n`);

  await stopSignal();
  closing = true;
  clearTimeout(retryTimer);
  waitingWatch.stop();
  if (typeof registered !== 'string') registered();
  await new Promise<void>((r) => server.close(() => r()));
  fs.rmSync(sockPath, { force: true });
  dropCache();
  // Waiting clones go; taken ones belong to their callers: a process running some ends its
  // waiting clones itself once its control socket closes (with this process), and ends with its last take.
  for (const h of hosts) if (!h.slots.some((c) => c.state === 'taken')) h.child.kill('SIGKILL');
  for (const t of waiting) { t.stdio.forEach(closeFd); t.conn.destroy(); }
  return 0;
}

/**
 * Record the write faults the restored address spaces take (through each one's
 * `handleWriteFault`) while `on`, and, by `snapshot()`, the pages the guest has touched since
 * it resumed (AddressSpace.residentRuns: the stubs' page tables): the working set a guest uses
 * right after it resumes. A task's pages are taken before its host process goes.
 */
function recordWorkingSet(kernel: Kernel): { on: boolean; faults: Fault[]; pages: PageRun[]; snapshot(): void } {
  const rec = {
    on: false, faults: [] as Fault[], pages: [] as PageRun[],
    snapshot(): void {
      for (const as of kernel.addressSpaces.values()) takePages(as.id, as.residentRuns());
    },
  };
  let pageCount = 0;
  const seen = new Set<number>();
  const takePages = (asId: number, runs: Array<[number, number]>) => {
    if (seen.has(asId)) return;
    seen.add(asId);
    for (const [a, n] of runs) {
      if (pageCount >= MAX_WORKING_PAGES) return;
      const m = Math.min(n, MAX_WORKING_PAGES - pageCount);
      rec.pages.push([asId, a, m]);
      pageCount += m;
    }
  };
  for (const as of kernel.addressSpaces.values()) {
    const handle = as.handleWriteFault.bind(as);
    as.handleWriteFault = (addr: number) => {
      const r = handle(addr);
      if (r && rec.on && rec.faults.length < MAX_WORKING_SET) rec.faults.push([as.id, addr]);
      return r;
    };
  }
  // The last task of an address space leaving (exit, kill) takes its stub's page tables along.
  for (const t of kernel.tasks.values()) {
    const destroy = t.platform.destroy.bind(t.platform);
    t.platform.destroy = () => {
      if (rec.on && t.mm.contexts.length === 1) takePages(t.mm.id, t.mm.residentRuns());
      destroy();
    };
  }
  return rec;
}

/**
 * Replay a working set while the guest is paused (its stubs stopped, so mappings change at
 * once): each write fault copies its chunk out of the shared page file (or breaks
 * copy-on-write) as the guest's own write would, then every page the first take's guest
 * touched is touched in the stubs (AddressSpace.prefault), so a take waits neither for those
 * faults nor for the host to fill the stubs' page tables. Returns [faults that did something,
 * pages touched].
 */
function prefetch(kernel: Kernel, faults: Fault[], pages: PageRun[]): [number, number] {
  let n = 0;
  for (const f of faults.slice(0, MAX_WORKING_SET)) {
    if (!Array.isArray(f) || !Number.isSafeInteger(f[0]) || !Number.isSafeInteger(f[1])) continue;
    try { if (kernel.addressSpaces.get(f[0])?.handleWriteFault(f[1])) n++; } catch { /* not mapped in this clone: skipped */ }
  }
  const byAs = new Map<number, Array<[number, number]>>();
  let budget = MAX_WORKING_PAGES;
  for (const r of pages) {
    if (!Array.isArray(r) || r.length !== 3 || !r.every(Number.isSafeInteger) || r[2] <= 0 || budget <= 0) continue;
    const m = Math.min(r[2], budget);
    budget -= m;
    let l = byAs.get(r[0]);
    if (!l) byAs.set(r[0], l = []);
    l.push([r[1], m]);
  }
  let touched = 0;
  for (const [asId, runs] of byAs) {
    try { touched += kernel.addressSpaces.get(asId)?.prefault(runs) ?? 0; } catch { /* a page the memory limit refused: the rest stays untouched */ }
  }
  return [n, touched];
}

/**
 * A full garbage collection now (clones run with --expose-gc): what the restore (or a
 * prefetch) left behind is collected while the clone waits, not during a take (~10–25 ms).
 * Then YOUNG_WARM_OBJECTS short-lived objects, several times the young generation (two
 * semi-spaces of at most 1 MiB, CLONE_NODE_FLAGS): after the collection the young generation's
 * pages were fresh to the host, so a take's first allocations (every await, closure and
 * syscall argument) each met a page fault (15–35 µs each on this VM, measured with a 2,048-page
 * touch at load 7). Allocating through them now makes them the process's own: in interleaved
 * A/B takes of the bench's python3 (two pools side by side, 30 takes each, load 6–8), the
 * hosting process's page faults from a take's arrival to the guest's first output went from 43
 * to 2.5 (medians).
 */
export function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
  let keep: Array<{ i: number }> = [];
  for (let i = 0; i < YOUNG_WARM_OBJECTS; i++) {
    keep.push({ i });
    if (keep.length === 1024) keep = [];
  }
}
/** Objects settle allocates to walk the young generation (~16–24 bytes each: ~4 MB in all). */
const YOUNG_WARM_OBJECTS = 200_000;

/** JSON lines (with any fds that came along) from the pool's control socket of a hosting process. */
export class CtlReader {
  private buf = '';
  private fds: number[] = [];
  constructor(private readonly fd: number) {}
  /**
   * The next line. While `block()` says so, wait in poll(2) on this thread (a process with no
   * guest running has nothing else to do, and a take then wakes it directly rather than through
   * libuv's thread pool); otherwise wait on that pool, in slices of CTL_SLICE_MS, so that the event
   * loop runs the guests meanwhile and the wait turns blocking once none is left.
   */
  async next(block: () => boolean): Promise<{ line: string; fds: number[] } | 'eof'> {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const fds = this.fds;
        this.fds = [];
        return { line, fds };
      }
      let m;
      try {
        while ((m = recvFdsNow(this.fd, 65536)) === 'again') {
          if (block()) waitReadableSync(this.fd);
          else await waitReadable(this.fd, CTL_SLICE_MS);
        }
      } catch { return 'eof'; }
      if (m === 'eof') return 'eof';
      this.buf += m.data.toString();
      this.fds.push(...m.fds);
    }
  }
}

/** How long one wait for the pool's next message stays on libuv's thread pool while a guest runs (ms). */
const CTL_SLICE_MS = 50;

/** One clone of a hosting process: its kernel, the host services it sees the caller's stdio through, what it records. */
export interface Slot {
  kernel: Kernel;
  host: LinuxHostServices;
  rec: ReturnType<typeof recordWorkingSet>;
  state: 'waiting' | 'running' | 'done';
}

/**
 * Remove a pool's code-cache directory, never throwing: a restorer may be writing its cache there
 * as the pool stops (after the take it served ended), and a file made between the removal's listing
 * and its rmdir failed it with ENOTEMPTY, which ended a pool stopped by SIGTERM with status 1. Retried a
 * few times; a directory left behind is removed by the next pool's start (dropOrphanCacheDirs).
 */
export function removeCacheDir(dir: string): void {
  try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }); } catch { /* left to the next pool's start */ }
}

/**
 * Remove the code-cache directories (`$TMPDIR/snapvisor-pool-PID-*`) of pools that died without
 * removing theirs (SIGKILL): PID no longer runs. A pid reused since keeps its directory, harmless.
 */
function dropOrphanCacheDirs(): void {
  let names: string[] = [];
  try { names = fs.readdirSync(os.tmpdir()); } catch { return; }
  for (const name of names) {
    const pid = Number(/^snapvisor-pool-(\d+)-/.exec(name)?.[1] ?? 0);
    if (!pid || pid === process.pid || alive(pid)) continue;
    try { fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true }); } catch { /* another pool got there first */ }
  }
}

/**
 * A hosting process (`snapvisor __pool-host STORE ID COUNT`, started by the pool with its control
 * socket as fd 3): restore COUNT clones of the checkpoint one after the other, each a kernel of its
 * own in this process, say `ready` once all are (no restore ever runs beside a guest here: a
 * restore is hundreds of ms of synchronous work that would stall it), then serve takes on them
 * (`{"op":"take","slot":N,…}` with the caller's connection and stdio). Each clone's guest sees
 * its caller's fds as its stdio (LinuxHostServices.attachStdio) and its kernel's log goes to
 * the caller's stderr. A guest that dies, or a clone's take that ends, leaves the others as they
 * are. Ends once every clone's take (or probe) has ended; when the pool goes (its socket
 * closes), the waiting clones go and it ends with its last running take. Returns the exit status.
 */
export async function poolHost(store: string, id: string, count: number): Promise<number> {
  const CTL = 3;
  const say = (v: unknown) => { try { fs.writeSync(CTL, JSON.stringify(v) + '\n'); } catch { /* the pool is gone */ } };
  // One clone's trouble is not its neighbours': an error no kernel caught is logged, not fatal to all.
  const stray = (e: unknown) => { try { fs.writeSync(2, `snapvisor: pool clone process ${process.pid}: ${(e as Error)?.stack ?? e}\n`); } catch { /* nowhere to say it */ } };
  process.on('uncaughtException', stray);
  process.on('unhandledRejection', stray);
  const { restoreKernel } = await import('../snapshots/checkpoint.js');
  const slots: Slot[] = [];
  for (let i = 0; i < count; i++) {
    const host = new LinuxHostServices();
    try {
      const { kernel } = await restoreKernel(store, id, { pagesVerified: true, host });
      slots.push({ kernel, host, rec: recordWorkingSet(kernel), state: 'waiting' });
    } catch (e) {
      say({ event: 'failed', error: (e as Error).message });
      for (const s of slots) { s.kernel.destroy(); s.host.close(); }
      return 125;
    }
  }
  // What a restore leaves to first use, because a plain restore may never need it, a take would
  // meet first: the kernel clock's realtime base (node's perf_hooks) and zlib's crc32 (a page
  // check; zlib loads node:stream). Taken now, while the clones wait.
  for (const s of slots) s.kernel.clock.realtimeNs();
  pageCheck(new Uint8Array(PAGE_SIZE));
  // A take makes timers (the working-set window, the platform's stop watcher): their code runs
  // once now, not first inside the take.
  clearInterval(setInterval(() => undefined, 1 << 30));
  clearTimeout(setTimeout(() => undefined, 1 << 30));
  settle();
  // A take makes this process wait for the pool's next message on a worker thread (koffi's
  // asynchronous call, CtlReader): that call's first use, with its set-up, happens now.
  await waitReadable(CTL, 0);
  say({ event: 'ready' });
  const ctl = new CtlReader(CTL);
  let running = 0, closing = false;
  let allEnded!: () => void;
  const ended = new Promise<void>((r) => { allEnded = r; });
  const finish = (i: number, status?: number) => {
    const s = slots[i];
    s.state = 'done';
    running--;
    say({ event: 'ended', slot: i, status });
    if (slots.every((x) => x.state === 'done') || (closing && !running)) allEnded();
  };
  void (async () => {
    for (;;) {
      const msg = await ctl.next(() => running === 0);
      if (msg === 'eof') break;
      let req: Record<string, unknown> = {};
      try { req = JSON.parse(msg.line); } catch { /* ignored */ }
      const i = Number(req.slot), s = slots[i];
      if ((req.op === 'take' && msg.fds.length === 4 || req.op === 'probe' && msg.fds.length === 3) && s?.state === 'waiting') {
        s.state = 'running';
        running++;
        if (req.op === 'probe') void probeRun(s, msg.fds, say, i, typeof req.codeCache === 'string' ? req.codeCache : undefined).then(() => finish(i), (e) => { stray(e); finish(i); });
        else {
          void takeRun(s, msg.fds, say, i, Number(req.requestMs) || 0, req.record === true).then((status) => finish(i, status), (e) => { stray(e); finish(i); });
          // The guest's first steps (its run loop continues in microtasks until it yields, after
          // at most 32 traps) go before this loop asks for the next message (a recvmsg and a
          // poll handed to a worker thread: ~0.5–1 ms between the resume and the guest's first
          // syscall when it came first, at load 6–8).
          await new Promise<void>((r) => setImmediate(r));
        }
        continue;
      }
      msg.fds.forEach(closeFd);
      // Its waiting clones are replaced by another process's batch (the pool's consolidate): their
      // teardown (stubs killed, memory unmapped) and this process's exit run at the lowest
      // priority, behind the takes running elsewhere.
      if (req.op === 'retire') { lowestPriority(slots); break; }
      if (req.op === 'prefetch' && Array.isArray(req.faults) && Array.isArray(req.pages) && !running) {
        let prefetched = 0, touched = 0;
        for (const w of slots) {
          if (w.state !== 'waiting') continue;
          const [p, t] = prefetch(w.kernel, req.faults as Fault[], req.pages as PageRun[]);
          prefetched += p; touched += t;
        }
        settle();
        say({ event: 'ready', prefetched, touched });
      }
    }
    // The pool is gone (or retires this process): the waiting clones go; running ones belong to their callers.
    closing = true;
    for (const s of slots) if (s.state === 'waiting') { s.kernel.destroy(); s.host.close(); s.state = 'done'; }
    if (!running) allEnded();
  })().catch((e) => {
    // This process can no longer hear the pool: its clones are lost (the pool replaces them).
    stray(e);
    process.exit(70);
  });
  // A hosting process that goes while guests run (their callers see their clones die) says why it went.
  process.on('exit', (code) => { if (running) stray(`exiting with status ${code} while ${running} of its clones run`); });
  await ended;
  return 0;
}

/** Nice 19 for this process and the stubs of its waiting clones (a stub's own exit work is charged to it); failures are ignored. */
function lowestPriority(slots: Slot[]): void {
  const nice = (pid: number) => { try { os.setPriority(pid, 19); } catch { /* as it was */ } };
  nice(0);
  for (const s of slots) {
    if (s.state !== 'waiting') continue;
    for (const t of s.kernel.tasks.values()) {
      const pid = (t.platform as { pid?: unknown }).pid;
      if (typeof pid === 'number' && pid > 0) nice(pid);
    }
  }
}

/**
 * Run clone `s`'s sandbox for a take: `fds` are the caller's connection, stdin, stdout and stderr.
 * The guest resumes first, then the started line goes to the caller (one write(2)); the
 * connection gets its net.Socket (signals in, its close kills the sandbox) CONN_WATCH_DELAY_MS
 * later, so building one (cold code in a clone) does not hold up the guest's first traps.
 * `record`: report the working set of the guest's first WORKING_SET_WINDOW_MS on the control
 * socket (the pool has none yet). Without `s.host`, the kernel's own host services already see
 * the caller's stdio (an any-pool's restorer made them its fds 0-2: cli/restorer.ts); without
 * `s.rec`, nothing is recorded. `finalStatus` maps the guest's status to the one sent (a restore's
 * page check that failed meanwhile: 125). Resolves with that status once the exit line is sent.
 */
export async function takeRun(s: Pick<Slot, 'kernel'> & Partial<Pick<Slot, 'host' | 'rec'>>, fds: number[], say: (v: unknown) => void, slot: number, requestMs: number, record: boolean, finalStatus: (status: number) => number = (n) => n): Promise<number> {
  const [connFd, ...stdio] = fds;
  const { kernel } = s;
  const rec = s.rec ?? { on: false, faults: [], pages: [], snapshot: () => undefined };
  s.host?.attachStdio(stdio as [number, number, number]);
  kernel.logFd = stdio[2];
  rec.on = record;
  const done = kernel.run();
  const resumedMs = nowMs();
  try { fs.writeSync(connFd, JSON.stringify({ event: 'started', clone: process.pid, slot, requestMs, resumedMs }) + '\n'); } catch { /* the caller is gone: its socket's close says so below */ }
  let conn: net.Socket | undefined;
  const watchConn = (): net.Socket => {
    if (conn) return conn;
    const c = conn = new net.Socket({ fd: connFd, readable: true, writable: true });
    c.on('error', () => undefined);
    lines(c, (m) => {
      if (m.op !== 'signal') return;
      const sig = Number(m.signal);
      if (!(sig >= 1 && sig <= 64)) return;
      if (sig === 9) kernel.kill();
      else if (KEYBOARD.has(sig)) kernel.signalForegroundGroup(sig);
      else kernel.signals.send(1, sig, { signo: sig, code: 0 /* SI_USER */ });
    });
    // The caller is gone (its connection closed before the end): so is its sandbox.
    c.on('close', () => { if (!kernel.exitInfo) kernel.kill(); });
    return c;
  };
  const watchTimer = setTimeout(watchConn, CONN_WATCH_DELAY_MS);
  const report = () => {
    if (!rec.on) return;
    rec.snapshot();
    rec.on = false;
    say({ event: 'working-set', slot, faults: rec.faults, pages: rec.pages });
  };
  const window = record ? setTimeout(report, WORKING_SET_WINDOW_MS) : undefined;
  const info = await done;
  clearTimeout(window);
  clearTimeout(watchTimer);
  const connSocket = watchConn();
  report();
  kernel.destroy();
  s.host?.close();
  stdio.forEach(closeFd);
  const status = finalStatus('code' in info ? info.code : 128 + info.signal);
  await new Promise<void>((r) => { if (connSocket.destroyed) r(); else connSocket.end(JSON.stringify({ event: 'exit', status }) + '\n', () => r()); });
  connSocket.destroy();
  return status;
}

/**
 * The probe (docs/pools.md, "The working set"): run the guest with `stdio` (the pool's /dev/null)
 * as its fds 0–2 for WORKING_SET_WINDOW_MS or until it ends, then kill it, write the V8 code
 * cache of the bundle to `codeCache` (every function compiled so far: the restore's and the
 * guest's syscalls'), and report the write faults it took and the pages it touched on the
 * control socket ('working-set', with `codeCache: true` if the cache was written). Returns 0.
 */
async function probeRun(s: Slot, stdio: number[], say: (v: unknown) => void, slot: number, codeCache: string | undefined): Promise<number> {
  const { kernel, rec } = s;
  s.host.attachStdio(stdio as [number, number, number]);
  kernel.logFd = stdio[2];
  rec.on = true;
  const done = kernel.run();
  const window = setTimeout(() => { rec.snapshot(); kernel.kill(); }, WORKING_SET_WINDOW_MS);
  await done;
  clearTimeout(window);
  rec.snapshot();
  rec.on = false;
  kernel.destroy();
  s.host.close();
  stdio.forEach(closeFd);
  // Only a bundle compiled by the launcher has a cache to write (not the unbundled dist/ tests load).
  const script = (globalThis as { __snapvisorScript?: vm.Script }).__snapvisorScript;
  let wrote = false;
  if (codeCache && script) {
    try { fs.writeFileSync(codeCache, script.createCachedData()); wrote = true; } catch { /* the clones compile from source */ }
  }
  say({ event: 'working-set', slot, faults: rec.faults, pages: rec.pages, codeCache: wrote });
  return 0;
}
