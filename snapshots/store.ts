/**
 * The snapshot store: checkpoints (a state graph plus the guest memory file) kept in a
 * LevelDB directory, with memory pages content-addressed and shared between
 * checkpoints. Record layout and integrity rules: `./format.ts` and
 * `docs/snapshot-format.md`.
 *
 * Every call opens the store, does its work and closes it again (LevelDB allows one
 * opener per directory). Calls on the same directory from this process are queued
 * one after another; a store held open by another process yields a SnapshotError.
 */
import { mkdir, stat } from 'node:fs/promises';
import { release } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import {
  FORMAT_MAGIC, FORMAT_VERSION, GRAPH_CHUNK_BYTES, HASH_BYTES, KEY, MIN_ID_PREFIX, PAGE_SIZE,
  RESERVED_MANIFEST_FIELDS, type ManifestV1, type PagemapRun,
  decodeCbor, decodePagemap, encodeCbor, encodePagemap, graphKey, graphRange, isCheckpointIdPrefix,
  isZeroPage, manifestKey, manifestProblem, manifestSealIsValid, newCheckpointId, pageCount, pageKey,
  pagemapKey, prefixRange, sealManifest, sha256, sha256Hex, stripManifestChecksum,
} from './format.js';

/**
 * Every failure of the store that a user can act on: missing store or checkpoint,
 * ambiguous or malformed id, corruption, unsupported format version, store in use.
 * The message is one line, e.g. "checkpoint 3f2a… not found in store /x" or
 * "checkpoint 3f2a… is corrupt: graph checksum mismatch".
 */
export class SnapshotError extends Error {
  override name = 'SnapshotError';
}

/** The sandbox's memory file (a sparse file of guest pages). */
export interface MemorySource {
  /** Logical size of the memory file in bytes. */
  sizeBytes: number;
  /**
   * Byte ranges `[offset, length]` that may hold data, page aligned (4096); any order,
   * may touch or overlap. Everything outside them reads as zero and is never read.
   */
  populated: Array<[offset: number, length: number]>;
  /** `length` bytes of the memory file from byte `offset` (may be a view; the store copies it). */
  read(offset: number, length: number): Uint8Array;
}

/** Caller-supplied checkpoint metadata; extra keys are stored in the manifest verbatim (CBOR-encodable values). */
export interface CheckpointMeta {
  /** Free-form label shown by list. */
  name?: string;
  /** Id of the checkpoint this one derives from; stored as given. */
  parent?: string;
  /** Free-form note. */
  note?: string;
  [k: string]: unknown;
}

/** What the store tells about one checkpoint. Sizes in bytes, times in milliseconds. */
export interface CheckpointSummary {
  /** 16 hex characters. */
  id: string;
  /** Creation time, ms since the Unix epoch. */
  createdMs: number;
  name?: string;
  parent?: string;
  /** Size of the CBOR-encoded graph, bytes. */
  graphBytes: number;
  /** Non-zero 4 KiB pages recorded (= pages a restore writes). */
  pages: number;
  /** Pages within the populated ranges that were all zero (not stored). */
  zeroPages: number;
  /** Pages this checkpoint added to the store; the rest were shared with earlier checkpoints. */
  newPages: number;
  /** Bytes of page data this checkpoint added (newPages × 4096). */
  storedPageBytes: number;
  /** Time taken to write the checkpoint, ms. */
  durationMs: number;
}

/** A checkpoint's manifest and decoded graph. */
export interface LoadedCheckpoint {
  id: string;
  /** The whole manifest (format fields, host info and any extra metadata), minus its checksum. */
  manifest: CheckpointSummary & Record<string, unknown>;
  graph: any;
  /** Logical size of the memory file to restore into, bytes. */
  memorySizeBytes: number;
}

type Db = Level<string, Uint8Array>;
type Op = { type: 'put'; key: string; value: Uint8Array } | { type: 'del'; key: string };

/** Flush a write batch once it holds this many operations… */
const BATCH_MAX_OPS = 2048;
/** …or this many bytes of values. */
const BATCH_MAX_BYTES = 8 << 20;
/** Bytes read from the memory source per `read` call (256 pages). */
const READ_CHUNK_BYTES = 1 << 20;
/** Pages fetched per `getMany` and handed to `write` per call at most on restore (1 MiB). */
const RESTORE_PAGES_PER_CALL = 256;

// ---------------------------------------------------------------------------
// Public API

