/**
 * Warm pool take latency (issue 7 points 3 and 8; docs/pools.md): `node dist/bench/pool-bench.js
 * [TAKES] [OBJECTS]` (defaults 50 and 200000).
 *
 * The workload is the bench's python3 (a dozen stdlib imports, OBJECTS objects of 1,000 bytes:
 * 200,000 ≈ 200 MB) which asks for its own checkpoint (/proc/snapvisor/checkpoint) once warm and
 * then prints one line and exits at once (os._exit). A pool of 4 clones serves it. Measured:
 * - TAKES takes through the socket protocol itself (as a platform's own server would: no
 *   process started per take), one at a time, each once the pool is full again: from the
 *   request reaching the pool (the pool's own clock, `requestMs`) and from the client's send,
 *   to the first byte of the guest's output arriving on the take's stdout (a unix socket);
 * - 10 takes through the `snapvisor pool take` command: spawn → first output byte (its own
 *   start-up included);
 * - the summed PSS of a pool's every process with 1 and with 20 clones ready (poolMemory);
 * - with an any-pool of 2 warm restorers serving the store (`pool serve --any`, cli/restorer.ts),
 *   `restore ID --store DIR` by the bin, spawn → first output byte, each once both restorers are
 *   ready, alternated with `restore ID --store DIR --no-pool` (anyPoolRound).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { closeFd, connectUnix, sendFds } from '../platforms/host/fd-passing.js';
import { poolStatus } from '../cli/pool-client.js';
import { binCommand } from './restore-bench.js';
import { processTree, pssOf } from './proc.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bundle', 'main.js');
/** CLOCK_MONOTONIC in ms, as the pool's `requestMs` and `resumedMs` (cli/pool.ts). */
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

const WORKLOAD = [
  'import json, decimal, asyncio, email, http.client, xml.dom.minidom, sqlite3, unittest, argparse, logging, os, sys',
  'data = [bytes(1000) for _ in range(int(sys.argv[1]))]',
  "open('/proc/snapvisor/checkpoint', 'w').write('warm')",
  "print(open('/proc/snapvisor/checkpoint').read().strip(), len(data), flush=True)",
  // Without tearing the heap down: freeing 200 MB of objects writes to every page (copying each
  // 64 KiB chunk out of the shared page file), which is the guest's business, not the take's.
  'os._exit(0)',
].join('\n');

/** The p-th percentile (nearest rank, rounding up) of xs. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * (s.length - 1)))];
}

async function waitFull(sock: string, size: number, timeoutMs = 30_000): Promise<void> {
  for (let i = 0; i < timeoutMs / 50; i++) {
    const s = await poolStatus(sock);
    if (s.ready >= size) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the pool did not refill within ${timeoutMs / 1000} s`);
}

/** One take through the protocol: [request reached the pool → first byte, client send → first byte] in ms. */
async function protocolTake(pool: string, dir: string, n: number): Promise<[number, number, number]> {
  const outPath = path.join(dir, `out-${n}.sock`);
  const first = new Promise<number>((resolve) => {
    const srv = net.createServer((c) => { c.once('data', () => { resolve(nowMs()); }); c.on('end', () => srv.close()); c.resume(); });
    srv.listen(outPath);
  });
  await new Promise((r) => setTimeout(r, 5));
  const out = connectUnix(outPath);
  const nul = fs.openSync('/dev/null', 'r');
  const conn = connectUnix(pool);
  const t0 = nowMs();
  const r = sendFds(conn, Buffer.from('{"op":"take"}\n'), [nul, out, out]);
  if (r < 0) throw new Error(`sendmsg: errno ${-r}`);
  closeFd(out);
  fs.closeSync(nul);
  const s = new net.Socket({ fd: conn, readable: true, writable: true });
  let buf = '';
  s.on('data', (d) => { buf += d; });
  await new Promise((r) => s.on('close', r));
  const t1 = await first;
  const started = buf.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((m) => m.event === 'started');
  const exit = buf.split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((m) => m.event === 'exit');
  if (!started || exit?.status !== 0) throw new Error(`take ${n} failed: ${buf}`);
  return [t1 - started.requestMs, t1 - t0, started.resumedMs - started.requestMs];
}

/** One `snapvisor pool take` command: spawn → first stdout byte, ms. */
function commandTake(node: string, cli: string, env: NodeJS.ProcessEnv, pool: string, viaNode = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const c = spawn(...binCommand(node, cli, ['pool', 'take', pool], viaNode), { stdio: ['ignore', 'pipe', 'inherit'], env });
    let at = 0;
    c.stdout.once('data', () => { at = nowMs(); });
    c.stdout.resume();
    c.on('exit', (code) => (code === 0 && at ? resolve(at - t0) : reject(new Error(`pool take exited ${code}`))));
  });
}

