/**
 * Helpers for the end-to-end tests: run the real `snapvisor` CLI (dist/bundle/main.js, built
 * by `npx tsc -p tsconfig.json`; `npm test` builds first) as a child process, run programs
 * natively for comparison, and compile small static C guests.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, expect } from 'vitest';
import { STUB_NAME } from '../platforms/ptrace/stub.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The CLI under test; SNAPVISOR_CLI=/path/to/main.js runs the tests against another build. */
export const CLI = process.env.SNAPVISOR_CLI ? path.resolve(process.env.SNAPVISOR_CLI) : path.join(REPO_ROOT, 'dist', 'bundle', 'main.js');

export interface RunOpts {
  /** Bytes written to the child's stdin (then closed). Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** The child's whole environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the child (SIGTERM, then SIGKILL 2 s later) after this long; default 30 s. */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code, or 128+N for death by signal N (as a shell reports it). */
  status: number;
  stdout: Buffer;
  stderr: string;
  /** True if the child had to be killed because it ran past timeoutMs. */
  timedOut: boolean;
}

function signalStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? os.constants.signals[signal] : 0);
}

/** Spawn argv[0] with argv[1…] and collect everything. Rejects only if the program cannot be spawned at all. */
function collect(argv: string[], opts: RunOpts = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    }, opts.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined); // the program may exit without reading it all
      child.stdin!.end(opts.input);
    }
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: signalStatus(code, signal), stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}

/** Run `node dist/cli/main.js ARGS…`. */
export function snapvisor(args: string[], opts: RunOpts = {}): Promise<RunResult> {
  return collect([process.execPath, CLI, ...args], opts);
}

/** Run a program natively (no sandbox), for comparison. */
export function native(argv: string[], opts: RunOpts = {}): Promise<RunResult> {
  return collect(argv, opts);
}

/**
 * Run `argv` natively and under `snapvisor run [runArgs] --`: both exit 0, the sandbox in time,
 * silent on stderr and with the same stdout as native. Returns that stdout.
 */
export async function sameOutputAsNative(argv: string[], timeoutMs = 60_000, runArgs: string[] = []): Promise<string> {
  const nat = await native(argv);
  const sand = await snapvisor(['run', ...runArgs, '--', ...argv], { timeoutMs });
  expect(sand.timedOut).toBe(false);
  expect(sand.stderr).toBe('');
  expect(nat.status).toBe(0);
  expect(sand.status).toBe(0);
  const out = sand.stdout.toString();
  expect(out).toBe(nat.stdout.toString());
  return out;
}

/** A running `snapvisor` whose stdout is followed line by line. */
export interface Streaming {
  child: ChildProcess;
  /** stdout lines seen so far. */
  lines: string[];
  /** stderr so far. */
  stderr(): string;
  /** Resolves with the status once the process has exited and its output is all read. */
  done: Promise<number>;
  /** Resolves when a stdout line satisfies `pred` (checked against lines already seen too). */
  waitFor(pred: (line: string, all: string[]) => boolean, timeoutMs?: number): Promise<string>;
}

/** Streaming runs not yet exited (a `pool serve` or `run` a failed assertion left behind). */
const streamingChildren = new Set<ChildProcess>();
// After the file's tests, end what a failing test left running: SIGTERM (a pool removes its socket
// and temp files), SIGKILL 5 s later.
afterAll(async () => {
  const left = [...streamingChildren];
  if (!left.length) return;
  for (const c of left) c.kill('SIGTERM');
  await Promise.all(left.map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    const t = setTimeout(() => { c.kill('SIGKILL'); resolve(); }, 5000);
    c.once('exit', () => { clearTimeout(t); resolve(); });
  })));
}, 15_000);

