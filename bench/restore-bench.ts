/**
 * Section 3 of `npm run bench` (issue 7 point 8): the warmed-up python3 workload, cold and
 * restored, under snapvisor and under gVisor (runsc, ptrace platform), through each one's
 * own command line as separate processes.
 *
 * The workload imports a dozen stdlib modules, allocates ~200 MB (200,000 objects of
 * 1,000 bytes: mostly zeros inside objects, like a real heap), prints `ready`, then prints
 * 1, 2, 3, … every 10 ms. Measured: spawn → `ready` (cold start), the checkpoint command
 * (spawn → exit; the sandbox ends), the bytes the checkpoint occupies on disk, and
 * restore (spawn → the workload's next line).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { processTree, pssOf } from './proc.js';

/** The workload; argv[1] is the number of 1,000-byte objects (200,000 ≈ 200 MB). */
export const WORKLOAD = [
  'import json, decimal, asyncio, email, http.client, xml.dom.minidom, sqlite3, unittest, argparse, logging, sys, time',
  'data = [bytes(1000) for _ in range(int(sys.argv[1]))]',
  "print('ready', flush=True)",
  'i = 0',
  'while True:',
  '    i += 1',
  '    print(i, flush=True)',
  '    time.sleep(0.01)',
].join('\n');

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * The command a user types for `snapvisor ARGS` with the CLI `cli` (dist/bundle/main.js): the
 * bin, the native front beside it (dist/bundle/snapvisor, cli/front/front.c), as [cmd, args];
 * with `viaNode`, or no front there, `node main.js ARGS` (what the bin execs for other commands).
 */
export function binCommand(node: string, cli: string, args: string[], viaNode = false): [string, string[]] {
  const front = path.join(path.dirname(cli), 'snapvisor');
  return !viaNode && fs.existsSync(front) ? [front, args] : [node, [cli, ...args]];
}

/** A spawned process whose stdout lines are followed. */
interface Followed {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  /** Time (ms, `now()` clock) at which the first line matching `pred` arrived. */
  waitLine(pred: (l: string) => boolean, timeoutMs: number): Promise<{ line: string; at: number }>;
  exited: Promise<number>;
}

function follow(cmd: string, args: string[], env: NodeJS.ProcessEnv): Followed {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const lines: string[] = [];
  const stamps: number[] = [];
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { if (err.length < 8192) err += d.toString(); });
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => { lines.push(l); stamps.push(now()); for (const w of [...waiters]) w(); });
  const exited = new Promise<number>((resolve) => child.on('close', (code, sig) => { resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0)); for (const w of [...waiters]) w(); }));
  let dead = false;
  void exited.then(() => { dead = true; });
  return {
    child, lines, stderr: () => err, exited,
    waitLine(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const i = lines.findIndex(pred);
          if (i >= 0) { resolve({ line: lines[i], at: stamps[i] }); return true; }
          if (dead) { reject(new Error(`${path.basename(cmd)} ${args[0] ?? ''} ended before the expected line; stderr: ${err.trim().split('\n').pop() ?? ''}`)); return true; }
          return false;
        };
        if (check()) return;
        const timer = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error(`no expected line within ${timeoutMs} ms; stderr: ${err.trim().split('\n').pop() ?? ''}`)); }, timeoutMs);
        const w = (): void => { if (check()) { clearTimeout(timer); waiters.splice(waiters.indexOf(w), 1); } };
        waiters.push(w);
      });
    },
  };
}

/** Run a command to its end; resolves with wall ms, status and output. */
function runTimed(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ ms: number; status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const t0 = now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '', stderr = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', () => { (child as unknown as { ms: number }).ms = now() - t0; });
    child.on('close', (code, sig) => { clearTimeout(timer); resolve({ ms: (child as unknown as { ms: number }).ms ?? now() - t0, status: code ?? 128 + (sig ? os.constants.signals[sig] : 0), stdout, stderr }); });
    child.on('error', (e) => { clearTimeout(timer); resolve({ ms: 0, status: -1, stdout, stderr: e.message }); });
  });
}

/** Bytes a directory tree occupies on disk (allocated blocks: holes of sparse files cost nothing), but for its subdirectories named in `skip`. */
export function diskBytes(dir: string, skip: string[] = []): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { if (!skip.includes(e.name)) total += diskBytes(p); }
    else if (e.isFile()) total += fs.statSync(p).blocks * 512;
  }
  return total;
}

