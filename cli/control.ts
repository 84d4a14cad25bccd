/**
 * Named sandboxes: `run --name NAME` registers the sandbox in the state directory
 * (`--root`, default $XDG_RUNTIME_DIR/snapvisor or /run/snapvisor, as runc/runsc do)
 * with a unix control socket NAME.sock. `snapvisor checkpoint NAME` talks to it with
 * one JSON line per request and gets one JSON line back.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { logLine } from './oci/log.js';
import type { Kernel } from '../src/kernel/kernel.js';
import { eventJson, typeFilter } from '../src/kernel/events.js';
import { type ControlRequest, type ControlResponse, checkName, request, stateDir } from './control-client.js';
import { makeDirs } from '../snapshots/make-dirs.js';
import { checkpointOutput, parseLightCheckpoint } from './checkpoint-client.js';
import { hostErrorWords, storeDirProblem } from './host-errors.js';

export { CONTROL_TIMEOUT_MS, type ControlRequest, type ControlResponse, checkName, controlSocket, defaultStore, request, stateDir } from './control-client.js';

/** SNAPVISOR_TRACE_CHECKPOINT=1: when a checkpoint request arrives, as snapshots/store.ts traceCheckpoint marks its phases. */
const traceRequest = process.env.SNAPVISOR_TRACE_CHECKPOINT
  ? (what: string) => process.stderr.write(`[checkpoint ${performance.now().toFixed(1)} ms, clock ${((performance.timeOrigin + performance.now()) % 1e5).toFixed(1)}] ${what}\n`)
  : undefined;

/**
 * Tell the launcher (cli/launcher.ts) that this process wrote a checkpoint: at exit it writes the
 * full bundle's run-time code cache, holding the checkpoint's code, unless it has that already.
 * Nothing where the launcher did not load the bundle (tests importing dist/ directly).
 */
export function noteCheckpointed(): void {
  (globalThis as { __snapvisorCheckpointed?: () => void }).__snapvisorCheckpointed?.();
}

/** Print `snapvisor: MSG` as one line on stderr. */
export function fail(msg: string): void {
  fs.writeSync(2, `snapvisor: ${msg}\n`);
  logLine('error', msg);
}

/**
 * Another request handler (the OCI runtime's ops, cli/oci/init.ts): returns true if it took
 * the request; it then answers on `conn` itself (it may keep it open to report later).
 */
export type ControlHandler = (req: ControlRequest, conn: net.Socket) => boolean;

/** A checkpoint that ended a sandbox (one taken without --leave-running): its id and the store it is in. */
export interface CheckpointedAway { id: string; store: string }

/**
 * Serve the control socket of a named sandbox until `close`. Throws if the name is taken by a live
 * sandbox. `checkpointedAway()` is set once a checkpoint that ends the sandbox is written.
 */
