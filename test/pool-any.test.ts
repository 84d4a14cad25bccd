/**
 * Any-pools (cli/restorer.ts, docs/pools.md "Any-pools"): `pool serve --any` keeps warm restorer
 * processes that restore whichever checkpoint of the store a take names. Two checkpoints served
 * by one pool of 2, through the bin's native front (`restore ID --store DIR`: its second choice
 * after STORE/pools/ID.sock), the node launcher (a prefix) and `pool take SOCKET --checkpoint`,
 * each with its own output and status; signals relayed; an unknown id gets one line and the pool
 * serves on; it refills; a second any-pool of the store, `--any --checkpoint` and neither are
 * refused; SIGTERM ends the pool and its restorers, leaving no stub; with no restorer ready a
 * restore goes on in its own process.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { poolRequest } from '../cli/pool-client.js';
import type { AnyPoolStatus } from '../cli/restorer.js';
import { CLI, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/** The bin: its native front (cli/front/front.c) takes `restore ID --store DIR` to a pool itself. */
const FRONT = path.join(path.dirname(CLI), 'snapvisor');

/**
 * Checkpoints itself, then reads a line and answers with its tag, which side it is on and the
 * line; exits with the line's length, or for the line `wait` runs on until SIGTERM (its trap:
 * `caught TERM`, status 7).
 */
const guest = (tag: string) => ['/bin/busybox', 'sh', '-c', `trap "echo caught TERM; exit 7" TERM; echo 1 > /proc/snapvisor/checkpoint; read l; echo "${tag} $(cat /proc/snapvisor/checkpoint) $l"; [ "$l" = wait ] || exit \${#l}; while :; do busybox sleep 0.1; done`];

async function makeCheckpoint(store: string, tag: string): Promise<string> {
  const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...guest(tag)], { timeoutMs: 30_000 });
  expect(r.stdout.toString()).toBe(`${tag} original \n`);
  expect(r.status).toBe(0);
  return /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
}

