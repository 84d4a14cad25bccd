/**
 * Warm pools (docs/pools.md): `snapvisor pool serve` keeps N clones of a checkpoint restored and
 * paused, each in a process of its own (`snapvisor __pool-clone`: the kernel rebuilt, stubs
 * started, registers set, not yet run); `snapvisor pool take` hands one to the caller. The
 * caller's stdin/stdout/stderr and its connection travel over the pool's unix socket with
 * SCM_RIGHTS (platforms/host/fd-passing.ts) to the clone, which makes them its fds 0–2,
 * resumes the guest and from then on talks to the caller directly (signals in, exit status
 * out). The pool refills in the background; a clone that dies is only a clone lost.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeFd, connectUnix, dup2, recvFds, recvFdsNow, sendFds, waitReadable, waitReadableSync } from '../platforms/host/fd-passing.js';
import { defaultStore, fail } from './control.js';
import type vm from 'node:vm';
import type { Kernel } from '../src/kernel/kernel.js';
import type { KernelState } from '../src/kernel/state.js';

/** Wall-clock time in ms with sub-ms resolution, comparable between processes. */
const nowMs = () => performance.timeOrigin + performance.now();

/** Signals `pool take` relays; the keyboard's go to the guest's foreground process group, the rest to its init. */
const RELAYED = ['SIGINT', 'SIGQUIT', 'SIGTSTP', 'SIGWINCH', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'] as const;
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
 */
const CLONE_NODE_FLAGS = ['--expose-gc', '--max-semi-space-size=1', '--lite-mode', '--no-expose-wasm'];
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
/** How long after resuming its guest a clone starts watching the caller's connection (signals, its close), ms. */
const CONN_WATCH_DELAY_MS = 50;
/** A request must arrive within this long after connecting (ms). */
const REQUEST_TIMEOUT_MS = 5000;

interface Clone { child: ChildProcess; ctl: number; state: 'starting' | 'ready' | 'taken' | 'probing'; pid: number; prefetched: boolean }

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

/** Write one JSON line, ignoring a peer that is gone. */
function sendLine(sock: net.Socket, v: unknown): void {
  if (!sock.destroyed) sock.write(JSON.stringify(v) + '\n');
}

/** Read JSON lines from `sock`, calling `on` for each (bad lines are ignored). */
function lines(sock: net.Socket, on: (v: Record<string, unknown>) => void, prefix = ''): void {
  let buf = prefix;
  const drain = () => {
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try { on(JSON.parse(line)); } catch { /* not JSON: ignored */ }
    }
  };
  sock.on('data', (d) => { buf += d.toString(); drain(); });
  drain();
}

/** The fd under a Node socket (libuv's; stable on Linux since Node 0.x). */
const fdOf = (s: net.Socket | NodeJS.ReadableStream | null | undefined): number => (s as unknown as { _handle?: { fd?: number } })?._handle?.fd ?? -1;

/**
 * `snapvisor pool serve`: check the checkpoint (every page) and the socket path, start `size`
 * clones, run the probe (unless `probe` is false), print `pool serving …` once the clones are
 * ready and hold the working set, and serve until SIGTERM/SIGINT.
 * Returns the exit status (1 with one line for a bad checkpoint, a taken socket, clones that
 * cannot start).
 */