/** Start `snapvisor ARGS…` and follow its stdout as it comes. */
export function snapvisorStreaming(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; stdin?: 'ignore' | 'pipe' } = {}): Streaming {
  // stdin 'pipe': a pipe the test holds open (child.stdin) until it ends it or the child exits.
  const child = spawn(process.execPath, [CLI, ...args], { stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  streamingChildren.add(child);
  child.on('exit', () => streamingChildren.delete(child));
  child.stdin?.on('error', () => undefined);
  const lines: string[] = [];
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const waiters: Array<{ pred: (l: string, all: string[]) => boolean; resolve: (l: string) => void }> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of [...waiters]) {
      if (w.pred(l, lines)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  });
  const timer = setTimeout(() => {
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 2000).unref();
  }, opts.timeoutMs ?? 30_000);
  const stdoutEnded = new Promise<void>((r) => child.stdout!.on('close', () => r()));
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(signalStatus(code, signal))));
  const done = Promise.all([exited, stdoutEnded]).then(([s]) => {
    clearTimeout(timer);
    return s;
  });
  return {
    child,
    lines,
    stderr: () => err,
    done,
    waitFor(pred, timeoutMs = 15_000) {
      const hit = lines.find((l) => pred(l, lines));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise<string>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no matching line within ${timeoutMs} ms; stdout so far: ${JSON.stringify(lines.slice(-5))}; stderr: ${err.slice(-500)}`)), timeoutMs);
        const w = { pred, resolve: (l: string) => { clearTimeout(t); resolve(l); } };
        waiters.push(w);
        void done.then(() => {
          if (!waiters.includes(w)) return;
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(t);
          reject(new Error(`process exited before a matching line; stdout: ${JSON.stringify(lines.slice(-5))}; stderr: ${err.slice(-500)}`));
        });
      });
    },
  };
}

let tmpRoot: string | undefined;
/** compileStatic's cache: hash of (name, source) → executable path. */
const compiled = new Map<string, string>();

// Each test file gets its own copy of this module (vitest isolates files), hence its own
// temp directory, removed after the file's tests.
afterAll(() => {
  if (tmpRoot) fs.rmSync(tmpRoot, { recursive: true, force: true });
  tmpRoot = undefined;
  compiled.clear();
});

/** A temp directory for this test file's run (removed after its tests). */
export function testTmpDir(): string {
  if (!tmpRoot) tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-test-'));
  return tmpRoot;
}

/** A fresh, empty temp directory inside the run's temp directory. */
export function freshDir(prefix: string): string {
  return fs.mkdtempSync(path.join(testTmpDir(), prefix + '-'));
}


/**
 * Compile C source into a static executable with `gcc -static -O1` (plus `extraFlags`,
 * e.g. ['-pthread']) in the run's temp directory; returns its absolute path. Compiles
 * each (name, source, flags) once per run. Throws a clear error if gcc is missing or the
 * compile fails.
 */
export function compileStatic(name: string, cSource: string, extraFlags: string[] = []): string {
  const key = createHash('sha256').update(name).update('\0').update(cSource).update('\0').update(extraFlags.join('\0')).digest('hex');
  const cached = compiled.get(key);
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(testTmpDir(), `cc-${name}-`));
  const src = path.join(dir, `${name}.c`);
  const out = path.join(dir, name);
  fs.writeFileSync(src, cSource);
  const r = spawnSync('gcc', ['-static', '-O1', ...extraFlags, '-o', out, src], { encoding: 'utf8' });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('compileStatic: gcc is not installed (or not in PATH); these tests need gcc and a static libc (e.g. apt-get install gcc libc6-dev)');
    }
    throw new Error(`compileStatic: cannot run gcc: ${r.error.message}`);
  }
  if (r.status !== 0) throw new Error(`compileStatic: gcc failed for ${name} (status ${r.status}):\n${r.stderr}`);
  compiled.set(key, out);
  return out;
}

export function sha256(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Assert-friendly view of a one-line CLI error: the lines of stderr, without the trailing newline. */
export function stderrLines(stderr: string): string[] {
  return stderr.replace(/\n$/, '').split('\n');
}

/**
 * Stub processes whose snapvisor is gone (adopted by pid 1), alive or stopped: a sandbox must
 * never leave one. Stubs are known by their name (STUB_NAME, which each sets itself: their
 * command line is empty). Dead ones are left out: a zombie runs nothing and holds no memory, and
 * this machine's pid 1 does not reap what it adopts. Returns their `ps` lines (empty when none).
 */
export function orphanStubs(): string[] {
  const out = spawnSync('ps', ['-eo', 'ppid=,pid=,stat=,comm='], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').filter((l) => {
    const [ppid, , stat, comm] = l.trim().split(/\s+/);
    return comm === STUB_NAME && ppid === '1' && !stat.startsWith('Z');
  });
}

/** A sandbox checkpointed by checkpointAtReady: where its state and store are, and what it printed before. */
export interface Checkpointed { id: string; root: string; store: string; before: string[] }

/**
 * Run `argv` as a `run --name` sandbox and checkpoint it (without --leave-running: it is killed,
 * status 137) once it prints the line `ready`. Checks that the checkpoint succeeded quietly.
 * `prefix` names the temp directories and the sandbox.
 */
export async function checkpointAtReady(prefix: string, argv: string[], runTimeoutMs = 90_000, runOpts: string[] = []): Promise<Checkpointed> {
  const base = freshDir(prefix);
  const root = path.join(base, 'state'), store = path.join(base, 'store');
  const name = `${prefix}-${process.pid}`;
  const run = snapvisorStreaming(['--root', root, 'run', '--name', name, ...runOpts, '--', ...argv], { timeoutMs: runTimeoutMs });
  try {
    // As long as the run may take: a python3 start-up on a loaded CI machine took over 20 s once,
    // and a start with the checkpoint after it over 40 s at load 15.
    await run.waitFor((l) => l === 'ready', runTimeoutMs);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    return { id: cp.stdout.toString().trim().split(/\s+/).pop()!, root, store, before: [...run.lines] };
  } catch (e) {
    run.child.kill('SIGKILL'); // a failed step leaves no sandbox running on to its timeout
    throw e;
  }
}

/**
 * Checkpoint the running sandbox `name` (under state dir `root`) into `store`, with `extra` flags
 * (e.g. --compress), once `run` printed `after` numbered lines; the sandbox ends (137). Returns the
 * checkpoint id, the last number the sandbox printed and the checkpoint command's output.
 */
export async function checkpointAfter(root: string, store: string, name: string, run: Streaming, after: number, extra: string[] = []): Promise<{ id: string; lastLine: number; stdout: string }> {
  const first = Number(await run.waitFor((l) => /^\d+$/.test(l), 30_000));
  await run.waitFor((l) => l === String(first + after - 1), 30_000);
  const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, ...extra], { timeoutMs: 30_000 });
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  expect(await run.done).toBe(137);
  const last = Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
  return { id: cp.stdout.toString().trim().split(/\s+/).pop()!, lastLine: last, stdout: cp.stdout.toString() };
}

/**
 * Restore checkpoint `id` of `store` to its end: it goes on from the line after `lastLine`, ends
 * with `lastOutput`, in time, with nothing on stderr, status 0 and no stub left.
 */
export async function restoresToTheEnd(store: string, id: string, lastLine: number, lastOutput: string): Promise<void> {
  const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
  expect(r.timedOut).toBe(false);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const lines = r.stdout.toString().split('\n').filter(Boolean);
  expect(lines[0]).toBe(String(lastLine + 1));
  expect(lines[lines.length - 1]).toBe(lastOutput);
  expect(orphanStubs()).toEqual([]);
}

/** Restore a checkpointAtReady sandbox to its end: it must finish in time with nothing on stderr. */
export async function restoreChecked(c: Checkpointed, timeoutMs = 30_000): Promise<RunResult> {
  const r = await snapvisor(['--root', c.root, 'restore', c.id, '--store', c.store], { timeoutMs });
  expect(r.timedOut).toBe(false);
  expect(r.stderr).toBe('');
  return r;
}

/**
 * What a checkpointed guest waits for after its `ready` line instead of a fixed sleep (which a
 * loaded machine outlasts, so the checkpoint found the sandbox gone): a file, `native` made
 * already (a native run goes straight on), `sandbox` made by `open()` between the checkpoint and
 * the restore (expectCheckpointRestoreMatches' afterCheckpoint). A Python guest is given the
 * path as its last argument and waits with PY_WAIT_FOR_GATE (it imports os, sys and time).
 */
export function checkpointGate(prefix: string): { native: string; sandbox: string; open(): void } {
  const native = path.join(freshDir(`${prefix}-gate`), 'go'), sandbox = path.join(freshDir(`${prefix}-gate`), 'go');
  fs.writeFileSync(native, '');
  return { native, sandbox, open: () => fs.writeFileSync(sandbox, '') };
}
/** A Python guest's wait for its checkpointGate file, its last argument (every 20 ms). */
export const PY_WAIT_FOR_GATE = 'while not os.path.exists(sys.argv[-1]): time.sleep(0.02)  # test/helpers.ts checkpointGate';
/** A shell guest's (`sh -c SCRIPT sh GATE`) wait for its checkpointGate file, its $1 (every 20 ms). */
export const SH_WAIT_FOR_GATE = 'while [ ! -e "$1" ]; do sleep 0.02; done';

/**
 * The check of most checkpoint tests: `argv` checkpointed at its `ready` line and restored prints,
 * before and after, what `expected` (usually the native run's lines, `ready` among them) has
 * before and after `ready`; the restored sandbox exits 0 and leaves no stub. `afterCheckpoint`
 * runs between the checkpoint and the restore (e.g. makes the file a guest waits for, so that it
 * waits on the test rather than on a fixed sleep that a loaded machine outlasts).
 */
export async function expectCheckpointRestoreMatches(prefix: string, argv: string[], expected: string[], afterCheckpoint?: () => void): Promise<void> {
  const at = expected.indexOf('ready');
  expect(at, 'the expected lines need a ready line').toBeGreaterThanOrEqual(0);
  const c = await checkpointAtReady(prefix, argv);
  expect(c.before).toEqual(expected.slice(0, at + 1));
  afterCheckpoint?.();
  const r = await restoreChecked(c);
  expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(expected.slice(at + 1));
  expect(r.status).toBe(0);
  expect(orphanStubs()).toEqual([]);
}

/**
 * Run `snapvisor run -- ...argv` and expect what a native run gave: `expected` stdout (a string,
 * or lines compared without blank ones) and exit status 0, nothing on stderr, finished within
 * `timeoutMs`, no stub left. Returns the sandbox's result.
 */
export async function expectSandboxOutput(argv: string[], expected: string | string[], timeoutMs = 30_000): Promise<RunResult> {
  const r = await snapvisor(['run', '--', ...argv], { timeoutMs });
  expect(r.timedOut).toBe(false);
  expect(r.stderr).toBe('');
  if (typeof expected === 'string') expect(r.stdout.toString()).toBe(expected);
  else expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(expected);
  expect(r.status).toBe(0);
  expect(orphanStubs()).toEqual([]);
  return r;
}

/** A free TCP port on the host's loopback. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * Restore checkpoint `c` with `env` and send it SIGTERM as soon as its stderr matches `when` (a
 * trace line of the start-up or of the restore): the guest's TERM handler (it prints `got TERM`
 * and exits 3) must run, as the signal is held for it. Returns the stderr for further checks.
 */
export async function termDuringRestore(c: Checkpointed, env: NodeJS.ProcessEnv, when: RegExp): Promise<string> {
  const child = spawn(process.execPath, [CLI, '--root', c.root, 'restore', c.id, '--store', c.store], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '', err = '', sent = false;
  child.stdout!.on('data', (d: Buffer) => { out += d; });
  child.stderr!.on('data', (d: Buffer) => {
    err += d;
    if (!sent && when.test(err)) { sent = true; child.kill('SIGTERM'); }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const status = await new Promise<number | string>((r) => child.on('close', (code, sig) => r(code ?? sig!)));
  clearTimeout(timer);
  expect(sent).toBe(true);
  expect(out).toBe('got TERM\n');
  expect(status).toBe(3);
  expect(orphanStubs()).toEqual([]);
  return err;
}