const lastLine = (s: string): string => s.trim().split('\n').pop() ?? '';

/**
 * Whether a restore goes on from `last`, the original's last number: its first line is the next
 * number, or empty and followed by it (`number`: its first non-empty line). print() writes the
 * number and its newline in two write(2)s; a checkpoint taken between them leaves the newline to
 * the restored guest, whose first output then ends the original's last line (seen once in section
 * 3's flat round). The restore is timed to its first line either way: its next output.
 */
const continues = (first: string, number: string, last: number): boolean => (first === '' || first === number) && Number(number) === last + 1;

/** Native cold start: spawn → `ready`. */
export async function nativeColdStart(objects: number): Promise<number> {
  const t0 = now();
  const f = follow('/usr/bin/python3', ['-c', WORKLOAD, String(objects)], process.env);
  try {
    return (await f.waitLine((l) => l === 'ready', 60_000)).at - t0;
  } finally {
    f.child.kill('SIGKILL');
    await f.exited;
  }
}

export interface SnapvisorRound {
  coldStartMs: number;
  checkpointMs: number;
  /** What the checkpoint command printed: guest paused, written in (ms), pages. */
  pausedMs: number;
  writtenMs: number;
  pages: number;
  /** Bytes the store occupies on disk after the restores (with --compress: the restore cache included). */
  storedWithCacheBytes: number;
  /** Bytes the store occupies on disk after the checkpoint (page file, restore record, LevelDB), the restore cache not counted. */
  storedBytes: number;
  /** Bytes of the restore cache the checkpoint left on this host (with --compress; docs/snapshot-format.md "Restore cache"). */
  warmCacheBytes: number;
  /** Restores, spawn → next line, in order (the first is the first read of the page file after it was written, unless `warmUp` read it). */
  restoreMs: number[];
  /** Restores with NODE_EXTRA_CA_CERTS set as the caller had it (if it was). */
  restoreWithCaMs: number[];
  /**
   * With `warmUp`: the first restore, spawn → next line, before `restoreMs`; it runs on to its
   * third line, so that the first restore after a build writes the restore bundle's run-time code
   * cache (cli/launcher.ts: at its first output; the timed restores are killed at their first line,
   * before such a write ends, as a user's next restores are not).
   */
  warmUpMs?: number;
  /**
   * With `warmCheckpoint`: a checkpoint of the same kind (spawn to exit) of another run of the
   * workload, taken before this round's: the first after a build writes the full bundle's run-time
   * code cache at its run's exit (cli/launcher.ts), which later runs load, as a user's do.
   */
  checkpointWarmUpMs?: number;
  continuity: string;
  /** The original's last number (a restore goes on from the next). */
  last: number;
  /** The store and checkpoint the restores came from (for the clone rounds). */
  store: string;
  id: string;
}

/**
 * One round under snapvisor, each command by the bin as a user runs it (binCommand): run --name
 * (cold start to `ready`), checkpoint after three more lines (the sandbox ends), then `restores` restores, each timed spawn → next line and checked
 * to go on from the last number the original printed.
 */
