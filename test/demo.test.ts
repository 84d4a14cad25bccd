/**
 * `snapvisor demo`, the README's first command: a python3 counter run, checkpointed (ending it)
 * and restored, counting on without a gap; the demo's store removed at the end; nothing left running.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, orphanStubs } from './helpers.js';

describe('snapvisor demo', () => {
  it('runs a counter, checkpoints it, restores it, and the restored one counts on from where it was', () => {
    const t0 = Date.now();
    // As the README runs it: the bin (the native front execs node for `demo`).
    const r = spawnSync(path.join(path.dirname(CLI), 'snapvisor'), ['demo'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.error, 'timed out').toBeUndefined();
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const out = r.stdout + r.stderr;
    const original = [...out.matchAll(/^ {2}original \| count +(\d+) /gm)].map((m) => Number(m[1]));
    const restored = [...out.matchAll(/^ {2}restored \| count +(\d+) /gm)].map((m) => Number(m[1]));
    expect(original[0]).toBe(1);
    expect(original.length).toBeGreaterThan(3);
    expect(restored[0]).toBe(original[original.length - 1] + 1);
    // Every number once, in order, across both runs.
    expect([...original, ...restored]).toEqual(Array.from({ length: restored[restored.length - 1] }, (_, i) => i + 1));
    expect(out).toMatch(new RegExp(`^demo: the restored counter went on from ${restored[0]} to ${restored[restored.length - 1]}: nothing lost, nothing repeated`, 'm'));
    const store = /^demo: removed the demo's store (\S+) /m.exec(out)?.[1];
    expect(store).toBeDefined();
    expect(fs.existsSync(store!)).toBe(false);
    expect(orphanStubs()).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(120_000);
  }, 150_000);
});