/**
 * Write a checkpoint of `graph` (plain data: objects, arrays, strings, numbers, bigint,
 * booleans, null, undefined, Uint8Array and other typed arrays, Date, Map, Set) and of
 * the non-zero pages of `memory` into the store at `storeDir`, creating the store if
 * needed. Pages already in the store are not written again. The checkpoint becomes
 * visible only when completely written (its manifest goes in the final batch).
 * Returns its summary (sizes in bytes, times in ms).
 * Throws SnapshotError if the graph or metadata cannot be encoded, metadata uses a
 * reserved field, the memory source is inconsistent, or the store cannot be opened;
 * errors thrown by `memory.read` propagate unchanged.
 */
export async function writeCheckpoint(
  storeDir: string,
  graph: unknown,
  memory: MemorySource,
  meta: CheckpointMeta = {},
): Promise<CheckpointSummary> {
  const t0 = performance.now();
  const createdMs = Date.now();
  const extra = checkMeta(meta);
  let graphBytes: Buffer;
  try {
    graphBytes = encodeCbor(graph);
  } catch (err) {
    throw new SnapshotError(`cannot encode checkpoint graph: ${errorMessage(err)}`);
  }
  const ranges = normaliseRanges(memory);

  return withStore(storeDir, 'create', async (db) => {
    let id = newCheckpointId();
    while (await db.has(manifestKey(id))) id = newCheckpointId();
    const seq = (await highestSeq(db)) + 1;
    const batch = new BatchWriter(db);

    // Pages: hash every non-zero page, store the ones the store lacks, build the run list.
    const runs: PagemapRun[] = [];
    let runStart = -1;
    let runHashes: Buffer[] = [];
    const closeRun = (): void => {
      if (runHashes.length > 0) runs.push([runStart, Buffer.concat(runHashes)]);
      runHashes = [];
    };
    const seen = new Set<string>();
    let candidates: Array<{ key: string; value: Buffer }> = [];
    let pages = 0;
    let zeroPages = 0;
    let newPages = 0;
    const storeCandidates = async (): Promise<void> => {
      if (candidates.length === 0) return;
      const present = await db.hasMany(candidates.map((c) => c.key));
      for (let i = 0; i < candidates.length; i++) {
        if (present[i]) continue;
        newPages++;
        await batch.put(candidates[i].key, candidates[i].value);
      }
      candidates = [];
    };

    for (const [start, end] of ranges) {
      for (let off = start; off < end; off += READ_CHUNK_BYTES) {
        const len = Math.min(READ_CHUNK_BYTES, end - off);
        const buf = readCopy(memory, off, len);
        for (let p = 0; p < len; p += PAGE_SIZE) {
          if (isZeroPage(buf, p)) {
            zeroPages++;
            closeRun();
            continue;
          }
          const page = buf.subarray(p, p + PAGE_SIZE);
          const hash = sha256(page);
          if (runHashes.length === 0 || runStart + runHashes.length * PAGE_SIZE !== off + p) {
            closeRun();
            runStart = off + p;
          }
          runHashes.push(hash);
          pages++;
          const hex = hash.toString('hex');
          if (!seen.has(hex)) {
            seen.add(hex);
            candidates.push({ key: pageKey(hex), value: page });
          }
        }
        if (candidates.length >= BATCH_MAX_OPS / 2) await storeCandidates();
      }
    }
    closeRun();
    await storeCandidates();
    await batch.flush();

    // Graph chunks, pagemap and — last — the manifest, in one batch.
    const final: Op[] = [];
    const graphChunks = Math.ceil(graphBytes.length / GRAPH_CHUNK_BYTES);
    for (let i = 0; i < graphChunks; i++) {
      final.push({ type: 'put', key: graphKey(id, i), value: graphBytes.subarray(i * GRAPH_CHUNK_BYTES, (i + 1) * GRAPH_CHUNK_BYTES) });
    }
    const pagemap = encodePagemap(runs);
    final.push({ type: 'put', key: pagemapKey(id), value: pagemap });
    const manifest: ManifestV1 = {
      magic: FORMAT_MAGIC,
      formatVersion: FORMAT_VERSION,
      id,
      seq,
      createdMs,
      ...optionalStrings(meta),
      graphSha256: sha256Hex(graphBytes),
      graphBytes: graphBytes.length,
      graphChunks,
      pagemapSha256: sha256Hex(pagemap),
      pagemapBytes: pagemap.length,
      memorySizeBytes: memory.sizeBytes,
      pages,
      zeroPages,
      newPages,
      storedPageBytes: newPages * PAGE_SIZE,
      durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
      host: { kernelRelease: release(), arch: process.arch },
      ...extra,
    };
    let sealed: Buffer;
    try {
      sealed = sealManifest(manifest);
    } catch (err) {
      throw new SnapshotError(`cannot encode checkpoint metadata: ${errorMessage(err)}`);
    }
    final.push({ type: 'put', key: manifestKey(id), value: sealed });
    await db.batch(final, { sync: true });
    return summaryOf(manifest);
  });
}

