/**
 * `snapvisor restore ID` served by a warm pool of that checkpoint (cli/pool-registry.ts,
 * cli/pool-client.ts restoreFromPool; docs/pools.md, "Restore through a pool"): with a pool of the
 * checkpoint serving, `restore ID [--store DIR]` is one of its clones (the pool counts the take,
 * the bundle is never loaded), with the caller's stdin, stdout, status and signals; with
 * `--no-pool`, another option, a pool of another checkpoint, no clone ready or a dead pool it
 * restores in its own process, with the same output; a stale registration is removed; the store's
 * own commands ignore the registrations.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { poolRequest, poolStatus, type PoolStatus } from '../cli/pool-client.js';
import { parseLightRestore } from '../cli/pool-registry.js';
import { CLI, freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/**
 * Checkpoints itself, then reads a line and answers with which side it is on; exits with the
 * line's length, or for the line `wait` runs on until SIGTERM (its trap: `caught TERM`, status 7).
 */
const GUEST = ['/bin/busybox', 'sh', '-c', 'trap "echo caught TERM; exit 7" TERM; echo 1 > /proc/snapvisor/checkpoint; read l; echo "$(cat /proc/snapvisor/checkpoint) $l"; [ "$l" = wait ] || exit ${#l}; while :; do busybox sleep 0.1; done'];

async function makeCheckpoint(store: string): Promise<string> {
  const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...GUEST], { timeoutMs: 30_000 });
  expect(r.stdout.toString()).toBe('original \n');
  expect(r.status).toBe(0);
  return /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
}

function startPool(id: string, store: string, sock: string, size: number) {
  return snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', String(size), '--listen', sock], { timeoutMs: 240_000 });
}

/** SNAPVISOR_TRACE_STARTUP: a process that loads the CLI's bundle says so on stderr (`snapvisor: start-up: …`). */
const TRACE = { ...process.env, SNAPVISOR_TRACE_STARTUP: '1' };
const loadedBundle = (stderr: string) => stderr.split('\n').some((l) => l.startsWith('snapvisor: start-up:'));
const withoutTrace = (stderr: string) => stderr.split('\n').filter((l) => l && !l.startsWith('snapvisor: start-up:')).join('\n');

