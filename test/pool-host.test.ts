/**
 * Several clones in one hosting process (cli/pool.ts poolHost, docs/pools.md "What pool serve
 * does"): a pool of 3 clones restored by one process serves 3 takes at once, each guest with its
 * caller's stdin and stdout and its own os.urandom; one guest's stub killed from the host while
 * it computes ends only that take (137); SIGTERM to the pool then leaves the other two running to their end.
 */
import path from 'node:path';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { poolStatus } from '../cli/pool-client.js';
import { CLI, freshDir, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/** Asks for its checkpoint, then per line read: its first answers with the line and 16 bytes of os.urandom, its second says goodbye (or, if it is `spin`, spins for ever). */
const GUEST = ['/usr/bin/python3', '-c', [
  'import os, sys',
  "open('/proc/snapvisor/checkpoint', 'w').write('1')",
  'l = sys.stdin.readline().strip()',
  "print(open('/proc/snapvisor/checkpoint').read().strip(), l, os.urandom(16).hex(), flush=True)",
  'm = sys.stdin.readline().strip()',
  "while m == 'spin': pass",
  "print('bye', l, m, flush=True)",
].join('\n')];

/** Pids of the processes whose parent is `ppid`. */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

describe('warm pool: several clones in one process', () => {
  it('serves 3 takes at once from one process, each its own; a guest killed ends only its take; SIGTERM leaves the others to their end', async () => {
    const store = freshDir('pool-host-store'), sock = path.join(freshDir('pool-host-sock'), 'p.sock');
    const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...GUEST], { input: 'x\n\n', timeoutMs: 60_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^original x [0-9a-f]{32}\nbye x \n$/);
    const id = /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '3', '--per-process', '3', '--no-probe', '--listen', sock], { timeoutMs: 120_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    const st = await poolStatus(sock);
    expect(st).toMatchObject({ ready: 3, processes: 1 });
    const hostPid = st.clones[0].pid;
    expect(st.clones.map((c) => c.pid)).toEqual([hostPid, hostPid, hostPid]);
    expect(st.clones.map((c) => c.slot).sort()).toEqual([0, 1, 2]);

    const takes = ['a', 'b', 'c'].map((name) => {
      const c = spawn(process.execPath, [CLI, 'pool', 'take', sock], { stdio: ['pipe', 'pipe', 'pipe'] });
      const t = { name, c, out: '', err: '', status: new Promise<number | null>((res) => c.on('exit', (code) => res(code))) };
      c.stdout.on('data', (d) => { t.out += d; });
      c.stderr.on('data', (d) => { t.err += d; });
      c.stdin.write(`${name}\n`);
      return t;
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !takes.every((t) => t.out.includes('\n'))) await new Promise((res) => setTimeout(res, 50));
    const randoms = takes.map((t) => {
      const m = new RegExp(`^restored ${t.name} ([0-9a-f]{32})\\n$`).exec(t.out);
      expect(m, `take ${t.name}: ${JSON.stringify(t.out)} ${t.err}`).not.toBeNull();
      return m![1];
    });
    expect(new Set(randoms).size).toBe(3);
    // All three ran in the one process that restored them.
    const during = await poolStatus(sock);
    expect(during.clones.filter((c) => c.state === 'taken').map((c) => c.pid)).toEqual([hostPid, hostPid, hostPid]);

    // One guest spins; its stub (a child of the hosting process, the one running) is killed from
    // outside: that take alone ends, with 137 (as a guest killed by SIGKILL).
    takes[1].c.stdin.write('spin\n');
    let stubs: number[] = [], spinning: number | undefined;
    for (let i = 0; i < 200 && spinning === undefined; i++) {
      stubs = childrenOf(hostPid);
      spinning = stubs.find((p) => { try { const st = fs.readFileSync(`/proc/${p}/stat`, 'latin1'); return st.slice(st.lastIndexOf(')') + 2)[0] === 'R'; } catch { return false; } });
      if (spinning === undefined) await new Promise((res) => setTimeout(res, 50));
    }
    // Should this fail: whether the hosting process still lives, what each take saw, what the pool said.
    const why = () => `host ${hostPid} ${fs.existsSync(`/proc/${hostPid}`) ? 'alive' : 'gone'}; takes: ${JSON.stringify(takes.map((t) => [t.name, t.c.exitCode, t.out, t.err]))}; pool stderr: ${pool.stderr().slice(-1500)}`;
    expect(stubs, why()).toHaveLength(3);
    expect(spinning, why()).toBeDefined();
    process.kill(spinning!, 'SIGKILL');
    const victim = await Promise.race(takes.map((t) => t.status.then((code) => ({ t, code }))));
    expect(victim.t.name).toBe('b');
    expect(victim.code).toBe(137);
    expect(victim.t.err).toBe('');
    const others = takes.filter((t) => t !== victim.t);

    // The pool stops; the two takes still running go on to their end in the same process.
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    for (const t of others) t.c.stdin.end('done\n');
    for (const t of others) {
      expect(await t.status).toBe(0);
      expect(t.err).toBe('');
      expect(t.out).toBe(`restored ${t.name} ${randoms[takes.indexOf(t)]}\nbye ${t.name} done\n`);
    }
    victim.t.c.stdin.destroy();
    await new Promise((res) => setTimeout(res, 500));
    expect(childrenOf(hostPid)).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);

  it('a pool refilled one take at a time gathers its clones into few processes once takes pause', async () => {
    const store = freshDir('pool-merge-store'), sock = path.join(freshDir('pool-merge-sock'), 'p.sock');
    const guest = ['/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; read l; echo "$l"'];
    const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...guest], { input: '\n', timeoutMs: 30_000 });
    expect(r.status).toBe(0);
    const id = /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '4', '--per-process', '4', '--no-probe', '--listen', sock], { timeoutMs: 120_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    const counts: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = await snapvisor(['pool', 'take', sock], { input: `take-${i}\n`, timeoutMs: 30_000 });
      expect(t.stdout.toString()).toBe(`take-${i}\n`);
      expect(t.status).toBe(0);
      let st = await poolStatus(sock);
      for (let j = 0; j < 200 && (st.ready < 4 || st.starting > 0 || st.clones.length > 4); j++) {
        await new Promise((res) => setTimeout(res, 50));
        st = await poolStatus(sock);
      }
      expect(st).toMatchObject({ ready: 4, starting: 0 });
      // Processes holding clones (one whose last take just ended may still be on its way out).
      counts.push(new Set(st.clones.map((c) => c.pid)).size);
    }
    // While takes come, each refill is a process of its own (a batch of what is missing), up to
    // MAX_EXTRA_HOSTS (4) beyond the one the size needs; one whose last take just ended may still
    // be on its way out.
    expect(Math.max(...counts)).toBeLessThanOrEqual(6);
    // Two seconds without a take: the clones of the idle processes holding at most half a batch
    // are restored again in one batch, which replaces them (their processes end); one process
    // holding more may stay beside it.
    let st = await poolStatus(sock);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(st.ready === 4 && st.starting === 0 && new Set(st.clones.map((c) => c.pid)).size <= 2)) {
      await new Promise((res) => setTimeout(res, 100));
      st = await poolStatus(sock);
    }
    expect(new Set(st.clones.map((c) => c.pid)).size).toBeLessThanOrEqual(2);
    expect(st).toMatchObject({ ready: 4, starting: 0 });
    // … and it still serves.
    const t = await snapvisor(['pool', 'take', sock], { input: 'after\n', timeoutMs: 30_000 });
    expect(t.stdout.toString()).toBe('after\n');
    expect(t.status).toBe(0);
    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    await new Promise((res) => setTimeout(res, 500));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
