/**
 * Property tests of the snapshot store (snapshots/store.ts): round trips of arbitrary
 * graphs and sparse memory, page files (non-zero pages only, zero pages as holes),
 * ordering, visibility of incomplete writes, prefix ids, deletion with its sweep, lock-free
 * opening for restore, and corruption of every kind of record and file.
 */
import { mkdtempSync, rmSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync, closeSync, openSync, writeSync, readSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomFillSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Level } from 'level';
import {
  SnapshotError, checkStore, deleteCheckpoint, listCheckpoints, loadCheckpoint, openCheckpoint, restoreMemory, writeCheckpoint,
  type MemorySource,
} from '../snapshots/store.js';
import {
  FORMAT_VERSION, FULL_FORMAT_VERSION, READ_FORMAT_VERSIONS, GRAPH_CHUNK_BYTES, PAGE_SIZE, decodeCbor, graphKey, manifestKey, pagemapKey, sealManifest,
} from '../snapshots/format.js';

const PAGE = PAGE_SIZE;
let tmpDirs: string[] = [];

/** A fresh store path (not yet created) inside a fresh tmp dir. */
function freshStore(): string {
  const dir = mkdtempSync(join(tmpdir(), 'snapvisor-store-test-'));
  tmpDirs.push(dir);
  return join(dir, 'store');
}
function cleanup(): void {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  tmpDirs = [];
}
afterEach(cleanup);

