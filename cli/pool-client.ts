/**
 * The client side of a warm pool (docs/pools.md, "The socket protocol"): `snapvisor pool take`
 * (the caller's stdin/stdout/stderr passed with SCM_RIGHTS, signals relayed, the clone's exit
 * status) and the status request (one JSON line without fds, one JSON answer), with the JSON-line
 * reader the pool (cli/pool.ts) shares. Kept apart from the pool itself so that the bin's
 * launcher (cli/launcher.ts) runs `pool take SOCKET` with this module alone, without loading the
 * CLI's bundle (lightPoolTake), as it does `checkpoint NAME` (cli/checkpoint-client.ts). Used by
 * the pool's tests and bench/pool-bench.ts too.
 */
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { closeFd, connectUnix, sendFds } from '../platforms/host/fd-passing.js';
import { takeHeldSignals } from './early-signals.js';
import { dropRegistration, type PoolRegistration, relinkServing } from './pool-registry.js';

/**
 * What `{"op":"status"}` answers: clone counts, hosting processes, takes served, the recorded
 * working set (write faults, and pages touched), each clone's hosting process (pid), its slot
 * there and its state.
 */
export interface PoolStatus {
  ok: boolean; checkpoint: string; size: number; ready: number; starting: number; running: number; processes: number;
  served: number; waiting: number; refillsPaused: boolean; startError: string | null; probe: 'pending' | 'running' | 'done'; workingSet: number; workingSetPages: number; clones: Array<{ pid: number; slot: number; state: string }>;
}

/** Ask the pool on unix socket `sock` for its status. Rejects on a connection error or an answer that is not JSON. */
export async function poolStatus(sock: string): Promise<PoolStatus> {
  return (await poolRequest(sock, { op: 'status' })) as unknown as PoolStatus;
}

/**
 * Send the pool on unix socket `sock` one request without fds (`status`, `pause-refills`,
 * `resume-refills`: docs/pools.md, "The socket protocol") and resolve with its one-line JSON
 * answer. Rejects on a connection error or an answer that is not JSON.
 */
export async function poolRequest(sock: string, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  // Loaded here, not with this module: `pool take` runs without node:net (see poolTake).
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock, () => c.write(JSON.stringify(request) + '\n'));
    let buf = '';
    c.on('data', (d) => { buf += d; });
    c.on('end', () => { try { resolve(JSON.parse(buf)); } catch (e) { reject(e); } });
    c.on('error', reject);
  });
}

