/**
 * The client side of a named sandbox's control socket (cli/control.ts serves it): where the
 * state directory and the default store are, and one JSON request line answered by one JSON
 * line. Kept apart from the server so that the bin's launcher can run `checkpoint` with this
 * alone, without loading the CLI's bundle (cli/checkpoint-client.ts).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { hostErrorWords, socketPathProblem } from './host-errors.js';
import { makeDirs } from '../snapshots/make-dirs.js';

/** The state directory of named sandboxes: `root` if given, else $XDG_RUNTIME_DIR/snapvisor, /run/snapvisor (root) or $TMPDIR/snapvisor-UID. */
export function stateDir(root?: string): string {
  if (root) return path.resolve(root);
  if (process.env.XDG_RUNTIME_DIR) return path.join(process.env.XDG_RUNTIME_DIR, 'snapvisor');
  return process.getuid?.() === 0 ? '/run/snapvisor' : path.join(os.tmpdir(), `snapvisor-${process.getuid?.()}`);
}

export { defaultStore } from './store-dir.js';

export interface ControlRequest { op: string; store?: string; leaveRunning?: boolean; [k: string]: unknown }
/** An answer: `interrupted` says a checkpoint stopped because its client asked or went away (nothing stored). */
export type ControlResponse = { ok: true; [k: string]: unknown } | { ok: false; error: string; interrupted?: boolean };

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new Error(`invalid sandbox name '${name}' (letters, digits, _ . -; at most 64)`);
}

/**
 * `STATE/NAME.starting` holds the pid of a `run --name NAME` (or `restore --name NAME`) from the
 * moment it has parsed its arguments until it exits: its control socket comes only once the
 * sandbox is built (0.1–0.5 s later here, 3–4 s with the CPUs loaded), and `events NAME` waits
 * for a sandbox that is starting (isStarting). Best effort: nothing is said when it cannot be
 * written (a bad name or state directory is reported by the command itself, later).
 */
export function markStarting(root: string | undefined, name: string): void {
  // A name whose socket path cannot be: the command refuses it before making anything.
  if (!NAME_RE.test(name) || socketPathProblem(path.join(stateDir(root), `${name}.sock`))) return;
  const file = path.join(stateDir(root), `${name}.starting`);
  try {
    makeDirs(stateDir(root), 0o700);
    fs.writeFileSync(file, `${process.pid}\n`);
  } catch { return; }
  process.once('exit', () => { try { fs.rmSync(file, { force: true }); } catch { /* gone */ } });
}

