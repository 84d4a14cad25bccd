/**
 * Incremental checkpoints (issue 7 point 5): a checkpoint of a restored sandbox into the same
 * store keeps the pages the sandbox never wrote in the page files they are already in, names
 * its parent, and costs what changed; a chain of three restores from each link, also after the
 * first is deleted; gc frees what nothing references; a damaged inherited page is refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointAfter, checkpointGate, freshDir, native, orphanStubs, restoresToTheEnd, snapvisor, snapvisorStreaming } from './helpers.js';

/**
 * A python3 holding ~20 MB of distinct 1,000-byte objects; after `ready` it rewrites one object
 * per line (a few pages), prints the line number, and after line 120 a digest of all of it.
 * Its arguments are pairs LINE GATE: after printing LINE it waits until the file GATE exists. The
 * test makes it once it has checkpointed there (checkpointGate), so the guest is still running
 * when a checkpoint comes however slow the machine.
 */
const GUEST = [
  'import hashlib, os, sys, time',
  'gates = dict(zip(map(int, sys.argv[1::2]), sys.argv[2::2]))',
  'data = [bytes([i % 251]) * 1000 for i in range(20000)]',
  "print('ready', flush=True)",
  'for i in range(1, 121):',
  '    data[(i * 7919) % 20000] = bytes([i % 13]) * 1000',
  '    print(i, flush=True)',
  '    time.sleep(0.05)',
  '    while i in gates and not os.path.exists(gates[i]): time.sleep(0.02)',
  "print('digest', hashlib.sha256(b''.join(data)).hexdigest(), flush=True)",
].join('\n');
const ARGV = ['/usr/bin/python3', '-c', GUEST];

interface Link { id: string; lastLine: number }

/** Gates for GUEST after each of `lines`, and the arguments that give them to a native run and to a sandbox. */
function gatesAfter(prefix: string, lines: number[]) {
  const gates = lines.map((l) => checkpointGate(`${prefix}-${l}`));
  const args = (side: 'native' | 'sandbox') => lines.flatMap((l, k) => [String(l), gates[k][side]]);
  return { gates, native: args('native'), sandbox: args('sandbox') };
}

