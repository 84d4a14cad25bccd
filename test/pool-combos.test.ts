/**
 * Pools in combination (docs/pools.md, "Any-pools" ("both at once for one store work (the
 * checkpoint's pool first)"), "Restore through a pool" and step 8 / the any-pool's "Failures"
 * (SIGTERM: "clones running a take belong to their takers and run to their end", "the takes
 * running end with their guests")):
 *
 * 1. a checkpoint's pool and an any-pool serving the same store at once: `pool take` on each
 *    socket gives its own clone; `restore ID` by the bin's native front goes to the checkpoint's
 *    pool for its checkpoint and to the any-pool for another, and to the any-pool for the first
 *    one too while its own pool has no clone ready; SIGTERM to either pool leaves the other
 *    serving (the front's restore then goes to what is left, or restores in its own process).
 * 2. SIGTERM to a `pool serve` (checkpoint's pool, any-pool) while one of its clones runs a take
 *    whose guest is printing: the pool ends at once (status 0, socket gone), the take's guest
 *    goes on printing to its end and the take exits with the guest's status; the waiting clone
 *    of the take's hosting process goes at once, a refill being started is killed; once the take
 *    ends its hosting process (restorer) ends and no stub is left. Through `pool take` and
 *    through the bin's `restore ID --store DIR`.
 *
 * Real busybox guests; refills are not waited on beyond what each step needs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { poolRequest, poolStatus, type PoolStatus } from '../cli/pool-client.js';
import type { AnyPoolStatus } from '../cli/restorer.js';
import { CLI, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/** The bin: its native front (cli/front/front.c) takes `restore ID --store DIR` to a pool itself. */
const FRONT = path.join(path.dirname(CLI), 'snapvisor');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Checkpoints itself, then reads a line and answers with its tag, which side it is on and the
 * line; exits with the line's length; for the line `tick` it then prints `tick N` every 0.1 s
 * until the file `gate` exists, then `end`, status 5.
 */
const guest = (tag: string, gate: string) => ['/bin/busybox', 'sh', '-c',
  `echo 1 > /proc/snapvisor/checkpoint; read l; echo "${tag} $(cat /proc/snapvisor/checkpoint) $l"; [ "$l" = tick ] || exit \${#l}; ` +
  `i=0; while [ ! -e ${gate} ]; do i=$((i+1)); echo "tick $i"; busybox sleep 0.1; done; echo end; exit 5`];

async function makeCheckpoint(store: string, tag: string, gate = '/nonexistent'): Promise<string> {
  const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...guest(tag, gate)], { timeoutMs: 30_000 });
  expect(r.stdout.toString()).toBe(`${tag} original \n`);
  expect(r.status).toBe(0);
  return /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
}

/** Processes (not zombies) whose command line contains `needle`: hosting processes, restorers. */
function procsWith(needle: string): string[] {
  const out = spawnSync('ps', ['-eo', 'pid=,stat=,args='], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').filter((l) => l.includes(needle) && !/^\s*\d+\s+Z/.test(l));
}

async function noneLeft(needle: string, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; procsWith(needle).length && Date.now() < end;) await sleep(50);
  expect(procsWith(needle)).toEqual([]);
}

async function untilCp(sock: string, what: string, ok: (st: PoolStatus) => boolean, ms = 30_000): Promise<PoolStatus> {
  let st = await poolStatus(sock);
  for (const end = Date.now() + ms; !ok(st) && Date.now() < end; st = await poolStatus(sock)) await sleep(20);
  expect(ok(st), `${what}: ${JSON.stringify({ ...st, clones: undefined })}`).toBe(true);
  return st;
}

const anyStatus = async (sock: string) => (await poolRequest(sock, { op: 'status' })) as unknown as AnyPoolStatus;
async function untilAny(sock: string, what: string, ok: (st: AnyPoolStatus) => boolean, ms = 30_000): Promise<AnyPoolStatus> {
  let st = await anyStatus(sock);
  for (const end = Date.now() + ms; !ok(st) && Date.now() < end; st = await anyStatus(sock)) await sleep(20);
  expect(ok(st), `${what}: ${JSON.stringify(st)}`).toBe(true);
  return st;
}

