/**
 * The checkpoint page writer's worker thread (snapshots/page-crunch-worker.ts, used from 32 MiB
 * of populated memory on): the built store (dist/, where the worker's .js file is) writes a
 * 48 MiB memory file of data, zero and partly-zero pages in ranges that start and end inside
 * read buffers, flat and compressed, then incremental checkpoints inheriting a quarter of it (36
 * MiB to read: on the worker) and all but its last MiB (inline); every image restores byte for
 * byte and passes `store check`; the same memory given as a host fd (MemorySource.fd, as a
 * checkpoint that ends its sandbox gives its memfd) is read where it is crunched, on the worker or
 * on the writer's thread. From the TypeScript sources (the property tests) the same work runs inline.
 */
import { spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from 'node:fs';
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

/** 48 MiB: page i holds i in its first word (every 7th page is zero, every 11th only its last byte). */
function memory(): { bytes: Uint8Array; populated: Array<[number, number]> } {
  const pages = 12 * 1024;
  const bytes = new Uint8Array(pages * PAGE);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < pages; i++) {
    if (i % 7 === 0) continue;
    if (i % 11 === 0) { bytes[i * PAGE + PAGE - 1] = 0x5a; continue; }
    view.setUint32(i * PAGE, i, true);
    view.setUint32(i * PAGE + 2000, i * 31, true);
  }
  // Ranges that begin and end inside 1 MiB read buffers, with holes between (never read).
  const populated: Array<[number, number]> = [[3 * PAGE, 200 * PAGE], [300 * PAGE, 9000 * PAGE], [9301 * PAGE, pages * PAGE - 9301 * PAGE]];
  for (const [o, l] of [[203, 97], [9300, 1]]) bytes.fill(0xee, o * PAGE, (o + l) * PAGE);
  return { bytes, populated };
}

function source(bytes: Uint8Array, populated: Array<[number, number]>): MemorySource {
  return {
    sizeBytes: bytes.length,
    populated,
    read: (o, l) => bytes.subarray(o, o + l),
    readInto: (o, buf) => { buf.set(bytes.subarray(o, o + buf.length)); },
  };
}

async function image(dir: string, id: string, size: number): Promise<Buffer> {
  const out = Buffer.alloc(size);
  await store.restoreMemory(dir, id, (o, d) => { out.set(d, o); });
  return out;
}

/** The same memory as a host file (sparse where it is not populated), read by fd: the writer's worker reads it itself (MemorySource.fd). */
function fileSource(bytes: Uint8Array, populated: Array<[number, number]>): { source: MemorySource; close(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'snapvisor-writer-mem-'));
  dirs.push(dir);
  const file = path.join(dir, 'memory');
  const fd = openSync(file, 'w+');
  ftruncateSync(fd, bytes.length);
  for (const [o, l] of populated) writeSync(fd, bytes, o, l, o);
  // readInto must not be used: it reads nothing, so a page read through it would be zero and fail the comparison.
  return { source: { ...source(bytes, populated), readInto: () => undefined, fd }, close: () => closeSync(fd) };
}