export async function serveControl(root: string | undefined, name: string, kernel: Kernel, handler?: ControlHandler): Promise<{ close(): Promise<void>; checkpointedAway(): CheckpointedAway | undefined }> {
  checkName(name);
  const dir = stateDir(root);
  makeDirs(dir, 0o700);
  const sock = path.join(dir, `${name}.sock`);
  const meta = path.join(dir, `${name}.json`);
  if (fs.existsSync(sock)) {
    // Left behind by a sandbox that ended (nothing listens: refused) it is removed; one that
    // something listens on is a live sandbox of that name, or another program's socket, kept.
    const listening = await new Promise<boolean | Error>((resolve) => {
      const c = net.createConnection(sock, () => { c.destroy(); resolve(true); });
      c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? false : e));
    });
    if (listening instanceof Error) throw new Error(`cannot use the control socket path ${sock}: ${hostErrorWords(listening)}`);
    if (listening) {
      const live = await request(sock, { op: 'status' }).then((r) => r.ok === true, () => false);
      throw new Error(live ? `a sandbox named '${name}' is already running` : `the control socket path ${sock} is in use by another program (it accepts connections but does not answer as a sandbox)`);
    }
    fs.rmSync(sock, { force: true });
  }
  let busy = false;
  let away: CheckpointedAway | undefined;
  const server = net.createServer((conn) => {
    let buf = '';
    // A checkpoint asked for on this connection stops (nothing stored, the guest runs on) if the
    // client asks so in a later line (`{"op":"abort"}`: its ^C) or goes away before the answer
    // (killed, or given up waiting): nobody would learn its id, and without --leave-running the
    // guest would be lost with it. Once the checkpoint is stored, the abort comes too late.
    const interrupt = new AbortController();
    conn.on('close', () => interrupt.abort());
    conn.on('data', (d) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0 && !conn.readableEnded; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void handle(line);
      }
    });
    const handle = async (line: string): Promise<unknown> => {
      let req: ControlRequest;
      try { req = JSON.parse(line); } catch { conn.end(JSON.stringify({ ok: false, error: 'bad request' }) + '\n'); return; }
      if (req.op === 'abort') { interrupt.abort(); return; }
      const reply = (r: ControlResponse) => conn.end(JSON.stringify(r) + '\n');
      if (handler?.(req, conn)) return;
      if (req.op === 'status') return reply({ ok: true, pid: process.pid, name });
      if (req.op === 'kill') { kernel.kill(); return reply({ ok: true }); }
      if (req.op === 'signal') {
        const sig = Number(req.signal);
        if (!(sig >= 1 && sig <= 64)) return reply({ ok: false, error: `invalid signal ${String(req.signal)}` });
        const groups = req.all ? Object.values(kernel.state.threadGroups).filter((g) => !g.zombie).map((g) => g.tgid) : [1];
        for (const g of groups) kernel.signals.send(g, sig, { signo: sig, code: 0 /* SI_USER */ });
        return reply({ ok: true });
      }
      if (req.op === 'ps') return reply({ ok: true, hostPid: process.pid, processes: guestProcesses(kernel) });
      if (req.op === 'events') {
        // JSON lines from the next event on, until the client goes away or the sandbox ends.
        const sub = streamEvents(kernel, req.types as string | undefined, (line) => { if (!conn.destroyed) conn.write(line); });
        conn.on('close', () => sub.close());
        void kernel.exited.then(() => { kernel.events.flush(); sub.close(); conn.end(); });
        return;
      }
      if (req.op === 'checkpoint') return checkpoint(req, conn, interrupt.signal, (r) => endNow(conn, JSON.stringify(r) + '\n'));
      if (req.op === 'front') return frontCheckpoint(req, conn, (r, c, answer) => checkpoint(r, c, interrupt.signal, answer));
      reply({ ok: false, error: `unknown op ${(req as { op: string }).op}` });
    };
    conn.on('error', () => undefined);
  });
  /**
   * The `checkpoint` op: its answer goes to `answer`, once (progress lines, if asked for, written to
   * `conn` meanwhile): as soon as the checkpoint is written, before the sandbox is killed
   * (checkpointKernel's onWritten), or its failure; `signal` aborted stops it (checkpointKernel),
   * answered `{ok: false, interrupted: true}`. Resolves once it is over (the sandbox killed).
   */
  const checkpoint = async (req: ControlRequest, conn: net.Socket, signal: AbortSignal, answer: (r: ControlResponse) => void): Promise<void> => {
    let answered = false;
    const once = (r: ControlResponse): void => { if (!answered) { answered = true; answer(r); } };
    once(await checkpointOp(req, conn, signal, once));
  };
  const checkpointOp = async (req: ControlRequest, conn: net.Socket, signal: AbortSignal, early: (r: ControlResponse) => void): Promise<ControlResponse> => {
    traceRequest?.('request received');
    if (busy) return { ok: false, error: 'a checkpoint of this sandbox is already in progress' };
    // A store path that is a file, or through one (clients say so themselves first: cli/host-errors.ts).
    const problem = typeof req.store === 'string' ? storeDirProblem(req.store) : 'no store given';
    if (problem) return { ok: false, error: problem };
    busy = true;
    try {
      const { checkpointKernel } = await import('../snapshots/checkpoint.js');
      const leaveRunning = !!req.leaveRunning;
      // Asked for ({progress: true}): lines {"progress":[doneBytes,totalBytes]} before the answer, at most 10 a second.
      let lastMs = 0;
      const onProgress = req.progress ? (done: number, total: number) => {
        const now = Date.now();
        if (now - lastMs < 100 || done >= total) return;
        lastMs = now;
        conn.write(JSON.stringify({ progress: [done, total] }) + '\n');
      } : undefined;
      const r = await checkpointKernel(kernel, req.store!, {
        leaveRunning, name, compress: !!req.compress, onProgress, signal,
        onWritten: (w) => {
          if (!leaveRunning) away = { id: w.id, store: req.store! };
          early({ ok: true, ...w });
        },
      });
      noteCheckpointed();
      return { ok: true, ...r };
    } catch (e) {
      if (signal.aborted) traceRequest?.('interrupted');
      return { ok: false, error: (e as Error).message, ...(signal.aborted ? { interrupted: true } : {}) };
    } finally {
      busy = false;
    }
  };
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, () => resolve()); });
  server.unref();
  // A named sandbox is there to be checkpointed: load the store's code (and LevelDB's) and start
  // the page worker once things are quiet, not while the checkpoint request waits.
  setTimeout(() => {
    void import('../snapshots/checkpoint.js').then(() => import('../snapshots/store.js')).then((m) => {
      m.prestartPageWorker();
      return m.preloadCatalogue();
    }).catch(() => undefined);
  }, 500).unref();
  fs.writeFileSync(meta, JSON.stringify({ name, pid: process.pid, started: new Date().toISOString() }) + '\n');
  return {
    checkpointedAway: () => away,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      fs.rmSync(sock, { force: true });
      fs.rmSync(meta, { force: true });
    },
  };
}