/**
 * Read a checkpoint's manifest and graph. `id` is a full id or a unique prefix of at
 * least 4 hex characters. Verifies the manifest seal and format version, the graph
 * checksum and the pagemap checksum (page contents are checked by restoreMemory).
 * Throws SnapshotError if the store or checkpoint does not exist, the prefix is
 * ambiguous, the format version is not 1, or any record is missing or corrupt.
 */
export async function loadCheckpoint(storeDir: string, id: string): Promise<LoadedCheckpoint> {
  return withStore(storeDir, 'existing', async (db) => {
    const fullId = await resolveId(db, storeDir, id);
    const m = await readManifest(db, fullId);
    await readPagemap(db, m);
    const keys = Array.from({ length: m.graphChunks }, (_, i) => graphKey(fullId, i));
    const chunks = await db.getMany(keys);
    chunks.forEach((c, i) => {
      if (c === undefined) throw corrupt(fullId, `graph chunk ${i} is missing`);
    });
    const bytes = Buffer.concat(chunks as Uint8Array[]);
    if (bytes.length !== m.graphBytes) throw corrupt(fullId, 'graph size mismatch');
    if (sha256Hex(bytes) !== m.graphSha256) throw corrupt(fullId, 'graph checksum mismatch');
    let graph: unknown;
    try {
      graph = decodeCbor(bytes);
    } catch (err) {
      throw corrupt(fullId, `graph cannot be decoded (${errorMessage(err)})`);
    }
    return {
      id: fullId,
      manifest: stripManifestChecksum(m) as CheckpointSummary & Record<string, unknown>,
      graph,
      memorySizeBytes: m.memorySizeBytes,
    };
  });
}

/**
 * Replay a checkpoint's memory: calls `write(offset, data)` (offset in bytes into the
 * memory file) for every non-zero 4 KiB page, in increasing offset order, coalescing
 * consecutive pages into one call of up to 1 MiB; `data` is a fresh buffer the caller
 * may keep. Pages not written are zero. A final partial page is cut at the memory size.
 * Every page's sha256 is verified before it is handed out. Returns the number of pages
 * written. Throws SnapshotError (see loadCheckpoint) and also on a missing or corrupt
 * page; pages before the bad one may already have been written. Errors thrown by
 * `write` propagate unchanged.
 */