export async function poolServe(opts: { checkpoint: string; store?: string; size: number; listen: string; probe?: boolean }): Promise<number> {
  const store = path.resolve(opts.store ?? defaultStore());
  const sockPath = path.resolve(opts.listen);
  // 1. The checkpoint: records and every page, once; clones then skip the page check.
  const { openCheckpoint, SnapshotError } = await import('../snapshots/store.js');
  const { verifyPages } = await import('../snapshots/pages.js');
  const { checkRestorable } = await import('../snapshots/checkpoint.js');
  let id: string;
  try {
    // A compressed checkpoint's restore cache is made whole now: every clone maps all of it.
    const opened = await openCheckpoint(store, opts.checkpoint, 'complete');
    id = opened.id;
    try {
      const bad = verifyPages(opened.pageFd, opened.runs, opened.pageFileBytes, opened.layers.map((l) => l.fd));
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
  const st = fs.lstatSync(sockPath, { throwIfNoEntry: false });
  if (st) {
    if (!st.isSocket()) { fail(`pool: ${sockPath} exists and is not a socket`); return 1; }
    const live = await new Promise<boolean>((r) => { const c = net.createConnection(sockPath, () => { c.destroy(); r(true); }); c.on('error', () => r(false)); });
    if (live) { fail(`pool: a pool is already serving on ${sockPath}`); return 1; }
    fs.rmSync(sockPath, { force: true });
  }

  // A clone makes no TLS connections: loading a CA bundle would only slow its start (~50 ms).
  const cloneEnv = { ...process.env };
  delete cloneEnv.NODE_EXTRA_CA_CERTS;
  const clones = new Set<Clone>();
  const waiting: Take[] = [];
  let served = 0, failedInARow = 0, everReady = false, closing = false;
  /** The write faults the first take's guest made early on: replayed by every clone before it is ready. */
  let workingSet: WorkingSet | undefined;
  const sendPrefetch = (clone: Clone) => {
    clone.prefetched = true;
    clone.state = 'starting';
    (clone.child.stdio[3] as net.Socket).write(JSON.stringify({ op: 'prefetch', ...workingSet }) + '\n');
  };
  /**
   * The probe (docs/pools.md, "The working set"): the first clone ready runs its guest once, before
   * the pool serves, with stdin at end of file and its output discarded, so that even the first
   * take meets clones holding the working set. 'done' once it reported or died (or with --no-probe).
   */
  let probe: 'pending' | 'running' | 'done' = opts.probe === false ? 'done' : 'pending';
  /**
   * The V8 code cache the probe writes once its guest has run (the bundle with every function it
   * compiled, restore and take: cli/launcher.ts, SNAPVISOR_CODE_CACHE), for the clones started
   * after it; in a directory of its own under os.tmpdir(), removed when the pool stops.
   */
  let cacheDir: string | undefined, codeCache: string | undefined;
  const dropCache = () => { if (cacheDir) fs.rmSync(cacheDir, { recursive: true, force: true }); };
  process.once('exit', dropCache);
  const startProbe = (clone: Clone): boolean => {
    let r = -1;
    cacheDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-pool-'));
    const nulIn = fs.openSync('/dev/null', 'r'), nulOut = fs.openSync('/dev/null', 'w');
    try { r = sendFds(clone.ctl, Buffer.from(JSON.stringify({ op: 'probe', codeCache: path.join(cacheDir, 'clone.cache') }) + '\n'), [nulIn, nulOut, nulOut]); } finally { fs.closeSync(nulIn); fs.closeSync(nulOut); }
    if (r < 0) return false;
    clone.state = 'probing';
    probe = 'running';
    return true;
  };
  let startFailure: ((msg: string) => void) | undefined;
  const ready = () => [...clones].filter((c) => c.state === 'ready');
  const starting = () => [...clones].filter((c) => c.state === 'starting').length;

  let refillTimer: NodeJS.Timeout | undefined;
  const refill = () => {
    if (refillTimer) { clearTimeout(refillTimer); refillTimer = undefined; }
    if (closing) return;
    // Until the probe is done, only the clone that will run it: the others start with its code cache.
    if (probe !== 'done') { if (!clones.size) startClone(); return; }
    while (ready().length + starting() < opts.size && starting() < MAX_STARTING) startClone();
  };
  const startClone = () => {
    // Its own session: the terminal's ^C to `pool serve` is not the clones' business.
    const env = codeCache ? { ...cloneEnv, SNAPVISOR_CODE_CACHE: codeCache } : cloneEnv;
    const child = spawn(process.execPath, [...process.execArgv, ...CLONE_NODE_FLAGS, process.argv[1], '__pool-clone', store, id], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'], detached: true, env });
    const clone: Clone = { child, ctl: fdOf(child.stdio[3] as net.Socket), state: 'starting', pid: child.pid ?? 0, prefetched: false };
    clones.add(clone);
    const ctl = child.stdio[3] as net.Socket;
    lines(ctl, (m) => {
      if (m.event === 'ready' && clone.state === 'starting') {
        if (workingSet && !clone.prefetched) { sendPrefetch(clone); return; }
        if (probe === 'pending' && !workingSet && startProbe(clone)) { refill(); return; }
        clone.state = 'ready';
        failedInARow = 0;
        everReady = true;
        dispatch();
        refill();
      } else if (m.event === 'working-set') {
        if (!workingSet && Array.isArray(m.faults) && Array.isArray(m.pages) && (m.faults.length || m.pages.length)) {
          workingSet = {
            faults: (m.faults as Fault[]).filter((f) => Array.isArray(f) && f.length === 2 && f.every(Number.isSafeInteger)).slice(0, MAX_WORKING_SET),
            pages: (m.pages as PageRun[]).filter((f) => Array.isArray(f) && f.length === 3 && f.every(Number.isSafeInteger)),
          };
          for (const c of ready()) sendPrefetch(c);
        }
        if (clone.state === 'probing') {
          if (m.codeCache === true && cacheDir) codeCache = path.join(cacheDir, 'clone.cache');
          probe = 'done';
          refill();
        }
      } else if (m.event === 'failed') {
        fail(`pool: a clone of checkpoint ${id} failed to start: ${String(m.error)}`);
      }
    });
    ctl.on('error', () => undefined);
    child.on('exit', () => {
      clones.delete(clone);
      if (clone.state === 'probing') probe = 'done';
      if (clone.state === 'starting') {
        failedInARow++;
        if (!everReady && failedInARow >= 2) { startFailure?.(`clones of checkpoint ${id} cannot start (see above)`); return; }
      }
      // A lost clone (killed while waiting, or after its take ended) is replaced; a run of failures backs off.
      setTimeout(refill, failedInARow ? Math.min(5000, 100 * 2 ** failedInARow) : 0).unref();
    });
  };
  /** Hand waiting takes to ready clones. */
  const dispatch = () => {
    while (waiting.length) {
      const clone = ready()[0];
      if (!clone) return;
      const t = waiting.shift()!;
      if (t.conn.destroyed) { t.stdio.forEach(closeFd); continue; }
      const r = sendFds(clone.ctl, Buffer.from(JSON.stringify({ op: 'take', requestMs: t.requestMs }) + '\n'), [t.connFd, ...t.stdio]);
      if (r < 0) {
        // The clone is gone (its exit handler replaces it): the take goes to the next one.
        clone.state = 'taken';
        clone.child.kill('SIGKILL');
        waiting.unshift(t);
        fail(`pool: handing a take to clone ${clone.pid} failed (errno ${-r}); trying another`);
        continue;
      }
      t.stdio.forEach(closeFd);
      clone.state = 'taken';
      served++;
      // The clone holds the caller's connection now; this copy goes.
      t.conn.destroy();
      if (!ready().length) refill();
      else refillTimer ??= setTimeout(refill, REFILL_DELAY_MS);
    }
  };

  const server = net.createServer({ pauseOnConnect: true }, (conn) => {
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
      const got = msg;
      let req: Record<string, unknown> = {};
      try { req = JSON.parse(got.data.toString().split('\n')[0]); } catch { /* below */ }
      const answer = (v: Record<string, unknown>) => { got.fds.forEach(closeFd); conn.resume(); conn.end(JSON.stringify(v) + '\n'); };
      if (req.op === 'status') {
        answer({ ok: true, checkpoint: id, size: opts.size, ready: ready().length, starting: starting(), running: [...clones].filter((c) => c.state === 'taken').length, probe, served, waiting: waiting.length, workingSet: workingSet?.faults.length ?? 0, workingSetPages: workingSet?.pages.reduce((n, r) => n + r[2], 0) ?? 0, clones: [...clones].map((c) => ({ pid: c.pid, state: c.state })) });
        return;
      }
      if (req.op !== 'take') { answer({ ok: false, error: `unknown op ${JSON.stringify(req.op ?? null)}` }); return; }
      if (got.fds.length !== 3) { answer({ ok: false, error: `a take sends 3 fds (stdin, stdout, stderr) with SCM_RIGHTS, got ${got.fds.length}` }); return; }
      if (closing) { answer({ ok: false, error: 'the pool is shutting down' }); return; }
      waiting.push({ conn, connFd: fd, stdio: got.fds, requestMs });
      dispatch();
    })();
  });
  server.on('error', (e) => { fail(`pool: ${sockPath}: ${e.message}`); process.exit(1); });

  // 3. Start the clones; the first ones prove the checkpoint restores here.
  let timer: NodeJS.Timeout | undefined;
  const started = new Promise<string | undefined>((resolve) => {
    startFailure = resolve;
    timer = setInterval(() => { if (ready().length >= opts.size && probe === 'done') resolve(undefined); }, 20);
  });
  refill();
  const failure = await started;
  clearInterval(timer);
  startFailure = undefined;
  if (failure) {
    closing = true;
    dropCache();
    for (const c of clones) c.child.kill('SIGKILL');
    fail(`pool: ${failure}`);
    return 1;
  }
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sockPath, () => resolve()); });
  process.stdout.write(`pool serving checkpoint ${id} on ${sockPath} (${opts.size} clones ready)\n`);

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    process.once('SIGHUP', stop);
  });
  closing = true;
  await new Promise<void>((r) => server.close(() => r()));
  fs.rmSync(sockPath, { force: true });
  dropCache();
  // Waiting clones go (their control socket closes); taken ones belong to their callers.
  for (const c of clones) if (c.state !== 'taken') c.child.kill('SIGKILL');
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
 */