export async function snapvisorRound(node: string, cli: string, env: NodeJS.ProcessEnv, caEnv: NodeJS.ProcessEnv | undefined, dir: string, objects: number, restores: number, compress = false, warmUp = false, warmCheckpoint = false): Promise<SnapvisorRound> {
  let checkpointWarmUpMs: number | undefined;
  if (warmCheckpoint) {
    const w = await runAndCheckpoint(node, cli, env, dir, objects, compress);
    checkpointWarmUpMs = w.cp.ms;
    // Its files gone and the disk idle again: a flat checkpoint's fdatasync of 242 MiB took 950 ms
    // instead of 330 behind the warm-up's still being written back.
    fs.rmSync(w.store, { recursive: true, force: true });
    spawnSync('sync');
  }
  const { coldStartMs, cp, run, store } = await runAndCheckpoint(node, cli, env, dir, objects, compress);
  // Before any restore: the checkpoint's own files; the restore cache it left (with --compress) apart, as restores add to it.
  const storedBytes = diskBytes(store, ['cache']);
  const warmCacheBytes = fs.existsSync(path.join(store, 'cache')) ? diskBytes(path.join(store, 'cache')) : 0;
  const id = cp.stdout.trim().split(/\s+/).pop()!;
  const last = Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
  const m = (re: RegExp) => Number(re.exec(cp.stdout)?.[1] ?? NaN);
  const one = async (e: NodeJS.ProcessEnv, runOn = false): Promise<number> => {
    const s0 = now();
    const r = follow(...binCommand(node, cli, ['restore', id, '--store', store]), e);
    try {
      const first = await r.waitLine(() => true, 60_000);
      const number = first.line === '' ? (await r.waitLine((l) => l !== '', 60_000)).line : first.line;
      if (!continues(first.line, number, last)) throw new Error(`snapvisor restore went on from ${first.line}, expected ${last + 1}`);
      if (runOn) await r.waitLine((l) => l === String(Number(number) + 2), 60_000);
      return first.at - s0;
    } finally {
      r.child.kill('SIGKILL');
      await r.exited;
    }
  };
  const warmUpMs = warmUp ? await one(env, true) : undefined;
  const restoreMs: number[] = [];
  for (let i = 0; i < restores; i++) restoreMs.push(await one(env));
  const restoreWithCaMs: number[] = [];
  if (caEnv) for (let i = 0; i < restores; i++) restoreWithCaMs.push(await one(caEnv));
  return {
    coldStartMs, checkpointMs: cp.ms, pausedMs: m(/guest paused (\d+(?:\.\d+)?) ms/), writtenMs: m(/written in (\d+(?:\.\d+)?) ms/),
    pages: m(/(\d+) pages/), storedBytes, warmCacheBytes, storedWithCacheBytes: diskBytes(store), restoreMs, restoreWithCaMs, warmUpMs, checkpointWarmUpMs, continuity: `${last} → ${last + 1}`,
    last, store, id,
  };
}

/**
 * `run --name` of the workload in a new state directory (cold start: spawn → `ready`), then,
 * after its line `3`, `checkpoint NAME` (ending it; --compress or --no-compress) into a new store,
 * timed spawn → exit. Throws if the checkpoint fails; the run has exited when it returns.
 */