describe('restore through a warm pool', () => {
  it('takes only `[--root DIR] restore ID [--store DIR]` to a pool', () => {
    expect(parseLightRestore(['restore', 'abcd'])).toEqual({ id: 'abcd', store: undefined });
    expect(parseLightRestore(['restore', 'abcd', '--store', 's'])).toEqual({ id: 'abcd', store: 's' });
    expect(parseLightRestore(['--root', '/r', 'restore', '--store=s', 'abcd'])).toEqual({ id: 'abcd', store: 's' });
    for (const args of [
      ['restore'], ['restore', 'abcd', '--no-pool'], ['restore', '--no-pool', 'abcd'], ['restore', 'abcd', '--name', 'n'],
      ['restore', 'abcd', '--strace'], ['restore', 'abcd', '--platform', 'ptrace'], ['restore', 'abcd', '--checkpoint-store', 's'],
      ['restore', 'abcd', '--accept-changed-volumes'], ['restore', '--image-path', 'd', '--bundle', 'b', 'c1'], ['restore', 'abcd', '-d'],
      ['restore', 'abcd', 'efgh'], ['restore', 'abcd', '--store'], ['restore', 'abcd', '--store='], ['restore', 'abcd', '--help'],
      ['--log', 'f', 'restore', 'abcd'], ['restore', 'abcd', '--store', 'a', '--store', 'b'],
    ]) expect(parseLightRestore(args), JSON.stringify(args)).toBeUndefined();
    // The launcher's restore bundle takes --no-pool too (once), and says so.
    expect(parseLightRestore(['--root', '/r', 'restore', 'abcd', '--no-pool'], true)).toEqual({ id: 'abcd', store: undefined, root: '/r', noPool: true });
    expect(parseLightRestore(['restore', '--store', 's', 'abcd'], true)).toEqual({ id: 'abcd', store: 's', root: undefined, noPool: false });
    for (const args of [['restore', 'abcd', '--no-pool', '--no-pool'], ['restore', 'abcd', '--no-pool', '--name', 'n'], ['--log', 'f', 'restore', 'abcd', '--no-pool']]) {
      expect(parseLightRestore(args, true), JSON.stringify(args)).toBeUndefined();
    }
  });

  it('is served by a pool of its checkpoint; in its own process with --no-pool, for another checkpoint, with no clone ready, or a dead pool', async () => {
    const store = freshDir('rpool-store'), sockDir = freshDir('rpool-sock');
    const sock = path.join(sockDir, 'p.sock');
    const id = await makeCheckpoint(store), other = await makeCheckpoint(store);
    const pool = startPool(id, store, sock, 1);
    expect(await pool.waitFor((l) => l.startsWith('pool serving'), 60_000)).toBe(`pool serving checkpoint ${id} on ${sock} (1 clone ready)`);
    const reg = path.join(store, 'pools', `${id}.${pool.child.pid}.json`);
    expect(JSON.parse(fs.readFileSync(reg, 'utf8'))).toEqual({ v: 1, checkpoint: id, socket: sock, pid: pool.child.pid });

    // By a prefix of its id: the pool's clone, without the CLI's bundle.
    const served = await snapvisor(['restore', id.slice(0, 6), '--store', store], { input: 'abc\n', env: TRACE, timeoutMs: 30_000 });
    expect(served.timedOut).toBe(false);
    expect(served.stderr).toBe('');
    expect(served.stdout.toString()).toBe('restored abc\n');
    expect(served.status).toBe(3);
    expect((await poolStatus(sock)).served).toBe(1);

    // --no-pool, and a checkpoint the pool does not serve: restored here, the same output.
    for (const args of [['restore', id, '--store', store, '--no-pool'], ['restore', other, '--store', store]]) {
      const own = await snapvisor(args, { input: 'hello\n', env: TRACE, timeoutMs: 30_000 });
      expect(own.timedOut).toBe(false);
      expect(loadedBundle(own.stderr)).toBe(true);
      expect(withoutTrace(own.stderr)).toBe('');
      expect(own.stdout.toString()).toBe('restored hello\n');
      expect(own.status).toBe(5);
    }
    // An unknown id: the same one line as without a pool.
    const unknown = await snapvisor(['restore', 'abcd0123', '--store', store], { timeoutMs: 30_000 });
    expect(unknown.status).toBe(125);
    expect(stderrLines(unknown.stderr)).toEqual([`snapvisor: checkpoint abcd0123 not found in store ${store}`]);

    // No clone ready: the restore does not wait for the pool's refill (a new hosting process) but
    // restores here. Refills paused (`pause-refills`, docs/pools.md "The socket protocol"), the
    // pool's one clone busy (its guest waits on a line) and a take queued behind it: no clone can
    // become ready whatever the machine's load, so what the restore meets does not depend on how
    // fast a refill is (it raced them: CI saw the refills serve the queued takes first).
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const until = async (what: string, ok: (st: PoolStatus) => boolean, ms = 20_000) => {
      let st = await poolStatus(sock);
      for (const end = Date.now() + ms; !ok(st) && Date.now() < end; st = await poolStatus(sock)) await sleep(20);
      expect(ok(st), `${what}: ${JSON.stringify({ ...st, clones: undefined })}`).toBe(true);
      return st;
    };
    // The refill after the first take, finished: then nothing starts while paused.
    await until('refilled', (st) => st.ready === 1 && st.starting === 0);
    expect(await poolRequest(sock, { op: 'pause-refills' })).toEqual({ ok: true, refillsPaused: true, starting: 0 });
    const busy = spawn(process.execPath, [CLI, 'pool', 'take', sock], { stdio: ['pipe', 'ignore', 'ignore'] });
    const busyDone = new Promise<number | null>((r) => busy.on('exit', (c) => r(c)));
    await until('the busy take served', (st) => st.served === 2);
    const queued = snapvisor(['pool', 'take', sock], { input: 'zz\n', timeoutMs: 120_000 });
    const seen = await until('the queued take waiting', (st) => st.waiting === 1);
    expect({ ready: seen.ready, starting: seen.starting, served: seen.served, refillsPaused: seen.refillsPaused }).toEqual({ ready: 0, starting: 0, served: 2, refillsPaused: true });
    // The restore asks, is refused at once (`no clone is ready`), says so in its trace, and restores here.
    const own = await snapvisor(['restore', id, '--store', store], { input: 'xy\n', env: { ...TRACE, SNAPVISOR_TRACE_RESTORE: '1' }, timeoutMs: 30_000 });
    expect(own.timedOut).toBe(false);
    expect(loadedBundle(own.stderr), `stderr: ${own.stderr}stdout: ${own.stdout}status: ${own.status}`).toBe(true);
    expect(own.stderr).toContain(`pool on ${sock} not used: no clone is ready`);
    expect(own.stdout.toString()).toBe('restored xy\n');
    expect(own.status).toBe(2);
    // Without the trace: the same, and not a word about the pool.
    const quiet = await snapvisor(['restore', id, '--store', store], { input: 'q\n', timeoutMs: 30_000 });
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout.toString()).toBe('restored q\n');
    expect(quiet.status).toBe(1);
    // Neither restore was the pool's, and the queued take still waits.
    expect(await poolStatus(sock)).toMatchObject({ served: 2, waiting: 1, ready: 0 });
    // Refills resumed: the queued take gets the next clone.
    expect(await poolRequest(sock, { op: 'resume-refills' })).toMatchObject({ ok: true, refillsPaused: false });
    const q = await queued;
    expect(q.timedOut).toBe(false);
    expect(q.stdout.toString()).toBe('restored zz\n');
    expect(q.status).toBe(2);
    busy.stdin!.end('z\n');
    expect(await busyDone).toBe(1);
    // The busy take, the queued one: the restores were not the pool's.
    expect((await poolStatus(sock)).served).toBe(3);

    // The store's own commands ignore the registration, and leave it.
    const list = await snapvisor(['checkpoints', '--store', store, '--json'], { timeoutMs: 30_000 });
    expect(list.status).toBe(0);
    expect((JSON.parse(list.stdout.toString()) as Array<{ id: string }>).map((c) => c.id).sort()).toEqual([id, other].sort());
    const gc = await snapvisor(['gc', '--store', store], { timeoutMs: 30_000 });
    expect(gc.status).toBe(0);
    expect(gc.stdout.toString()).toMatch(/^removed 0 files/);
    const check = await snapvisor(['store', 'check', '--store', store], { timeoutMs: 60_000 });
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
    const exported = path.join(sockDir, 'x.svx');
    expect((await snapvisor(['export', id, '--store', store, '-o', exported], { timeoutMs: 60_000 })).status).toBe(0);
    expect(fs.existsSync(reg)).toBe(true);

    // The pool killed outright: its registration stays behind, stale. A restore finds its process
    // gone, removes it and restores here.
    pool.child.kill('SIGKILL');
    await pool.done;
    expect(fs.existsSync(reg)).toBe(true);
    const after = await snapvisor(['restore', id, '--store', store], { input: 'after\n', env: TRACE, timeoutMs: 30_000 });
    expect(loadedBundle(after.stderr)).toBe(true);
    expect(withoutTrace(after.stderr)).toBe('');
    expect(after.stdout.toString()).toBe('restored after\n');
    expect(after.status).toBe(5);
    expect(fs.existsSync(reg)).toBe(false);
    // A registration whose process lives but whose socket is gone: removed too.
    const fake = path.join(store, 'pools', `${id}.${process.pid}.json`);
    fs.writeFileSync(fake, JSON.stringify({ v: 1, checkpoint: id, socket: path.join(sockDir, 'gone.sock'), pid: process.pid }));
    const again = await snapvisor(['restore', id, '--store', store], { input: 'q\n', timeoutMs: 30_000 });
    expect(again.stderr).toBe('');
    expect(again.stdout.toString()).toBe('restored q\n');
    expect(fs.existsSync(fake)).toBe(false);
    await new Promise((r) => setTimeout(r, 500));
    expect(orphanStubs()).toEqual([]);
  }, 240_000);

  it('relays signals to the pool\'s clone and exits with the status its guest chose; the pool unregisters when it stops', async () => {
    const store = freshDir('rpool-sig-store'), sock = path.join(freshDir('rpool-sig-sock'), 'p.sock');
    const id = await makeCheckpoint(store);
    const pool = startPool(id, store, sock, 2);
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    const restore = spawn(process.execPath, [CLI, 'restore', id, '--store', store], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    restore.stdout!.on('data', (d) => { out += d; });
    restore.stderr!.on('data', (d) => { err += d; });
    const exited = new Promise<number | null>((r) => restore.on('exit', (c) => r(c)));
    restore.stdin!.write('wait\n');
    const t0 = Date.now();
    for (let i = 0; i < 400 && !out.includes('restored wait'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(out).toBe('restored wait\n');
    expect((await poolStatus(sock)).served).toBe(1);
    restore.kill('SIGTERM');
    expect(await exited).toBe(7);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(out).toBe('restored wait\ncaught TERM\n');
    expect(err).toBe('');
    restore.stdin!.destroy();

    // SIGTERM while the take is under way (before the guest runs): held, then given to the guest.
    const early = spawn(process.execPath, [CLI, 'restore', id, '--store', store], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SNAPVISOR_TRACE_RESTORE: '1' } });
    let eout = '', eerr = '', sent = false;
    early.stdout!.on('data', (d) => { eout += d; });
    early.stderr!.on('data', (d) => {
      eerr += d;
      if (!sent && /asking the pool/.test(eerr)) { sent = true; early.kill('SIGTERM'); }
    });
    early.stdin!.write('wait\n');
    const timer = setTimeout(() => early.kill('SIGKILL'), 30_000);
    expect(await new Promise<number | null>((r) => early.on('close', (c) => r(c)))).toBe(7);
    clearTimeout(timer);
    expect(sent).toBe(true);
    // (Delivered once the guest runs: on a loaded machine that may be before its read got the line.)
    expect(eout).toMatch(/^(restored wait\n)?caught TERM\n$/);
    expect(eerr).toMatch(/served by the pool on /);
    expect((await poolStatus(sock)).served).toBe(2);

    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(fs.readdirSync(path.join(store, 'pools'))).toEqual([]);
    await new Promise((r) => setTimeout(r, 500));
    expect(orphanStubs()).toEqual([]);
  }, 180_000);
});