export async function restoreMemory(
  storeDir: string,
  id: string,
  write: (offset: number, data: Uint8Array) => void,
): Promise<{ pages: number }> {
  return withStore(storeDir, 'existing', async (db) => {
    const fullId = await resolveId(db, storeDir, id);
    const m = await readManifest(db, fullId);
    const runs = await readPagemap(db, m);
    let pages = 0;
    for (const [runOffset, hashes] of runs) {
      const n = hashes.length / HASH_BYTES;
      for (let first = 0; first < n; first += RESTORE_PAGES_PER_CALL) {
        const count = Math.min(RESTORE_PAGES_PER_CALL, n - first);
        const hexes: string[] = [];
        for (let j = 0; j < count; j++) {
          const h = hashes.subarray((first + j) * HASH_BYTES, (first + j + 1) * HASH_BYTES);
          hexes.push(Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex'));
        }
        const values = await db.getMany(hexes.map(pageKey));
        const offset = runOffset + first * PAGE_SIZE;
        const data = Buffer.allocUnsafe(count * PAGE_SIZE);
        for (let j = 0; j < count; j++) {
          const v = values[j];
          const where = `page ${hexes[j].slice(0, 12)}… at offset 0x${(offset + j * PAGE_SIZE).toString(16)}`;
          if (v === undefined) throw corrupt(fullId, `${where} is missing`);
          if (v.length !== PAGE_SIZE || sha256Hex(v) !== hexes[j]) throw corrupt(fullId, `${where} failed its checksum`);
          data.set(v, j * PAGE_SIZE);
        }
        const end = Math.min(offset + data.length, m.memorySizeBytes);
        write(offset, end === offset + data.length ? data : data.subarray(0, end - offset));
        pages += count;
      }
    }
    return { pages };
  });
}

/**
 * Summaries of all complete checkpoints in the store, oldest first (by `seq`, then
 * creation time). Incomplete writes (no manifest) are invisible. Throws SnapshotError
 * if the store does not exist or any manifest is corrupt or of another format version.
 */
export async function listCheckpoints(storeDir: string): Promise<CheckpointSummary[]> {
  return withStore(storeDir, 'existing', async (db) => {
    const manifests: ManifestV1[] = [];
    for await (const [key, value] of db.iterator(prefixRange(KEY.manifest))) {
      manifests.push(parseManifest(key.slice(KEY.manifest.length), value));
    }
    manifests.sort((a, b) => a.seq - b.seq || a.createdMs - b.createdMs || (a.id < b.id ? -1 : 1));
    return manifests.map(summaryOf);
  });
}

/**
 * Delete a checkpoint (full id or unique prefix of ≥ 4 hex characters), even a corrupt
 * one: its manifest, graph chunks and pagemap go in one atomic batch. Then the store is
 * swept: graph/pagemap records without a manifest (left by interrupted writes) and
 * pages no remaining checkpoint references are deleted. If a remaining checkpoint's
 * manifest or pagemap is unreadable the page sweep is skipped, so no page is ever
 * removed on a guess. Throws SnapshotError if the store or checkpoint does not exist or
 * the prefix is ambiguous.
 */
export async function deleteCheckpoint(storeDir: string, id: string): Promise<void> {
  await withStore(storeDir, 'existing', async (db) => {
    const fullId = await resolveId(db, storeDir, id);
    const ops: Op[] = [{ type: 'del', key: manifestKey(fullId) }, { type: 'del', key: pagemapKey(fullId) }];
    for await (const key of db.keys(graphRange(fullId))) ops.push({ type: 'del', key });
    await db.batch(ops);
    await collectGarbage(db);
  });
}

// ---------------------------------------------------------------------------
// Store access

const queues = new Map<string, Promise<void>>();

/**
 * Run `fn` with the store open, after any earlier call on the same directory from this
 * process has finished; always closes the store. 'existing' requires an existing store,
 * 'create' creates it. LevelDB errors become SnapshotErrors.
 */
async function withStore<T>(storeDir: string, mode: 'existing' | 'create', fn: (db: Db) => Promise<T>): Promise<T> {
  const key = resolvePath(storeDir);
  const previous = queues.get(key) ?? Promise.resolve();
  let done!: () => void;
  const mine = previous.then(() => new Promise<void>((r) => (done = r)));
  queues.set(key, mine);
  await previous;
  try {
    if (mode === 'existing') {
      if (!(await exists(join(key, 'CURRENT')))) throw new SnapshotError(`no checkpoint store at ${storeDir}`);
    } else {
      await mkdir(key, { recursive: true });
    }
    const db: Db = new Level<string, Uint8Array>(key, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open({ createIfMissing: mode === 'create' });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') throw new SnapshotError(`checkpoint store ${storeDir} is in use by another process`);
      throw new SnapshotError(`cannot open checkpoint store ${storeDir}: ${oneLine(cause?.message ?? errorMessage(err))}`);
    }
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  } catch (err) {
    if (!(err instanceof SnapshotError) && isLevelError(err)) {
      throw new SnapshotError(`checkpoint store ${storeDir}: ${oneLine(errorMessage(err))}`);
    }
    throw err;
  } finally {
    done();
    if (queues.get(key) === mine) queues.delete(key);
  }
}

/** Full id of the single checkpoint whose id starts with `given` (≥ 4 hex characters). */
async function resolveId(db: Db, storeDir: string, given: string): Promise<string> {
  if (typeof given !== 'string' || !isCheckpointIdPrefix(given)) {
    throw new SnapshotError(`invalid checkpoint id '${String(given)}': expected ${MIN_ID_PREFIX} to 16 hex characters`);
  }
  const prefix = given.toLowerCase();
  const matches: string[] = [];
  for await (const key of db.keys({ ...prefixRange(KEY.manifest + prefix), limit: 3 })) {
    matches.push(key.slice(KEY.manifest.length));
  }
  if (matches.length === 0) throw new SnapshotError(`checkpoint ${given} not found in store ${storeDir}`);
  if (matches.length > 1) {
    throw new SnapshotError(`checkpoint id ${given} is ambiguous in store ${storeDir} (matches ${matches.slice(0, 2).join(', ')}${matches.length > 2 ? ', …' : ''})`);
  }
  return matches[0];
}

async function readManifest(db: Db, id: string): Promise<ManifestV1> {
  const bytes = await db.get(manifestKey(id));
  if (bytes === undefined) throw new SnapshotError(`checkpoint ${id} not found`);
  return parseManifest(id, bytes);
}

/**
 * Check and decode a manifest record: seal, magic, format version, then structure.
 * A record whose seal fails but which decodes to a higher format version is reported as
 * that version (a future format may seal differently); otherwise a broken seal means
 * corruption.
 */
function parseManifest(id: string, bytes: Uint8Array): ManifestV1 {
  const sealed = manifestSealIsValid(bytes);
  let m: unknown;
  try {
    m = decodeCbor(bytes);
  } catch {
    m = undefined;
  }
  const obj = isPlainRecord(m) ? m : undefined;
  const version = obj?.formatVersion;
  const foreign = sealed
    ? version !== FORMAT_VERSION
    : typeof version === 'number' && Number.isSafeInteger(version) && version > FORMAT_VERSION;
  if (obj?.magic === FORMAT_MAGIC && foreign) {
    throw new SnapshotError(`checkpoint ${id} has format version ${oneLine(String(obj.formatVersion))}, but this snapvisor reads only format version ${FORMAT_VERSION}`);
  }
  if (!sealed) {
    throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (${obj === undefined ? 'cannot be decoded' : 'checksum mismatch'})`);
  }
  if (obj === undefined) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (cannot be decoded)`);
  if (obj.magic !== FORMAT_MAGIC) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (not a snapvisor checkpoint)`);
  const problem = manifestProblem(obj, id);
  if (problem !== undefined) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (${problem})`);
  return obj as ManifestV1;
}

