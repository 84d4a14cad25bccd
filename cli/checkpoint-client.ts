/**
 * `snapvisor checkpoint NAME` without the CLI's bundle: the bin's launcher (cli/launcher.ts)
 * runs the command's common shapes with this module alone (it only sends one request on the
 * sandbox's control socket and prints the answer), so the command costs a node start-up and no
 * load of the bundle (~45 ms of CPU here: compiling or deserializing it, commander, the command
 * table). Any other shape (--image-path, --help, an option it does not know, a terminal on
 * stderr that gets a progress bar, --log/--debug) is left to the full CLI (cli/main.ts), which
 * gives the same answer and output for the shapes taken here.
 */
import { type ControlResponse, defaultStore, request, whenStarted } from './control-client.js';
import { storeDirProblem } from './host-errors.js';
import path from 'node:path';
import { byteSize } from './sizes.js';

/** What a checkpoint request answers on success (snapshots/checkpoint.ts CheckpointResult), as the command prints it. */
export interface CheckpointAnswer { id: string; pages: number; newPages: number; storedPageBytes: number; packBytes?: number; filePages?: number; pauseMs: number; durationMs: number }


/** The line `checkpoint` prints on stdout for sandbox `name` (the checkpoint id last). */
export function checkpointLine(name: string, s: CheckpointAnswer): string {
  const packed = s.packBytes === undefined ? '' : `, ${byteSize(s.packBytes)} compressed${s.filePages ? `, ${s.filePages} pages named in host files` : ''}`;
  return `checkpointed ${name}: ${s.pages} pages (${s.newPages} new, ${byteSize(s.storedPageBytes)} stored${packed}), guest paused ${s.pauseMs.toFixed(0)} ms, written in ${s.durationMs.toFixed(0)} ms: ${s.id}\n`;
}

/** Exit status of a `checkpoint` interrupted by ^C (SIGINT) before it was stored, as a shell gives a command SIGINT ended: 128 + 2. */
export const INTERRUPTED_STATUS = 130;

/**
 * What `checkpoint NAME` prints for sandbox `name` given the sandbox's answer `r`, or the Error
 * that came instead (no answer in time, no socket, an invalid name): the text (one line), the fd
 * it goes to (1 or 2) and the exit status (0, 1, or INTERRUPTED_STATUS for an answer saying the
 * checkpoint was interrupted). The node client prints it, and the control server gives it to
 * the bin's native front (cli/control.ts, op `front`).
 */
export function checkpointOutput(name: string, r: ControlResponse | Error): { fd: 1 | 2; text: string; status: 0 | 1 | typeof INTERRUPTED_STATUS } {
  if (r instanceof Error) return { fd: 2, text: `snapvisor: ${r.message}\n`, status: 1 };
  if (!r.ok && r.interrupted) return { fd: 2, text: `snapvisor: checkpoint of '${name}' interrupted: nothing was stored, the sandbox runs on\n`, status: INTERRUPTED_STATUS };
  if (!r.ok) return { fd: 2, text: `snapvisor: checkpoint of '${name}' failed: ${r.error}\n`, status: 1 };
  return { fd: 1, text: checkpointLine(name, r as unknown as CheckpointAnswer), status: 0 };
}

/**
 * SNAPVISOR_TRACE_CHECKPOINT=1: the client's marks on stderr as the sandbox's (snapshots/store.ts
 * traceCheckpoint): `[checkpoint T ms, clock W] what`, T ms since this process started, W the
 * wall clock (ms modulo 100 s).
 */
function traceClient(what: string): void {
  process.stderr.write(`[checkpoint ${performance.now().toFixed(1)} ms, clock ${((performance.timeOrigin + performance.now()) % 1e5).toFixed(1)}] ${what}\n`);
}

/**
 * ^C (SIGINT) while a `checkpoint` waits for its answer: the first aborts the returned signal
 * (request() then asks the sandbox to stop the checkpoint, and the answer says whether it did),
 * a second ends this process at once with INTERRUPTED_STATUS (its connection closing stops the
 * checkpoint all the same: cli/control.ts).
 */