/** Read JSON lines from `sock` (after `prefix`, bytes already read), calling `on` for each; lines that are not JSON are ignored. */
export function lines(sock: net.Socket, on: (v: Record<string, unknown>) => void, prefix = ''): void {
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

/** Signals `pool take` relays; the keyboard's go to the guest's foreground process group, the rest to its init (the clone decides). */
const RELAYED = ['SIGINT', 'SIGQUIT', 'SIGTSTP', 'SIGWINCH', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'] as const;
/**
 * Of those, the ones whose default action ends a process: one that reaches `pool take` before
 * its clone runs (the take waiting in the pool for a clone) ends it, by that signal (a shell
 * reports 128+N: ^C 130, SIGTERM 143), as it would end any command still waiting; closing the
 * connection makes the pool forget the take. The others wait for the clone and are relayed then.
 */
const FATAL_BEFORE_START: ReadonlySet<string> = new Set(['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']);

/** An errno in words as libuv says it (32 → "broken pipe"), or its number if libuv does not know it. */
const errnoWords = (errno: number): string => util.getSystemErrorMap().get(-errno)?.[1] ?? `errno ${errno}`;

/** `snapvisor: MSG` on stderr, one line. */
const failLine = (msg: string): void => { fs.writeSync(2, `snapvisor: ${msg}\n`); };

/**
 * `snapvisor pool take SOCKET`: hand this process's stdin/stdout/stderr (fds 0–2) to a clone of
 * the pool serving on unix socket `socket`, relay the signals above to it, and resolve with its
 * exit status (128+N for a death by signal N); 125 with one line through `fail` (default: on
 * stderr) when no pool answers there (connect's errno text: ENOENT, ECONNREFUSED…), the pool
 * refuses (its error), or the clone dies before saying how its sandbox ended. `checkpoint`
 * (`pool take --checkpoint ID`) names the checkpoint in the take: an any-pool
 * (cli/restorer.ts) restores it, a checkpoint's pool refuses any other than its own.
 */
export async function poolTake(socket: string, fail: (msg: string) => void = failLine, checkpoint?: string): Promise<number> {
  const sockPath = path.resolve(socket);
  const t = await takeClone(sockPath, checkpoint === undefined ? { op: 'take' } : { op: 'take', checkpoint });
  if (t.status !== undefined) return t.status;
  // connect(2) to a file that is no socket says ECONNREFUSED, as a stale socket does: tell them apart.
  const notSocket = t.connectError !== undefined && fs.statSync(sockPath, { throwIfNoEntry: false })?.isSocket() === false;
  fail(notSocket ? `no pool is serving on ${sockPath} (it is not a socket)` : t.connectError ? `no pool is serving on ${sockPath} (${t.connectError})` : t.sendErrno ? `pool on ${sockPath}: the request could not be sent (${errnoWords(t.sendErrno)}): is it a pool's socket?`
    : t.error ? `pool on ${sockPath}: ${t.error}` : t.started ? 'the clone running this take died before its sandbox ended' : `pool on ${sockPath} closed the connection without handing over a clone`);
  return 125;
}

/** How a take ended (takeClone): the clone's status, or why there is none. */
interface TakeOutcome {
  /** The sandbox's exit status (128+N for signal N), if its `exit` line came. */
  status?: number;
  /** The guest ran (`started` came). */
  started: boolean;
  /** connect(2) failed: its errno's text (ENOENT, ECONNREFUSED…). */
  connectError?: string;
  /** errno of a sendmsg(2) that failed. */
  sendErrno?: number;
  /** The pool's refusal (`{"ok":false,"error":…}`). */
  error?: string;
  /** Signals that came before `started` (relayBeforeStart false) and were not relayed. */
  early?: NodeJS.Signals[];
  /** The `started` line: the clone's hosting process and slot. */
  clone?: { pid: number; slot: number };
}

/**
 * One take on the pool's unix socket `sockPath` (absolute): `request` (a take op) sent with fds
 * 0–2, the relayed signals written to the connection once the `started` line came (before it
 * the connection is the pool's, which does not read it), its lines read until it closes.
 * `onStarted` runs when the `started` line comes. A signal before that line: with
 * `relayBeforeStart` (`pool take`), one of FATAL_BEFORE_START ends this process by that signal
 * (the connection closes with it, and the pool forgets the take), the others are relayed once the
 * clone runs; without it (a restore's take, which never waits), none is relayed: SIGTERM and
 * SIGHUP stay held by cli/early-signals.ts, the others are reported in `early` (see restoreFromPool).
 */
async function takeClone(sockPath: string, request: Record<string, unknown>, onStarted?: (write: (signal: number) => void, clone: { pid: number; slot: number }) => void, relayBeforeStart = true): Promise<TakeOutcome> {
  let fd: number;
  try {
    fd = connectUnix(sockPath);
  } catch (e) {
    return { started: false, connectError: (e as Error).message };
  }
  const r = sendFds(fd, Buffer.from(JSON.stringify(request) + '\n'), [0, 1, 2]);
  if (r < 0) { closeFd(fd); return { started: false, sendErrno: -r }; }
  // The connection through fs (a read waits on libuv's thread pool, a signal's line is one
  // write(2)), not a net.Socket: loading node:net and node:stream was a fifth of this command's
  // start-up when it ran without the CLI's bundle.
  let closed = false;
  const out: TakeOutcome = { started: false };
  const write = (signal: number) => { if (!closed) try { fs.writeSync(fd, JSON.stringify({ op: 'signal', signal }) + '\n'); } catch { /* the clone is gone: its close ends the take */ } };
  const relays = RELAYED.map((name) => {
    const h = () => {
      if (out.started) write(os.constants.signals[name]);
      else if (relayBeforeStart && FATAL_BEFORE_START.has(name)) {
        // No clone yet: this command ends, as it would without a pool's handlers (this one gone,
        // the signal's default action). Its connection closes with it: the pool forgets the take.
        closed = true;
        closeFd(fd);
        for (const [n, f] of relays) process.off(n, f);
        process.kill(process.pid, name);
      }
      // SIGTERM and SIGHUP of a restore are held meanwhile (cli/early-signals.ts); the others wait here.
      else if (relayBeforeStart || (name !== 'SIGTERM' && name !== 'SIGHUP')) (out.early ??= []).push(name);
    };
    process.on(name, h);
    return [name, h] as const;
  });
  let buf = '';
  const chunk = Buffer.alloc(4096);
  for (;;) {
    const n = await new Promise<number>((resolve) => fs.read(fd, chunk, 0, chunk.length, null, (e, got) => resolve(e ? 0 : got)));
    if (n <= 0) break;
    buf += chunk.toString('utf8', 0, n);
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      let m: Record<string, unknown> = {};
      try { m = JSON.parse(buf.slice(0, nl)); } catch { /* not JSON: ignored */ }
      buf = buf.slice(nl + 1);
      if (m.event === 'started' && !out.started) {
        out.started = true;
        out.clone = { pid: Number(m.clone), slot: Number(m.slot) };
        onStarted?.(write, out.clone);
        for (const sig of out.early?.splice(0) ?? []) write(os.constants.signals[sig]);
      } else if (m.event === 'exit') out.status = Number(m.status);
      else if (m.ok === false) out.error = String(m.error);
    }
  }
  closed = true;
  closeFd(fd);
  for (const [name, h] of relays) process.off(name, h);
  return out;
}

/**
 * `snapvisor restore ID` served by a warm pool of checkpoint ID (docs/pools.md, "Restore through
 * a pool"): try the registered pools `pools` in order (the store's any-pool last: its restorer
 * restores the checkpoint for the take, docs/pools.md "Any-pools"), each with a take that names the
 * checkpoint and asks for a clone ready now (`{"op":"take","checkpoint":ID,"ifReady":true}`: a
 * pool with none ready, or of another checkpoint, refuses at once). The first clone that starts
 * runs as `pool take` runs it (this process's fds 0–2, signals relayed, its status in
 * process.exitCode); the SIGTERM/SIGHUP held since the process started (cli/early-signals.ts) are
 * given to it once it runs, and until then stay held. A registration whose socket refuses
 * connections is removed. Resolves true once a clone ran (its status set, or 125 with one line
 * if it died before its sandbox ended); false if none started: nothing ran, the caller restores
 * in this process, with the signals still held.
 */
export async function restoreFromPool(pools: readonly PoolRegistration[]): Promise<boolean> {
  const trace = process.env.SNAPVISOR_TRACE_RESTORE ? (what: string) => fs.writeSync(2, `[restore ${(process.uptime() * 1000).toFixed(1)} ms] ${what}\n`) : undefined;
  for (const p of pools) {
    trace?.(`asking the pool on ${p.socket} for a clone`);
    const t = await takeClone(p.socket, { op: 'take', checkpoint: p.checkpoint, ifReady: true }, (write, clone) => {
      trace?.(`served by the pool on ${p.socket} (clone ${clone.pid}/${clone.slot})`);
      for (const sig of takeHeldSignals()) write(os.constants.signals[sig]);
    }, false);
    if (t.status !== undefined || t.started) {
      if (t.status === undefined) failLine('the clone running this restore died before its sandbox ended');
      // The next restore of it from the native front goes straight to a pool that serves.
      if (!p.any) relinkServing(p);
      process.exitCode = t.status ?? 125;
      return true;
    }
    trace?.(`pool on ${p.socket} not used: ${t.connectError ?? t.error ?? (t.sendErrno ? `errno ${t.sendErrno}` : 'closed')}`);
    if (t.connectError && !p.any) dropRegistration(p);
    // ^C (or another signal) while no clone ran: what it would have done to an in-process restore
    // still loading, end this process (its handlers are gone with the take).
    const fatal = t.early?.find((sig) => sig === 'SIGINT' || sig === 'SIGQUIT' || sig === 'SIGUSR1' || sig === 'SIGUSR2');
    if (fatal) { process.kill(process.pid, fatal); return true; }
  }
  return false;
}

/**
 * The socket of `args` (process.argv after the script) if they are `[--root DIR] pool take SOCKET`
 * (--root also as `--root=DIR`; `pool take` ignores it, as the full CLI does); undefined for any
 * other shape (--help, --log, another global option, more arguments), which the full CLI handles.
 */
export function parseLightPoolTake(args: readonly string[]): string | undefined {
  let i = 0;
  if (args[i] === '--root') i += 2;
  else if (args[i]?.startsWith('--root=')) i++;
  if (args.length !== i + 3 || args[i] !== 'pool' || args[i + 1] !== 'take') return undefined;
  const socket = args[i + 2];
  return socket === '' || socket.startsWith('-') ? undefined : socket;
}

/**
 * Run `snapvisor pool take SOCKET` for `args` (process.argv after the script) if parseLightPoolTake
 * takes their shape, setting process.exitCode to the clone's status; undefined (nothing done)
 * otherwise. Same output, errors and status as the full CLI's command.
 */
export function lightPoolTake(args: readonly string[]): Promise<void> | undefined {
  const socket = parseLightPoolTake(args);
  if (socket === undefined) return undefined;
  return poolTake(socket).then((status) => { process.exitCode = status; });
}