function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** JSON lines (with any fds that came along) from the pool's control socket of a clone. */
class CtlReader {
  private buf = '';
  private fds: number[] = [];
  constructor(private readonly fd: number) {}
  /**
   * The next line. `block`: wait in poll(2) on this thread (a waiting clone has nothing else to
   * do, and a take then wakes it directly rather than through libuv's thread pool).
   */
  async next(block = false): Promise<{ line: string; fds: number[] } | 'eof'> {
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
        if (block) {
          while ((m = recvFdsNow(this.fd, 65536)) === 'again') waitReadableSync(this.fd);
        } else {
          m = await recvFds(this.fd, 65536);
        }
      } catch { return 'eof'; }
      if (m === 'eof') return 'eof';
      this.buf += m.data.toString();
      this.fds.push(...m.fds);
    }
  }
}

/**
 * The process of one clone (`snapvisor __pool-clone STORE ID`, started by the pool with its
 * control socket as fd 3): restore, say `ready`, wait for a take, then run the sandbox with
 * the caller's fds as 0–2, talking to the caller over the connection that came with them.
 */
export async function poolClone(store: string, id: string): Promise<number> {
  const CTL = 3;
  const say = (v: unknown) => { try { fs.writeSync(CTL, JSON.stringify(v) + '\n'); } catch { /* the pool is gone */ } };
  const { restoreKernel } = await import('../snapshots/checkpoint.js');
  let restored;
  try {
    restored = await restoreKernel(store, id, { pagesVerified: true });
  } catch (e) {
    say({ event: 'failed', error: (e as Error).message });
    return 125;
  }
  const kernel = restored.kernel;
  const faults = recordWorkingSet(kernel);
  // A take makes timers (the working-set window, the platform's stop watcher): their code runs
  // once now, not first inside the take.
  clearInterval(setInterval(() => undefined, 1 << 30));
  clearTimeout(setTimeout(() => undefined, 1 << 30));
  settle();
  say({ event: 'ready' });
  const ctl = new CtlReader(CTL);
  let msg, probing = false;
  for (;;) {
    msg = await ctl.next(true);
    // The pool closed without handing us a caller: nothing to do.
    if (msg === 'eof') { kernel.destroy(); return 0; }
    let req: Record<string, unknown> = {};
    try { req = JSON.parse(msg.line); } catch { /* ignored */ }
    if (req.op === 'take' && msg.fds.length === 4) break;
    if (req.op === 'probe' && msg.fds.length === 3) { probing = true; break; }
    msg.fds.forEach(closeFd);
    if (req.op === 'prefetch' && Array.isArray(req.faults) && Array.isArray(req.pages)) {
      const [prefetched, touched] = prefetch(kernel, req.faults as Fault[], req.pages as PageRun[]);
      settle();
      say({ event: 'ready', prefetched, touched });
    }
  }
  if (probing) {
    let codeCache: unknown;
    try { codeCache = JSON.parse(msg.line).codeCache; } catch { /* none */ }
    return probeRun(kernel, msg.fds, faults, say, typeof codeCache === 'string' ? codeCache : undefined);
  }
  const [connFd, ...stdio] = msg.fds;
  let requestMs = 0;
  try { requestMs = Number(JSON.parse(msg.line).requestMs) || 0; } catch { /* unknown */ }
  stdio.forEach((fd, i) => dup2(fd, i));
  stdio.forEach(closeFd);
  faults.on = true;
  // The guest first, then the started line (one write(2)); the caller's connection gets its
  // net.Socket (signals in, its close kills the sandbox) CONN_WATCH_DELAY_MS later, so building
  // one (cold code in a clone) does not hold up the guest's first traps on this CPU.
  const done = kernel.run();
  const resumedMs = nowMs();
  try { fs.writeSync(connFd, JSON.stringify({ event: 'started', clone: process.pid, requestMs, resumedMs }) + '\n'); } catch { /* the caller is gone: its socket's close says so below */ }
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
    if (!faults.on) return;
    faults.snapshot();
    faults.on = false;
    say({ event: 'working-set', faults: faults.faults, pages: faults.pages });
    closeFd(CTL);
  };
  const window = setTimeout(report, WORKING_SET_WINDOW_MS);
  const info = await done;
  clearTimeout(window);
  clearTimeout(watchTimer);
  const connSocket = watchConn();
  report();
  kernel.destroy();
  const status = 'code' in info ? info.code : 128 + info.signal;
  await new Promise<void>((r) => { if (connSocket.destroyed) r(); else connSocket.end(JSON.stringify({ event: 'exit', status }) + '\n', () => r()); });
  return status;
}

