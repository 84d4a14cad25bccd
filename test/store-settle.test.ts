/**
 * The store's catalogue between checkpoints (docs/snapshot-format.md "Settling the catalogue",
 * "Writing and visibility"): settleCatalogue turns LevelDB's log of the last write into a table,
 * so that the next open has nothing to replay, and leaves a catalogue another process holds
 * alone; an open that finds the catalogue held by another process waits for it (up to 2 s)
 * instead of failing at once, so a checkpoint written while another process briefly holds the
 * store (a sandbox settling it) goes through.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';
import type { MemorySource } from '../snapshots/store.js';

const PAGE = 4096;
const store = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'store.js')).href) as typeof import('../snapshots/store.js');
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

/** 1 MiB of non-zero pages. */
function source(): MemorySource {
  const bytes = new Uint8Array(256 * PAGE).map((_, i) => (i * 7) % 251 + 1);
  return { sizeBytes: bytes.length, populated: [[0, bytes.length]], read: (o, l) => bytes.subarray(o, o + l), readInto: (o, buf) => { buf.set(bytes.subarray(o, o + buf.length)); } };
}

/** Bytes in the store's LevelDB logs (what the next open replays). */
const logBytes = (dir: string): number => readdirSync(dir).filter((n) => n.endsWith('.log')).reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);

/** Another process opens the catalogue of `dir` (LevelDB's lock) and holds it `ms` ms (forever if 0); resolves once it holds it. */
async function holdStore(dir: string, ms: number): Promise<{ close(): Promise<void> }> {
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `import { Level } from 'level'; const db = new Level(${JSON.stringify(dir)}); await db.open(); console.log('held');
const end = () => db.close().then(() => process.exit(0)); process.stdin.resume(); process.stdin.on('end', end); if (${ms}) setTimeout(end, ${ms});`], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('held')) resolve(); });
    holder.on('exit', (code) => reject(new Error(`the holder exited (${code})`)));
    setTimeout(() => reject(new Error('the holder did not open the store within 20 s')), 20_000);
  });
  const closed = new Promise((r) => holder.once('close', r));
  return { close: async () => { holder.stdin!.end(); await closed; } };
}

describe('the catalogue between checkpoints', () => {
  it('settleCatalogue leaves nothing in the log for the next open, and leaves a store another process holds alone', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-settle-'));
    dirs.push(dir);
    const graph = { note: 'settle', blob: new Uint8Array(100_000).fill(3) };
    const first = await store.writeCheckpoint(dir, graph, source(), {}, undefined, { compress: true });
    expect(logBytes(dir)).toBeGreaterThan(100_000); // the graph, in the log until the next open
    await store.settleCatalogue(dir);
    expect(logBytes(dir)).toBe(0);
    expect((await store.listCheckpoints(dir)).map((c) => c.id)).toEqual([first.id]);

    const second = await store.writeCheckpoint(dir, graph, source(), {}, undefined, { compress: true });
    const held = await holdStore(dir, 0);
    try {
      const t0 = performance.now();
      await store.settleCatalogue(dir); // no wait for the lock (2 s for an open that needs it), no error
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      await held.close();
    }
    expect((await store.listCheckpoints(dir)).map((c) => c.id)).toEqual([first.id, second.id]);
  }, 60_000);

  it('a checkpoint whose store another process holds for a moment waits for it and is written', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-wait-'));
    dirs.push(dir);
    const first = await store.writeCheckpoint(dir, { note: 'one' }, source(), {}, undefined, { compress: true });
    const held = await holdStore(dir, 300);
    try {
      const second = await store.writeCheckpoint(dir, { note: 'two' }, source(), {}, undefined, { compress: true });
      expect((await store.listCheckpoints(dir)).map((c) => c.id)).toEqual([first.id, second.id]);
    } finally {
      await held.close();
    }
  }, 60_000);
});