async function withDb<T>(store: string, fn: (db: Level<string, Uint8Array>) => Promise<T>): Promise<T> {
  const db = new Level<string, Uint8Array>(store, { keyEncoding: 'utf8', valueEncoding: 'view' });
  await db.open({ createIfMissing: false });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
/** Names of the files in the store's pages/ and meta/ directories. */
function storeFiles(store: string): string[] {
  const out: string[] = [];
  for (const d of ['pages', 'meta']) {
    try { for (const n of readdirSync(join(store, d))) out.push(`${d}/${n}`); } catch { /* not made yet */ }
  }
  return out.sort();
}
/** Bytes of disk a file really uses (holes cost nothing). */
const allocatedBytes = (path: string): number => statSync(path).blocks * 512;

async function keysWith(store: string, prefix: string): Promise<string[]> {
  return withDb(store, async (db) => {
    const keys: string[] = [];
    for await (const k of db.keys()) if (k.startsWith(prefix)) keys.push(k);
    return keys;
  });
}

// ---------------------------------------------------------------------------
// Memory model

type PageSpec =
  | { k: 'hole' }                       // outside the populated ranges (holds junk that must never be read)
  | { k: 'zero' }                       // populated but all zero
  | { k: 'fill'; v: number }            // small alphabet: duplicates are likely
  | { k: 'rand'; seed: number }         // pseudo-random contents
  | { k: 'lastByte'; v: number };       // zero except the last byte (zero-check edge)

const pageSpecArb: fc.Arbitrary<PageSpec> = fc.oneof(
  fc.constant({ k: 'hole' as const }),
  fc.constant({ k: 'zero' as const }),
  fc.record({ k: fc.constant('fill' as const), v: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ k: fc.constant('rand' as const), seed: fc.integer({ min: 0, max: 0x7fffffff }) }),
  fc.record({ k: fc.constant('lastByte' as const), v: fc.integer({ min: 1, max: 255 }) }),
);

interface TestMemory extends MemorySource {
  backing: Uint8Array;
  /** Expected restored image: the backing with holes zeroed. */
  expected: Uint8Array;
  /** Page indices that are non-zero in `expected`. */
  nonZero: number[];
  zeroPopulated: number;
  distinct: number;
}

function makeMemory(specs: PageSpec[], reverse: boolean): TestMemory {
  const n = specs.length;
  const backing = new Uint8Array(n * PAGE);
  const expected = new Uint8Array(n * PAGE);
  const populated: Array<[number, number]> = [];
  const nonZero: number[] = [];
  const contents = new Set<string>();
  let zeroPopulated = 0;
  specs.forEach((s, i) => {
    const page = backing.subarray(i * PAGE, (i + 1) * PAGE);
    switch (s.k) {
      case 'hole': page.fill(0xee); break;
      case 'zero': break;
      case 'fill': page.fill(s.v); break;
      case 'rand': {
        let x = s.seed | 1;
        for (let j = 0; j < PAGE; j++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; page[j] = x & 0xff; }
        break;
      }
      case 'lastByte': page[PAGE - 1] = s.v; break;
    }
    if (s.k === 'hole') return;
    const last = populated[populated.length - 1];
    if (last !== undefined && last[0] + last[1] === i * PAGE && i % 5 !== 0) last[1] += PAGE; // some adjacent ranges stay split
    else populated.push([i * PAGE, PAGE]);
    expected.set(page, i * PAGE);
    if (page.every((b) => b === 0)) zeroPopulated++;
    else {
      nonZero.push(i);
      contents.add(Buffer.from(page).toString('hex'));
    }
  });
  if (reverse) populated.reverse();
  const scratch = new Uint8Array(2 << 20);
  return {
    sizeBytes: n * PAGE,
    populated,
    // Returns a view of a scratch buffer that the next read overwrites; refuses reads outside populated ranges.
    read(offset: number, length: number): Uint8Array {
      for (let p = offset; p < offset + length; p += PAGE) {
        if (!populated.some(([o, l]) => p >= o && p < o + l)) throw new Error(`read of unpopulated page at ${p}`);
      }
      const view = scratch.subarray(0, length);
      view.set(backing.subarray(offset, offset + length));
      return view;
    },
    backing, expected, nonZero, zeroPopulated, distinct: contents.size,
  };
}

/** Restore into a fresh image, checking the shape of every write call. */
async function restoreImage(store: string, id: string, sizeBytes: number): Promise<{ image: Uint8Array; written: Set<number>; pages: number }> {
  const image = new Uint8Array(sizeBytes);
  const written = new Set<number>();
  let lastEnd = -1;
  const { pages } = await restoreMemory(store, id, (offset, data) => {
    expect(offset % PAGE).toBe(0);
    expect(offset).toBeGreaterThan(lastEnd - 1);
    expect(data.length % PAGE === 0 || offset + data.length === sizeBytes).toBe(true);
    expect(offset + data.length).toBeLessThanOrEqual(sizeBytes);
    for (let p = offset; p < offset + data.length; p += PAGE) written.add(p / PAGE);
    image.set(data, offset);
    lastEnd = offset + data.length;
  });
  return { image, written, pages };
}

// ---------------------------------------------------------------------------
// Graph model

/** cbor-x stores -0 as 0 and renames own `__proto__` keys (documented); keep generated data clear of both. */
function sanitize(v: unknown): unknown {
  if (typeof v === 'number') return Object.is(v, -0) ? 0 : v;
  if (Array.isArray(v)) return v.map(sanitize);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [sanitize(k), sanitize(x)]));
  if (v instanceof Set) return new Set([...v].map(sanitize));
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof Date) return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) if (k !== '__proto__') out[k] = sanitize((v as Record<string, unknown>)[k]);
  return out;
}

const graphArb = fc.record({
  json: fc.jsonValue({ maxDepth: 3 }),
  obj: fc.object({ maxDepth: 2, withBigInt: true, withTypedArray: true, withMap: true, withSet: true }),
  big: fc.bigInt(),
  huge: fc.bigInt({ min: -(2n ** 130n), max: 2n ** 130n }),
  bytes: fc.uint8Array({ maxLength: 64 }),
  tasks: fc.array(fc.record({
    tid: fc.nat(),
    regs: fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { minLength: 1, maxLength: 4 }).map((a) => BigUint64Array.from(a)),
    stack: fc.uint8Array({ maxLength: 32 }),
    name: fc.string(),
  }), { maxLength: 3 }),
}).map(sanitize);

// ---------------------------------------------------------------------------