/**
 * The probe (docs/pools.md, "The working set"): run the guest with `stdio` (the pool's /dev/null)
 * as its fds 0–2 for WORKING_SET_WINDOW_MS or until it ends, then kill it, write the V8 code
 * cache of the bundle to `codeCache` (every function compiled so far: the restore's and the
 * guest's syscalls'), and report the write faults it took and the pages it touched on the
 * control socket ('working-set', with `codeCache: true` if the cache was written). Returns 0.
 */
async function probeRun(kernel: Kernel, stdio: number[], rec: ReturnType<typeof recordWorkingSet>, say: (v: unknown) => void, codeCache: string | undefined): Promise<number> {
  stdio.forEach((fd, i) => dup2(fd, i));
  stdio.forEach(closeFd);
  rec.on = true;
  const done = kernel.run();
  const window = setTimeout(() => { rec.snapshot(); kernel.kill(); }, WORKING_SET_WINDOW_MS);
  await done;
  clearTimeout(window);
  rec.snapshot();
  rec.on = false;
  kernel.destroy();
  // Only a bundle compiled by the launcher has a cache to write (not the unbundled dist/ tests load).
  const script = (globalThis as { __snapvisorScript?: vm.Script }).__snapvisorScript;
  let wrote = false;
  if (codeCache && script) {
    try { fs.writeFileSync(codeCache, script.createCachedData()); wrote = true; } catch { /* the clones compile from source */ }
  }
  say({ event: 'working-set', faults: rec.faults, pages: rec.pages, codeCache: wrote });
  return 0;
}