export function interruptOnSigint(): AbortSignal {
  const c = new AbortController();
  process.on('SIGINT', () => {
    if (c.signal.aborted) process.exit(INTERRUPTED_STATUS);
    c.abort();
  });
  return c.signal;
}

/** The options of a checkpoint command this module runs itself. */
export interface Parsed { root?: string; name: string; store?: string; leaveRunning: boolean; compress: boolean; timeoutMs?: number }

/**
 * Parse `args` (process.argv after the script) if they are `[--root DIR] checkpoint NAME` with
 * only `--store DIR`, `--leave-running`, `--compress`, `--no-compress` and `--timeout S` (each
 * also as `--opt=value`), in any order after the command; undefined for anything else.
 */
export function parseLightCheckpoint(args: readonly string[]): Parsed | undefined {
  let i = 0;
  let root: string | undefined;
  const value = (a: string, opt: string): string | undefined | null => {
    if (a === opt) return i + 1 < args.length ? args[++i] : null;
    if (a.startsWith(opt + '=')) return a.slice(opt.length + 1);
    return undefined;
  };
  for (; i < args.length && args[i] !== 'checkpoint'; i++) {
    const v = value(args[i], '--root');
    if (typeof v !== 'string') return undefined;
    root = v;
  }
  if (i >= args.length) return undefined;
  const out: Partial<Parsed> & { leaveRunning: boolean; compress: boolean } = { root, leaveRunning: false, compress: true };
  for (i++; i < args.length; i++) {
    const a = args[i];
    if (a === '--leave-running') { out.leaveRunning = true; continue; }
    if (a === '--compress') { out.compress = true; continue; }
    if (a === '--no-compress') { out.compress = false; continue; }
    if (!a.startsWith('-')) {
      if (out.name !== undefined) return undefined;
      out.name = a;
      continue;
    }
    const store = value(a, '--store');
    if (store === null) return undefined;
    if (store !== undefined) { out.store = store; continue; }
    const timeout = value(a, '--timeout');
    if (typeof timeout !== 'string') return undefined;
    const s = Number(timeout);
    if (!(s > 0) || !Number.isFinite(s)) return undefined;
    out.timeoutMs = Math.round(s * 1000);
  }
  if (out.name === undefined || out.name === '') return undefined;
  return out as Parsed;
}

/**
 * Run `snapvisor checkpoint` for `args` (process.argv after the script) if it has a shape
 * parseLightCheckpoint takes and stderr is no terminal; returns undefined (nothing done) otherwise.
 * As the full CLI: the summary line on stdout, or `snapvisor: …` on stderr and exit status 1;
 * the process exits once that line is written (the returned promise never settles then).
 */
export function lightCheckpoint(args: readonly string[]): Promise<void> | undefined {
  if (process.stderr.isTTY) return undefined;
  const p = parseLightCheckpoint(args);
  if (!p) return undefined;
  const trace = process.env.SNAPVISOR_TRACE_CHECKPOINT ? traceClient : undefined;
  trace?.('client ready');
  // Done once its line is out: exit then, without the rest of node's teardown of a quiet loop
  // (the answer → exit took 28–48 ms at load 7 here, 15–36 ms with process.exit).
  const end = (stream: NodeJS.WriteStream, line: string, status: number): Promise<void> => new Promise(() => stream.write(line, () => process.exit(status)));
  return (async () => {
    let r: ControlResponse | Error;
    const interrupt = interruptOnSigint();
    try {
      const given = p.store ?? defaultStore();
      // A store path that is a file, or through one: the line the other commands give (cli/host-errors.ts).
      const problem = storeDirProblem(given);
      if (problem) throw new Error(problem);
      const store = path.resolve(given);
      r = await request(await whenStarted(p.root, p.name), { op: 'checkpoint', store, leaveRunning: p.leaveRunning, compress: p.compress, progress: false }, p.timeoutMs, undefined, interrupt);
      trace?.('client answered');
    } catch (e) {
      // ^C before the request reached the sandbox: nothing was asked, so nothing was stored.
      r = interrupt.aborted ? { ok: false, interrupted: true, error: 'interrupted' } : e as Error;
    }
    const out = checkpointOutput(p.name, r);
    await end(out.fd === 1 ? process.stdout : process.stderr, out.text, out.status);
  })();
}