/** What one pool round measured (ms). */
export interface PoolRound {
  size: number;
  /** `pool serve` spawn → `pool serving` (all clones restored). */
  fillMs: number;
  /** Per protocol take: request reaching the pool → first output byte; client send → first byte; request → guest resumed. */
  fromPool: number[]; fromClient: number[]; handoff: number[];
  /** Per `pool take` command by the bin (the native front): spawn → first output byte. */
  command: number[];
  /** The same by `node main.js pool take` (the launcher's client), alternated with those. */
  commandNode: number[];
  /** Host memory of a pool of 1 and of 20 clones: see poolMemory. */
  memory: PoolMemory[];
  /** The checkpoint the pools served, and its store. */
  id: string; store: string;
}

/** Summed PSS (bytes) of a pool's every process (pool serve, the hosting processes holding its clones' kernels, their stubs: its whole process tree) with `size` clones ready. */
export interface PoolMemory { size: number; pssBytes: number; fillMs: number }

/**
 * Host memory of a pool of `size` clones of checkpoint `id`: start `pool serve --size N`, make one
 * take (so the clones hold the working set they prefetch, as they do once serving), wait until
 * all N are ready again and one second more, then sum the PSS of the pool's process tree.
 */
async function poolMemory(node: string, cli: string, env: NodeJS.ProcessEnv, dir: string, store: string, id: string, size: number, serveArgs: string[]): Promise<PoolMemory> {
  const sock = path.join(dir, `pool-mem-${size}.sock`);
  const serve = spawn(node, [cli, 'pool', 'serve', '--checkpoint', id, '--store', store, '--size', String(size), '--listen', sock, ...serveArgs], { stdio: ['ignore', 'pipe', 'inherit'], env });
  try {
    const t0 = nowMs();
    await new Promise<void>((resolve, reject) => {
      serve.stdout!.on('data', (d) => { if (String(d).includes('pool serving')) resolve(); });
      serve.on('exit', (c) => reject(new Error(`pool serve exited ${c}`)));
    });
    const fillMs = nowMs() - t0;
    await protocolTake(sock, dir, 1000 + size);
    await waitFull(sock, size, 120_000);
    await new Promise((r) => setTimeout(r, 1000));
    return { size, pssBytes: pssOf(processTree(serve.pid!)).pss, fillMs };
  } finally {
    serve.kill('SIGTERM');
    await new Promise((r) => serve.on('exit', r));
  }
}

/**
 * Checkpoint the workload (it asks for its own checkpoint), serve it from a pool of 4, and time
 * `takes` protocol takes and `commandTakes` `pool take` commands (each once the pool is full again);
 * then measure the memory of pools of each of `memorySizes` clones (poolMemory).
 * `node`/`cli`/`env` run snapvisor; `dir` is scratch space; `serveArgs` go to every `pool serve`
 * (e.g. `--per-process 1` for A/B comparisons).
 */
export async function poolRound(node: string, cli: string, env: NodeJS.ProcessEnv, dir: string, objects: number, takes: number, commandTakes = 10, memorySizes: number[] = [1, 20], serveArgs: string[] = []): Promise<PoolRound> {
  let serve: ReturnType<typeof spawn> | undefined;
  try {
    const store = path.join(dir, 'pool-store');
    const run = spawn(node, [cli, 'run', '--checkpoint-store', store, '--', '/usr/bin/python3', '-c', WORKLOAD, String(objects)], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    run.stderr!.on('data', (d) => { err += d; });
    await new Promise((r) => run.on('exit', r));
    const id = /request: ([0-9a-f]{16})/.exec(err)?.[1];
    if (!id) throw new Error(`no checkpoint: ${err.trim().split('\n').pop()}`);
    const sock = path.join(dir, 'pool.sock');
    const size = 4;
    serve = spawn(node, [cli, 'pool', 'serve', '--checkpoint', id, '--store', store, '--size', String(size), '--listen', sock, ...serveArgs], { stdio: ['ignore', 'pipe', 'inherit'], env });
    const t0 = nowMs();
    await new Promise<void>((resolve, reject) => {
      serve!.stdout!.on('data', (d) => { if (String(d).includes('pool serving')) resolve(); });
      serve!.on('exit', (c) => reject(new Error(`pool serve exited ${c}`)));
    });
    const fillMs = nowMs() - t0;
    const fromPool: number[] = [], fromClient: number[] = [], handoff: number[] = [];
    for (let i = 0; i < takes; i++) {
      await waitFull(sock, size);
      const [a, b, h] = await protocolTake(sock, dir, i);
      handoff.push(h);
      fromPool.push(a);
      fromClient.push(b);
    }
    const command: number[] = [], commandNode: number[] = [];
    for (let i = 0; i < 2 * commandTakes; i++) {
      await waitFull(sock, size);
      (i % 2 ? commandNode : command).push(await commandTake(node, cli, env, sock, i % 2 === 1));
    }
    serve.kill('SIGTERM');
    await new Promise((r) => serve!.on('exit', r));
    serve = undefined;
    const memory: PoolMemory[] = [];
    for (const n of memorySizes) memory.push(await poolMemory(node, cli, env, dir, store, id, n, serveArgs));
    return { size, fillMs, fromPool, fromClient, handoff, command, commandNode, memory, id, store };
  } finally {
    serve?.kill('SIGTERM');
  }
}

/** One `snapvisor restore ID --store STORE [extra]` by the bin: spawn → first stdout byte, ms. */
function restoreCommand(node: string, cli: string, env: NodeJS.ProcessEnv, store: string, id: string, extra: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const c = spawn(...binCommand(node, cli, ['restore', id, '--store', store, ...extra]), { stdio: ['ignore', 'pipe', 'inherit'], env });
    let at = 0;
    c.stdout.once('data', () => { at = nowMs(); });
    c.stdout.resume();
    c.on('exit', (code) => (code === 0 && at ? resolve(at - t0) : reject(new Error(`restore exited ${code}`))));
  });
}