/** Read, checksum and decode a checkpoint's pagemap. */
async function readPagemap(db: Db, m: ManifestV1): Promise<PagemapRun[]> {
  const bytes = await db.get(pagemapKey(m.id));
  if (bytes === undefined) throw corrupt(m.id, 'pagemap is missing');
  if (bytes.length !== m.pagemapBytes || sha256Hex(bytes) !== m.pagemapSha256) throw corrupt(m.id, 'pagemap checksum mismatch');
  const decoded = decodePagemap(bytes, m.memorySizeBytes);
  if (typeof decoded === 'string') throw corrupt(m.id, decoded);
  if (decoded.pages !== m.pages) throw corrupt(m.id, 'pagemap page count mismatch');
  return decoded.runs;
}

/** Highest `seq` among the store's readable manifests (0 if none). */
async function highestSeq(db: Db): Promise<number> {
  let max = 0;
  for await (const [key, value] of db.iterator(prefixRange(KEY.manifest))) {
    try {
      max = Math.max(max, parseManifest(key.slice(KEY.manifest.length), value).seq);
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
    }
  }
  return max;
}

/**
 * Delete orphaned graph/pagemap records and (if every pagemap is readable) unreferenced
 * pages, then compact the page range so the disk space is given back.
 */
async function collectGarbage(db: Db): Promise<void> {
  const ids = new Set<string>();
  for await (const key of db.keys(prefixRange(KEY.manifest))) ids.add(key.slice(KEY.manifest.length));
  const batch = new BatchWriter(db);
  for await (const key of db.keys(prefixRange(KEY.graph))) {
    const id = key.slice(KEY.graph.length).split('/')[0];
    if (!ids.has(id)) await batch.del(key);
  }
  for await (const key of db.keys(prefixRange(KEY.pagemap))) {
    if (!ids.has(key.slice(KEY.pagemap.length))) await batch.del(key);
  }
  await batch.flush();

  const referenced = new Set<string>();
  for (const id of ids) {
    let runs: PagemapRun[];
    try {
      runs = await readPagemap(db, await readManifest(db, id));
    } catch (err) {
      if (err instanceof SnapshotError) return; // cannot tell what it references: keep every page
      throw err;
    }
    for (const [, hashes] of runs) {
      const h = Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength);
      for (let i = 0; i < h.length; i += HASH_BYTES) referenced.add(h.toString('hex', i, i + HASH_BYTES));
    }
  }
  let swept = 0;
  for await (const key of db.keys(prefixRange(KEY.page))) {
    if (!referenced.has(key.slice(KEY.page.length))) {
      swept++;
      await batch.del(key);
    }
  }
  await batch.flush();
  // LevelDB frees the space of deleted records only when it compacts them.
  const compact = (db as unknown as { compactRange?: (start: string, end: string) => Promise<void> }).compactRange;
  if (swept > 0 && typeof compact === 'function') {
    const range = prefixRange(KEY.page);
    await compact.call(db, range.gte, range.lt);
  }
}

