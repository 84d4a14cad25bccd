/**
 * `snapvisor inspect` (issue 7 point 6; snapshots/inspect.ts): what a checkpoint of a shell
 * pipeline holds, as stable JSON and as readable tables; unknown ids refused with one line.
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointGate, freshDir, orphanStubs, PY_WAIT_FOR_GATE, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

describe('inspect', () => {
  it('inspect --json of a checkpoint of `yes | sleep 30` names both processes, the pipe between them and its bytes in flight', async () => {
    const root = freshDir('inspect-root'), store = freshDir('inspect-store');
    const name = `pipeline-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/sh', '-c', 'echo ready; yes | sleep 30'], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    // yes fills the pipe (64 KiB) and blocks: wait until ps shows it sleeping (S), not a fixed time.
    for (const t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 200))) {
      const ps = (await snapvisor(['--root', root, 'ps', name], { timeoutMs: 20_000 })).stdout.toString();
      if (/^\d+\s+1\s+\d+\s+S\s+(\S*\/)?yes$/m.test(ps)) break; // CMD: its argv (the shell ran it as `yes`)
      expect(Date.now() - t0, ps).toBeLessThan(30_000);
    }
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
    expect(report.checkpoint).toMatchObject({ id, name, parent: null, formatVersion: 6, generation: 0, rootfs: '/' }); // compressed: the default
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

  it('a heap grown by brk in many steps, with mmaps between them, is one row as in the guest\'s /proc/self/maps (not one per 132 KiB step), and restores intact', async () => {
    const root = freshDir('inspect-heap-root'), store = freshDir('inspect-heap-store');
    const name = `heap-${randomBytes(4).toString('hex')}`;
    // 100,000 objects of 1,000 bytes: glibc grows the heap by brk ~700 times; python3's own arenas are mmaps in between.
    // After ready it waits for its gate (made after the checkpoint), not a fixed time.
    const gate = checkpointGate('inspect-heap');
    const script = `import os, sys, hashlib, time\ndata = [bytes([i % 251]) * 1000 for i in range(100000)]\nprint([l.split()[0] for l in open("/proc/self/maps") if l.rstrip().endswith("[heap]")], flush=True)\nprint("ready", flush=True)\n${PY_WAIT_FOR_GATE}\nprint(hashlib.sha256(b"".join(data)).hexdigest(), flush=True)`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', script, gate.sandbox], { timeoutMs: 90_000 });
    const heapLine = await run.waitFor((l) => l.startsWith('['), 40_000);
    await run.waitFor((l) => l === 'ready', 30_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    gate.open();
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const report = JSON.parse((await snapvisor(['inspect', id, '--store', store, '--json'])).stdout.toString());
    const heap = report.processes[0].mappings.filter((m: { name: string }) => m.name === '[heap]');
    const heapBytes = heap.reduce((s: number, m: { sizeBytes: number }) => s + m.sizeBytes, 0);
    expect(heapBytes).toBeGreaterThan(90e6);
    expect(heap.map((m: { start: string; end: string }) => `${m.start.slice(2).padStart(8, '0')}-${m.end.slice(2).padStart(8, '0')}`)).toEqual(JSON.parse(heapLine.replace(/'/g, '"')));
    const restored = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
    expect(restored.status).toBe(0);
    const expected = createHash('sha256').update(Buffer.concat(Array.from({ length: 100000 }, (_, i) => Buffer.alloc(1000, i % 251)))).digest('hex');
    expect(restored.stdout.toString()).toBe(`${expected}\n`);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('sizes of an incremental checkpoint: the pages it holds, those new in it (with their bytes) and those it inherits, told apart', async () => {
    const root = freshDir('inspect-incr-root'), store = freshDir('inspect-incr-store');
    const name = `incr-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'echo ready; while :; do sleep 1; done'], { timeoutMs: 90_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const ids: string[] = [];
    for (const extra of [[], ['--no-compress']]) {
      const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running', ...extra], { timeoutMs: 30_000 });
      expect(cp.status).toBe(0);
      ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
    }
    expect((await snapvisor(['--root', root, 'kill', name])).status).toBe(0);
    expect(await run.done).toBe(137);
    const sizes = async (id: string) => JSON.parse((await snapvisor(['inspect', id, '--store', store, '--json'])).stdout.toString()).sizes;
    const full = await sizes(ids[0]), incr = await sizes(ids[1]);
    // A full checkpoint: every page is its own.
    expect(full.inheritedPages).toBe(0);
    expect(full.newPages).toBe(full.pages);
    expect(full.storedPageBytes).toBe(full.pages * 4096);
    // The incremental one holds as many pages, most of them in the first one's page file; its bytes are those of its new pages only.
    expect(incr.pages).toBeGreaterThan(100);
    expect(incr.inheritedPages).toBeGreaterThan(incr.newPages);
    expect(incr.newPages + incr.inheritedPages).toBe(incr.pages);
    expect(incr.storedPageBytes).toBe(incr.newPages * 4096);
    // `checkpoints` lists the same counts (PAGES, STORED).
    const listed = JSON.parse((await snapvisor(['checkpoints', '--store', store, '--json'])).stdout.toString());
    expect(listed.map((c: { pages: number; storedPageBytes: number }) => [c.pages, c.storedPageBytes])).toEqual([[full.pages, full.storedPageBytes], [incr.pages, incr.storedPageBytes]]);
    const size = (n: number) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
    const line = async (id: string) => (await snapvisor(['inspect', id, '--store', store])).stdout.toString().split('\n').find((l) => l.startsWith('sizes: '));
    expect(await line(ids[1])).toContain(`; ${incr.pages} pages: ${incr.newPages} new in this checkpoint (${size(incr.storedPageBytes)}), ${incr.inheritedPages} in the page files it inherits from; ${incr.zeroPages} zero pages; `);
    expect(await line(ids[0])).toContain(`; ${full.pages} pages, all new in this checkpoint (${size(full.storedPageBytes)}); ${full.zeroPages} zero pages; `);
  }, 120_000);

  it('an unknown checkpoint or store is one line and status 1', async () => {
    const store = freshDir('inspect-empty');
    const r = await snapvisor(['inspect', 'abcdef12', '--store', store]);
    expect(r.status).toBe(1);
    expect(stderrLines(r.stderr)).toEqual([`snapvisor: no checkpoint store at ${store}`]);
    expect(r.stdout.toString()).toBe('');
  });
});