describe('checkpoint page writer with a worker thread', () => {
  it('reads a memory file given as an fd on the worker and on the writer\'s thread, flat and compressed, byte for byte', async () => {
    const { bytes, populated } = memory();
    const expected = Buffer.alloc(bytes.length);
    for (const [o, l] of populated) expected.set(bytes.subarray(o, o + l), o);
    const graph = { config: { rootfs: tmpdir() }, fs: {} };
    const mem = fileSource(bytes, populated);
    try {
      for (const compress of [false, true]) {
        const dir = mkdtempSync(path.join(tmpdir(), 'snapvisor-writer-'));
        dirs.push(dir);
        const s = await store.writeCheckpoint(dir, graph, mem.source, {}, undefined, { compress });
        expect((s as unknown as { pageWorker: boolean }).pageWorker).toBe(true);
        expect((await image(dir, s.id, bytes.length)).equals(expected)).toBe(true);
        expect(await store.checkStore(dir)).toEqual({ ok: [s.id], problems: [] });
      }
    } finally {
      mem.close();
    }
  }, 120_000);


  it('a compressed checkpoint read by fd (pieces taken by the worker and the writer\'s thread from one counter) writes the pack and restore cache the submit queue writes', async () => {
    const graph = { config: { rootfs: tmpdir() }, fs: {} };
    const whole = memory();
    // 3 MiB that do not compress (xorshift bytes), across pieces: those pieces go in the restore cache.
    let x = 0x2545f491;
    for (let p = 1500 * PAGE; p < 2268 * PAGE; p++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; whole.bytes[p] = x & 0xff; }
    // A memory file of whole pieces, and one whose last piece is shorter (finished on the writer's thread).
    for (const cut of [0, 3 * PAGE]) {
      const bytes = whole.bytes.subarray(0, whole.bytes.length - cut);
      const populated = whole.populated.map(([o, l]): [number, number] => [o, Math.min(l, bytes.length - o)]);
      const expected = Buffer.alloc(bytes.length);
      for (const [o, l] of populated) expected.set(bytes.subarray(o, o + l), o);
      const written: Array<{ pack: Buffer; cache: Buffer[] }> = [];
      const mem = fileSource(bytes, populated);
      try {
        // By fd (PageCrunch.pull), then read by the writer's thread and submitted in order.
        for (const src of [mem.source, source(bytes, populated)]) {
          const dir = mkdtempSync(path.join(tmpdir(), 'snapvisor-writer-'));
          dirs.push(dir);
          const s = await store.writeCheckpoint(dir, graph, src, {}, undefined, { compress: true });
          expect((s as unknown as { pageWorker: boolean }).pageWorker).toBe(true);
          // The cache and its piece map (which pieces the checkpoint put in it), before a restore fills the others.
          const cache = readdirSync(path.join(dir, 'cache')).filter((f) => f.startsWith(s.id) && !f.includes('.trailer')).sort().map((f) => readFileSync(path.join(dir, 'cache', f)));
          written.push({ pack: readFileSync(path.join(dir, 'pages', `${s.id}.pack`)), cache });
          expect((await image(dir, s.id, bytes.length)).equals(expected)).toBe(true);
          expect(await store.checkStore(dir)).toEqual({ ok: [s.id], problems: [] });
        }
      } finally {
        mem.close();
      }
      expect(written[0].pack.equals(written[1].pack)).toBe(true);
      expect(written[0].cache.length).toBe(2);
      expect(written[1].cache.length).toBe(2);
      expect(written[0].cache[1].filter((b) => b === 1).length).toBeGreaterThan(2);
      written[0].cache.forEach((c, i) => expect(c.equals(written[1].cache[i])).toBe(true));
    }
  }, 120_000);

  it('writes flat and compressed checkpoints of 48 MiB, and an incremental one, that restore byte for byte', async () => {
    const { bytes, populated } = memory();
    const expected = Buffer.alloc(bytes.length);
    for (const [o, l] of populated) expected.set(bytes.subarray(o, o + l), o);
    const nonZero = (b: Uint8Array): number => { let n = 0; for (let p = 0; p < b.length; p += PAGE) if (b.subarray(p, p + PAGE).some((x) => x)) n++; return n; };
    const graph = { config: { rootfs: tmpdir() }, fs: {} };
    for (const compress of [false, true]) {
      const dir = mkdtempSync(path.join(tmpdir(), 'snapvisor-writer-'));
      dirs.push(dir);
      const s = await store.writeCheckpoint(dir, graph, source(bytes, populated), {}, undefined, { compress });
      expect((s as unknown as { pageWorker: boolean }).pageWorker).toBe(true);
      expect(s.pages).toBe(nonZero(expected));
      expect((await image(dir, s.id, bytes.length)).equals(expected)).toBe(true);
      expect(await store.checkStore(dir)).toEqual({ ok: [s.id], problems: [] });
      if (compress) continue;

      // Incremental: the first quarter of the pages is still the first checkpoint's (layer 1), the
      // second half changed: 36 MiB to read, on the worker.
      const changed = Uint8Array.from(bytes);
      for (let p = bytes.length / 2; p < bytes.length; p += PAGE) changed[p + 100] ^= 0x33;
      const pages = bytes.length / PAGE;
      const backed = new Uint8Array(pages), checks = new Uint32Array(pages), nz = new Uint8Array(pages);
      for (const [off, c] of store.runsOf(s)) {
        const v = new DataView(c.buffer, c.byteOffset, c.byteLength);
        for (let i = 0; i < c.length / 4; i++) { checks[off / PAGE + i] = v.getUint32(i * 4, true); nz[off / PAGE + i] = 1; }
      }
      for (const [o, l] of populated) for (let p = o; p < Math.min(o + l, bytes.length / 4); p += PAGE) backed[p / PAGE] = 1;
      const inc = await store.writeCheckpoint(dir, graph, { ...source(changed, populated), inherited: { storeDir: dir, layerIds: [s.id], backed, checks, nonZero: nz } });
      expect((inc as unknown as { pageWorker: boolean }).pageWorker).toBe(true);
      expect(store.layersOf(inc)).toEqual([s.id]);
      const want = Buffer.alloc(bytes.length);
      for (const [o, l] of populated) want.set(changed.subarray(o, o + l), o);
      expect(inc.newPages).toBeLessThan(inc.pages);
      expect((await image(dir, inc.id, bytes.length)).equals(want)).toBe(true);
      expect((await store.checkStore(dir)).problems).toEqual([]);

      // All but the last 1 MiB inherited: too little to read for a worker, done inline; same image.
      for (const [o, l] of populated) for (let p = o; p < Math.min(o + l, bytes.length - (1 << 20)); p += PAGE) backed[p / PAGE] = 1;
      const buf = Uint8Array.from(bytes);
      for (let p = bytes.length - (1 << 20); p < bytes.length; p += PAGE) buf[p + 100] ^= 0x33;
      const small = await store.writeCheckpoint(dir, graph, { ...source(buf, populated), inherited: { storeDir: dir, layerIds: [s.id], backed, checks, nonZero: nz } });
      expect((small as unknown as { pageWorker: boolean }).pageWorker).toBe(false);
      expect(small.newPages).toBeLessThanOrEqual(256);
      const want2 = Buffer.alloc(bytes.length);
      for (const [o, l] of populated) want2.set(buf.subarray(o, o + l), o);
      expect((await image(dir, small.id, bytes.length)).equals(want2)).toBe(true);
    }
  }, 120_000);

  it('a store another process holds: the checkpoint, its pages written while the catalogue opens, is refused with one line and leaves no file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-held-'));
    dirs.push(dir);
    const { bytes, populated } = memory();
    const graph = { note: 'held' };
    const first = await store.writeCheckpoint(dir, graph, source(bytes, populated), {}, undefined, { compress: true });
    // Another process opens the catalogue (LevelDB's lock) and keeps it until its stdin closes.
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `import { Level } from 'level'; const db = new Level(${JSON.stringify(dir)}); await db.open(); console.log('held'); process.stdin.resume(); process.stdin.on('end', () => db.close().then(() => process.exit(0)));`], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('held')) resolve(); });
        holder.on('exit', (code) => reject(new Error(`the holder exited (${code})`)));
        setTimeout(() => reject(new Error('the holder did not open the store within 20 s')), 20_000);
      });
      for (const compress of [true, false]) {
        await expect(store.writeCheckpoint(dir, graph, source(bytes, populated), {}, undefined, { compress })).rejects.toThrow(`checkpoint store ${dir} is in use by another process`);
        expect(readdirSync(path.join(dir, 'pages')).sort()).toEqual([`${first.id}.pack`]);
        expect(readdirSync(path.join(dir, 'meta'))).toEqual([first.id]);
      }
    } finally {
      holder.stdin!.end();
      await new Promise((r) => holder.once('close', r));
    }
    const second = await store.writeCheckpoint(dir, graph, source(bytes, populated), {}, undefined, { compress: true });
    expect((await store.listCheckpoints(dir)).map((c) => c.id)).toEqual([first.id, second.id]);
  }, 60_000);

  it('a graph that cannot be encoded (it is encoded while the pages are written) fails with one line and leaves no file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'store-graph-'));
    dirs.push(dir);
    const { bytes, populated } = memory();
    const graph = { config: { rootfs: tmpdir() }, fs: {} };
    const first = await store.writeCheckpoint(dir, graph, source(bytes, populated), {}, undefined, { compress: true });
    for (const compress of [true, false]) {
      await expect(store.writeCheckpoint(dir, { ...graph, hook: () => 1 }, source(bytes, populated), {}, undefined, { compress }))
        .rejects.toThrow(/^cannot encode checkpoint graph: .*function/);
      expect(readdirSync(path.join(dir, 'pages')).sort()).toEqual([`${first.id}.pack`]);
      expect(readdirSync(path.join(dir, 'meta'))).toEqual([first.id]);
    }
    expect((await store.listCheckpoints(dir)).map((c) => c.id)).toEqual([first.id]);
    expect(await store.checkStore(dir)).toEqual({ ok: [first.id], problems: [] });
  }, 60_000);
});