/** Whether a process that wrote `STATE/NAME.starting` (markStarting) still runs. */
export function isStarting(root: string | undefined, name: string): boolean {
  let pid: number;
  try { pid = Number(fs.readFileSync(path.join(stateDir(root), `${name}.starting`), 'utf8')); } catch { return false; }
  if (!(pid > 0)) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** How long a client waits for each kind of answer by default (ms): a checkpoint writes the guest's memory. */
export const CONTROL_TIMEOUT_MS: Partial<Record<ControlRequest['op'], number>> = { status: 5_000, kill: 10_000, checkpoint: 300_000 };

/**
 * Send one request to a control socket and wait for the answer, at most `timeoutMs` (default
 * CONTROL_TIMEOUT_MS for the op). Rejects with a one-line Error when there is no answer in time,
 * the connection fails, or the answer is not one JSON line. Progress lines the sandbox sends
 * before its answer (`{"progress":[doneBytes,totalBytes]}`, for a checkpoint asked with
 * `progress: true`) go to `onProgress`. `interrupt` aborted (the client's ^C): a second line,
 * `{"op":"abort"}`, asks the sandbox to stop what it does for this request (a checkpoint: it answers
 * `{"ok":false,"interrupted":true,…}` once nothing of it is left, or its result if that came too
 * late), and the answer is still awaited; before the connection is made, the request is dropped
 * (rejects). A connection closed before the answer (this process killed, or giving up after
 * `timeoutMs`) stops a checkpoint the same way (cli/control.ts).
 */
export function request(sock: string, req: ControlRequest, timeoutMs = CONTROL_TIMEOUT_MS[req.op] ?? 10_000, onProgress?: (doneBytes: number, totalBytes: number) => void, interrupt?: AbortSignal): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock);
    interrupt?.addEventListener('abort', () => {
      if (c.connecting) { c.destroy(); done(reject)(new Error(`'${req.op}' interrupted before the sandbox got it`)); return; }
      if (!c.destroyed) c.write('{"op":"abort"}\n');
    }, { once: true });
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer from the sandbox to '${req.op}' within ${Math.round(timeoutMs / 1000)} s (${sock})`));
    }, timeoutMs);
    const done = <T>(f: (v: T) => void) => (v: T) => { clearTimeout(timer); f(v); };
    c.on('connect', () => c.write(JSON.stringify(req) + '\n'));
    c.on('data', (d) => {
      buf += d.toString();
      // Whole lines that are progress reports; the answer is the last line.
      for (let nl = buf.indexOf('\n'); nl >= 0 && buf.startsWith('{"progress":'); nl = buf.indexOf('\n')) {
        try {
          const [done, total] = (JSON.parse(buf.slice(0, nl)) as { progress: [number, number] }).progress;
          onProgress?.(done, total);
        } catch { break; }
        buf = buf.slice(nl + 1);
      }
    });
    c.on('end', () => {
      let r: ControlResponse;
      try { r = JSON.parse(buf); } catch { done(reject)(new Error('the sandbox closed the control connection without an answer')); return; }
      done(resolve)(r);
    });
    c.on('error', (e) => done(reject)(new Error(controlSocketError(sock, e))));
  });
}

/**
 * The one line for a failed connection to the control socket `sock`: refused (or gone) means no
 * sandbox runs there (one killed with SIGKILL leaves its socket behind); others in words.
 */
export function controlSocketError(sock: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return `no sandbox is running on the control socket ${sock} (Connection refused: left behind by a sandbox that ended)`;
  if (code === 'ENOENT') return `no sandbox is running on the control socket ${sock} (No such file or directory)`;
  return `cannot reach the sandbox's control socket ${sock}: ${hostErrorWords(e)}`;
}

/**
 * How long checkpoint and kill wait for the control socket of a name that is not there (ms; see
 * whenStarted): WAIT_MS in any case (a `run --name NAME &` pasted with them has not even said it
 * is starting yet: its node is still starting), up to STARTING_WAIT_MS while it says so.
 */
const WAIT_MS = 2000, STARTING_WAIT_MS = 60_000;

/**
 * The control socket of named sandbox `name`, once it is there: a `run --name NAME &` started just
 * before (markStarting) has its socket only once its sandbox is built (0.1–0.5 s here, 3–4 s with
 * the CPUs loaded), so `checkpoint NAME` or `kill NAME` typed (or pasted) right after it waits for
 * it, as `events NAME` does: WAIT_MS, and up to STARTING_WAIT_MS while that run says it is
 * starting. Otherwise as controlSocket: the path, or the error that no such sandbox runs.
 */
export async function whenStarted(root: string | undefined, name: string): Promise<string> {
  checkName(name);
  const sock = path.join(stateDir(root), `${name}.sock`);
  const waiting = (t: number) => t < WAIT_MS || (t < STARTING_WAIT_MS && isStarting(root, name));
  for (const t0 = Date.now(); !fs.existsSync(sock) && waiting(Date.now() - t0);) await new Promise((r) => setTimeout(r, 50));
  return controlSocket(root, name);
}

/** Control socket path of a named sandbox, or an error if it is not running. */
export function controlSocket(root: string | undefined, name: string): string {
  checkName(name);
  const sock = path.join(stateDir(root), `${name}.sock`);
  if (!fs.existsSync(sock)) throw new Error(`container ${name} does not exist (nor a running sandbox of that name in ${stateDir(root)})`);
  return sock;
}