/**
 * The `front` op: `snapvisor checkpoint NAME …` from the bin's native front (cli/front/front.c),
 * which sends its argv (after argv[0]), its cwd, the socket path it connected to and its
 * SNAPVISOR_STORE, XDG_DATA_HOME and HOME (those set): the command runs here as the node client
 * (cli/checkpoint-client.ts lightCheckpoint) runs it (the front itself waits at most --timeout), and the answer is
 * `{"ok":true,"status":N,"fd":F}\n` followed by the exact text that client would print on fd F
 * (checkpointOutput). `{"fallback":true}` when the argv is no shape parseLightCheckpoint takes
 * or the store cannot be found from what came (nothing done: the front runs node).
 */
function frontCheckpoint(req: ControlRequest, conn: net.Socket, checkpoint: (req: ControlRequest, conn: net.Socket, answer: (r: ControlResponse) => void) => Promise<void>): void {
  const { argv, cwd } = req as { argv?: unknown; cwd?: unknown };
  const env = (req.env ?? {}) as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const p = Array.isArray(argv) && argv.every((a) => typeof a === 'string') ? parseLightCheckpoint(argv) : undefined;
  const fallback = () => { conn.end('{"fallback":true}\n'); };
  if (!p || typeof cwd !== 'string' || !path.isAbsolute(cwd)) return fallback();
  const answer = (o: { fd: 1 | 2; text: string; status: number }) => { endNow(conn, `{"ok":true,"status":${o.status},"fd":${o.fd}}\n${o.text}`); };
  try { checkName(p.name); } catch (e) { return answer(checkpointOutput(p.name, e as Error)); }
  // The client's default store (cli/store-dir.ts defaultStore, with its environment).
  const home = str(env.HOME);
  const store = p.store ?? (str(env.SNAPVISOR_STORE) || path.join(str(env.XDG_DATA_HOME) || (home === undefined ? '' : path.join(home, '.local', 'share')), 'snapvisor', 'checkpoints'));
  if (p.store === undefined && !str(env.SNAPVISOR_STORE) && !str(env.XDG_DATA_HOME) && home === undefined) return fallback();
  const problem = storeDirProblem(store, cwd);
  if (problem) return answer(checkpointOutput(p.name, new Error(problem)));
  // (--timeout is the front's: it stops waiting, as the node client does, and its connection's close stops the checkpoint.)
  void checkpoint({ op: 'checkpoint', store: path.resolve(cwd, store), leaveRunning: p.leaveRunning, compress: p.compress, progress: false }, conn, (r) => answer(checkpointOutput(p.name, r)));
}

