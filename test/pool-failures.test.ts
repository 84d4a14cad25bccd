/**
 * A warm pool in trouble (docs/pools.md, steps 6–7 and "What `pool take` does"): a take waiting
 * for a clone ends at once on SIGINT/SIGTERM (by that signal, as any command waiting would: the
 * shell reports 130/143), through node and through the bin's native front, and the pool forgets
 * it; a pool whose checkpoint was deleted stops refilling after three failed starts, says so once,
 * refuses the takes it has no clone for with one line (status 125) instead of keeping them waiting,
 * and serves again once a clone starts; `delete` refuses a checkpoint a pool serves unless --force.
 * Refills are paused (`pause-refills`) wherever a take must wait, so nothing depends on how fast a
 * refill is.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { poolRequest, poolStatus, type PoolStatus } from '../cli/pool-client.js';
import { connectUnix, sendFds } from '../platforms/host/fd-passing.js';
import { CLI, freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/** The bin's native front beside the CLI under test (cli/front/front.c). */
const FRONT = path.join(path.dirname(CLI), 'snapvisor');

/** Checkpoints itself, then reads a line and answers with which side it is on; exits with the line's length. */
const GUEST = ['/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; read l; echo "$(cat /proc/snapvisor/checkpoint) $l"; exit ${#l}'];

async function makeCheckpoint(store: string): Promise<string> {
  const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...GUEST], { timeoutMs: 30_000 });
  expect(r.stdout.toString()).toBe('original \n');
  expect(r.status).toBe(0);
  return /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Poll the pool's status until `ok` (at most `ms`), then check it held. */
async function until(sock: string, what: string, ok: (st: PoolStatus) => boolean, ms = 30_000): Promise<PoolStatus> {
  let st = await poolStatus(sock);
  for (const end = Date.now() + ms; !ok(st) && Date.now() < end; st = await poolStatus(sock)) await sleep(20);
  expect(ok(st), `${what}: ${JSON.stringify({ ...st, clones: undefined })}`).toBe(true);
  return st;
}