async function runAndCheckpoint(node: string, cli: string, env: NodeJS.ProcessEnv, dir: string, objects: number, compress: boolean): Promise<{ coldStartMs: number; cp: Awaited<ReturnType<typeof runTimed>>; run: ReturnType<typeof follow>; store: string }> {
  const root = fs.mkdtempSync(path.join(dir, 'root-'));
  const store = fs.mkdtempSync(path.join(dir, 'store-'));
  const name = `bench-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  const t0 = now();
  const run = follow(...binCommand(node, cli, ['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', WORKLOAD, String(objects)]), env);
  let coldStartMs: number;
  let cp;
  try {
    coldStartMs = (await run.waitLine((l) => l === 'ready', 120_000)).at - t0;
    await run.waitLine((l) => l === '3', 30_000);
    cp = await runTimed(...binCommand(node, cli, ['--root', root, 'checkpoint', name, '--store', store, compress ? '--compress' : '--no-compress']), env);
  } finally {
    if (!cp || cp.status !== 0) run.child.kill('SIGKILL');
  }
  await run.exited;
  if (cp.status !== 0) throw new Error(`snapvisor checkpoint exited ${cp.status}: ${lastLine(cp.stderr)}`);
  return { coldStartMs, cp, run, store };
}

/** Host memory of N clones running at once: the summed PSS of every process they use (each restore's node kernel and its stubs). */
export interface CloneMemory { clones: number; pssBytes: number; restoreAllMs: number }

/**
 * Clones: for each count, that many `restore`s of one checkpoint started at once; once every one
 * printed a line (and one second more), the PSS of all their processes is summed; then all are
 * killed. Pages none of them wrote are shared through the host page cache (PSS splits them).
 */
export async function cloneMemoryRound(node: string, cli: string, env: NodeJS.ProcessEnv, store: string, id: string, counts: number[]): Promise<CloneMemory[]> {
  const out: CloneMemory[] = [];
  for (const n of counts) {
    const t0 = now();
    const clones = Array.from({ length: n }, () => follow(node, [cli, 'restore', id, '--store', store], env));
    try {
      await Promise.all(clones.map((c) => c.waitLine(() => true, 120_000)));
      const restoreAllMs = now() - t0;
      await new Promise((r) => setTimeout(r, 1000));
      out.push({ clones: n, pssBytes: pssOf(clones.flatMap((c) => processTree(c.child.pid!))).pss, restoreAllMs });
    } finally {
      for (const c of clones) c.child.kill('SIGKILL');
      await Promise.all(clones.map((c) => c.exited));
    }
  }
  return out;
}

/** A checkpoint command as measured: spawn to exit, its own report, and the bytes it added to the store. */
export interface CheckpointFigures { ms: number; pausedMs: number; writtenMs: number; pages: number; newPages: number; addedBytes: number }

const lastWord = (s: string): string => s.trim().split(/\s+/).pop() ?? '';

/**
 * Bytes checkpoint `id` adds to `store` on disk: its page file or pack and its restore record,
 * plus the restore record's size again for the catalogue's copy of its manifest, graph and
 * pagemap. Not the store's growth: LevelDB compacts its log into tables between two
 * checkpoints, and the store shrank by 0.1 MiB over a second checkpoint that added 0.1 MiB.
 */
function checkpointBytes(store: string, id: string): number {
  let n = 0;
  for (const f of [path.join(store, 'pages', id), path.join(store, 'pages', `${id}.pack`), path.join(store, 'meta', id)]) {
    try { n += fs.statSync(f).blocks * 512; } catch { /* not this kind */ }
  }
  try { n += fs.statSync(path.join(store, 'meta', id)).size; } catch { /* none */ }
  return n;
}

/** Both checkpoints and the restore by the bin (the native front), as a user runs them. */
export interface IncrementalRound { first: CheckpointFigures; second: CheckpointFigures; restoreMs: number; continuity: string }

/**
 * Incremental checkpoints: run --name; after "3": checkpoint --leave-running (the first, full);
 * one second later: checkpoint (the second, ending the sandbox: only what changed), each by the
 * bin as a user runs it (the native front: no node start-up); then one
 * restore of the second, timed spawn → next line and checked to go on from the last number.
 */
export async function incrementalRound(node: string, cli: string, env: NodeJS.ProcessEnv, dir: string, objects: number): Promise<IncrementalRound> {
  const root = fs.mkdtempSync(path.join(dir, 'root-'));
  const store = fs.mkdtempSync(path.join(dir, 'store-'));
  const name = `bench-inc-${process.pid}`;
  const run = follow(...binCommand(node, cli, ['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', WORKLOAD, String(objects)]), env);
  const figures = (cp: { ms: number; stdout: string }, added: number): CheckpointFigures => {
    const m = (re: RegExp) => Number(re.exec(cp.stdout)?.[1] ?? NaN);
    return { ms: cp.ms, pausedMs: m(/guest paused (\d+(?:\.\d+)?) ms/), writtenMs: m(/written in (\d+(?:\.\d+)?) ms/), pages: m(/(\d+) pages/), newPages: m(/\((\d+) new/), addedBytes: added };
  };
  let first: CheckpointFigures, second: CheckpointFigures, cp2;
  try {
    await run.waitLine((l) => l === '3', 120_000);
    const cp1 = await runTimed(...binCommand(node, cli, ['--root', root, 'checkpoint', name, '--store', store, '--leave-running']), env);
    if (cp1.status !== 0) throw new Error(`snapvisor checkpoint --leave-running exited ${cp1.status}: ${lastLine(cp1.stderr)}`);
    first = figures(cp1, checkpointBytes(store, lastWord(cp1.stdout)));
    await new Promise((r) => setTimeout(r, 1000));
    cp2 = await runTimed(...binCommand(node, cli, ['--root', root, 'checkpoint', name, '--store', store]), env);
    if (cp2.status !== 0) throw new Error(`snapvisor second checkpoint exited ${cp2.status}: ${lastLine(cp2.stderr)}`);
    second = figures(cp2, checkpointBytes(store, lastWord(cp2.stdout)));
  } finally {
    if (!cp2 || cp2.status !== 0) run.child.kill('SIGKILL');
  }
  await run.exited;
  const id = cp2.stdout.trim().split(/\s+/).pop()!;
  const last = Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
  const s0 = now();
  const r = follow(...binCommand(node, cli, ['restore', id, '--store', store]), env);
  let restoreMs: number;
  try {
    const next = await r.waitLine(() => true, 60_000);
    const number = next.line === '' ? (await r.waitLine((l) => l !== '', 60_000)).line : next.line;
    if (!continues(next.line, number, last)) throw new Error(`restore of the incremental checkpoint went on from ${next.line}, expected ${last + 1}`);
    restoreMs = next.at - s0;
  } finally {
    r.child.kill('SIGKILL');
    await r.exited;
  }
  return { first, second, restoreMs, continuity: `${last} → ${last + 1}` };
}

export interface RunscRound {
  coldStartMs: number;
  checkpointMs: number;
  imageBytes: number;
  restoreMs: number;
  continuity: string;
}

/** An OCI bundle running the workload read-only on the host's root. */
function writeBundle(dir: string, objects: number): string {
  const bundle = fs.mkdtempSync(path.join(dir, 'oci-'));
  const config = {
    ociVersion: '1.0.0',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['/usr/bin/python3', '-c', WORKLOAD, String(objects)], env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'HOME=/root'], cwd: '/' },
    root: { path: '/', readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs' },
    ],
    linux: { namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }] },
  };
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(config, null, 1));
  return bundle;
}

/**
 * The same round under `runsc --platform=ptrace`: `runsc run` of an OCI bundle (cold start to
 * `ready`), `runsc checkpoint --image-path` after three more lines (the container ends), then
 * `runsc restore` timed spawn → next line.
 */
export async function runscRound(runsc: string, globalArgs: string[], dir: string, objects: number): Promise<RunscRound> {
  const state = fs.mkdtempSync(path.join(dir, 'runsc-state-'));
  const image = fs.mkdtempSync(path.join(dir, 'runsc-image-'));
  const bundle = writeBundle(dir, objects);
  const g = [...globalArgs, '--root', state];
  const tag = `${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  const id = `svbench-${tag}`, id2 = `svbench-r-${tag}`;
  const cleanup = async (cid: string) => { await runTimed(runsc, [...g, 'delete', '-force', cid], process.env, 30_000); };
  try {
    const t0 = now();
    const run = follow(runsc, [...g, 'run', '--bundle', bundle, id], process.env);
    let cp;
    let coldStartMs: number;
    try {
      coldStartMs = (await run.waitLine((l) => l === 'ready', 120_000)).at - t0;
      await run.waitLine((l) => l === '3', 30_000);
      cp = await runTimed(runsc, [...g, 'checkpoint', '--image-path', image, id], process.env);
    } finally {
      if (!cp || cp.status !== 0) run.child.kill('SIGKILL');
    }
    await Promise.race([run.exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (cp.status !== 0) throw new Error(`runsc checkpoint exited ${cp.status}: ${lastLine(cp.stderr)}`);
    const last = Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
    await cleanup(id);
    const s0 = now();
    const r = follow(runsc, [...g, 'restore', '--bundle', bundle, '--image-path', image, id2], process.env);
    let restoreMs: number;
    let first: string;
    try {
      const got = await r.waitLine(() => true, 60_000);
      restoreMs = got.at - s0;
      first = got.line;
    } finally {
      r.child.kill('SIGKILL');
      await cleanup(id2);
      await Promise.race([r.exited, new Promise((res) => setTimeout(res, 10_000))]);
    }
    return { coldStartMs, checkpointMs: cp.ms, imageBytes: diskBytes(image), restoreMs, continuity: `${last} → ${first}` };
  } finally {
    await cleanup(id);
    await cleanup(id2);
  }
}

/** Restores served by a warm pool of the checkpoint (poolRestoreRound). */
export interface PoolRestoreRound {
  /** `restore ID --store DIR` by the bin (the native front) with a clone ready: spawn → the guest's next line, in order. */
  restoreMs: number[];
  /** The same by `node main.js restore …` (the launcher's take), alternated with those. */
  restoreNodeMs: number[];
  /** The same restore while the pool's only clone is taken (it restores in its own process, beside the pool's refill); NaN if the refill always won. */
  noneReadyRestoreMs: number;
  /** `pool take` while the pool's only clone is taken: it waits for the refill (a new hosting process). */
  noneReadyTakeMs: number;
  continuity: string;
}

/**
 * `snapvisor restore ID --store DIR` while `pool serve` of that checkpoint (1 clone, probe on)
 * serves: `restores` restores, each once the pool is full again, timed spawn → the guest's next
 * line, checked to go on from `last + 1` and to have been a take of the pool (its `served`
 * count). Then, with the pool's one clone held by a running take: a restore (no clone ready: it
 * restores in its own process while the pool refills) and, once the pool is full and its clone
 * held again, a `pool take` (which waits for the refill): what each costs a caller then
 * (docs/pools.md, "Restore through a pool").
 */
export async function poolRestoreRound(node: string, cli: string, env: NodeJS.ProcessEnv, dir: string, store: string, id: string, last: number, restores: number): Promise<PoolRestoreRound> {
  const { poolStatus } = await import('../cli/pool-client.js');
  const sock = path.join(fs.mkdtempSync(path.join(dir, 'rpool-')), 'p.sock');
  const pool = follow(node, [cli, 'pool', 'serve', '--checkpoint', id, '--store', store, '--size', '1', '--listen', sock], env);
  const full = async () => {
    for (let i = 0; i < 1200; i++) {
      const st = await poolStatus(sock).catch(() => undefined);
      if (st && st.ready === 1 && st.starting === 0) return st;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('the pool did not fill again within 60 s');
  };
  /** Spawn → first line of `args`, checked to go on from `last`; killed then. */
  const timed = async (args: string[], viaNode = false): Promise<number> => {
    const s0 = now();
    const r = follow(...binCommand(node, cli, args, viaNode), env);
    try {
      const first = await r.waitLine(() => true, 60_000);
      const number = first.line === '' ? (await r.waitLine((l) => l !== '', 60_000)).line : first.line;
      if (!continues(first.line, number, last)) throw new Error(`${args[0]} went on from ${first.line}, expected ${last + 1}`);
      return first.at - s0;
    } finally {
      r.child.kill('SIGKILL');
      await r.exited;
    }
  };
  try {
    await pool.waitLine((l) => l.startsWith('pool serving'), 180_000);
    const restoreMs: number[] = [], restoreNodeMs: number[] = [];
    for (let i = 0; i < 2 * restores; i++) {
      const before = (await full()).served;
      (i % 2 ? restoreNodeMs : restoreMs).push(await timed(['restore', id, '--store', store], i % 2 === 1));
      if ((await poolStatus(sock)).served !== before + 1) throw new Error('a restore with a clone ready was not served by the pool');
    }
    /** The pool's one clone taken by a take that runs on (its guest counts), until killed. */
    const hold = async () => {
      const before = (await full()).served;
      const h = follow(...binCommand(node, cli, ['pool', 'take', sock]), env);
      await h.waitLine(() => true, 60_000);
      if ((await poolStatus(sock)).served !== before + 1) throw new Error('the holding take was not served');
      return h;
    };
    /**
     * `args` timed while the pool's one clone is held and none is ready yet (up to 3 tries: on a
     * loaded machine the refill can be ready before the command is spawned); `served`: whether
     * the pool served it. NaN when every try found a clone ready.
     */
    const noneReady = async (args: string[], served: boolean): Promise<number> => {
      for (let attempt = 0; attempt < 3; attempt++) {
        const h = await hold();
        try {
          const before = await poolStatus(sock);
          if (before.ready !== 0) continue;
          const ms = await timed(args);
          const took = (await poolStatus(sock)).served !== before.served;
          // A restore the refill's clone served meanwhile (it became ready first): not this figure.
          if (took === served) return ms;
          if (!served && took) continue;
          throw new Error(`${args[0]} with no clone ready was not served by the pool`);
        } finally {
          h.child.kill('SIGKILL');
          await h.exited;
        }
      }
      return NaN;
    };
    const noneReadyRestoreMs = await noneReady(['restore', id, '--store', store], false);
    const noneReadyTakeMs = await noneReady(['pool', 'take', sock], true);
    return { restoreMs, restoreNodeMs, noneReadyRestoreMs, noneReadyTakeMs, continuity: `${last} → ${last + 1}` };
  } finally {
    pool.child.kill('SIGTERM');
    await Promise.race([pool.exited, new Promise((r) => setTimeout(r, 10_000))]);
  }
}
