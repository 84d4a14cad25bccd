/**
 * A checkpoint's page work on several worker threads (snapshots/store.ts PageCrunch: one per CPU
 * but one, or SNAPVISOR_PAGE_WORKERS): this CI host has 2 CPUs, so one worker is the default here
 * and two are asked for. Both lanes' results come back in order: the compressed checkpoint (store
 * format 6, chunk checks) restores to the right next line, and `store check` finds every chunk
 * and host-file page sound.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/** 96 MiB of pages, distinct per page; then a numbered line every 20 ms. */
const GUEST = [
  'import sys, time',
  'x = bytearray(96 << 20)',
  'for j in range(0, len(x), 4096): x[j:j + 8] = (j // 4096 + 1).to_bytes(8, "little")',
  "print('ready', flush=True)",
  'i = 0',
  'while True:',
  '    print(i, flush=True); i += 1; time.sleep(0.02)',
].join('\n');

describe('page workers', () => {
  it('two page workers write a checkpoint that restores and checks sound', async () => {
    const base = freshDir('page-workers');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const env = { ...process.env, SNAPVISOR_PAGE_WORKERS: '2', SNAPVISOR_TRACE_CHECKPOINT: '1' };
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'pw', '--', '/usr/bin/python3', '-c', GUEST], { env, timeoutMs: 120_000 });
    await run.waitFor((l) => l === '5', 60_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', 'pw', '--store', store], { timeoutMs: 60_000 });
    expect(cp.stderr.toString()).toBe('');
    expect(cp.status).toBe(0);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    await run.done;
    // The sandbox's trace names the lanes the pages went through.
    expect(run.stderr()).toMatch(/buffers on 2 workers: [1-9]\d* \(/);
    const last = Number(run.lines.filter((l) => /^\d+$/.test(l)).pop());

    const r = snapvisorStreaming(['restore', id, '--store', store], { timeoutMs: 60_000 });
    await r.waitFor((_l, all) => all.length >= 2, 30_000);
    r.child.kill('SIGTERM');
    await r.done;
    expect(r.lines.slice(0, 2)).toEqual([String(last + 1), String(last + 2)]);
    const check = await snapvisor(['store', 'check', '--store', store], { timeoutMs: 60_000 });
    expect(check.stderr.toString()).toBe('');
    expect(check.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 180_000);
});