/**
 * Send `text` on `conn` and end it now: closed at once when the write went out whole (a short
 * answer on a Unix socket does), so the client sees its end of file without waiting for this
 * event loop's next turn (conn.end() shuts the socket down only then: after a checkpoint, after
 * the sandbox's kill and its exit handlers); else ended as usual once it is written.
 */
function endNow(conn: net.Socket, text: string): void {
  conn.write(text);
  if (conn.writableLength === 0) conn.destroy(); else conn.end();
}

/**
 * Subscribe to a kernel's event stream as JSON lines (one per event, each ending in a
 * newline), keeping only types matching `types` ('task.*,file.*'; all if absent). A
 * subscriber that lags more than the buffer holds gets an `events.lost` line with the count.
 */
export function streamEvents(kernel: Kernel, types: string | undefined, write: (s: string) => void): { close(): void } {
  const want = typeFilter(types);
  return kernel.events.subscribe((evs, lost) => {
    let out = lost ? `{"type":"events.lost","count":${lost}}\n` : '';
    for (const ev of evs) if (want(ev.type)) out += eventJson(ev) + '\n';
    if (out) write(out);
  });
}

/** Stream the events of a running sandbox (the `events` op) to `write`, until it ends. */
export function streamRemote(sock: string, types: string | undefined, write: (s: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock);
    c.on('connect', () => c.write(JSON.stringify({ op: 'events', types }) + '\n'));
    c.on('data', (d) => write(d.toString()));
    c.on('end', () => resolve());
    c.on('error', reject);
  });
}

/** A guest process as `snapvisor ps` shows it. */
export interface GuestProcess { pid: number; ppid: number; uid: number; state: string; cmd: string }

/** Most bytes of a process's argv `ps` shows (ps -ef cuts long command lines too). */
const PS_CMDLINE_BYTES = 4096;

/**
 * The sandbox's live processes (thread groups), pid order: guest pid, parent, uid, state (R, S,
 * T, Z), command line: its argv as /proc/PID/cmdline holds it, words joined by spaces (as `ps -ef`
 * shows it), else its executable's path or its name (a zombie's memory is gone).
 */
export function guestProcesses(kernel: Kernel): GuestProcess[] {
  const s = kernel.state;
  return Object.values(s.threadGroups).sort((a, b) => a.tgid - b.tgid).map((tg) => {
    const leader = s.tasks[tg.tids[0]];
    const state = tg.zombie ? 'Z' : tg.stopped ? 'T' : leader?.waiter ? 'S' : 'R';
    const as = leader ? s.addressSpaces[leader.addressSpaceId] : undefined;
    let cmdline = '';
    const task = leader && !tg.zombie ? kernel.tasks.get(leader.tid) : undefined;
    if (task && as && as.argEnd > as.argStart) {
      try {
        cmdline = Buffer.from(task.mm.read(as.argStart, Math.min(as.argEnd - as.argStart, PS_CMDLINE_BYTES))).toString('utf8').replace(/\0+$/, '').split('\0').join(' ');
      } catch { /* unreadable: the path below */ }
    }
    return { pid: tg.tgid, ppid: tg.ppid, uid: tg.uid, state, cmd: cmdline || as?.exe || leader?.comm || '' };
  });
}

