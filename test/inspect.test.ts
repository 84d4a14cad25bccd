/**
 * `snapvisor inspect` (issue 7 point 6; snapshots/inspect.ts): what a checkpoint of a shell
 * pipeline holds, as stable JSON and as readable tables; unknown ids refused with one line.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

describe('inspect', () => {
  it('inspect --json of a checkpoint of `yes | sleep 30` names both processes, the pipe between them and its bytes in flight', async () => {
    const root = freshDir('inspect-root'), store = freshDir('inspect-store');
    const name = `pipeline-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/sh', '-c', 'echo ready; yes | sleep 30'], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 20_000);
    // yes fills the pipe (64 KiB) and blocks; give it the time to get there.
    await new Promise((r) => setTimeout(r, 1500));
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;

    const r = await snapvisor(['inspect', id.slice(0, 6), '--store', store, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout.toString());
    expect(report.inspectVersion).toBe(1);
    expect(report.checkpoint).toMatchObject({ id, name, parent: null, formatVersion: 2, generation: 0, rootfs: '/' });
    expect(report.sizes.pages).toBeGreaterThan(0);
    expect(report.sizes.storedPageBytes).toBe(report.sizes.pages * 4096);
    const byCmd = (argv: string[]) => report.processes.find((p: { cmdline: string[] }) => JSON.stringify(p.cmdline) === JSON.stringify(argv));
    const sh = byCmd(['/bin/sh', '-c', 'echo ready; yes | sleep 30']);
    const yes = byCmd(['yes']);
    const sleep = byCmd(['sleep', '30']);
    expect(sh).toMatchObject({ pid: 1, state: 'S', threads: [{ tid: 1, state: 'blocked', waiting: 'wait' }] });
    expect(yes).toMatchObject({ ppid: 1, state: 'S', threads: [{ comm: 'yes', state: 'blocked', waiting: 'pipe-write' }] });
    expect(sleep).toMatchObject({ ppid: 1, state: 'S', threads: [{ comm: 'sleep', waiting: 'sleep' }] });
    const yesOut = yes.files.find((f: { fd: number }) => f.fd === 1);
    const sleepIn = sleep.files.find((f: { fd: number }) => f.fd === 0);
    expect(yesOut).toMatchObject({ kind: 'pipe', access: 'w' });
    expect(sleepIn).toMatchObject({ kind: 'pipe', access: 'r', what: yesOut.what });
    expect(yes.mappings.length).toBeGreaterThan(3);
    expect(yes.memory.mappedBytes).toBe(yes.mappings.reduce((s: number, m: { sizeBytes: number }) => s + m.sizeBytes, 0));
    expect(yes.mappings.some((m: { name: string; perms: string }) => m.name.endsWith('/yes') && m.perms === 'r-xp')).toBe(true);
    expect(report.pipes).toEqual([{
      id: Number(/pipe:\[(\d+)\]/.exec(yesOut.what)![1]), bytesInFlight: 65536, readers: 1, writers: 1,
      ends: [{ pid: yes.pid, fd: 1, end: 'write' }, { pid: sleep.pid, fd: 0, end: 'read' }], fifo: null,
    }]);
    expect(report.hostFiles[0]).toEqual({ path: '/', role: 'rootfs', sizeBytes: null, mtimeMs: null });

    // The same, readable: the process table and the pipe with its bytes in flight.
    const text = await snapvisor(['inspect', id, '--store', store]);
    expect(text.status).toBe(0);
    const out = text.stdout.toString();
    expect(out).toContain(`checkpoint ${id} (${name})`);
    expect(out).toMatch(new RegExp(`^  ${yes.pid} +1 +S +1 +3 .* yes$`, 'm'));
    expect(out).toMatch(new RegExp(`^  ${sleep.pid} +1 +S +1 +3 .* sleep 30$`, 'm'));
    expect(out).toMatch(new RegExp(`^  ${report.pipes[0].id} +64\\.0 KiB +1 +1 +${yes.pid}:1 write, ${sleep.pid}:0 read$`, 'm'));
    expect(orphanStubs()).toEqual([]);
  }, 90_000);

  it('an unknown checkpoint or store is one line and status 1', async () => {
    const store = freshDir('inspect-empty');
    const r = await snapvisor(['inspect', 'abcdef12', '--store', store]);
    expect(r.status).toBe(1);
    expect(stderrLines(r.stderr)).toEqual([`snapvisor: no checkpoint store at ${store}`]);
    expect(r.stdout.toString()).toBe('');
  });
});
