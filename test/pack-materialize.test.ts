/**
 * materializePack (snapshots/pack.ts: a pack's restore cache or `store check`'s scratch copy)
 * that finds a problem while chunks are still being decompressed on the thread pool settles them
 * before it answers: its caller closes the output fd next, and a chunk written after that would
 * land in whatever file took the fd's number. The built store (dist/) writes a compressed
 * checkpoint of 24 MiB of pages; its trailer, with one index entry past the middle made
 * malformed, is materialized; then the output fd is closed and its number taken at once by
 * another file, which must stay empty.
 */
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers.js';

const store = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'store.js')).href) as typeof import('../snapshots/store.js');
const pack = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'pack.js')).href) as typeof import('../snapshots/pack.js');
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

describe('materializing a pack', () => {
  it('answers a malformed index only once the chunks in flight have settled: nothing is written into a reused fd', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'snapvisor-materialize-'));
    dirs.push(dir);
    // 24 MiB of pages that compress little (a xorshift stream): each chunk takes a while to decompress.
    const bytes = new Uint8Array(24 << 20);
    const words = new Uint32Array(bytes.buffer);
    let x = 0x9e3779b9;
    for (let i = 0; i < words.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; words[i] = x >>> 0; }
    const s = await store.writeCheckpoint(dir, { config: { rootfs: tmpdir() }, fs: {} },
      { sizeBytes: bytes.length, populated: [[0, bytes.length]], read: (o, l) => bytes.subarray(o, o + l) }, {}, undefined, { compress: true });
    expect(readdirSync(path.join(dir, 'pages'))).toEqual([`${s.id}.pack`]);
    const packFd = openSync(path.join(dir, 'pages', `${s.id}.pack`), 'r');
    try {
      const t = pack.readPackTrailer(packFd);
      if (typeof t === 'string') throw new Error(t);
      const entries = t.index.length / 24;
      expect(entries).toBe(24);
      // Entry 16's memory offset not on a chunk boundary: found after 16 chunks were sent off to decompress.
      const index = Buffer.from(t.index);
      index.writeBigUInt64LE(index.readBigUInt64LE(16 * 24) + 4096n, 16 * 24);
      for (let round = 0; round < 5; round++) {
        const out = path.join(dir, `out.${round}`), victim = path.join(dir, `victim.${round}`);
        const outFd = openSync(out, 'w+');
        const made = await pack.materializePack(packFd, { ...t, index }, () => { throw new Error('no host files'); }, outFd);
        expect(made).toBe('its page pack index is malformed');
        closeSync(outFd);
        // The lowest free fd: the one just closed.
        const victimFd = openSync(victim, 'w+');
        try {
          expect(victimFd).toBe(outFd);
          // Chunks still decompressing (the thread pool takes ~1-3 ms each) would be written by now.
          await new Promise((r) => setTimeout(r, 300));
          expect(fstatSync(victimFd).size, `round ${round}`).toBe(0);
        } finally {
          closeSync(victimFd);
        }
      }
    } finally {
      closeSync(packFd);
    }
  }, 60_000);
});