/** Accumulates operations and writes them in batches of bounded size. */
class BatchWriter {
  private ops: Op[] = [];
  private bytes = 0;
  constructor(private readonly db: Db) {}
  async put(key: string, value: Uint8Array): Promise<void> {
    this.ops.push({ type: 'put', key, value });
    this.bytes += value.length;
    if (this.ops.length >= BATCH_MAX_OPS || this.bytes >= BATCH_MAX_BYTES) await this.flush();
  }
  async del(key: string): Promise<void> {
    this.ops.push({ type: 'del', key });
    if (this.ops.length >= BATCH_MAX_OPS) await this.flush();
  }
  async flush(): Promise<void> {
    if (this.ops.length === 0) return;
    const ops = this.ops;
    this.ops = [];
    this.bytes = 0;
    await this.db.batch(ops);
  }
}

// ---------------------------------------------------------------------------
// Helpers

/**
 * The populated ranges as sorted, merged, page-aligned [start, end) byte ranges.
 * A range may end in the partial page past `sizeBytes` rounded down, never beyond it.
 */
function normaliseRanges(memory: MemorySource): Array<[number, number]> {
  const size = memory.sizeBytes;
  if (!Number.isSafeInteger(size) || size < 0) throw new SnapshotError(`invalid memory size ${String(size)}`);
  const limit = pageCount(size) * PAGE_SIZE;
  const ranges: Array<[number, number]> = [];
  for (const [offset, length] of memory.populated) {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > limit) {
      throw new SnapshotError(`populated range [${offset}, +${length}) lies outside the memory file of ${size} bytes`);
    }
    if (length === 0) continue;
    const start = Math.floor(offset / PAGE_SIZE) * PAGE_SIZE;
    const end = Math.min(Math.ceil((offset + length) / PAGE_SIZE) * PAGE_SIZE, limit);
    ranges.push([start, end]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

/** Copy `len` bytes from `off` out of the memory source, zero-padding past its size. */
function readCopy(memory: MemorySource, off: number, len: number): Buffer {
  const want = Math.min(len, memory.sizeBytes - off);
  const data = memory.read(off, want);
  if (!(data instanceof Uint8Array) || data.length !== want) {
    throw new SnapshotError(`memory source returned ${data instanceof Uint8Array ? data.length : 'no'} bytes for a read of ${want} bytes at offset ${off}`);
  }
  if (want === len) return Buffer.from(data);
  const buf = Buffer.alloc(len);
  buf.set(data);
  return buf;
}

/** The caller's extra metadata fields, after checking none is reserved or mistyped. */
function checkMeta(meta: CheckpointMeta): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(meta)) {
    if (meta[k] === undefined) continue;
    if (RESERVED_MANIFEST_FIELDS.has(k)) throw new SnapshotError(`checkpoint metadata field '${k}' is reserved`);
    if (k === 'name' || k === 'parent' || k === 'note') {
      if (typeof meta[k] !== 'string') throw new SnapshotError(`checkpoint metadata field '${k}' must be a string`);
      continue;
    }
    extra[k] = meta[k];
  }
  return extra;
}

function optionalStrings(meta: CheckpointMeta): { name?: string; parent?: string; note?: string } {
  const out: { name?: string; parent?: string; note?: string } = {};
  if (meta.name !== undefined) out.name = meta.name;
  if (meta.parent !== undefined) out.parent = meta.parent;
  if (meta.note !== undefined) out.note = meta.note;
  return out;
}

function summaryOf(m: ManifestV1): CheckpointSummary {
  const s: CheckpointSummary = {
    id: m.id,
    createdMs: m.createdMs,
    graphBytes: m.graphBytes,
    pages: m.pages,
    zeroPages: m.zeroPages,
    newPages: m.newPages,
    storedPageBytes: m.storedPageBytes,
    durationMs: m.durationMs,
  };
  if (m.name !== undefined) s.name = m.name;
  if (m.parent !== undefined) s.parent = m.parent;
  return s;
}

function corrupt(id: string, reason: string): SnapshotError {
  return new SnapshotError(`checkpoint ${id} is corrupt: ${reason}`);
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
}

function isLevelError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('LEVEL_');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
