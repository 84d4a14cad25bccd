/**
 * A checkpoint whose page writing fails stops its page worker (snapshots/page-crunch-worker.ts)
 * while the worker may be compressing pack chunks: the worker must end itself between jobs, not
 * be terminated. Node 20 aborts the whole process (`Assertion failed: init_done_ && "close before
 * init"`, node_zlib.cc) when a worker is terminated between a zlib handle's construction and its
 * init, a window every brotliCompressSync opens; CI saw it end a sandbox whose checkpoint filled
 * its store (test/checkpoint-store-full.test.ts). Here the built store's PageCrunch is halted 100
 * times at random moments of a stream of small compressions (each a new brotli handle), in a
 * child process: before the fix it aborted within 2–7 s (4 runs of 4), after it runs to the end.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freshDir, REPO_ROOT } from './helpers.js';

const SCRIPT = `
const { PageCrunch } = await import(process.argv[2]);
for (let round = 0; round < 100; round++) {
  const crunch = PageCrunch.start(true);
  if (!crunch.threaded) throw new Error('no page worker');
  const results = [];
  for (let i = 0; i < 1000; i++) {
    // One page of data each: one brotliCompressSync, one new zlib handle, per job.
    results.push(crunch.submit(Buffer.alloc(4096, (i % 250) + 1), 4096, i * 4096, undefined, -1, undefined, false, {}).then(() => 'done', (e) => e.message));
  }
  await results[0];
  await new Promise((r) => setTimeout(r, Math.random() * 3));
  await crunch.halt();
  const outcomes = await Promise.all(results);
  // Every job either finished or was refused with the halt's reason: none is left hanging.
  for (const o of outcomes) if (o !== 'done' && o !== "the checkpoint's page worker was stopped") throw new Error('job ended with: ' + o);
}
console.log('survived');
`;

describe('the page worker of a failed checkpoint', () => {
  it('is halted between jobs while it compresses, and the process lives on (100 halts)', () => {
    const store = pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'store.js')).href;
    // A file, not `-e`: the worker would inherit --input-type and refuse to start.
    const script = path.join(freshDir('halt'), 'halt.mjs');
    fs.writeFileSync(script, SCRIPT);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [script, store], { encoding: 'utf8', timeout: 120_000 });
    expect(r.error, 'timed out').toBeUndefined();
    expect(r.stderr.split('\n').filter((l) => !/^\s*\d+: 0x/.test(l)).join('\n').slice(0, 2000)).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('survived\n');
    expect(Date.now() - t0).toBeLessThan(120_000);
  }, 150_000);
});