/**
 * `snapvisor pool take SOCKET`: hand this command's stdin/stdout/stderr to a clone of the pool
 * serving on SOCKET, relay signals to it, and return its exit status (125 with one line when
 * there is no pool there, it refuses, or the clone dies before saying how it ended).
 */
export async function poolTake(socket: string): Promise<number> {
  const sockPath = path.resolve(socket);
  let fd: number;
  try {
    fd = connectUnix(sockPath);
  } catch (e) {
    fail(`no pool is serving on ${sockPath} (${(e as Error).message})`);
    return 125;
  }
  const r = sendFds(fd, Buffer.from(JSON.stringify({ op: 'take' }) + '\n'), [0, 1, 2]);
  if (r < 0) { closeFd(fd); fail(`pool on ${sockPath}: the request could not be sent (errno ${-r})`); return 125; }
  const conn = new net.Socket({ fd, readable: true, writable: true });
  return new Promise<number>((resolve) => {
    let status: number | undefined, error: string | undefined, started = false;
    const relays = RELAYED.map((name) => {
      const sig = os.constants.signals[name];
      const h = () => sendLine(conn, { op: 'signal', signal: sig });
      process.on(name, h);
      return [name, h] as const;
    });
    lines(conn, (m) => {
      if (m.event === 'started') started = true;
      else if (m.event === 'exit') status = Number(m.status);
      else if (m.ok === false) error = String(m.error);
    });
    conn.on('error', () => undefined);
    conn.on('close', () => {
      for (const [name, h] of relays) process.off(name, h);
      if (status !== undefined) { resolve(status); return; }
      fail(error ? `pool on ${sockPath}: ${error}` : started ? 'the clone running this take died before its sandbox ended' : `pool on ${sockPath} closed the connection without handing over a clone`);
      resolve(125);
    });
  });
}