/** The restorer processes of store `store` still running (`snapvisor __restorer STORE`). */
function restorersOf(store: string): string[] {
  const out = spawnSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').filter((l) => l.includes(`__restorer ${store}`) && !/^\s*\d+\s+Z/.test(l));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pool serve --any', () => {
  it('restores whichever checkpoint a take names, refills, and ends with its restorers', async () => {
    const store = freshDir('anypool-store');
    const a = await makeCheckpoint(store, 'A'), b = await makeCheckpoint(store, 'B');
    const sock = path.join(store, 'pools', 'any.sock');
    const pool = snapvisorStreaming(['pool', 'serve', '--any', '--store', store, '--size', '2'], { timeoutMs: 240_000 });
    expect(await pool.waitFor((l) => l.startsWith('pool serving'), 60_000)).toBe(`pool serving any checkpoint of store ${store} on ${sock} (2 restorers ready)`);
    const status = async () => (await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus;
    /** Both restorers ready again (a restore's take is `ifReady`: with none ready it restores in its own process). */
    const full = async (served: number) => {
      let st = await status();
      for (const end = Date.now() + 60_000; (st.ready < 2 || st.served !== served) && Date.now() < end; st = await status()) await sleep(20);
      expect({ ready: st.ready, served: st.served, startError: st.startError }).toEqual({ ready: 2, served, startError: null });
    };
    await full(0);

    // The bin's front: STORE/pools/A.sock is not there, the any-pool is its second choice.
    const viaFront = await native([FRONT, 'restore', a, '--store', store], { input: 'hello\n', timeoutMs: 30_000 });
    expect(viaFront.timedOut).toBe(false);
    expect(viaFront.stderr).toBe('');
    expect(viaFront.stdout.toString()).toBe('A restored hello\n');
    expect(viaFront.status).toBe(5);
    await full(1);

    // Node's launcher, by a prefix of the other checkpoint's id.
    const viaNode = await snapvisor(['restore', b.slice(0, 6), '--store', store], { input: 'abc\n', timeoutMs: 30_000 });
    expect(viaNode.timedOut).toBe(false);
    expect(viaNode.stderr).toBe('');
    expect(viaNode.stdout.toString()).toBe('B restored abc\n');
    expect(viaNode.status).toBe(3);
    // A third, after the refills: `pool take --checkpoint`.
    await full(2);
    const take = await snapvisor(['pool', 'take', sock, '--checkpoint', a], { input: 'xy\n', timeoutMs: 30_000 });
    expect(take.stderr).toBe('');
    expect(take.stdout.toString()).toBe('A restored xy\n');
    expect(take.status).toBe(2);
    await full(3);

    // An unknown id: the line an in-process restore gives, status 125; the pool serves the next take.
    const unknown = await snapvisor(['pool', 'take', sock, '--checkpoint', 'ffffffffffffffff'], { timeoutMs: 30_000 });
    expect(unknown.status).toBe(125);
    expect(stderrLines(unknown.stderr)).toEqual([`snapvisor: checkpoint ffffffffffffffff not found in store ${store}`]);
    // A take that names none: refused, one line.
    const unnamed = await snapvisor(['pool', 'take', sock], { timeoutMs: 30_000 });
    expect(unnamed.status).toBe(125);
    expect(stderrLines(unnamed.stderr)).toEqual([`snapvisor: pool on ${sock}: this pool serves any checkpoint of store ${store}: a take names one (\`pool take SOCKET --checkpoint ID\`, or "checkpoint":ID in the request)`]);
    await full(4);

    // Signals reach the restored guest: SIGTERM to the take runs its trap.
    const waiter = spawn(process.execPath, [CLI, 'pool', 'take', sock, '--checkpoint', b], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    waiter.stdout!.on('data', (d) => { out += d; });
    const waiterDone = new Promise<number | null>((r) => waiter.on('exit', (c) => r(c)));
    waiter.stdin!.write('wait\n');
    for (const end = Date.now() + 30_000; !out.includes('B restored wait') && Date.now() < end;) await sleep(20);
    expect(out).toBe('B restored wait\n');
    waiter.kill('SIGTERM');
    const killTimer = setTimeout(() => waiter.kill('SIGKILL'), 30_000);
    expect(await waiterDone).toBe(7);
    clearTimeout(killTimer);
    expect(out).toBe('B restored wait\ncaught TERM\n');
    await full(5);

    // The front's restore of a full id the store does not hold: refused by the pool (no restorer
    // spent), restored in node, which gives the in-process line with the store as given.
    const missing = await native([FRONT, 'restore', 'ffffffffffffffff', '--store', store], { timeoutMs: 30_000 });
    expect(missing.status).toBe(125);
    expect(stderrLines(missing.stderr)).toEqual([`snapvisor: checkpoint ffffffffffffffff not found in store ${store}`]);
    expect((await status()).served).toBe(5);
    // A restorer killed while it waits is replaced.
    const victim = (await status()).restorers.find((r) => r.state === 'ready')!;
    process.kill(victim.pid, 'SIGKILL');
    let after = await status();
    for (const end = Date.now() + 60_000; (after.ready < 2 || after.restorers.some((r) => r.pid === victim.pid)) && Date.now() < end; after = await status()) await sleep(20);
    expect(after.restorers.map((r) => r.pid)).not.toContain(victim.pid);
    expect({ ready: after.ready, served: after.served }).toEqual({ ready: 2, served: 5 });

    // One any-pool per store: a second is refused while this one answers.
    const second = await snapvisor(['pool', 'serve', '--any', '--store', store, '--size', '1', '--listen', path.join(freshDir('anypool-sock'), 'p.sock')], { timeoutMs: 30_000 });
    expect(second.status).toBe(1);
    expect(stderrLines(second.stderr)).toEqual([`snapvisor: pool: an any-pool is already serving store ${store} on ${sock}`]);

    // SIGTERM: the pool ends, its name goes, its restorers and their stubs too.
    expect(restorersOf(store).length).toBe(2);
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(pool.stderr()).toBe('');
    expect(fs.existsSync(sock)).toBe(false);
    for (const end = Date.now() + 10_000; restorersOf(store).length && Date.now() < end;) await sleep(50);
    expect(restorersOf(store)).toEqual([]);
    expect(orphanStubs()).toEqual([]);
    // No pool: the front's restore goes to node and restores in its own process.
    const alone = await native([FRONT, 'restore', b, '--store', store], { input: 'q\n', timeoutMs: 30_000 });
    expect(alone.stderr).toBe('');
    expect(alone.stdout.toString()).toBe('B restored q\n');
    expect(alone.status).toBe(1);
  }, 300_000);

  it('with no restorer ready, a restore restores in its own process; a take waits for a refill', async () => {
    const store = freshDir('anypool-busy');
    const a = await makeCheckpoint(store, 'C'), b = await makeCheckpoint(store, 'D');
    const sock = path.join(store, 'pools', 'any.sock');
    const pool = snapvisorStreaming(['pool', 'serve', '--any', '--store', store, '--size', '1'], { timeoutMs: 240_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    const status = async () => (await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus;
    const until = async (what: string, ok: (st: AnyPoolStatus) => boolean) => {
      let st = await status();
      for (const end = Date.now() + 60_000; !ok(st) && Date.now() < end; st = await status()) await sleep(20);
      expect(ok(st), `${what}: ${JSON.stringify(st)}`).toBe(true);
    };
    // Refills paused and the one restorer busy (its guest waits): none can become ready, whatever the load.
    expect(await poolRequest(sock, { op: 'pause-refills' })).toEqual({ ok: true, refillsPaused: true, starting: 0 });
    const busy = spawn(process.execPath, [CLI, 'pool', 'take', sock, '--checkpoint', a], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    busy.stdout!.on('data', (d) => { out += d; });
    const busyDone = new Promise<number | null>((r) => busy.on('exit', (c) => r(c)));
    busy.stdin!.write('wait\n');
    await until('the busy take running', (st) => st.running === 1 && st.ready === 0 && st.served === 1);
    // The front's restore: refused at once (no restorer is ready), restored in node, the same output.
    const own = await native([FRONT, 'restore', b, '--store', store], { input: 'hi\n', timeoutMs: 30_000 });
    expect(own.timedOut).toBe(false);
    expect(own.stderr).toBe('');
    expect(own.stdout.toString()).toBe('D restored hi\n');
    expect(own.status).toBe(2);
    expect(await status()).toMatchObject({ served: 1, ready: 0, starting: 0, refillsPaused: true });
    // A take waits; resumed, the refill serves it.
    const queued = snapvisor(['pool', 'take', sock, '--checkpoint', b], { input: 'zz\n', timeoutMs: 60_000 });
    await until('the take waiting', (st) => st.waiting === 1);
    expect(await poolRequest(sock, { op: 'resume-refills' })).toMatchObject({ ok: true, refillsPaused: false });
    const q = await queued;
    expect(q.stderr).toBe('');
    expect(q.stdout.toString()).toBe('D restored zz\n');
    expect(q.status).toBe(2);
    busy.kill('SIGTERM');
    const killTimer = setTimeout(() => busy.kill('SIGKILL'), 30_000);
    expect(await busyDone).toBe(7);
    clearTimeout(killTimer);
    expect(out).toBe('C restored wait\ncaught TERM\n');
    pool.child.kill('SIGTERM');
    // Its stderr with the status: a pool that ended otherwise than on this SIGTERM said why there.
    expect({ status: await pool.done, stderr: pool.stderr() }).toEqual({ status: 0, stderr: '' });
    for (const end = Date.now() + 10_000; restorersOf(store).length && Date.now() < end;) await sleep(50);
    expect(restorersOf(store)).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 300_000);

  it('stops refilling after 3 failed restorer starts in a row, with one line, and refuses takes; serves again once one starts', async () => {
    const store = freshDir('anypool-fail');
    const a = await makeCheckpoint(store, 'F');
    // The pool runs main.js through a symlink its restorers are started with (process.argv[1]):
    // removed, every restorer start fails (node cannot find it); put back, they start again.
    const linkDir = freshDir('anypool-cli');
    const cli = path.join(linkDir, 'main.js');
    fs.symlinkSync(CLI, cli);
    const sock = path.join(store, 'pools', 'any.sock');
    const pool = spawn(process.execPath, [cli, 'pool', 'serve', '--any', '--store', store, '--size', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    pool.stdout!.on('data', (d) => { out += d; });
    pool.stderr!.on('data', (d) => { err += d; });
    const poolDone = new Promise<number | null>((r) => pool.on('exit', (c) => r(c)));
    for (const end = Date.now() + 60_000; !out.includes('pool serving') && Date.now() < end;) await sleep(20);
    expect(out).toContain('pool serving');
    const status = async () => (await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus;
    fs.rmSync(cli);
    // The one restorer serves a take; its three replacements fail.
    const first = await snapvisor(['pool', 'take', sock, '--checkpoint', a], { input: 'ab\n', timeoutMs: 30_000 });
    expect(first.stdout.toString()).toBe('F restored ab\n');
    let st = await status();
    for (const end = Date.now() + 60_000; st.startError === null && Date.now() < end; st = await status()) await sleep(50);
    expect(st.startError).toMatch(/^restorer \d+ ended with status 1$/);
    expect(err.split('\n').filter((l) => l.startsWith('snapvisor: pool: a restorer failed to start: restorer '))).toHaveLength(1);
    const stops = err.split('\n').filter((l) => l.startsWith('snapvisor: pool: restorers cannot start'));
    expect(stops).toEqual([`snapvisor: pool: restorers cannot start (3 attempts in a row failed: ${st.startError}): refilling stopped; takes with no restorer ready are refused until one starts (one is tried every 60 s)`]);
    const refused = await snapvisor(['pool', 'take', sock, '--checkpoint', a], { timeoutMs: 30_000 });
    expect(refused.status).toBe(125);
    expect(stderrLines(refused.stderr)).toEqual([`snapvisor: pool on ${sock}: no restorer can start (3 attempts in a row failed, the last: ${st.startError}); the pool tries again every 60 s`]);
    // Fixed: resume-refills tries one at once, and the pool serves again.
    fs.symlinkSync(CLI, cli);
    await poolRequest(sock, { op: 'resume-refills' });
    for (const end = Date.now() + 60_000; (st.ready < 1 || st.startError !== null) && Date.now() < end; st = await status()) await sleep(50);
    expect({ ready: st.ready, startError: st.startError }).toEqual({ ready: 1, startError: null });
    expect(err).toContain('snapvisor: pool: a restorer started again: refilling');
    const again = await snapvisor(['pool', 'take', sock, '--checkpoint', a], { input: 'xyz\n', timeoutMs: 30_000 });
    expect(again.stdout.toString()).toBe('F restored xyz\n');
    expect(again.status).toBe(3);
    pool.kill('SIGTERM');
    expect(await poolDone).toBe(0);
    for (const end = Date.now() + 10_000; restorersOf(store).length && Date.now() < end;) await sleep(50);
    expect(restorersOf(store)).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 300_000);

  it('serves on --listen with the store\'s name a link to it; refuses --any with --checkpoint, or neither', async () => {
    const store = freshDir('anypool-listen');
    const a = await makeCheckpoint(store, 'L');
    const sock = path.join(freshDir('anypool-lsock'), 'p.sock');
    const pool = snapvisorStreaming(['pool', 'serve', '--any', '--store', store, '--size', '1', '--listen', sock], { timeoutMs: 240_000 });
    expect(await pool.waitFor((l) => l.startsWith('pool serving'), 60_000)).toBe(`pool serving any checkpoint of store ${store} on ${sock} (1 restorer ready)`);
    const link = path.join(store, 'pools', 'any.sock');
    expect(fs.readlinkSync(link)).toBe(sock);
    const r = await native([FRONT, 'restore', a, '--store', store], { input: 'hey\n', timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('L restored hey\n');
    expect(r.status).toBe(3);
    expect(((await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus).served).toBe(1);
    // --no-pool: never a pool's.
    const own = await native([FRONT, 'restore', a, '--store', store, '--no-pool'], { input: 'x\n', timeoutMs: 30_000 });
    expect(own.stdout.toString()).toBe('L restored x\n');
    expect(((await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus).served).toBe(1);
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(fs.existsSync(link)).toBe(false);
    expect(fs.existsSync(sock)).toBe(false);
    for (const end = Date.now() + 10_000; restorersOf(store).length && Date.now() < end;) await sleep(50);
    expect(restorersOf(store)).toEqual([]);

    for (const [args, line] of [
      [['--any', '--checkpoint', a], 'snapvisor: pool: --any and --checkpoint are exclusive (--any serves every checkpoint of the store)'],
      [[], 'snapvisor: pool: serve needs --checkpoint ID (a pool of clones of that checkpoint) or --any (restorers for any checkpoint of the store)'],
    ] as const) {
      const bad = await snapvisor(['pool', 'serve', ...args, '--store', store, '--size', '1'], { timeoutMs: 30_000 });
      expect(bad.status).toBe(2);
      expect(stderrLines(bad.stderr)).toEqual([line]);
    }
    expect(orphanStubs()).toEqual([]);
  }, 300_000);
});