async function inspectJson(store: string, id: string): Promise<{ checkpoint: { parent: string | null; formatVersion: number; inheritsFrom: string[] }; sizes: { pages: number; storedPageBytes: number } }> {
  const r = await snapvisor(['inspect', id, '--store', store, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout.toString());
}


describe('incremental checkpoints', () => {
  it('a chain of three: each restored sandbox\'s checkpoint stores only what it changed, names its parent, and every link restores, also after the first is deleted', async () => {
    const g = gatesAfter('inc', [3, 6, 9]);
    const nat = await native([...ARGV, ...g.native], { timeoutMs: 30_000 });
    expect(nat.status).toBe(0);
    const digest = nat.stdout.toString().split('\n').filter(Boolean).pop()!;
    expect(digest).toMatch(/^digest [0-9a-f]{64}$/);

    const base = freshDir('incremental');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    // 1. A full checkpoint of a fresh sandbox.
    const run1 = snapvisorStreaming(['--root', root, 'run', '--name', 'inc-a', '--', ...ARGV, ...g.sandbox], { timeoutMs: 90_000 });
    await run1.waitFor((l) => l === 'ready', 40_000);
    const c1 = await checkpointAfter(root, store, 'inc-a', run1, 3, ['--no-compress']);
    expect(c1.lastLine).toBe(3);
    g.gates[0].open();
    const i1 = await inspectJson(store, c1.id);
    expect(i1.checkpoint).toMatchObject({ parent: null, formatVersion: 2, inheritsFrom: [] });
    expect(i1.sizes.storedPageBytes).toBe(i1.sizes.pages * 4096);
    expect(i1.sizes.pages).toBeGreaterThan(4000); // ~20 MB of distinct objects and the interpreter

    // 2. Its restore, checkpointed again: only the pages it wrote are new.
    const run2 = snapvisorStreaming(['--root', root, 'restore', c1.id, '--store', store, '--name', 'inc-b'], { timeoutMs: 90_000 });
    const c2 = await checkpointAfter(root, store, 'inc-b', run2, 3, ['--no-compress']);
    expect(c2.lastLine).toBe(6);
    g.gates[1].open();
    const i2 = await inspectJson(store, c2.id);
    expect(i2.checkpoint).toMatchObject({ parent: c1.id, formatVersion: 3, inheritsFrom: [c1.id] });
    expect(i2.sizes.storedPageBytes).toBeLessThan(i1.sizes.storedPageBytes * 0.5);
    expect(c2.stdout).toMatch(new RegExp(`${i2.sizes.pages} pages \\(${i2.sizes.storedPageBytes / 4096} new`));

    // 3. And once more, from the incremental one: it inherits from both.
    const run3 = snapvisorStreaming(['--root', root, 'restore', c2.id, '--store', store, '--name', 'inc-c'], { timeoutMs: 90_000 });
    const c3 = await checkpointAfter(root, store, 'inc-c', run3, 3, ['--no-compress']);
    expect(c3.lastLine).toBe(9);
    g.gates[2].open();
    const i3 = await inspectJson(store, c3.id);
    expect(i3.checkpoint.parent).toBe(c2.id);
    expect(new Set(i3.checkpoint.inheritsFrom)).toEqual(new Set([c1.id, c2.id]));
    expect(i3.sizes.storedPageBytes).toBeLessThan(i1.sizes.storedPageBytes * 0.5);
    const listed = await snapvisor(['checkpoints', '--store', store, '--json']);
    expect(JSON.parse(listed.stdout.toString()).map((c: { id: string; parent?: string }) => [c.id, c.parent ?? null])).toEqual([[c1.id, null], [c2.id, c1.id], [c3.id, c2.id]]);

    // Every link restores to the native end.
    for (const link of [c1, c2, c3]) await restoresToTheEnd(store, link.id, link.lastLine, digest);

    // Deleting the first keeps the page file the others inherit from; they still restore.
    const del = await snapvisor(['delete', c1.id, '--store', store]);
    expect(del.stderr).toBe('');
    expect(del.stdout.toString()).toBe(`deleted checkpoint ${c1.id}\n`);
    expect(del.status).toBe(0);
    expect(fs.existsSync(path.join(store, 'pages', c1.id))).toBe(true);
    expect(fs.existsSync(path.join(store, 'meta', c1.id))).toBe(false);
    for (const link of [c2, c3]) await restoresToTheEnd(store, link.id, link.lastLine, digest);
    const check = await snapvisor(['store', 'check', '--store', store]);
    expect(check.status).toBe(0);
    const gc1 = await snapvisor(['gc', '--store', store]);
    expect(gc1.stdout.toString()).toBe('removed 0 files, 0 B freed\n');

    // Once nothing inherits from them, the page files go.
    for (const link of [c3, c2]) expect((await snapvisor(['delete', link.id, '--store', store])).status).toBe(0);
    expect(fs.readdirSync(path.join(store, 'pages'))).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 240_000);

  it('a running sandbox checkpointed again and again (--leave-running) stores only the pages written since, and each checkpoint restores', async () => {
    // The guest of the other cases, longer and faster: four checkpoints while it runs (at lines 2,
    // 7, 12 and 17, where it waits for the gate the test makes once it has checkpointed there).
    const argv = ['/usr/bin/python3', '-c', GUEST.replace('range(1, 121)', 'range(1, 401)').replace('time.sleep(0.05)', 'time.sleep(0.02)')];
    const at = [2, 7, 12, 17];
    const g = gatesAfter('inc-live', at);
    const nat = await native([...argv, ...g.native], { timeoutMs: 30_000 });
    const digest = nat.stdout.toString().split('\n').filter(Boolean).pop()!;
    const base = freshDir('incremental-live');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'live', '--', ...argv, ...g.sandbox], { timeoutMs: 150_000 });
    const links: Link[] = [];
    for (let i = 0; i < 4; i++) {
      await run.waitFor((l) => l === String(at[i]), 40_000);
      const cp = await snapvisor(['--root', root, 'checkpoint', 'live', '--store', store, '--leave-running', '--no-compress'], { timeoutMs: 30_000 });
      expect(cp.stderr).toBe('');
      expect(cp.status).toBe(0);
      g.gates[i].open();
      const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
      // Restores are checked by their digest.
      links.push({ id, lastLine: at[i] });
    }
    expect(await run.done).toBe(0);
    expect(run.lines[run.lines.length - 1]).toBe(digest);
    const reports = await Promise.all(links.map((l) => inspectJson(store, l.id)));
    expect(reports[0].checkpoint).toMatchObject({ parent: null, formatVersion: 2 });
    for (let i = 1; i < reports.length; i++) {
      expect(reports[i].checkpoint).toMatchObject({ parent: links[i - 1].id, formatVersion: 3 });
      expect(reports[i].checkpoint.inheritsFrom).toContain(links[0].id);
      expect(reports[i].sizes.storedPageBytes).toBeLessThan(reports[0].sizes.storedPageBytes * 0.5);
    }
    // Each restores to the native end (a page named in the wrong layer would break the heap).
    for (const link of links) {
      const r = await snapvisor(['restore', link.id, '--store', store], { timeoutMs: 40_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout.toString().split('\n').filter(Boolean).pop()).toBe(digest);
    }
    expect(orphanStubs()).toEqual([]);
  }, 240_000);

  it('a damaged page in an inherited page file stops the restore with one line naming it', async () => {
    const base = freshDir('incremental-bad');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const g = gatesAfter('inc-bad', [3, 6]);
    const run1 = snapvisorStreaming(['--root', root, 'run', '--name', 'bad-a', '--', ...ARGV, ...g.sandbox], { timeoutMs: 90_000 });
    await run1.waitFor((l) => l === 'ready', 40_000);
    const c1 = await checkpointAfter(root, store, 'bad-a', run1, 3, ['--no-compress']);
    g.gates[0].open();
    const run2 = snapvisorStreaming(['--root', root, 'restore', c1.id, '--store', store, '--name', 'bad-b'], { timeoutMs: 90_000 });
    const c2 = await checkpointAfter(root, store, 'bad-b', run2, 3, ['--no-compress']);
    g.gates[1].open();
    // Flip a byte of a page c2 inherits from c1's page file (its first non-zero page past 1 MiB).
    const pages = fs.openSync(path.join(store, 'pages', c1.id), 'r+');
    const buf = Buffer.alloc(4096);
    let at = 1 << 20;
    for (; ; at += 4096) {
      expect(fs.readSync(pages, buf, 0, 4096, at)).toBe(4096);
      if (buf.some((b) => b !== 0)) break;
    }
    buf[100] ^= 0xff;
    fs.writeSync(pages, buf, 0, 4096, at);
    fs.closeSync(pages);
    const r = await snapvisor(['restore', c2.id, '--store', store], { timeoutMs: 40_000 });
    expect(r.timedOut).toBe(false);
    expect(r.status).toBe(125);
    expect(r.stderr).toMatch(new RegExp(`^snapvisor: checkpoint ${c2.id} is corrupt: page at offset 0x[0-9a-f]+ \\(inherited\\) failed its checksum`, 'm'));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