/** A `pool take` or `restore` whose output is followed as it comes; bounded (SIGKILL after 30 s). */
function ticking(argv: string[], input: string): { child: ChildProcess; out: () => string; err: () => string; ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  child.stdin!.on('error', () => undefined);
  child.stdin!.write(input);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => { clearTimeout(timer); r({ code, signal }); }));
  return { child, out: () => out, err: () => err, ended };
}

const ticks = (out: string) => out.split('\n').filter((l) => /^tick \d+$/.test(l)).length;

/** The stub processes whose parent is `pid` (a hosting process's clones' tasks). */
function stubsOf(pid: number): number[] {
  const out = spawnSync('ps', ['-eo', 'ppid=,pid=,stat=,comm='], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n').map((l) => l.trim().split(/\s+/)).filter(([pp, , st, c]) => pp === String(pid) && c === 'snapvisor-stub' && st && !st.startsWith('Z')).map(([, p]) => Number(p));
}
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('pools in combination', () => {
  it('a checkpoint\'s pool and an any-pool serve one store at once; stopping one leaves the other serving', async () => {
    const store = freshDir('combo-store'), socks = freshDir('combo-sock');
    const gate = path.join(freshDir('combo-gate'), 'go');
    const a = await makeCheckpoint(store, 'A', gate), b = await makeCheckpoint(store, 'B');
    const cpSock = path.join(socks, 'a.sock'), anySock = path.join(socks, 'any.sock');
    // Both started at once on the same store.
    const cp = snapvisorStreaming(['pool', 'serve', '--checkpoint', a, '--store', store, '--size', '1', '--listen', cpSock], { timeoutMs: 120_000 });
    const any = snapvisorStreaming(['pool', 'serve', '--any', '--store', store, '--size', '1', '--listen', anySock], { timeoutMs: 120_000 });
    try {
      expect(await cp.waitFor((l) => l.startsWith('pool serving'), 40_000)).toBe(`pool serving checkpoint ${a} on ${cpSock} (1 clone ready)`);
      expect(await any.waitFor((l) => l.startsWith('pool serving'), 40_000)).toBe(`pool serving any checkpoint of store ${store} on ${anySock} (1 restorer ready)`);
      expect(fs.readlinkSync(path.join(store, 'pools', 'any.sock'))).toBe(anySock);
      expect(fs.readlinkSync(path.join(store, 'pools', `${a}.sock`))).toBe(cpSock);

      // One take on each socket, at once: each its own sandbox, its own input, output and status.
      const [t1, t2] = await Promise.all([
        snapvisor(['pool', 'take', cpSock], { input: 'one\n', timeoutMs: 30_000 }),
        snapvisor(['pool', 'take', anySock, '--checkpoint', a], { input: 'three\n', timeoutMs: 30_000 }),
      ]);
      expect({ out: t1.stdout.toString(), err: t1.stderr, status: t1.status }).toEqual({ out: 'A restored one\n', err: '', status: 3 });
      expect({ out: t2.stdout.toString(), err: t2.stderr, status: t2.status }).toEqual({ out: 'A restored three\n', err: '', status: 5 });
      // A checkpoint's pool refuses a take naming another checkpoint; the any-pool serves it.
      const wrong = await snapvisor(['pool', 'take', cpSock, '--checkpoint', b], { timeoutMs: 30_000 });
      expect(wrong.status).toBe(125);
      expect(wrong.stdout.toString()).toBe('');
      expect(wrong.stderr).toContain(`this pool serves checkpoint ${a}, not ${b}`);
      const other = await snapvisor(['pool', 'take', anySock, '--checkpoint', b], { input: 'bb\n', timeoutMs: 30_000 });
      expect({ out: other.stdout.toString(), err: other.stderr, status: other.status }).toEqual({ out: 'B restored bb\n', err: '', status: 2 });

      // Both full again: the front's restore of A goes to A's pool (first choice), of B to the any-pool.
      await untilCp(cpSock, 'A\'s pool refilled', (st) => st.ready === 1 && st.served === 1);
      await untilAny(anySock, 'the any-pool refilled', (st) => st.ready === 1 && st.served === 2);
      const ra = await native([FRONT, 'restore', a, '--store', store], { input: 'front\n', timeoutMs: 30_000 });
      expect({ out: ra.stdout.toString(), err: ra.stderr, status: ra.status, timedOut: ra.timedOut }).toEqual({ out: 'A restored front\n', err: '', status: 5, timedOut: false });
      expect((await poolStatus(cpSock)).served).toBe(2);
      expect((await anyStatus(anySock)).served).toBe(2);
      const rb = await native([FRONT, 'restore', b, '--store', store], { input: 'xy\n', timeoutMs: 30_000 });
      expect({ out: rb.stdout.toString(), err: rb.stderr, status: rb.status }).toEqual({ out: 'B restored xy\n', err: '', status: 2 });
      expect((await poolStatus(cpSock)).served).toBe(2);
      expect((await anyStatus(anySock)).served).toBe(3);

      // A's pool with no clone ready (its one clone busy, refills paused): the front's restore of A
      // falls back to the any-pool (its second choice), not to a restore in its own process.
      await untilCp(cpSock, 'A\'s pool refilled', (st) => st.ready === 1 && st.starting === 0 && st.served === 2);
      expect(await poolRequest(cpSock, { op: 'pause-refills' })).toEqual({ ok: true, refillsPaused: true, starting: 0 });
      const busy = ticking([process.execPath, CLI, 'pool', 'take', cpSock], 'tick\n');
      await untilCp(cpSock, 'A\'s one clone busy', (st) => st.ready === 0 && st.running === 1 && st.served === 3);
      await untilAny(anySock, 'the any-pool refilled', (st) => st.ready === 1 && st.served === 3);
      const fb = await native([FRONT, 'restore', a, '--store', store], { input: 'fb\n', timeoutMs: 30_000 });
      expect({ out: fb.stdout.toString(), err: fb.stderr, status: fb.status }).toEqual({ out: 'A restored fb\n', err: '', status: 2 });
      expect((await anyStatus(anySock)).served).toBe(4);
      expect((await poolStatus(cpSock)).served).toBe(3);
      fs.writeFileSync(gate, '');
      const br = await busy.ended;
      expect({ code: br.code, err: busy.err() }).toEqual({ code: 5, err: '' });
      expect(busy.out()).toMatch(/^A restored tick\n(tick \d+\n)*end\n$/);

      // SIGTERM to A's pool: it ends, its names go, its clones' processes too; the any-pool serves on.
      cp.child.kill('SIGTERM');
      expect(await cp.done).toBe(0);
      expect(cp.stderr()).toBe('');
      expect(fs.existsSync(cpSock)).toBe(false);
      expect(fs.existsSync(path.join(store, 'pools', `${a}.sock`))).toBe(false);
      expect(fs.readdirSync(path.join(store, 'pools')).filter((f) => f.startsWith(a))).toEqual([]);
      await noneLeft(`__pool-host ${store}`);
      await untilAny(anySock, 'the any-pool refilled', (st) => st.ready === 1 && st.served === 4);
      // The front's restore of A now goes to the any-pool.
      const ra2 = await native([FRONT, 'restore', a, '--store', store], { input: 'again\n', timeoutMs: 30_000 });
      expect({ out: ra2.stdout.toString(), err: ra2.stderr, status: ra2.status }).toEqual({ out: 'A restored again\n', err: '', status: 5 });
      expect((await anyStatus(anySock)).served).toBe(5);
      const t3 = await snapvisor(['pool', 'take', anySock, '--checkpoint', a], { input: 'z\n', timeoutMs: 30_000 });
      expect({ out: t3.stdout.toString(), err: t3.stderr, status: t3.status }).toEqual({ out: 'A restored z\n', err: '', status: 1 });

      any.child.kill('SIGTERM');
      expect(await any.done).toBe(0);
      expect(any.stderr()).toBe('');
      expect(fs.existsSync(anySock)).toBe(false);
      expect(fs.existsSync(path.join(store, 'pools', 'any.sock'))).toBe(false);
      await noneLeft(`__restorer ${store}`);
      expect(orphanStubs()).toEqual([]);
    } finally {
      cp.child.kill('SIGKILL');
      any.child.kill('SIGKILL');
    }
  }, 60_000);

  it('stopping the any-pool first leaves the checkpoint\'s pool serving; the other checkpoint is then restored in its own process', async () => {
    const store = freshDir('combo2-store'), socks = freshDir('combo2-sock');
    const a = await makeCheckpoint(store, 'A'), b = await makeCheckpoint(store, 'B');
    const cpSock = path.join(socks, 'a.sock');
    // The any-pool on the store's own name this time (no --listen).
    const anySock = path.join(store, 'pools', 'any.sock');
    const any = snapvisorStreaming(['pool', 'serve', '--any', '--store', store, '--size', '1'], { timeoutMs: 120_000 });
    const cp = snapvisorStreaming(['pool', 'serve', '--checkpoint', a, '--store', store, '--size', '1', '--listen', cpSock], { timeoutMs: 120_000 });
    try {
      await any.waitFor((l) => l.startsWith('pool serving'), 40_000);
      await cp.waitFor((l) => l.startsWith('pool serving'), 40_000);
      any.child.kill('SIGTERM');
      expect(await any.done).toBe(0);
      expect(any.stderr()).toBe('');
      expect(fs.existsSync(anySock)).toBe(false);
      await noneLeft(`__restorer ${store}`);
      // A's pool serves on: a take, then the front's restore once it refilled.
      const t = await snapvisor(['pool', 'take', cpSock], { input: 'still\n', timeoutMs: 30_000 });
      expect({ out: t.stdout.toString(), err: t.stderr, status: t.status }).toEqual({ out: 'A restored still\n', err: '', status: 5 });
      await untilCp(cpSock, 'A\'s pool refilled', (st) => st.ready === 1 && st.served === 1);
      const ra = await native([FRONT, 'restore', a, '--store', store], { input: 'ab\n', timeoutMs: 30_000 });
      expect({ out: ra.stdout.toString(), err: ra.stderr, status: ra.status }).toEqual({ out: 'A restored ab\n', err: '', status: 2 });
      expect((await poolStatus(cpSock)).served).toBe(2);
      // B has no pool left: restored in the front's node, the same output; A's pool not used.
      const rb = await native([FRONT, 'restore', b, '--store', store], { input: 'abcd\n', timeoutMs: 30_000 });
      expect({ out: rb.stdout.toString(), err: rb.stderr, status: rb.status }).toEqual({ out: 'B restored abcd\n', err: '', status: 4 });
      expect((await poolStatus(cpSock)).served).toBe(2);
      cp.child.kill('SIGTERM');
      expect(await cp.done).toBe(0);
      expect(cp.stderr()).toBe('');
      expect(fs.readdirSync(path.join(store, 'pools'))).toEqual([]);
      await noneLeft(`__pool-host ${store}`);
      expect(orphanStubs()).toEqual([]);
    } finally {
      cp.child.kill('SIGKILL');
      any.child.kill('SIGKILL');
    }
  }, 60_000);

  for (const kind of ['checkpoint', 'any'] as const) {
    for (const client of ['pool take', 'restore'] as const) {
      it(`SIGTERM to ${kind === 'any' ? 'an any-pool' : 'a checkpoint\'s pool'} while the guest of a \`${client}\` it serves prints: the pool ends at once, the take runs to its end`, async () => {
        const store = freshDir(`combo-term-${kind}`), sock = path.join(freshDir(`combo-term-${kind}-sock`), 'p.sock');
        const gate = path.join(freshDir(`combo-term-${kind}-gate`), 'go');
        const id = await makeCheckpoint(store, 'T', gate);
        // A checkpoint's pool of 2: both clones in one hosting process (after the probe's), so the
        // take's process also holds a waiting clone, which must go when the pool does (step 8).
        const pool = snapvisorStreaming(['pool', 'serve', ...(kind === 'any' ? ['--any'] : ['--checkpoint', id]), '--store', store, '--size', kind === 'any' ? '1' : '2', '--listen', sock], { timeoutMs: 60_000 });
        const needle = kind === 'any' ? `__restorer ${store}` : `__pool-host ${store}`;
        try {
          await pool.waitFor((l) => l.startsWith('pool serving'), 40_000);
          if (kind === 'checkpoint') expect(await poolStatus(sock)).toMatchObject({ ready: 2, processes: 1 });
          else await untilAny(sock, 'the restorer ready', (st) => st.ready === 1);
          const t = ticking(client === 'restore' ? [FRONT, 'restore', id, '--store', store] : [process.execPath, CLI, 'pool', 'take', sock, ...(kind === 'any' ? ['--checkpoint', id] : [])], 'tick\n');
          for (const end = Date.now() + 20_000; ticks(t.out()) < 2 && Date.now() < end;) await sleep(20);
          expect(t.out()).toMatch(/^T restored tick\ntick 1\ntick 2\n/);
          let host: number;
          let persistent: number[] = [];
          if (kind === 'checkpoint') {
            const st = await poolStatus(sock);
            // Served by the pool (a restore too), and a refill under way (100 ms after the take):
            // the SIGTERM below comes while a hosting process is starting.
            expect({ served: st.served, running: st.running }).toEqual({ served: 1, running: 1 });
            let starting = st.starting;
            for (const end = Date.now() + 5_000; starting < 1 && Date.now() < end;) { await sleep(20); starting = (await poolStatus(sock)).starting; }
            expect(starting).toBe(1);
            host = st.clones.find((c) => c.state === 'taken')!.pid;
            expect(st.clones.filter((c) => c.pid === host).map((c) => c.state).sort()).toEqual(['ready', 'taken']);
            // The host's lasting stubs (the taken guest's shell, the waiting clone's): those seen
            // twice 300 ms apart (a `busybox sleep` task lives 0.1 s).
            const s1 = stubsOf(host);
            await sleep(300);
            persistent = stubsOf(host).filter((p) => s1.includes(p));
            expect(persistent).toHaveLength(2);
          } else {
            const st = await anyStatus(sock);
            expect({ served: st.served, running: st.running }).toEqual({ served: 1, running: 1 });
            host = st.restorers.find((r) => r.state === 'taken')!.pid;
          }
          // SIGTERM to the pool while the guest prints.
          pool.child.kill('SIGTERM');
          const t0 = Date.now();
          expect(await pool.done).toBe(0);
          expect(Date.now() - t0).toBeLessThan(5_000);
          expect(pool.stderr()).toBe('');
          expect(fs.existsSync(sock)).toBe(false);
          expect(fs.readdirSync(path.join(store, 'pools'))).toEqual([]);
          // The take runs on, its guest printing, in the same process; that process's waiting clone goes.
          let exited = false;
          void t.ended.then(() => { exited = true; });
          const seen = ticks(t.out());
          for (const end = Date.now() + 10_000; ticks(t.out()) < seen + 5 && !exited && Date.now() < end;) await sleep(20);
          expect(exited).toBe(false);
          expect(ticks(t.out())).toBeGreaterThanOrEqual(seen + 5);
          expect(procsWith(needle).map((l) => Number(l.trim().split(/\s+/)[0]))).toEqual([host]);
          if (kind === 'checkpoint') {
            for (const end = Date.now() + 5_000; persistent.filter(alive).length > 1 && Date.now() < end;) await sleep(20);
            expect(persistent.filter(alive)).toHaveLength(1);
          }
          // Its end: the guest's own last line and status, nothing on stderr.
          fs.writeFileSync(gate, '');
          const r = await t.ended;
          expect({ code: r.code, signal: r.signal, err: t.err() }).toEqual({ code: 5, signal: null, err: '' });
          expect(t.out()).toMatch(/^T restored tick\n(tick \d+\n)+end\n$/);
          // Ticks numbered 1, 2, … without a gap: one guest ran on, nothing restarted.
          const nums = t.out().split('\n').filter((l) => l.startsWith('tick ')).map((l) => Number(l.slice(5)));
          expect(nums).toEqual(nums.map((_, i) => i + 1));
          await noneLeft(needle);
          expect(orphanStubs()).toEqual([]);
        } finally {
          pool.child.kill('SIGKILL');
        }
      }, 45_000);
    }
  }
});