/** What anyPoolRound measured: spawn → first output byte (ms) of each restore, through the any-pool and with --no-pool. */
export interface AnyPoolRound { anyPool: number[]; noPool: number[]; fillMs: number }

/**
 * `restore ID --store STORE` by the bin with an any-pool of 2 restorers serving `store` (its
 * well-known name, STORE/pools/any.sock: no pool of ID may serve), `n` times, each once both
 * restorers are ready, alternated with `n` restores `--no-pool` (in their own process).
 */
export async function anyPoolRound(node: string, cli: string, env: NodeJS.ProcessEnv, store: string, id: string, n: number): Promise<AnyPoolRound> {
  const sock = path.join(store, 'pools', 'any.sock');
  const serve = spawn(node, [cli, 'pool', 'serve', '--any', '--store', store, '--size', '2'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  try {
    const t0 = nowMs();
    await new Promise<void>((resolve, reject) => {
      serve.stdout!.on('data', (d) => { if (String(d).includes('pool serving')) resolve(); });
      serve.on('exit', (c) => reject(new Error(`pool serve --any exited ${c}`)));
    });
    const fillMs = nowMs() - t0;
    const anyPool: number[] = [], noPool: number[] = [];
    for (let i = 0; i < 2 * n; i++) {
      await waitFull(sock, 2);
      if (i % 2) noPool.push(await restoreCommand(node, cli, env, store, id, ['--no-pool']));
      else {
        const served = (await poolStatus(sock)).served;
        anyPool.push(await restoreCommand(node, cli, env, store, id, []));
        if ((await poolStatus(sock)).served !== served + 1) throw new Error('a restore with the any-pool serving was not served by it');
      }
    }
    return { anyPool, noPool, fillMs };
  } finally {
    serve.kill('SIGTERM');
    await new Promise((r) => serve.on('exit', r));
  }
}

async function main(): Promise<void> {
  const takes = Number(process.argv[2] ?? 50), objects = Number(process.argv[3] ?? 200000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapvisor-pool-bench-'));
  try {
    const r = await poolRound(process.execPath, CLI, process.env, dir, objects, takes);
    const f = (x: number) => x.toFixed(1);
    console.log(`pool of ${r.size} clones of a python3 holding ${objects / 1000} MB: filled in ${f(r.fillMs)} ms`);
    console.log(`take → first output byte, ${takes} takes through the socket protocol: from the request reaching the pool p50 ${f(pct(r.fromPool, 50))} ms, p99 ${f(pct(r.fromPool, 99))} ms; from the client's send p50 ${f(pct(r.fromClient, 50))} ms, p99 ${f(pct(r.fromClient, 99))} ms; of which the pool's hand-off (request → guest resumed) p50 ${f(pct(r.handoff, 50))} ms, p99 ${f(pct(r.handoff, 99))} ms`);
    console.log(`\`snapvisor pool take\` command, spawn → first output byte (its own start-up included), ${r.command.length} takes: p50 ${f(pct(r.command, 50))} ms, p99 ${f(pct(r.command, 99))} ms`);
    for (const m of r.memory) console.log(`pool of ${m.size} clone(s), every process (pool, hosting processes, stubs): PSS ${(m.pssBytes / 2 ** 20).toFixed(1)} MiB (${(m.pssBytes / r.memory[0].pssBytes).toFixed(2)}× the first); filled in ${f(m.fillMs)} ms`);
    const a = await anyPoolRound(process.execPath, CLI, process.env, r.store, r.id, Math.max(10, Math.min(takes, 30)));
    console.log(`\`snapvisor restore ID\` by the bin, spawn → first output byte, ${a.anyPool.length} each alternated: an any-pool of 2 restorers serving (filled in ${f(a.fillMs)} ms) p50 ${f(pct(a.anyPool, 50))} ms, p99 ${f(pct(a.anyPool, 99))} ms; --no-pool p50 ${f(pct(a.noPool, 50))} ms, p99 ${f(pct(a.noPool, 99))} ms`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// Run directly (node dist/bench/pool-bench.js); npm run bench imports poolRound.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main();