/** A `pool take` (node's or the front's) whose stdin the test holds; resolves with how it ended and its output. */
function take(how: 'node' | 'front', sock: string): { child: ChildProcess; ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> } {
  const child = how === 'node' ? spawn(process.execPath, [CLI, 'pool', 'take', sock], { stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(FRONT, ['pool', 'take', sock], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  child.stdin!.on('error', () => undefined);
  // Bounded: a take that never ends fails the test rather than hanging it.
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }>((r) => child.on('close', (code, signal) => { clearTimeout(timer); r({ code, signal, out, err }); }));
  return { child, ended };
}

describe('a warm pool in trouble', () => {
  it('a take waiting for a clone ends at once on SIGINT/SIGTERM (node and the native front), and the pool forgets it', async () => {
    const store = freshDir('pfail-sig-store'), sock = path.join(freshDir('pfail-sig-sock'), 'p.sock');
    const id = await makeCheckpoint(store);
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '1', '--listen', sock], { timeoutMs: 240_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    // The one clone busy, refills paused: every take from here waits.
    expect(await poolRequest(sock, { op: 'pause-refills' })).toEqual({ ok: true, refillsPaused: true, starting: 0 });
    const busy = take('node', sock);
    await until(sock, 'the busy take served', (st) => st.served === 1);
    for (const how of ['node', 'front'] as const) {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) {
        const t = take(how, sock);
        await until(sock, `${how}'s take waiting`, (st) => st.waiting === 1);
        const t0 = Date.now();
        t.child.kill(sig);
        const r = await t.ended;
        // Died by the signal (a shell reports 128+N: 130, 143), promptly, without a word.
        expect({ how, code: r.code, signal: r.signal, out: r.out, err: r.err }).toEqual({ how, code: null, signal: sig, out: '', err: '' });
        expect(Date.now() - t0).toBeLessThan(5_000);
        // Forgotten: no longer waiting, and it will not take the next clone.
        await until(sock, `${how}'s take forgotten after ${sig}`, (st) => st.waiting === 0, 5_000);
      }
    }
    // A platform's client (the socket protocol, no `pool take`) that gives up by shutting down its
    // writing (end of file, as a clone running the take reads it: the caller gone): forgotten too.
    const dir = freshDir('pfail-sig-files');
    const files = [fs.openSync('/dev/null', 'r'), fs.openSync(path.join(dir, 'out'), 'w'), fs.openSync(path.join(dir, 'out'), 'w')];
    const cfd = connectUnix(sock);
    expect(sendFds(cfd, Buffer.from('{"op":"take"}\n'), files)).toBe(0);
    files.forEach((f) => fs.closeSync(f));
    const half = new net.Socket({ fd: cfd, readable: true, writable: true });
    let halfLines = '';
    half.on('data', (d) => { halfLines += d; });
    const halfClosed = new Promise<void>((r) => half.on('close', () => r()));
    await until(sock, 'the platform\'s take waiting', (st) => st.waiting === 1);
    half.end();
    await until(sock, 'the platform\'s take forgotten', (st) => st.waiting === 0, 5_000);
    await Promise.race([halfClosed, sleep(10_000)]);
    expect(half.destroyed).toBe(true);
    expect(halfLines).toBe('');
    // Refills resumed: the next take gets the next clone, whose guest reads its own stdin.
    expect(await poolRequest(sock, { op: 'resume-refills' })).toMatchObject({ ok: true, refillsPaused: false });
    const next = await snapvisor(['pool', 'take', sock], { input: 'abc\n', timeoutMs: 60_000 });
    expect(next.timedOut).toBe(false);
    expect(next.stdout.toString()).toBe('restored abc\n');
    expect(next.status).toBe(3);
    busy.child.stdin!.end('z\n');
    expect(await busy.ended).toEqual({ code: 1, signal: null, out: 'restored z\n', err: '' });
    expect((await poolStatus(sock)).served).toBe(2);
    expect(fs.readFileSync(path.join(dir, 'out'), 'utf8')).toBe('');
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(pool.stderr()).toBe('');
    await sleep(500);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('a pool whose checkpoint was deleted stops refilling after 3 failed starts and refuses takes with one line; delete refuses without --force', async () => {
    const store = freshDir('pfail-del-store'), sock = path.join(freshDir('pfail-del-sock'), 'p.sock');
    const id = await makeCheckpoint(store);
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '1', '--listen', sock], { timeoutMs: 240_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);

    // delete without --force: refused, one line naming the pool; the checkpoint stays.
    const refused = await snapvisor(['delete', id.slice(0, 8), '--store', store], { timeoutMs: 30_000 });
    expect(stderrLines(refused.stderr)).toEqual([`snapvisor: checkpoint ${id} is served by the warm pool on ${sock} (pid ${pool.child.pid}): stop it first, or delete with --force (the pool then stops refilling)`]);
    expect(refused.status).toBe(1);
    expect(refused.stdout.toString()).toBe('');
    expect(fs.existsSync(path.join(store, 'meta', id))).toBe(true);

    // Refills paused, the one clone busy, a take waiting; then the checkpoint deleted with --force.
    expect(await poolRequest(sock, { op: 'pause-refills' })).toEqual({ ok: true, refillsPaused: true, starting: 0 });
    const busy = take('node', sock);
    await until(sock, 'the busy take served', (st) => st.served === 1);
    const waiting = take('node', sock);
    waiting.child.stdin!.end('w\n');
    await until(sock, 'a take waiting', (st) => st.waiting === 1);
    const forced = await snapvisor(['delete', id, '--store', store, '--force'], { timeoutMs: 30_000 });
    expect(forced.stdout.toString()).toBe(`deleted checkpoint ${id}\n`);
    expect(stderrLines(forced.stderr)).toEqual([`snapvisor: the warm pool on ${sock} (pid ${pool.child.pid}) served checkpoint ${id}: its clones ready still serve takes, but it cannot restore new ones`]);
    expect(forced.status).toBe(0);

    // Refills resumed: three starts fail (with back-off), then the pool stops and says so once.
    const t0 = Date.now();
    await poolRequest(sock, { op: 'resume-refills' });
    const w = await waiting.ended;
    const elapsed = Date.now() - t0;
    const cannot = `no clone of checkpoint ${id} can start (3 attempts in a row failed, the last: checkpoint ${id} not found in store ${store}); the pool tries again every 60 s`;
    expect({ code: w.code, out: w.out, err: w.err }).toEqual({ code: 125, out: '', err: `snapvisor: pool on ${sock}: ${cannot}\n` });
    expect(elapsed).toBeLessThan(30_000);
    const st = await poolStatus(sock);
    expect({ ready: st.ready, starting: st.starting, waiting: st.waiting, served: st.served, startError: st.startError }).toEqual({ ready: 0, starting: 0, waiting: 0, served: 1, startError: `checkpoint ${id} not found in store ${store}` });
    // New takes: refused at once, one line, status 125 (node, and the front, which leaves the refusal to node).
    for (const how of ['node', 'front'] as const) {
      const t1 = Date.now();
      const t = take(how, sock);
      t.child.stdin!.end('x\n');
      const r = await t.ended;
      expect({ how, code: r.code, out: r.out, err: r.err }).toEqual({ how, code: 125, out: '', err: `snapvisor: pool on ${sock}: ${cannot}\n` });
      expect(Date.now() - t1).toBeLessThan(15_000);
    }
    // Quiet from now on: one line for the failure, one for the stop; no hosting process restarted.
    await sleep(3000);
    const lines = stderrLines(pool.stderr());
    expect(lines).toEqual([
      `snapvisor: pool: a clone of checkpoint ${id} failed to start: checkpoint ${id} not found in store ${store}`,
      `snapvisor: pool: clones of checkpoint ${id} cannot start (3 attempts in a row failed: checkpoint ${id} not found in store ${store}): refilling stopped; takes with no clone ready are refused until a clone starts (one is tried every 60 s)`,
    ]);
    expect((await poolStatus(sock)).processes).toBe(1); // the busy take's
    // The busy clone was restored before the delete: it runs to its end as ever.
    busy.child.stdin!.end('zz\n');
    expect(await busy.ended).toEqual({ code: 2, signal: null, out: 'restored zz\n', err: '' });

    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(fs.readdirSync(path.join(store, 'pools'))).toEqual([]);
    await sleep(500);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('a pool that stopped refilling serves again once a clone starts (resume-refills tries at once)', async () => {
    const store = freshDir('pfail-back-store'), sock = path.join(freshDir('pfail-back-sock'), 'p.sock');
    const id = await makeCheckpoint(store);
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '1', '--listen', sock], { timeoutMs: 240_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    // Its restore record moved away (a store being repaired, say): restores of it fail meanwhile.
    const meta = path.join(store, 'meta', id), aside = path.join(path.dirname(store), `${id}.aside`);
    fs.renameSync(meta, aside);
    const first = await snapvisor(['pool', 'take', sock], { input: 'a\n', timeoutMs: 60_000 });
    expect(first.stdout.toString()).toBe('restored a\n');
    await until(sock, 'refilling stopped', (st) => st.startError !== null && st.starting === 0, 60_000);
    const refusedTake = await snapvisor(['pool', 'take', sock], { input: 'b\n', timeoutMs: 30_000 });
    expect(refusedTake.status).toBe(125);
    expect(stderrLines(refusedTake.stderr)).toEqual([`snapvisor: pool on ${sock}: no clone of checkpoint ${id} can start (3 attempts in a row failed, the last: checkpoint ${id} is corrupt: its restore record meta/${id} is missing); the pool tries again every 60 s`]);
    // Back in place; resume-refills tries one clone now rather than in a minute.
    fs.renameSync(aside, meta);
    expect(await poolRequest(sock, { op: 'resume-refills' })).toMatchObject({ ok: true, refillsPaused: false });
    await until(sock, 'serving again', (st) => st.startError === null && st.ready === 1, 60_000);
    const again = await snapvisor(['pool', 'take', sock], { input: 'cd\n', timeoutMs: 60_000 });
    expect(again.stdout.toString()).toBe('restored cd\n');
    expect(again.status).toBe(2);
    const missing = `checkpoint ${id} is corrupt: its restore record meta/${id} is missing`;
    expect(stderrLines(pool.stderr())).toEqual([
      `snapvisor: pool: a clone of checkpoint ${id} failed to start: ${missing}`,
      `snapvisor: pool: clones of checkpoint ${id} cannot start (3 attempts in a row failed: ${missing}): refilling stopped; takes with no clone ready are refused until a clone starts (one is tried every 60 s)`,
      `snapvisor: pool: a clone of checkpoint ${id} started again: refilling`,
    ]);
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    await sleep(500);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);
});
