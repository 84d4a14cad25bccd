/**
 * Checkpoints the guest asks for (issue 7 point 4; src/kernel/guest-checkpoint.ts): a python3
 * guest warms up, writes /proc/snapvisor/checkpoint, and reads it back: the original goes on
 * reading "original", clones restored from the checkpoint read "restored". Without
 * --checkpoint-store the write fails with EOPNOTSUPP.
 */
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, snapvisor, stderrLines } from './helpers.js';
import { loadCheckpoint } from '../snapshots/store.js';
import type { KernelState } from '../src/kernel/state.js';

const GUEST = [
  'import json, decimal, asyncio, email, sqlite3, argparse, logging, os',
  'warm = sum(range(1000))',
  'try:',
  "    with open('/proc/snapvisor/checkpoint', 'w') as f: f.write('now')",
  'except OSError as e:',
  "    print('error', e.errno, flush=True)",
  "side = open('/proc/snapvisor/checkpoint').read().strip()",
  "gen = open('/proc/snapvisor/generation').read().strip()",
  "print(side, gen, warm, os.urandom(8).hex(), flush=True)",
].join('\n');

describe('guest-requested checkpoints', () => {
  it('a write to /proc/snapvisor/checkpoint checkpoints the sandbox: the original reads "original", its clones "restored"', async () => {
    const store = freshDir('gcp-store');
    const run = await snapvisor(['run', '--checkpoint-store', store, '--checkpoint-name', 'warm', '--', '/usr/bin/python3', '-c', GUEST], { timeoutMs: 60_000 });
    expect(run.timedOut).toBe(false);
    expect(run.status).toBe(0);
    const err = stderrLines(run.stderr);
    expect(err).toHaveLength(1);
    const m = /^snapvisor: checkpoint warm taken at the guest's request: ([0-9a-f]{16})$/.exec(err[0]);
    expect(m).not.toBeNull();
    const id = m![1];
    const orig = run.stdout.toString().trim().split(' ');
    expect(orig.slice(0, 3)).toEqual(['original', '0', '499500']);

    // The checkpoint left the original running: its copy-on-write hold on the original's memory is
    // not in the graph (no phantom user of any block, private VMAs copy-on-write only where shared).
    const g = (await loadCheckpoint(store, id)).graph as KernelState;
    for (const [b, blk] of Object.entries(g.memoryFile.blocks)) {
      for (const u of Object.keys(blk.users).map(Number)) expect(u > 0 || u === -0x7fffffff /* the page cache */, `block ${b} user ${u}`).toBe(true);
    }
    for (const as of Object.values(g.addressSpaces)) {
      for (const v of as.vmas) if (v.cow) expect(Object.keys(g.memoryFile.blocks[v.block].users).length, `VMA ${v.start.toString(16)}`).toBeGreaterThan(1);
    }

    const list = await snapvisor(['checkpoints', '--store', store, '--json']);
    expect(list.status).toBe(0);
    expect(JSON.parse(list.stdout.toString())).toEqual([expect.objectContaining({ id, name: 'warm' })]);

    const clones = await Promise.all([0, 1].map(() => snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 })));
    const seen = new Set<string>([orig[3]]);
    for (const c of clones) {
      expect(c.timedOut).toBe(false);
      expect(c.stderr).toBe('');
      expect(c.status).toBe(0);
      const line = c.stdout.toString().trim().split(' ');
      // The write returned (no error printed), the warm state is there, and the clone knows it is one.
      expect(line.slice(0, 3)).toEqual(['restored', '1', '499500']);
      seen.add(line[3]);
    }
    expect(seen.size).toBe(3);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a restored clone given --checkpoint-store can ask again: it reads "original", its own clones "restored"', async () => {
    const store = freshDir('gcp-chain');
    // A clone (generation 1) asks for a checkpoint of its own.
    const guest = GUEST.replace('print(side, gen', "if gen == '1':\n    open('/proc/snapvisor/checkpoint', 'w').write('again')\n    side = open('/proc/snapvisor/checkpoint').read().strip() + '-again'\nprint(side, gen");
    const run = await snapvisor(['run', '--checkpoint-store', store, '--', '/usr/bin/python3', '-c', guest], { timeoutMs: 60_000 });
    expect(run.status).toBe(0);
    expect(run.stdout.toString()).toMatch(/^original 0 499500 /);
    const first = /^snapvisor: checkpoint taken at the guest's request: ([0-9a-f]{16})$/.exec(run.stderr.trim())![1];
    const a = await snapvisor(['restore', first, '--store', store, '--checkpoint-store', store, '--checkpoint-name', 'again'], { timeoutMs: 60_000 });
    expect(a.status).toBe(0);
    expect(a.stdout.toString()).toMatch(/^original-again 1 499500 /);
    const second = /^snapvisor: checkpoint again taken at the guest's request: ([0-9a-f]{16})$/.exec(a.stderr.trim())![1];
    expect(second).not.toBe(first);
    // A clone of the clone's checkpoint resumes inside its write.
    const b = await snapvisor(['restore', second, '--store', store], { timeoutMs: 60_000 });
    expect(b.timedOut).toBe(false);
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    expect(b.stdout.toString()).toMatch(/^restored-again 1 499500 /);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('without --checkpoint-store the write fails with EOPNOTSUPP and a read says "none"', async () => {
    const r = await snapvisor(['run', '--', '/usr/bin/python3', '-c', GUEST], { timeoutMs: 60_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines[0]).toBe('error 95');
    expect(lines[1]).toMatch(/^none 0 499500 [0-9a-f]{16}$/);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});