describe('snapshot store', () => {
  it('round-trips arbitrary graphs and sparse memory', async () => {
    await fc.assert(
      fc.asyncProperty(graphArb, fc.array(pageSpecArb, { maxLength: 40 }), fc.boolean(), async (graph, specs, reverse) => {
        const store = freshStore();
        const mem = makeMemory(specs, reverse);
        const summary = await writeCheckpoint(store, graph, mem, { name: 'prop', note: 'round trip', custom: [1n, 'x'] });
        expect(summary.id).toMatch(/^[0-9a-f]{16}$/);
        expect(summary.pages).toBe(mem.nonZero.length);
        expect(summary.zeroPages).toBe(mem.zeroPopulated);
        expect(summary.newPages).toBe(mem.nonZero.length);
        expect(summary.storedPageBytes).toBe(mem.nonZero.length * PAGE);

        const loaded = await loadCheckpoint(store, summary.id);
        expect(loaded.id).toBe(summary.id);
        expect(loaded.graph).toEqual(graph);
        expect(loaded.memorySizeBytes).toBe(mem.sizeBytes);
        expect(loaded.manifest).toMatchObject({ ...summary, note: 'round trip', custom: [1n, 'x'], formatVersion: FULL_FORMAT_VERSION });

        const { image, written, pages } = await restoreImage(store, summary.id, mem.sizeBytes);
        expect(pages).toBe(mem.nonZero.length);
        expect([...written].sort((a, b) => a - b)).toEqual(mem.nonZero);
        expect(Buffer.from(image).equals(Buffer.from(mem.expected))).toBe(true);
        // The page file is the memory image itself: same offsets, only non-zero pages allocated.
        const pageFile = join(store, 'pages', summary.id);
        expect(readFileSync(pageFile).equals(Buffer.from(mem.expected))).toBe(true);
        expect(allocatedBytes(pageFile)).toBeLessThanOrEqual((mem.nonZero.length + 1) * PAGE); // + an ext4 extent-tree block
        expect(storeFiles(store)).toEqual([`meta/${summary.id}`, `pages/${summary.id}`]);
        // The lock-free path used by restores sees the same checkpoint.
        const opened = await openCheckpoint(store, summary.id);
        closeSync(opened.pageFd);
        expect(opened.graph).toEqual(graph);
        expect(opened.manifest).toEqual(loaded.manifest);
        expect(opened.runs.reduce((n, r) => n + r[1].length / 4, 0)).toBe(mem.nonZero.length);
        expect(await checkStore(store)).toEqual({ ok: [summary.id], problems: [] });
        cleanup();
      }),
      { numRuns: 30 },
    );
  });

  it('round-trips sparse memory through a compressed pack whose 1 MiB pieces straddle reads and ranges', async () => {
    // Memory of up to tens of MiB: reads of 4 MiB, pieces of 1 MiB; stretches of pages (non-zero, zero or
    // outside the populated ranges) of random lengths, ranges split at random points, read through
    // `read` (views) or `readInto` (copies), with a partial last page or not.
    const stretchArb = fc.record({ spec: pageSpecArb, pages: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 1100 })) });
    await fc.assert(
      fc.asyncProperty(fc.array(stretchArb, { minLength: 1, maxLength: 16 }), fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 4095 }), async (stretches, reverse, into, tail) => {
        const specs = stretches.flatMap(({ spec, pages }) => Array.from({ length: pages }, () => spec));
        const mem = makeMemory(specs, reverse);
        const cut = specs.length > 0 && tail > 0 && specs[specs.length - 1].k !== 'hole' ? PAGE - tail : 0;
        const sizeBytes = mem.sizeBytes - cut;
        const populated = mem.populated.map(([o, l]) => [o, o + l > sizeBytes ? sizeBytes - o : l] as [number, number]);
        // Like makeMemory's `read` (a view of a scratch buffer the next read overwrites; no read
        // outside the populated ranges), with room for the writer's 4 MiB reads.
        const scratch = new Uint8Array(4 << 20);
        const read = (offset: number, length: number): Uint8Array => {
          for (let p = offset; p < offset + length; p += PAGE) {
            if (!populated.some(([o, l]) => p >= o && p < o + l)) throw new Error(`read of unpopulated page at ${p}`);
          }
          const view = scratch.subarray(0, length);
          view.set(mem.backing.subarray(offset, offset + length));
          return view;
        };
        const source: MemorySource = into ? { sizeBytes, populated, read, readInto: (o, buf) => { buf.set(read(o, buf.length)); } } : { sizeBytes, populated, read };
        const expected = mem.expected.subarray(0, sizeBytes);
        const nonZero = mem.nonZero.filter((i) => !Buffer.from(expected.subarray(i * PAGE, (i + 1) * PAGE)).equals(Buffer.alloc(Math.min(PAGE, sizeBytes - i * PAGE))));
        const store = freshStore();
        // A restore of a pack looks up host files beneath the graph's rootfs (none here).
        const summary = await writeCheckpoint(store, { config: { rootfs: tmpdir() }, fs: {} }, source, {}, undefined, { compress: true });
        expect(summary.pages).toBe(nonZero.length);
        expect(summary.newPages).toBe(nonZero.length);
        const { image, pages } = await restoreImage(store, summary.id, sizeBytes);
        expect(pages).toBe(nonZero.length);
        expect(Buffer.from(image).equals(Buffer.from(expected))).toBe(true);
        expect(await checkStore(store)).toEqual({ ok: [summary.id], problems: [] });
        cleanup();
      }),
      {
        numRuns: 20,
        // A piece whose pages come from two reads (a range ends inside it): the first read's pages must be kept.
        examples: [[[{ spec: { k: 'rand', seed: 1 }, pages: 1 }, { spec: { k: 'hole' }, pages: 1 }, { spec: { k: 'rand', seed: 2 }, pages: 1 }], false, true, 0]],
      },
    );
  });

  it('splits large graphs into 1 MiB chunks and handles a partial last page', async () => {
    const store = freshStore();
    const blob = randomFillSync(new Uint8Array(2 * GRAPH_CHUNK_BYTES + 1234));
    const size = 3 * PAGE + 100;
    const backing = new Uint8Array(size);
    backing[5] = 1;
    backing[3 * PAGE + 99] = 7;
    const mem: MemorySource = { sizeBytes: size, populated: [[0, 4 * PAGE]], read: (o, l) => backing.subarray(o, o + l) };
    const s = await writeCheckpoint(store, { blob }, mem);
    expect(s.pages).toBe(2);
    expect(s.zeroPages).toBe(2);
    expect((await keysWith(store, `graph/${s.id}/`)).length).toBe(3);
    const loaded = await loadCheckpoint(store, s.id);
    expect(Buffer.from(loaded.graph.blob).equals(Buffer.from(blob))).toBe(true);
    const { image, pages } = await restoreImage(store, s.id, size);
    expect(pages).toBe(2);
    expect(Buffer.from(image).equals(Buffer.from(backing))).toBe(true);
  });

  it('gives each checkpoint its own page file: deleting one keeps the other whole, deleting both leaves nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(pageSpecArb, { minLength: 1, maxLength: 30 }), async (specs) => {
        const store = freshStore();
        const mem = makeMemory(specs, false);
        const a = await writeCheckpoint(store, { n: 1 }, mem, { name: 'a' });
        const b = await writeCheckpoint(store, { n: 2 }, mem, { name: 'b', parent: a.id });
        expect(a.newPages).toBe(mem.nonZero.length);
        expect(b.newPages).toBe(mem.nonZero.length);
        expect(b.storedPageBytes).toBe(mem.nonZero.length * PAGE);
        expect(b.pages).toBe(a.pages);
        // Only the non-zero pages take space (plus, on ext4, one extent-tree block once a file has more than 4 extents).
        for (const id of [a.id, b.id]) expect(allocatedBytes(join(store, 'pages', id))).toBeLessThanOrEqual((mem.nonZero.length + 1) * PAGE);
        expect(storeFiles(store)).toEqual([`meta/${a.id}`, `meta/${b.id}`, `pages/${a.id}`, `pages/${b.id}`].sort());

        const list = await listCheckpoints(store);
        expect(list.map((c) => c.id)).toEqual([a.id, b.id]);
        expect(list[1]).toEqual(b);
        expect(list[1].parent).toBe(a.id);

        // Deleting one keeps the other restorable; deleting both removes everything.
        await deleteCheckpoint(store, a.id);
        expect((await listCheckpoints(store)).map((c) => c.id)).toEqual([b.id]);
        expect((await restoreImage(store, b.id, mem.sizeBytes)).image).toEqual(mem.expected);
        expect(storeFiles(store)).toEqual([`meta/${b.id}`, `pages/${b.id}`]);
        await deleteCheckpoint(store, b.id.slice(0, 5));
        expect(await listCheckpoints(store)).toEqual([]);
        expect(await keysWith(store, '')).toEqual([]);
        expect(storeFiles(store)).toEqual([]);
        cleanup();
      }),
      { numRuns: 20 },
    );
  });

  it('lists many checkpoints oldest first, also when written concurrently', async () => {
    const store = freshStore();
    const mem = makeMemory([{ k: 'fill', v: 1 }, { k: 'zero' }, { k: 'rand', seed: 9 }], false);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await writeCheckpoint(store, { i }, mem, { name: `c${i}` })).id);
    const concurrent = await Promise.all([0, 1, 2].map((i) => writeCheckpoint(store, { i }, mem)));
    const list = await listCheckpoints(store);
    expect(list.slice(0, 5).map((c) => c.id)).toEqual(ids);
    expect(new Set(list.slice(5).map((c) => c.id))).toEqual(new Set(concurrent.map((c) => c.id)));
    expect(list.slice(0, 5).map((c) => c.name)).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
  });

  it('does not show a checkpoint whose write never completed, and sweeps its records', async () => {
    const store = freshStore();
    const mem = makeMemory([{ k: 'fill', v: 3 }], false);
    const done = await writeCheckpoint(store, { ok: true }, mem);
    const ghost = 'abcdef0123456789';
    // What a write killed before its final batch leaves: a page file, an unfinished restore record, catalogue records.
    writeFileSync(join(store, 'pages', ghost), new Uint8Array(PAGE).fill(9));
    writeFileSync(join(store, 'meta', `${ghost}.tmp`), new Uint8Array([1, 2, 3]));
    await withDb(store, (db) => db.batch([
      { type: 'put', key: graphKey(ghost, 0), value: new Uint8Array([0xa0]) },
      { type: 'put', key: pagemapKey(ghost), value: new Uint8Array([0x80]) },
    ]));
    expect((await listCheckpoints(store)).map((c) => c.id)).toEqual([done.id]);
    await expect(loadCheckpoint(store, ghost)).rejects.toThrow(/not found in store/);
    await expect(openCheckpoint(store, ghost)).rejects.toThrow(/not found in store/);
    await expect(restoreMemory(store, 'abcd', () => {})).rejects.toBeInstanceOf(SnapshotError);
    await deleteCheckpoint(store, done.id);
    expect(await keysWith(store, '')).toEqual([]);
    expect(storeFiles(store)).toEqual([]);
  });

  it('accepts unique id prefixes and rejects unknown, short or ambiguous ones', async () => {
    const store = freshStore();
    const mem = makeMemory([{ k: 'fill', v: 1 }], false);
    const s = await writeCheckpoint(store, { x: 1 }, mem);
    expect((await loadCheckpoint(store, s.id.slice(0, 4))).id).toBe(s.id);
    expect((await loadCheckpoint(store, s.id.toUpperCase())).id).toBe(s.id);
    const other = s.id[0] === '0' ? '1' : '0';
    await expect(loadCheckpoint(store, other + s.id.slice(1))).rejects.toThrow(/not found in store/);
    await expect(loadCheckpoint(store, s.id.slice(0, 3))).rejects.toThrow(/invalid checkpoint id/);
    await expect(loadCheckpoint(store, 'zzzzzz')).rejects.toBeInstanceOf(SnapshotError);
    await expect(deleteCheckpoint(store, other + s.id.slice(1))).rejects.toBeInstanceOf(SnapshotError);

    // Two manifests sharing a prefix (forged: resolution looks at keys only).
    const bytes = await withDb(store, (db) => db.get(manifestKey(s.id)));
    const m = decodeCbor(bytes!) as Record<string, unknown>;
    await withDb(store, (db) => db.batch(['abcd000000000001', 'abcd000000000002'].map((id) => (
      { type: 'put' as const, key: manifestKey(id), value: sealManifest({ ...m, id }) }))));
    await expect(loadCheckpoint(store, 'abcd')).rejects.toThrow(/ambiguous/);
  });

  it('refuses a missing store without creating it', async () => {
    const store = freshStore();
    for (const op of [
      () => loadCheckpoint(store, 'abcd'), () => listCheckpoints(store),
      () => restoreMemory(store, 'abcd', () => {}), () => deleteCheckpoint(store, 'abcd'),
      () => openCheckpoint(store, 'abcd'), () => checkStore(store),
    ]) {
      await expect(op()).rejects.toThrow(`no checkpoint store at ${store}`);
    }
    expect(existsSync(store)).toBe(false);
  });

  it('refuses another format version with a clear message', async () => {
    const store = freshStore();
    const s = await writeCheckpoint(store, { v: 1 }, makeMemory([{ k: 'fill', v: 2 }], false));
    await withDb(store, async (db) => {
      const m = decodeCbor((await db.get(manifestKey(s.id)))!) as Record<string, unknown>;
      await db.put(manifestKey(s.id), sealManifest({ ...m, formatVersion: FORMAT_VERSION + 1 }));
    });
    await expect(loadCheckpoint(store, s.id)).rejects.toThrow(new RegExp(`format version ${FORMAT_VERSION + 1}.*only format versions ${READ_FORMAT_VERSIONS.join(', ')}`));
    await expect(listCheckpoints(store)).rejects.toBeInstanceOf(SnapshotError);
  });

  it('detects a flipped byte in any record or file, naming the checkpoint', async () => {
    const store = freshStore();
    const specs: PageSpec[] = [{ k: 'rand', seed: 1 }, { k: 'zero' }, { k: 'fill', v: 1 }, { k: 'fill', v: 1 }, { k: 'hole' }, { k: 'rand', seed: 2 }];
    const mem = makeMemory(specs, false);
    const s = await writeCheckpoint(store, { blob: new Uint8Array(GRAPH_CHUNK_BYTES + 10).fill(5), big: 2n ** 70n, text: 'hello' }, mem, { name: 'victim' });
    const readAll = async (): Promise<void> => {
      await loadCheckpoint(store, s.id);
      await restoreMemory(store, s.id, () => {});
      closeSync((await openCheckpoint(store, s.id)).pageFd);
      const check = await checkStore(store);
      if (check.problems.length) throw new SnapshotError(check.problems.join('; '));
      expect(check.ok).toEqual([s.id]);
    };
    await readAll(); // intact

    const files = { meta: join(store, 'meta', s.id), pages: join(store, 'pages', s.id) };
    const kinds = ['manifest/', 'graph/', 'pagemap/', 'meta', 'pages'] as const;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...kinds), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 7 }), async (kind, which, pos, bit) => {
        let restoreOriginal: () => Promise<void>;
        if (kind === 'meta' || kind === 'pages') {
          const file = files[kind];
          const original = readFileSync(file);
          const bad = Buffer.from(original);
          bad[pos % bad.length] ^= 1 << bit;
          writeFileSync(file, bad);
          restoreOriginal = async () => writeFileSync(file, original);
        } else {
          const keys = await keysWith(store, kind);
          const key = keys[which % keys.length];
          const original = await withDb(store, async (db) => {
            const value = Uint8Array.from((await db.get(key))!);
            const bad = Uint8Array.from(value);
            bad[pos % bad.length] ^= 1 << bit;
            await db.put(key, bad);
            return value;
          });
          restoreOriginal = () => withDb(store, (db) => db.put(key, original));
        }
        try {
          const err = await readAll().then(() => undefined, (e: unknown) => e);
          expect(err).toBeInstanceOf(SnapshotError);
          expect((err as Error).message).toMatch(/corrupt|format version/);
          expect((err as Error).message).toContain(s.id);
          expect((err as Error).message).not.toContain('\n');
        } finally {
          await restoreOriginal();
        }
      }),
      // Always also the restore record's quick check (bytes 12-15 of SVMETA03), which no sha256 covers.
      { numRuns: 40, examples: [['meta', 0, 12, 0], ['meta', 0, 15, 7]] },
    );
    await readAll(); // intact again

    // A missing page file, restore record or graph chunk is an error too.
    for (const file of [files.pages, files.meta]) {
      const original = readFileSync(file);
      rmSync(file);
      await expect(readAll()).rejects.toThrow(/is missing/);
      writeFileSync(file, original);
    }
    const key = graphKey(s.id, 1);
    const original = await withDb(store, async (db) => {
      const v = (await db.get(key))!;
      await db.del(key);
      return v;
    });
    await expect(readAll()).rejects.toThrow(/is missing/);
    await withDb(store, (db) => db.put(key, original));
    await readAll();
  });

  it('opens a checkpoint for restore while another process holds the catalogue', async () => {
    const store = freshStore();
    const mem = makeMemory([{ k: 'rand', seed: 5 }, { k: 'zero' }, { k: 'fill', v: 7 }], false);
    const s = await writeCheckpoint(store, { lockFree: true }, mem);
    await withDb(store, async () => {
      // LevelDB is open (and locked) here: the catalogue calls must wait or fail, restores must not.
      const opened = await openCheckpoint(store, s.id.slice(0, 6));
      try {
        expect(opened.id).toBe(s.id);
        expect(opened.graph).toEqual({ lockFree: true });
        const image = Buffer.alloc(opened.pageFileBytes);
        readSync(opened.pageFd, image, 0, image.length, 0);
        expect(image.equals(Buffer.from(mem.expected))).toBe(true);
      } finally {
        closeSync(opened.pageFd);
      }
    });
  });

  it('a LevelDB log record damaged on disk is reported by name, never listed as an empty store', async () => {
    const store = freshStore();
    const mem = makeMemory([{ k: 'rand', seed: 3 }], false);
    const s = await writeCheckpoint(store, { small: true }, mem, { name: 'logged' });
    // The records are still in the newest .log file (too small to have been compacted): flip a byte of the manifest record.
    const log = readdirSync(store).filter((n) => n.endsWith('.log')).sort().pop()!;
    const bytes = readFileSync(join(store, log));
    const at = bytes.lastIndexOf(Buffer.from(`manifest/${s.id}`));
    expect(at).toBeGreaterThan(0);
    bytes[at + 30] ^= 0x10;
    writeFileSync(join(store, log), bytes);
    const err = await listCheckpoints(store).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as Error).message).toContain(s.id);
    const check = await checkStore(store);
    expect(check.ok).toEqual([]);
    expect(check.problems.join('\n')).toContain(s.id);
    // The restore record still has everything: the checkpoint still restores.
    const opened = await openCheckpoint(store, s.id);
    closeSync(opened.pageFd);
    expect(opened.graph).toEqual({ small: true });
  });

  it('checkpoints 30 MB of mostly distinct pages quickly', async () => {
    const store = freshStore();
    const size = 30 * 1024 * 1024;
    const backing = Buffer.alloc(size);
    for (let p = 0; p < size; p += PAGE) if ((p / PAGE) % 8 !== 0) randomFillSync(backing, p, PAGE);
    const mem: MemorySource = { sizeBytes: size, populated: [[0, size]], read: (o, l) => backing.subarray(o, o + l) };
    const t0 = performance.now();
    const s = await writeCheckpoint(store, { big: true }, mem);
    const ms = performance.now() - t0;
    expect(s.pages).toBe((size / PAGE) * 7 / 8);
    expect(ms).toBeLessThan(2000); // typically ~200 ms; generous for slow CI machines
    const { image } = await restoreImage(store, s.id, size);
    expect(Buffer.from(image).equals(backing)).toBe(true);
  });
});
