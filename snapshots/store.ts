/**
 * The snapshot store: checkpoints (a state graph plus the guest memory file) kept in a
 * directory. A LevelDB database there is the catalogue (manifests, graphs, pagemaps);
 * each checkpoint's pages are one flat page file (`pages/<id>`, laid out like the memory
 * file, zero pages as holes) and everything a restore needs besides the pages is one
 * restore record (`meta/<id>`). Restores read only those two files, so any number of
 * processes restore from one store at once and map the page file copy-on-write.
 * Record layout and integrity rules: `./format.ts` and `docs/snapshot-format.md`.
 *
 * Every catalogue call opens LevelDB, does its work and closes it again (LevelDB allows
 * one opener per directory). Calls on the same directory from this process are queued
 * one after another; a store held open by another process yields a SnapshotError.
 */
import fs from 'node:fs';
import { makeDirs, makeDirsAsync } from './make-dirs.js';
import { cpus, release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
// performance: Node's global (perf_hooks, loaded on first use).
import type { Level } from 'level';
import {
  FORMAT_MAGIC, FORMAT_VERSION, FLAT_INCREMENTAL_FORMAT_VERSION, FULL_FORMAT_VERSION, PACK_CHUNK_CHECKED_FORMAT_VERSION, PACK_INCREMENTAL_FORMAT_VERSION, READ_FORMAT_VERSIONS, type ElidedChecks, isPacked, GRAPH_CHUNK_BYTES, runLayer, KEY, META_DIR, MIN_ID_PREFIX, PAGES_DIR, PAGE_CHECK_BYTES, PAGE_SIZE,
  LITTLE_ENDIAN, RESERVED_MANIFEST_FIELDS, type ManifestV2, type PagemapRun,
  checkpointProblem, decodeCbor, decodePagemap, encodeCbor, encodeMeta, encodePagemap, graphKey, graphRange, isCheckpointId, isCheckpointIdPrefix,
  manifestKey, manifestProblem, manifestSealIsValid, newCheckpointId, pageCheck, pageCount,
  pagemapKey, prefixRange, recordQuickCheck, sealManifest, sha256Hex, splitMeta, stripManifestChecksum,
} from './format.js';
import { verifyPages } from './pages.js';
import { type RecordChecksums, recordChecksumFailure, recordChecksumReason } from './record-check.js';
import { LinuxHostServices } from '../platforms/host/host-services.js';
import type { HostTree } from '../platforms/host-services.js';
import { Vfs } from '../src/vfs/vfs.js';
import { hostIdentity } from '../src/vfs/host-files.js';
import type { KernelState } from '../src/kernel/state.js';
import { CRUNCH_DATA, CRUNCH_ZERO, type CrunchResult, type PackAsk, type PullJob, type ReadParts, crunchPages } from './page-crunch.js';
import { schedGetaffinity, schedSetaffinity } from '../platforms/host/libc.js';
import type { MovedPages } from '../src/mm/memory-file.js';
import { CacheWriteError, EarlySync, LazyPack, PACK_CHUNK_BYTES, PackWriter, type HostFileRef, type HostFileOpener, chunkCheckedPages, materializePack, PackPages, packPageChecks, PIECE_READY, readPackTrailer, writeKnownTrailer } from './pack.js';

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
  /**
   * Optional: copy `buf.length` bytes from byte `offset` into `buf` without mapping the pages
   * into the kernel's process (pread). Preferred by the page writer: on this VM a first touch
   * of a mapped page costs tens of µs, and a 200 MB checkpoint touched 60,000 of them.
   */
  readInto?(offset: number, buf: Uint8Array): void;
  /**
   * Optional: a host fd holding the memory file as it is to be checkpointed, byte X at offset X
   * (a memfd with nothing laid over it, not changing until the write is done): the page writer's
   * worker thread reads it itself (pread) instead of `readInto`, so that the writer's thread only
   * compresses and keeps the books. Kept open by the caller until writeCheckpoint returns.
   */
  fd?: number;
  /**
   * Pages this memory file still shares, unchanged, with the page files of checkpoints already
   * in a store (a restored sandbox's pages it never wrote): a checkpoint into that same store
   * records them as inherited instead of copying them (format 3, an incremental checkpoint).
   */
  inherited?: InheritedPages;
  /**
   * Pages that are bytes of host files (the kernel's page cache of private file mappings):
   * named in the checkpoint, not stored. Only pages of files whose identity (size, mtime) is
   * still the one recorded may be listed: a restore reads them back from the file.
   */
  hostFilePages?: HostFilePages;
}

/** Host-file pages of a memory file (MemorySource.hostFilePages). Page indexes are memory-file offsets / 4096. */
export interface HostFilePages {
  /** Per page index: 1 + the index in `blocks` of the page-cache block holding it, or 0. */
  pageBlock: Uint32Array;
  /** Page-cache blocks: canonical guest path, file size (bytes), mtime (ms), block offset in the memory file, file offset and bytes of file data in the block. */
  blocks: Array<{ path: string; size: number; mtimeMs: number; memOffset: number; fileOffset: number; len: number }>;
}

/**
 * Where a memory file's unchanged pages already are. Page indexes are memory-file offsets / 4096.
 */
export interface InheritedPages {
  /** The store holding the layers' page files; elsewhere every page is written. */
  storeDir: string;
  /** Checkpoint ids of the page-file layers: layer k is `layerIds[k - 1]`. */
  layerIds: string[];
  /** Per page index: the layer (≥ 1) whose page file holds the page's current bytes, or 0 (read it). */
  backed: Uint8Array;
  /** Per page index: the page's CRC-32 in its layer (meaningful where `nonZero`). */
  checks: Uint32Array;
  /** Per page index: 1 when the page is a non-zero page of its layer's pagemap (else it is zero). */
  nonZero: Uint8Array;
  /**
   * Per page index: for a page written since (not in `backed`), the layer it matched before, 0
   * if none. Write tracking is coarser than pages: such a page is compared with that layer's
   * bytes and inherited if equal.
   */
  former?: Uint8Array;
  /**
   * Pages copied by a copy-on-write since the last checkpoint (Kernel.takeMoves), a hint: a
   * compressed checkpoint names such a page in the pack of the layer its source matched when
   * that pack holds the source compressed and the page's bytes still equal the source's
   * (compared with the source in memory while it is unchanged, `backed`, else with the bytes the
   * kernel kept when it dropped it).
   */
  moved?: MovedPages;
}

/** Most page files (its own plus inherited layers) one checkpoint may read: beyond, a checkpoint is written in full. */
export const MAX_PAGE_LAYERS = 16;

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

/** How writeCheckpoint stores pages. */
export interface WriteOptions {
  /**
   * Format 4: compress the checkpoint's own pages into a pack and name host-file pages instead
   * of storing them (snapshots/pack.ts): ~50× smaller and faster to write for a warmed-up
   * heap, but the first restore on a host first rebuilds the uncompressed restore cache.
   * Otherwise format 2/3: a flat page file restores map directly.
   */
  compress?: boolean;
  /** The store's catalogue, opening since before the capture (openStoreEarly); taken over, and closed, by the write. */
  opening?: StoreOpening;
  /**
   * Aborted: stop writing the pages (between two read buffers, once those in flight are done), remove
   * what was written and throw checkpointInterrupted(); an abort once the pages are all written and
   * the catalogue is being written comes too late: the checkpoint is stored and returned.
   */
  signal?: AbortSignal;
}

/** The SnapshotError of a write stopped by WriteOptions.signal (nothing of it is left in the store). */
export function checkpointInterrupted(): SnapshotError {
  return new SnapshotError('the checkpoint was interrupted: nothing was stored');
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
  /** Bytes of page data this checkpoint added (newPages × 4096), uncompressed. */
  storedPageBytes: number;
  /** Format 4: bytes its compressed page pack takes (what storedPageBytes costs at rest, less its host-file pages). */
  packBytes?: number;
  /** Format 4: of newPages, those named in host files rather than stored. */
  filePages?: number;
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
/** Bytes read from the memory source per `read` call (256 pages: one pack piece, PACK_CHUNK_BYTES). */
const READ_CHUNK_BYTES = 1 << 20;
/** Read buffers in flight at once with one crunch worker (PageCrunch); each further worker adds WORKER_BACKLOG. */
const CRUNCH_DEPTH = 6;
/** Buffers a crunch worker may have to do at once; the writer's thread crunches the others itself. */
const WORKER_BACKLOG = 2;
/** Populated bytes from which a checkpoint's page work gets a worker thread (starting one costs tens of ms). */
const CRUNCH_WORKER_MIN_BYTES = 32 << 20;
/** The page loops give the event loop a turn (timers, sockets, other guest tasks) at least this often (ms). */
const YIELD_MS = 50;
/**
 * `SNAPVISOR_TRACE_CHECKPOINT=1`: the checkpoint's phases on stderr (`[checkpoint T ms, clock W] what
 * (cpu C ms, thread M ms, F faults)`, T in ms since the process started, W the wall clock (ms, modulo 100 s: lines
 * of the client, cli/checkpoint-client.ts, and of the sandbox line up), C the process's CPU
 * time so far, user and system, all threads, M that of the writing thread alone (/proc/thread-self/schedstat), F
 * the process's minor page faults so far), as SNAPVISOR_TRACE_RESTORE does for restores.
 */
export const traceCheckpoint: ((what: string) => void) | undefined = process.env.SNAPVISOR_TRACE_CHECKPOINT
  ? (what) => {
    const u = process.resourceUsage();
    // This thread's own CPU time (ns on the CPU, schedstat): the writer's critical path.
    const mine = Number(fs.readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ')[0]) / 1e6;
    process.stderr.write(`[checkpoint ${performance.now().toFixed(1)} ms, clock ${((performance.timeOrigin + performance.now()) % 1e5).toFixed(1)}] ${what} (cpu ${((u.userCPUTime + u.systemCPUTime) / 1000).toFixed(0)} ms, thread ${mine.toFixed(1)} ms, ${u.minorPageFault} faults)\n`);
  } : undefined;
/** Pages read and handed to `write` per call at most by restoreMemory (1 MiB). */
const RESTORE_PAGES_PER_CALL = 256;

// ---------------------------------------------------------------------------
// Public API

/**
 * Progress of a long page loop: `doneBytes` of `totalBytes` (bytes of the memory file's populated
 * ranges, or of the checkpoint's stored pages) handled so far. Called after each chunk (at most
 * 4 MiB), and once with doneBytes === totalBytes at the end.
 */
export type ProgressCallback = (doneBytes: number, totalBytes: number) => void;

/**
 * Write a checkpoint of `graph` (plain data: objects, arrays, strings, numbers, bigint,
 * booleans, null, undefined, Uint8Array and other typed arrays, Date, Map, Set) and of
 * the non-zero pages of `memory` into the store at `storeDir`, creating the store if
 * needed. The pages go into the checkpoint's own page file, then the restore record, then
 * (one synced batch) the catalogue records; the checkpoint becomes visible only when its
 * manifest is written, and to lock-free restores only when its restore record is renamed
 * into place after that. Returns its summary (sizes in bytes, times in ms).
 * Throws SnapshotError if the graph or metadata cannot be encoded, metadata uses a
 * reserved field, the memory source is inconsistent, or the store cannot be opened or
 * written; errors thrown by `memory.read` propagate unchanged. Nothing partly written is
 * ever visible, and a failed write removes its files. While writing pages it gives the event
 * loop a turn every YIELD_MS (the memory source must not change meanwhile: a frozen guest or a
 * copy-on-write capture) and reports to `onProgress` the bytes of populated ranges done.
 */
export async function writeCheckpoint(
  storeDir: string,
  graph: unknown,
  memory: MemorySource,
  meta: CheckpointMeta = {},
  onProgress?: ProgressCallback,
  options: WriteOptions = {},
): Promise<CheckpointSummary> {
  const t0 = performance.now();
  const createdMs = Date.now();
  let extra: Record<string, unknown>;
  let ranges: Array<[number, number]>;
  try {
    extra = checkMeta(meta);
    ranges = normaliseRanges(memory);
  } catch (err) {
    // Not written: the catalogue opened for it is closed.
    if (options.opening) cancelStoreOpening(options.opening);
    throw err;
  }
  // Started now, so that the worker thread is up by the time the store is open.
  const crunch = PageCrunch.start(bytesToRead(ranges, memory.inherited, storeDir) >= CRUNCH_WORKER_MIN_BYTES);
  const graphEncoded = encodeGraphSoon(graph);
  let summary: CheckpointSummary;
  try {
    summary = await writeLocked(storeDir, graphEncoded, memory, ranges, meta, extra, createdMs, t0, crunch, onProgress, options);
    await crunch.close();
  } catch (err) {
    // The worker joined before the error is heard: the caller may close `memory.fd` (the worker reads it) once this returns.
    await crunch.halt();
    throw err;
  }
  crunch.terminate();
  return summary;
}

/** A checkpoint's graph encoded (CBOR) and its SHA-256 (hex). */
interface EncodedGraph { bytes: Buffer; sha256: string }

/**
 * `graph` encoded and hashed on a later turn of the event loop: the first one once the page scan
 * is under way (when the writer's thread first waits for the crunch), not before the scan
 * begins (~5 ms of the bench's python3, on the checkpoint's path). `graph` is the capture's own
 * copy: it does not change meanwhile. Rejects with a SnapshotError if it cannot be encoded
 * (the checkpoint fails then, its files removed, like any other failure of the write).
 */
function encodeGraphSoon(graph: unknown): Promise<EncodedGraph> {
  const encoded = new Promise<EncodedGraph>((resolve, reject) => setImmediate(() => {
    let bytes: Buffer;
    try {
      bytes = encodeCbor(graph);
    } catch (err) {
      reject(new SnapshotError(`cannot encode checkpoint graph: ${errorMessage(err)}`));
      return;
    }
    traceCheckpoint?.(`graph encoded (${bytes.length} bytes)`);
    resolve({ bytes, sha256: sha256Hex(bytes) });
  }));
  encoded.catch(() => undefined); // awaited by the catalogue, unless the write failed before
  return encoded;
}

/**
 * Bytes of the sorted `ranges` a checkpoint into `storeDir` reads: all of them, less the pages
 * `inherited` leaves in earlier page files of that store (an incremental checkpoint reads only
 * what changed). A lower bound: usableInheritance may still refuse the inheritance, and then
 * every page is read.
 */
function bytesToRead(ranges: Array<[number, number]>, inherited: InheritedPages | undefined, storeDir: string): number {
  const backed = inherited && resolvePath(inherited.storeDir) === resolvePath(storeDir) ? inherited.backed : undefined;
  let n = 0;
  for (const [start, end] of ranges) {
    if (!backed) { n += end - start; continue; }
    // Pages past `backed` are read; within it, the ones it marks 0 (found by search: a loop over every page costs 3–5 ms of CPU here).
    const first = start / PAGE_SIZE, last = end / PAGE_SIZE, within = Math.min(last, backed.length);
    if (last > within) n += (last - Math.max(first, within)) * PAGE_SIZE;
    for (let p = backed.indexOf(0, first); p >= 0 && p < within; p = backed.indexOf(0, p + 1)) n += PAGE_SIZE;
  }
  return n;
}

/** writeCheckpoint's work under the store's lock (see there). */
async function writeLocked(storeDir: string, graphEncoded: Promise<EncodedGraph>, memory: MemorySource, ranges: Array<[number, number]>, meta: CheckpointMeta, extra: Record<string, unknown>,
  createdMs: number, t0: number, crunch: PageCrunch, onProgress: ProgressCallback | undefined, options: WriteOptions): Promise<CheckpointSummary> {

  const dir = resolvePath(storeDir);
  const compress = !!options.compress;
  let id = '', pageFile = '', metaTmp = '';
  /** The restore cache the pack's writer made, put in place once the checkpoint is catalogued. */
  let warm: WarmCache | undefined;
  /** Whether the catalogue is open (a failure from then on knows whether the checkpoint got into it). */
  let opened = false;
  // The pages are written while the catalogue opens (LevelDB's open runs on the thread pool: 10–60
  // ms here, with the guest paused, when the checkpoint ends the sandbox): the id is chosen by the
  // store's files, and the catalogue checked once it is open (withStore's `meanwhile`).
  const writePages = async () => {
    // Synchronous: two syscalls when the directories are there (each an await on the thread pool cost 1–3 ms of a second checkpoint here, more under load).
    makeDirs(join(dir, PAGES_DIR));
    makeDirs(join(dir, META_DIR));
    do id = newCheckpointId(); while (hasPageFile(dir, id) || fs.existsSync(metaPath(dir, id)));
    pageFile = compress ? packPath(dir, id) : pagePath(dir, id);
    metaTmp = metaPath(dir, id) + '.tmp';
    // Unchanged pages of a restored sandbox stay in the page files they are in (same store only).
    const inherit = usableInheritance(dir, memory.inherited);
    // Pages: every non-zero page goes to its own offset in the page file (zero pages stay holes).
    const written = compress
      ? await writePack(pageFile, memory, ranges, crunch, onProgress, inherit, options.signal)
      : { ...(await writePageFile(pageFile, memory, ranges, crunch, onProgress, inherit, options.signal)), packBytes: undefined, filePages: undefined, synced: undefined, warm: undefined, trailerBytes: undefined };
    warm = written.warm;
    // Every buffer is answered: the workers end while the catalogue is written (writeCheckpoint awaits it after).
    crunch.close().catch(() => undefined);
    traceCheckpoint?.(`pages written (${written.newPages} of ${written.pages}; ${crunch.stats()}${warm ? `; ${warm.count} pieces in the restore cache` : ''})`);
    // The last moment an interruption is heard: the files written are removed (not in the catalogue yet).
    if (options.signal?.aborted) {
      await written.synced?.catch(() => undefined);
      throw checkpointInterrupted();
    }
    return written;
  };
  try {
    return await withStore(storeDir, 'create', async (db, written) => {
      opened = true;
      traceCheckpoint?.('store opened');
      return await catalogue(db, written);
    }, writePages, options.opening);
  } catch (err) {
    warm?.discard();
    if (!opened && pageFile) {
      // Nothing of it reached the catalogue.
      fs.rmSync(pageFile, { force: true });
      fs.rmSync(metaTmp, { force: true });
    }
    throw err instanceof Error && 'code' in err && typeof (err as NodeJS.ErrnoException).syscall === 'string'
      ? new SnapshotError(`cannot write checkpoint into ${storeDir}: ${(err as NodeJS.ErrnoException).code} (${(err as NodeJS.ErrnoException).syscall})`)
      : err;
  }

  /** Under the store's lock, once the pages are written: the restore record and the catalogue records. */
  async function catalogue(db: Db, written: Awaited<ReturnType<typeof writePages>>): Promise<CheckpointSummary> {
    const { runs, pages, zeroPages, newPages, layers, packBytes, filePages, synced } = written;
    try {
      // The lock is held from here on: check what could have changed before it was (another
      // process's delete or gc removing a file this checkpoint wrote or names, or the id taken).
      const [taken, highest] = await Promise.all([db.has(manifestKey(id)), highestSeq(db)]);
      if (taken) throw new SnapshotError(`cannot write checkpoint into ${storeDir}: its new id ${id} is taken (try again)`);
      if (!fs.existsSync(pageFile) || layers.some((l) => !hasPageFile(dir, l))) throw new SnapshotError(`cannot write checkpoint into ${storeDir}: another process deleted files of the store meanwhile (try again)`);
      const seq = highest + 1;
      const { bytes: graphBytes, sha256: graphSha256 } = await graphEncoded;

      const graphChunks = Math.ceil(graphBytes.length / GRAPH_CHUNK_BYTES);
      // Compressed incremental (format 5): runs of layers that are packs leave their CRC-32s to the pack's trailer.
      const packLayers = compress ? layers.map((l) => fs.existsSync(packPath(dir, l))) : [];
      const pagemap = encodePagemap(runs, compress && layers.length ? (k) => packLayers[k - 1] : undefined);
      const manifest: ManifestV2 = {
        magic: FORMAT_MAGIC,
        formatVersion: compress ? (layers.length ? PACK_INCREMENTAL_FORMAT_VERSION : PACK_CHUNK_CHECKED_FORMAT_VERSION) : layers.length ? FLAT_INCREMENTAL_FORMAT_VERSION : FULL_FORMAT_VERSION,
        id,
        seq,
        createdMs,
        ...optionalStrings(meta),
        graphSha256,
        graphBytes: graphBytes.length,
        graphChunks,
        pagemapSha256: sha256Hex(pagemap),
        pagemapBytes: pagemap.length,
        memorySizeBytes: memory.sizeBytes,
        pages,
        zeroPages,
        newPages,
        storedPageBytes: newPages * PAGE_SIZE,
        pageFileBytes: pageCount(memory.sizeBytes) * PAGE_SIZE,
        durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
        host: { kernelRelease: release(), arch: process.arch },
        ...(layers.length ? { layers } : {}),
        ...(compress ? { packBytes, filePages } : {}),
        ...extra,
      };
      let sealed: Buffer;
      try {
        sealed = sealManifest(manifest);
      } catch (err) {
        throw new SnapshotError(`cannot encode checkpoint metadata: ${errorMessage(err)}`);
      }
      // The restore record and the pages (a pack's last fdatasync, under way) on disk before the catalogue names them.
      await Promise.all([writeFileSyncedAsync(metaTmp, encodeMeta(sealed, graphBytes, pagemap)), synced]);
      traceCheckpoint?.('restore record written');

      // Catalogue: graph chunks, pagemap and — last — the manifest, in one synced batch.
      const final: Op[] = [];
      for (let i = 0; i < graphChunks; i++) {
        final.push({ type: 'put', key: graphKey(id, i), value: graphBytes.subarray(i * GRAPH_CHUNK_BYTES, (i + 1) * GRAPH_CHUNK_BYTES) });
      }
      final.push({ type: 'put', key: pagemapKey(id), value: pagemap });
      final.push({ type: 'put', key: manifestKey(id), value: sealed });
      await db.batch(final, { sync: true });
      traceCheckpoint?.('catalogue written');
      fs.renameSync(metaTmp, metaPath(dir, id));
      syncDir(join(dir, META_DIR));
      traceCheckpoint?.('restore record in place');
      warm?.commit(written.trailerBytes);
      // The runs go to the caller (write tracking of the sandbox that goes on), not in the summary's JSON.
      const summary = summaryOf(manifest);
      Object.defineProperty(summary, 'runs', { value: runs, enumerable: false });
      Object.defineProperty(summary, 'layers', { value: layers, enumerable: false });
      // Whether the page work ran on a worker thread (PageCrunch): for tests.
      Object.defineProperty(summary, 'pageWorker', { value: crunch.threaded, enumerable: false });
      return summary;
    } catch (err) {
      if (!(await db.has(manifestKey(id)).catch(() => false))) {
        fs.rmSync(pageFile, { force: true });
        fs.rmSync(metaTmp, { force: true });
      }
      throw err;
    }
  }
}

/**
 * Read a checkpoint's manifest and graph from the catalogue. `id` is a full id or a unique
 * prefix of at least 4 hex characters. Verifies the manifest seal and format version, the
 * graph checksum and the pagemap checksum (page contents are checked by restoreMemory).
 * Throws SnapshotError if the store or checkpoint does not exist, the prefix is
 * ambiguous, the format version is not 2, or any record is missing or corrupt.
 */
export async function loadCheckpoint(storeDir: string, id: string): Promise<LoadedCheckpoint> {
  return withStore(storeDir, 'existing', async (db) => {
    const fullId = await resolveId(db, storeDir, id);
    const m = await readManifest(db, fullId);
    await readPagemap(db, m, resolvePath(storeDir));
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

/** A checkpoint opened for restore without the catalogue's lock (see openCheckpoint). */
export interface OpenedCheckpoint extends LoadedCheckpoint {
  /** The pagemap: runs of non-zero pages with their CRC-32s. */
  runs: PagemapRun[];
  /** Path of the page file (laid out like the memory file; holes are zero pages). */
  pageFile: string;
  /** Host fd of the page file, opened read-only; the caller owns it. */
  pageFd: number;
  /**
   * An incremental checkpoint's inherited page files, opened read-only (the caller owns the
   * fds): layer k of the pagemap's runs is `layers[k - 1]`. Empty for a full checkpoint.
   */
  layers: Array<{ id: string; fd: number; fresh?: boolean; lazy?: LazyPack }>;
  /** Logical size of the page file, bytes. */
  pageFileBytes: number;
  /** Every page source was made from its pack just now or is filled from it lazily, each page checked as written: no further check is needed. */
  fresh: boolean;
  /** The own page file's lazy filling (a pack's restore cache), if it is one; the caller hands it to the memory file or closes it. */
  lazy?: LazyPack;
  /** With `deferChecksums`: the restore record's checksums, not checked yet (recordChecksumFailure). */
  checksums?: RecordChecksums;
}

/**
 * Open checkpoint `id` (full id or unique prefix ≥ 4 hex characters) for a restore,
 * reading only its restore record and page file: no LevelDB lock, so any number of
 * processes can do this at once, also while another writes to the store. Verifies the
 * record's manifest seal and version, graph and pagemap checksums, and the page file's
 * size; page contents are left to `verifyPages` (in the background). A compressed
 * checkpoint's restore cache is filled lazily as the restored kernel needs it (`lazy`), unless
 * `pages` is 'complete' (every page is then on disk when this returns, e.g. for a warm pool
 * whose clones all map it). Throws SnapshotError: no store, unknown or ambiguous id, a damaged
 * or missing record or page file (naming the checkpoint). `deferChecksums`: the record's seal and
 * sha256 are left to the caller (`checksums`; readMetaFile).
 */
export async function openCheckpoint(storeDir: string, id: string, pages: 'lazy' | 'complete' = 'lazy', deferChecksums = false): Promise<OpenedCheckpoint> {
  const dir = resolvePath(storeDir);
  if (!(await exists(join(dir, 'CURRENT')))) throw new SnapshotError(`no checkpoint store at ${storeDir}`);
  if (typeof id !== 'string' || !isCheckpointIdPrefix(id)) {
    throw new SnapshotError(`invalid checkpoint id '${String(id)}': expected ${MIN_ID_PREFIX} to 16 hex characters`);
  }
  const prefix = id.toLowerCase();
  const matches = metaIds(dir).filter((m) => m.startsWith(prefix));
  if (matches.length > 1) throw new SnapshotError(`checkpoint id ${id} is ambiguous in store ${storeDir} (matches ${matches.slice(0, 2).join(', ')}${matches.length > 2 ? ', …' : ''})`);
  if (matches.length === 0) {
    // Not restorable; say why if the catalogue knows it (it may be busy: then just "not found").
    const known = await withStore(storeDir, 'existing', (db) => resolveId(db, storeDir, id)).catch(() => undefined);
    if (known) throw corrupt(known, `its restore record ${META_DIR}/${known} is missing`);
    throw new SnapshotError(`checkpoint ${id} not found in store ${storeDir}`);
  }
  const fullId = matches[0];
  const r = readMetaFile(dir, fullId, deferChecksums);
  const files = graphFileOpener(r.graph, fullId);
  let own: PageSource;
  try {
    own = await openPageSource(dir, fullId, fullId, files.opener, pages);
  } catch (e) {
    files.close();
    throw e;
  }
  const size = fs.fstatSync(own.fd).size;
  if (size !== r.manifest.pageFileBytes) {
    fs.closeSync(own.fd);
    files.close();
    throw corrupt(fullId, `its page file is ${size} bytes, expected ${r.manifest.pageFileBytes}`);
  }
  let layers: Array<{ id: string; fd: number; fresh: boolean; lazy?: LazyPack }>;
  try {
    layers = await openLayers(dir, fullId, r.manifest, r.runs, files.opener, pages);
  } catch (e) {
    fs.closeSync(own.fd);
    own.lazy?.close();
    throw e;
  } finally {
    files.close();
  }
  return {
    id: fullId,
    manifest: stripManifestChecksum(r.manifest) as CheckpointSummary & Record<string, unknown>,
    graph: r.graph,
    memorySizeBytes: r.manifest.memorySizeBytes,
    runs: r.runs,
    pageFile: own.path,
    pageFd: own.fd,
    layers,
    pageFileBytes: r.manifest.pageFileBytes,
    fresh: own.fresh && layers.every((l) => l.fresh),
    lazy: own.lazy,
    checksums: r.checksums,
  };
}

/** Throws SnapshotError (one line) when the rootfs directory checkpoint `id`'s graph names is missing or not a directory. */
export function checkRootfs(id: string, graph: Pick<KernelState, 'config'>): void {
  const rootfs = graph?.config?.rootfs ?? '';
  if (!fs.statSync(rootfs, { throwIfNoEntry: false })?.isDirectory()) throw new SnapshotError(`checkpoint ${id} needs the rootfs ${rootfs}, which is missing or not a directory`);
}

/** graphFileOpener of checkpoint `id`'s graph, read from its restore record only when a host file is needed. */
function lazyFileOpener(dir: string, id: string): { opener: () => HostFileOpener; close(): void } {
  let inner: ReturnType<typeof graphFileOpener> | undefined;
  return {
    opener: () => (inner ??= graphFileOpener(readMetaFile(dir, id).graph, id)).opener(),
    close: () => inner?.close(),
  };
}

/** Check checkpoint `id`'s pack at rest: materialize it into a scratch file (checking every page) and drop that. Throws SnapshotError. */
async function checkPack(dir: string, id: string, opener: () => HostFileOpener): Promise<void> {
  let packFd: number;
  try {
    packFd = fs.openSync(packPath(dir, id), fs.constants.O_RDONLY);
  } catch {
    throw corrupt(id, `its page file ${PAGES_DIR}/${id}${PACK_SUFFIX} is missing`);
  }
  try {
    await materializeInto(dir, id, id, packFd, opener, join(dir, CACHE_DIR, `${id}.check.${tmpSuffix()}`), 'a scratch copy of its pages', () => undefined);
  } finally {
    fs.closeSync(packFd);
  }
}

/** A name part no other process or call uses at once: `<pid>.<random>.tmp`. */
const tmpSuffix = (): string => `${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;

/**
 * Rebuild the page-file image of pack `id` (open as `packFd`) into the new file `tmp` in the
 * store's cache directory (materializePack: every page checked), call `keep(tmp)` while it
 * exists, then remove `tmp`. `purpose` names `tmp` in errors ('the restore cache'). Throws
 * SnapshotError naming `owner` (the checkpoint asked for; `id` may be a layer it inherits):
 * a damaged pack or a changed host file as corrupt, `tmp` not writable as such.
 */
async function materializeInto<T>(dir: string, id: string, owner: string, packFd: number, opener: () => HostFileOpener, tmp: string, purpose: string, keep: (tmp: string) => T): Promise<T> {
  const inherited = id === owner ? '' : `the page file of ${id}, which it inherits pages from`;
  const cannotWrite = (code: string): SnapshotError =>
    new SnapshotError(`checkpoint ${owner}: ${inherited ? `the pages of ${id}, which it inherits: ` : ''}cannot write ${purpose} into ${join(dir, CACHE_DIR)} (${code})`);
  let outFd = -1;
  try {
    const trailer = readPackTrailer(packFd);
    if (typeof trailer === 'string') throw corrupt(owner, inherited ? `${inherited}: ${trailer}` : trailer);
    try {
      makeDirs(join(dir, CACHE_DIR));
      outFd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    } catch (err) {
      throw cannotWrite((err as NodeJS.ErrnoException).code ?? errorMessage(err));
    }
    let made;
    try {
      made = await materializePack(packFd, trailer, opener(), outFd);
    } catch (err) {
      if (err instanceof CacheWriteError) throw cannotWrite(err.code);
      made = `its page pack cannot be read (${errorMessage(err)})`;
    }
    if (typeof made === 'string') throw corrupt(owner, inherited ? `${inherited}: ${made}` : made);
    return keep(tmp);
  } finally {
    if (outFd >= 0) fs.closeSync(outFd);
    try { fs.rmSync(tmp, { force: true }); } catch { /* never made */ }
  }
}

/**
 * Host files of a checkpoint's graph, opened as its kernel would (Vfs.openHostFile: beneath
 * the rootfs handle, never following a host symlink out of it), for the host-file pages of its
 * packs. Made on first use; `close` releases the rootfs handle.
 */
function graphFileOpener(graph: any, id: string): { opener: () => HostFileOpener; close(): void } {
  let lower: HostTree | undefined;
  let open: HostFileOpener | undefined;
  return {
    opener: () => {
      if (open) return open;
      const g = graph as KernelState;
      checkRootfs(id, g); // a missing rootfs is one line naming it, not damage
      lower = new LinuxHostServices().openTree(g.config.rootfs);
      const vfs = new Vfs(g.fs, lower, () => 0, () => 0n, () => { throw new Error('the checkpoint graph is read-only here'); });
      open = (p) => {
        const { fd, st } = vfs.openHostFile(p);
        const id = hostIdentity(st);
        return { fd, size: id.size, mtimeMs: id.mtimeMs };
      };
      return open;
    },
    close: () => lower?.close(),
  };
}

/**
 * Open the page files an incremental checkpoint inherits pages from, read-only, checking each
 * is long enough for the runs it serves. Throws SnapshotError naming the missing or short one.
 */
async function openLayers(dir: string, id: string, m: ManifestV2, runs: PagemapRun[], opener: () => HostFileOpener, mode: 'lazy' | 'complete' = 'complete'): Promise<Array<{ id: string; fd: number; fresh: boolean; lazy?: LazyPack }>> {
  const out: Array<{ id: string; fd: number; fresh: boolean; lazy?: LazyPack }> = [];
  try {
    for (const [i, layerId] of (m.layers ?? []).entries()) {
      const src = await openPageSource(dir, layerId, id, opener, mode);
      out.push({ id: layerId, fd: src.fd, fresh: src.fresh, lazy: src.lazy });
      let need = 0;
      for (const run of runs) if (runLayer(run) === i + 1) need = Math.max(need, run[0] + (run[1].length / PAGE_CHECK_BYTES) * PAGE_SIZE);
      const size = fs.fstatSync(src.fd).size;
      if (size < need) throw corrupt(id, `the page file ${PAGES_DIR}/${layerId} it inherits pages from is ${size} bytes, expected at least ${need}`);
    }
    return out;
  } catch (e) {
    for (const l of out) { fs.closeSync(l.fd); l.lazy?.close(); }
    throw e;
  }
}

/**
 * Replay a checkpoint's memory: calls `write(offset, data)` (offset in bytes into the
 * memory file) for every non-zero 4 KiB page, in increasing offset order, coalescing
 * consecutive pages into one call of up to 1 MiB; `data` is a fresh buffer the caller
 * may keep. Pages not written are zero. A final partial page is cut at the memory size.
 * Every page's CRC-32 is verified before it is handed out. Returns the number of pages
 * written. Throws SnapshotError (see loadCheckpoint) and also on a missing page file or
 * a page that fails its check; pages before the bad one may already have been written.
 * Errors thrown by `write` propagate unchanged. (Restores map the page file instead:
 * this is for export and tests.) `onProgress` gets the bytes of pages handed out so far
 * of the checkpoint's stored pages (a ProgressCallback).
 */
export async function restoreMemory(
  storeDir: string,
  id: string,
  write: (offset: number, data: Uint8Array) => void,
  onProgress?: ProgressCallback,
): Promise<{ pages: number }> {
  return withStore(storeDir, 'existing', async (db) => {
    const fullId = await resolveId(db, storeDir, id);
    const m = await readManifest(db, fullId);
    const dir = resolvePath(storeDir);
    const runs = await readPagemap(db, m, dir);
    // Host-file pages of a pack are read as its kernel would; its graph is read only if needed.
    const files = lazyFileOpener(dir, fullId);
    let fd: number;
    try {
      fd = (await openPageSource(dir, fullId, fullId, files.opener)).fd;
    } catch (e) {
      files.close();
      throw e;
    }
    let pages = 0;
    let layers: Array<{ id: string; fd: number }> = [];
    try {
      if (fs.fstatSync(fd).size !== m.pageFileBytes) throw corrupt(fullId, 'its page file is truncated');
      layers = await openLayers(dir, fullId, m, runs, files.opener);
      // Pages whose check is their pack chunk's were checked as it was decompressed (format 6).
      const chunkChecked = chunkCheckedLayers(dir, m);
      for (const run of runs) {
        const [runOffset, checks] = run;
        const from = runLayer(run) ? layers[runLayer(run) - 1].fd : fd;
        const unchecked = chunkChecked[runLayer(run)];
        const n = checks.length / PAGE_CHECK_BYTES;
        const c = Buffer.from(checks.buffer, checks.byteOffset, checks.byteLength);
        for (let first = 0; first < n; first += RESTORE_PAGES_PER_CALL) {
          const count = Math.min(RESTORE_PAGES_PER_CALL, n - first);
          const offset = runOffset + first * PAGE_SIZE;
          const data = Buffer.alloc(count * PAGE_SIZE);
          fs.readSync(from, data, 0, data.length, offset);
          for (let j = 0; j < count; j++) {
            if (unchecked?.[offset / PAGE_SIZE + j]) continue;
            if (pageCheck(data, j * PAGE_SIZE) !== c.readUInt32LE((first + j) * PAGE_CHECK_BYTES)) {
              throw corrupt(fullId, `page at offset 0x${(offset + j * PAGE_SIZE).toString(16)} failed its checksum`);
            }
          }
          const end = Math.min(offset + data.length, m.memorySizeBytes);
          write(offset, end === offset + data.length ? data : data.subarray(0, end - offset));
          pages += count;
          onProgress?.(pages * PAGE_SIZE, m.pages * PAGE_SIZE);
        }
      }
      if (m.pages === 0) onProgress?.(0, 0);
    } finally {
      fs.closeSync(fd);
      for (const l of layers) fs.closeSync(l.fd);
      files.close();
    }
    return { pages };
  });
}

/**
 * Summaries of all complete checkpoints in the store, oldest first (by `seq`, then
 * creation time). Incomplete writes (no manifest) are invisible. Throws SnapshotError if
 * the store does not exist, any manifest is corrupt or of another format version, or a
 * listed checkpoint is incomplete: its restore record or page file is missing or of the
 * wrong size, or a restore record exists whose catalogue entry was lost (LevelDB drops a
 * damaged log record when it opens) — the message names the checkpoint.
 */
export async function listCheckpoints(storeDir: string): Promise<CheckpointSummary[]> {
  const r = await surveyCheckpoints(storeDir);
  if (r.damaged.length) throw new SnapshotError(r.damaged[0].problem);
  return r.checkpoints;
}

/** What `surveyCheckpoints` found: the sound checkpoints, and one line for each damaged one. */
export interface CheckpointSurvey {
  /** Complete checkpoints, oldest first, as `listCheckpoints` gives them. */
  checkpoints: CheckpointSummary[];
  /** Checkpoints listing found damaged, by id: `problem` is one line naming the checkpoint (`checkpoint ID is corrupt: …`). */
  damaged: Array<{ id: string; problem: string }>;
}

/**
 * `snapvisor checkpoints`: the checks of `listCheckpoints` (manifests, and the existence and
 * sizes of each checkpoint's files: cheap, no page is read; `checkStore` reads them all), but a
 * damaged checkpoint is reported beside the others instead of failing the whole listing.
 * Throws SnapshotError only when the store itself cannot be read (none there, busy, its
 * catalogue cannot be opened).
 */
export async function surveyCheckpoints(storeDir: string): Promise<CheckpointSurvey> {
  return withStore(storeDir, 'existing', async (db) => {
    const dir = resolvePath(storeDir);
    const manifests: ManifestV2[] = [];
    const damaged = new Map<string, string>();
    const sealedBytes = new Map<string, number>();
    const catalogued = new Set<string>();
    for await (const [key, value] of db.iterator(prefixRange(KEY.manifest))) {
      const id = key.slice(KEY.manifest.length);
      catalogued.add(id);
      try {
        const m = parseManifest(id, value);
        manifests.push(m);
        sealedBytes.set(m.id, value.length);
      } catch (err) {
        if (!(err instanceof SnapshotError)) throw err;
        damaged.set(id, err.message);
      }
    }
    const badPages = new Set<string>();
    for (const m of manifests) {
      const problem = filesProblem(dir, m, sealedBytes.get(m.id)!);
      if (problem) damaged.set(m.id, corrupt(m.id, problem).message);
      if (problem?.startsWith('its page file')) badPages.add(m.id);
    }
    // A checkpoint that inherits pages from a damaged page file does not restore either.
    for (const m of manifests) {
      const bad = damaged.has(m.id) ? undefined : m.layers?.find((l) => badPages.has(l));
      if (bad) damaged.set(m.id, corrupt(m.id, `the page file of ${bad}, which it inherits pages from, is damaged`).message);
    }
    const sound = manifests.filter((m) => !damaged.has(m.id));
    for (const id of metaIds(dir)) {
      if (!catalogued.has(id)) damaged.set(id, corrupt(id, `the catalogue lost its record (its restore record ${META_DIR}/${id} is still there; see snapvisor store check)`).message);
    }
    sound.sort((a, b) => a.seq - b.seq || a.createdMs - b.createdMs || (a.id < b.id ? -1 : 1));
    return { checkpoints: sound.map(summaryOf), damaged: [...damaged].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, problem]) => ({ id, problem })) };
  });
}

/**
 * Delete a checkpoint (full id or unique prefix of ≥ 4 hex characters), even a corrupt
 * one: its restore record first (restores stop finding it), then its catalogue records
 * in one atomic batch, then its page file (restores already running keep their open
 * copy). Then the store is swept: catalogue records and page files without a manifest
 * (left by interrupted writes) are deleted. Throws SnapshotError if the store or
 * checkpoint does not exist or the prefix is ambiguous. Returns the full id deleted.
 */
export async function deleteCheckpoint(storeDir: string, id: string): Promise<string> {
  return withStore(storeDir, 'existing', async (db) => {
    const dir = resolvePath(storeDir);
    const fullId = await resolveId(db, storeDir, id, metaIds(dir));
    fs.rmSync(metaPath(dir, fullId), { force: true });
    const ops: Op[] = [{ type: 'del', key: manifestKey(fullId) }, { type: 'del', key: pagemapKey(fullId) }];
    for await (const key of db.keys(graphRange(fullId))) ops.push({ type: 'del', key });
    await db.batch(ops);
    // A page file that later checkpoints inherit pages from stays until none does (collectGarbage).
    if (!(await inheritedPageFiles(db)).has(fullId)) removePageFiles(dir, fullId);
    await collectGarbage(db, dir);
    return fullId;
  });
}

/**
 * `snapvisor gc`: remove what no checkpoint of the store references: page files of deleted
 * checkpoints that no remaining checkpoint inherits pages from any more, and leftovers of
 * interrupted writes (catalogue records, page files and restore records without a manifest).
 * Returns the files removed and the bytes they took on disk. Throws SnapshotError (no store,
 * store busy).
 */
export async function gcStore(storeDir: string): Promise<{ removedFiles: number; freedBytes: number }> {
  return withStore(storeDir, 'existing', async (db) => {
    const dir = resolvePath(storeDir);
    const before = storeFiles(dir);
    await collectGarbage(db, dir);
    const after = new Set(storeFiles(dir).map(([p]) => p));
    const gone = before.filter(([p]) => !after.has(p));
    return { removedFiles: gone.length, freedBytes: gone.reduce((n, [, b]) => n + b, 0) };
  });
}

/** Remove checkpoint `id`'s page file or pack and its restore caches (restores running keep their open copies). */
function removePageFiles(dir: string, id: string): void {
  fs.rmSync(pagePath(dir, id), { force: true });
  fs.rmSync(packPath(dir, id), { force: true });
  let names: string[] = [];
  try { names = fs.readdirSync(join(dir, CACHE_DIR)); } catch { /* none */ }
  for (const n of names) if (n.startsWith(id + '.')) fs.rmSync(join(dir, CACHE_DIR, n), { force: true });
}

/** Page files, restore caches and restore records of a store with the bytes each takes on disk. */
function storeFiles(dir: string): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const sub of [PAGES_DIR, META_DIR, CACHE_DIR]) {
    let names: string[] = [];
    try { names = fs.readdirSync(join(dir, sub)); } catch { /* none yet */ }
    for (const n of names) {
      try { out.push([join(sub, n), fs.statSync(join(dir, sub, n)).blocks * 512]); } catch { /* raced away */ }
    }
  }
  return out;
}

/** What `checkStore` found. */
export interface StoreCheck {
  /** Checkpoints whose every record and page verified. */
  ok: string[];
  /** One line per problem, each naming the damaged checkpoint (or the catalogue). */
  problems: string[];
}

/**
 * Verify the whole store: the catalogue opens, every manifest's seal, graph and pagemap,
 * every restore record (and that it matches the catalogue), every page of every page file
 * (CRC-32s, zero elsewhere), and that no restore record lacks its catalogue entry. Reports
 * rather than throws, so one damaged checkpoint does not hide the others; throws
 * SnapshotError only if there is no store at `storeDir`.
 */
export async function checkStore(storeDir: string): Promise<StoreCheck> {
  const dir = resolvePath(storeDir);
  if (!(await exists(join(dir, 'CURRENT')))) throw new SnapshotError(`no checkpoint store at ${storeDir}`);
  const ok: string[] = [];
  const problems: string[] = [];
  const catalogue = new Map<string, Uint8Array | string>();
  let catalogueOpened = false;
  try {
    await withStore(storeDir, 'existing', async (db) => {
      catalogueOpened = true;
      for await (const [key, value] of db.iterator(prefixRange(KEY.manifest))) {
        const id = key.slice(KEY.manifest.length);
        try {
          const m = parseManifest(id, value);
          await readPagemap(db, m, dir);
          const chunks = await db.getMany(Array.from({ length: m.graphChunks }, (_, i) => graphKey(id, i)));
          const missing = chunks.findIndex((c) => c === undefined);
          if (missing >= 0) throw corrupt(id, `graph chunk ${missing} is missing`);
          const bytes = Buffer.concat(chunks as Uint8Array[]);
          if (bytes.length !== m.graphBytes || sha256Hex(bytes) !== m.graphSha256) throw corrupt(id, 'graph checksum mismatch');
          catalogue.set(id, Uint8Array.from(value));
        } catch (err) {
          if (!(err instanceof SnapshotError)) throw err;
          catalogue.set(id, err.message);
        }
      }
    });
  } catch (err) {
    if (!(err instanceof SnapshotError)) throw err;
    problems.push(catalogueOpened ? err.message : `the catalogue (LevelDB) cannot be read: ${err.message}`);
  }
  const ids = new Set([...catalogue.keys(), ...metaIds(dir)]);
  for (const id of [...ids].sort()) {
    const entry = catalogue.get(id);
    if (typeof entry === 'string') { problems.push(entry); continue; }
    try {
      const r = readMetaFile(dir, id);
      if (entry === undefined) {
        if (catalogueOpened) throw corrupt(id, `the catalogue lost its record (its restore record ${META_DIR}/${id} is intact)`);
      } else if (!Buffer.from(r.manifestBytes).equals(entry)) {
        throw corrupt(id, 'its restore record does not match the catalogue');
      }
      const files = graphFileOpener(r.graph, id);
      let fd = -1;
      let layers: Array<{ id: string; fd: number }> = [];
      try {
        // A pack is checked at rest (every chunk decompressed, every page against its CRC-32), not only its cache.
        if (isPacked(r.manifest.formatVersion)) await checkPack(dir, id, files.opener);
        fd = (await openPageSource(dir, id, id, files.opener)).fd;
        const size = fs.fstatSync(fd).size;
        if (size !== r.manifest.pageFileBytes) throw corrupt(id, `its page file is ${size} bytes, expected ${r.manifest.pageFileBytes}`);
        layers = await openLayers(dir, id, r.manifest, r.runs, files.opener);
        const bad = verifyPages(fd, r.runs, r.manifest.pageFileBytes, layers.map((l) => l.fd), chunkCheckedLayers(dir, r.manifest));
        if (bad) throw corrupt(id, bad);
      } finally {
        if (fd >= 0) fs.closeSync(fd);
        for (const l of layers) fs.closeSync(l.fd);
        files.close();
      }
      ok.push(id);
    } catch (err) {
      if (!(err instanceof SnapshotError)) throw err;
      problems.push(err.message);
    }
  }
  return { ok, problems };
}

// ---------------------------------------------------------------------------
// Files of a checkpoint

const pagePath = (dir: string, id: string): string => join(dir, PAGES_DIR, id);
/** Format 4: the compressed page pack of checkpoint `id` (snapshots/pack.ts). */
const packPath = (dir: string, id: string): string => join(dir, PAGES_DIR, id + PACK_SUFFIX);
/** Suffix of a format-4 page pack in `pages/`. */
const PACK_SUFFIX = '.pack';
/** Directory (inside the store) of the restore caches of packs: `cache/<id>.<boot>`. */
export const CACHE_DIR = 'cache';
let bootTagMemo: string | undefined;
/** The host's boot id, first 8 hex digits: a cache made before a reboot (or a crash) is never used. */
function bootTag(): string {
  if (bootTagMemo === undefined) {
    try { bootTagMemo = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/[^0-9a-f]/g, '').slice(0, 8); } catch { bootTagMemo = 'noboot'; }
  }
  return bootTagMemo;
}
/** The restore cache of pack `id` on this boot of the host. */
const cachePath = (dir: string, id: string): string => join(dir, CACHE_DIR, `${id}.${bootTag()}`);

/**
 * A page source a restore maps: fd (read-only, the caller's), its path, whether no further page
 * check is needed (made or filled from its pack, every page checked as written), and, for a
 * pack's restore cache filled on first use, the LazyPack that fills it (the caller's).
 */
export interface PageSource { fd: number; path: string; fresh: boolean; lazy?: LazyPack }

/**
 * Open the pages of checkpoint `id` laid out like its memory file: its flat page file (formats
 * 2 and 3) or its pack's restore cache (formats 4 to 6; host-file pages read through `opener()`, made
 * on first need). `mode` 'lazy' (a restore): the cache is made empty if this host has none and
 * filled piece by piece as the kernel needs it (LazyPack, returned as `lazy`; the host files the
 * pack names are checked now). 'complete' (store operations reading every page): a cache being
 * filled lazily is filled whole first, and one this host lacks is made whole from the pack
 * (materializePack). Every page written is checked against its CRC-32. Concurrent restores may
 * each make the cache; the first to link it into place wins, the others use it.
 * Throws SnapshotError naming `owner` (the checkpoint being restored; `id` may be a layer).
 */
export async function openPageSource(dir: string, id: string, owner: string, opener: () => HostFileOpener, mode: 'lazy' | 'complete' = 'complete'): Promise<PageSource> {
  const pack = packPath(dir, id);
  const what = id === owner ? 'its page file' : `the page file of ${id}, which it inherits pages from,`;
  if (!fs.existsSync(pack)) {
    try {
      return { fd: fs.openSync(pagePath(dir, id), fs.constants.O_RDONLY), path: pagePath(dir, id), fresh: false };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw corrupt(owner, `${what} ${PAGES_DIR}/${id} ${code === 'ENOENT' ? 'is missing' : `cannot be opened (${code ?? errorMessage(err)})`}`);
    }
  }
  const cache = cachePath(dir, id);
  const ready = `${cache}.ready`;
  let fd = -1;
  try { fd = fs.openSync(cache, fs.constants.O_RDONLY); } catch { /* not made on this boot yet */ }
  // A cache with no ready file was made whole at once (materializePack).
  if (fd >= 0 && !fs.existsSync(ready)) return { fd, path: cache, fresh: false };
  let packFd: number;
  try {
    packFd = fs.openSync(pack, fs.constants.O_RDONLY);
  } catch (err) {
    if (fd >= 0) fs.closeSync(fd);
    throw corrupt(owner, `${what} ${PAGES_DIR}/${id}${PACK_SUFFIX} cannot be opened (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
  if (fd < 0 && mode === 'complete') {
    try {
      return await materializeInto(dir, id, owner, packFd, opener, `${cache}.${tmpSuffix()}`, 'the restore cache', (tmp) => {
        try { fs.linkSync(tmp, cache); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; }
        return { fd: fs.openSync(cache, fs.constants.O_RDONLY), path: cache, fresh: true };
      });
    } finally {
      fs.closeSync(packFd);
    }
  }
  const layerOf = id === owner ? '' : `the page file of ${id}, which it inherits pages from`;
  const closeAll = (...fds: number[]): void => { for (const f of fds) if (f >= 0) { try { fs.closeSync(f); } catch { /* closed */ } } };
  // Its trailer checked once per boot (the copy beside the cache; the checkpoint that wrote it leaves one too).
  const trailer = readPackTrailer(packFd, `${cache}.trailer`);
  if (typeof trailer === 'string') {
    closeAll(fd, packFd);
    throw corrupt(owner, layerOf ? `${layerOf}: ${trailer}` : trailer);
  }
  let cacheRw = -1, readyFd = -1;
  try {
    if (fd < 0) {
      // Made empty: the ready file first (every piece 0), then the cache; each linked into place unless another process was first.
      makeDirs(join(dir, CACHE_DIR));
      makeInPlace(ready, (tmpFd) => fs.ftruncateSync(tmpFd, Math.ceil(trailer.pageFileBytes / PACK_CHUNK_BYTES)));
      makeInPlace(cache, (tmpFd) => fs.ftruncateSync(tmpFd, trailer.pageFileBytes));
      fd = fs.openSync(cache, fs.constants.O_RDONLY);
    }
    cacheRw = fs.openSync(cache, fs.constants.O_RDWR);
    readyFd = fs.openSync(ready, fs.constants.O_RDWR);
  } catch (err) {
    closeAll(fd, packFd, cacheRw, readyFd);
    throw new SnapshotError(`checkpoint ${owner}: ${layerOf ? `the pages of ${id}, which it inherits: ` : ''}cannot write the restore cache into ${join(dir, CACHE_DIR)} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
  // The host files (and so the rootfs) are opened only when the pack names some.
  let files: HostFileOpener = () => { throw new Error('no host file'); };
  if (trailer.hostFiles.length) {
    try {
      files = opener();
    } catch (err) {
      closeAll(fd, packFd, cacheRw, readyFd);
      throw err instanceof SnapshotError ? err : corrupt(owner, `its host files cannot be opened (${errorMessage(err)})`);
    }
  }
  // LazyPack owns packFd, cacheRw and readyFd from here on.
  const lazy = LazyPack.open(owner, packFd, trailer, files, cacheRw, readyFd);
  if (typeof lazy === 'string') {
    closeAll(fd);
    throw corrupt(owner, layerOf ? `${layerOf}: ${lazy}` : lazy);
  }
  if (mode === 'lazy') return { fd, path: cache, fresh: true, lazy };
  try {
    lazy.fillAll();
  } catch (err) {
    closeAll(fd);
    throw new SnapshotError(errorMessage(err));
  } finally {
    lazy.close();
  }
  return { fd, path: cache, fresh: true };
}

/**
 * The write faults restored guests of a checkpoint take first (its *working set*, see
 * docs/snapshot-format.md "Working set"): `cache/<id>.<boot>.ws`, JSON `{ "v": 1, "faults":
 * [[address space id, guest address], …] }`, at most WORKING_SET_MAX faults. Advisory: a fault
 * that does not apply (no such address space, a page no longer backed) is skipped.
 */
export const WORKING_SET_MAX = 512;
const workingSetPath = (dir: string, id: string): string => `${cachePath(dir, id)}.ws`;

/** The working set recorded for checkpoint `id` (its full id) in store `storeDir`, or undefined (none, or unreadable). */
export function readWorkingSet(storeDir: string, id: string): Array<[number, number]> | undefined {
  let v: unknown;
  try { v = JSON.parse(fs.readFileSync(workingSetPath(resolvePath(storeDir), id), 'utf8')); } catch { return undefined; }
  const faults = (v as { v?: unknown; faults?: unknown })?.v === 1 ? (v as { faults: unknown }).faults : undefined;
  if (!Array.isArray(faults)) return undefined;
  return faults.slice(0, WORKING_SET_MAX).filter((f): f is [number, number] =>
    Array.isArray(f) && f.length === 2 && Number.isSafeInteger(f[0]) && Number.isSafeInteger(f[1]) && f[1] >= 0);
}

/**
 * Record `faults` as checkpoint `id`'s working set (replacing a damaged record; restores that
 * record at once each write a whole one); never throws (the store may be read-only).
 */
export function writeWorkingSet(storeDir: string, id: string, faults: ReadonlyArray<readonly [number, number]>): void {
  if (!faults.length) return;
  let tmp: string | undefined;
  try {
    const dir = resolvePath(storeDir);
    makeDirs(join(dir, CACHE_DIR));
    const target = workingSetPath(dir, id);
    tmp = `${target}.${tmpSuffix()}`;
    fs.writeFileSync(tmp, JSON.stringify({ v: 1, faults: faults.slice(0, WORKING_SET_MAX) }), { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, target);
  } catch {
    // Left unrecorded: the next restore records it.
    if (tmp) try { fs.rmSync(tmp, { force: true }); } catch { /* never made */ }
  }
}

/**
 * Make the file `target` (mode 0600) through a temporary beside it that `init(fd)` prepares,
 * then link it into place; a target another process linked first is kept (the same kind of
 * file). Throws on I/O errors.
 */
function makeInPlace(target: string, init: (fd: number) => void): void {
  const tmp = `${target}.${tmpSuffix()}`;
  const tfd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  try {
    init(tfd);
    try { fs.linkSync(tmp, target); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; }
  } finally {
    fs.closeSync(tfd);
    fs.rmSync(tmp, { force: true });
  }
}
const metaPath = (dir: string, id: string): string => join(dir, META_DIR, id);

/** Ids of the restore records present (complete checkpoints, or ones whose catalogue entry was lost). */
function metaIds(dir: string): string[] {
  try {
    return fs.readdirSync(join(dir, META_DIR)).filter(isCheckpointId).sort();
  } catch {
    return [];
  }
}

/** Why a catalogued checkpoint's files are incomplete (cheap: existence and sizes), or undefined. */
function filesProblem(dir: string, m: ManifestV2, sealedBytes: number): string | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(metaPath(dir, m.id));
  } catch (err) {
    return `its restore record ${META_DIR}/${m.id} ${missingOr(err)}`;
  }
  // SVMETA03's 16 bytes of header (format.ts encodeMeta); an SVMETA02 record's 12.
  const expected = 16 + sealedBytes + m.graphBytes + m.pagemapBytes;
  if (st.size !== expected && st.size !== expected - 4) return `its restore record is ${st.size} bytes, expected ${expected}`;
  const packed = isPacked(m.formatVersion);
  const own = packed ? packPath(dir, m.id) : pagePath(dir, m.id);
  try {
    st = fs.statSync(own);
  } catch (err) {
    return `its page file ${PAGES_DIR}/${m.id}${packed ? PACK_SUFFIX : ''} ${missingOr(err)}`;
  }
  if (packed ? st.size !== m.packBytes : st.size !== m.pageFileBytes) return `its page file is ${st.size} bytes, expected ${packed ? m.packBytes : m.pageFileBytes}`;
  for (const layerId of m.layers ?? []) {
    if (!hasPageFile(dir, layerId)) return `the page file ${PAGES_DIR}/${layerId} it inherits pages from is missing`;
  }
  return undefined;
}

/** Why a file of the store could not be looked at: "is missing" (ENOENT), else "cannot be read (EACCES)". */
function missingOr(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'is missing' : `cannot be read (${code ?? errorMessage(err)})`;
}

/** Whether checkpoint `id`'s pages are in the store: a flat page file or a pack. */
function hasPageFile(dir: string, id: string): boolean {
  return fs.existsSync(packPath(dir, id)) || fs.existsSync(pagePath(dir, id));
}

/**
 * Read and check a restore record: framing, manifest seal and version, graph and pagemap
 * checksums. With `deferChecksums` the seal and the two sha256 are not computed (node:crypto is
 * not loaded): the record's parts are returned in `checksums` for the caller to check later
 * (recordChecksumFailure), and any other fault found meanwhile is reported as the checksums
 * would report it, if they fail (the same line as without deferring).
 */
function readMetaFile(dir: string, id: string, deferChecksums = false): { manifest: ManifestV2; manifestBytes: Uint8Array; graph: unknown; runs: PagemapRun[]; checksums?: RecordChecksums } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(metaPath(dir, id));
  } catch (err) {
    throw corrupt(id, `its restore record ${META_DIR}/${id} cannot be read (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`);
  }
  const split = splitMeta(bytes);
  if (typeof split === 'string') throw corrupt(id, split);
  // Deferred, the sha256 checksums wait for the page check, but nothing of the record is used
  // unchecked: its quick check (manifest and graph: what the kernel is built from) first; a
  // record without one (SVMETA02) is checked in full now.
  if (!deferChecksums || split.quick === undefined) {
    const checked = checkedMeta(dir, id, split.manifest, split.rest);
    // The quick check's own bytes, which the sha256 checksums do not cover: damage anywhere is found.
    checkQuick(id, split, checked.manifest.graphBytes);
    return checked;
  }
  try {
    const rest = split.rest;
    const m = parseManifest(id, split.manifest, true);
    if (rest.length !== m.graphBytes + m.pagemapBytes) throw corrupt(id, 'restore record size mismatch');
    checkQuick(id, split, m.graphBytes);
    const checksums: RecordChecksums = { manifest: split.manifest, graph: rest.subarray(0, m.graphBytes), pagemap: rest.subarray(m.graphBytes), graphSha256: m.graphSha256, pagemapSha256: m.pagemapSha256 };
    return { ...decodedMeta(dir, id, m, split.manifest, checksums.graph, checksums.pagemap), checksums };
  } catch (e) {
    // A damaged record: the message the checks in order give (a failing checksum before what it caused).
    return checkedMeta(dir, id, split.manifest, split.rest, e);
  }
}

/**
 * Throws (corrupt) unless the quick check of restore record `split` (SVMETA03; none in SVMETA02)
 * holds for its sealed manifest and the first `graphBytes` bytes after it (its graph): contiguous
 * in the record's buffer.
 */
function checkQuick(id: string, split: { manifest: Uint8Array; quick?: number }, graphBytes: number): void {
  if (split.quick === undefined) return;
  const covered = new Uint8Array(split.manifest.buffer, split.manifest.byteOffset, split.manifest.length + graphBytes);
  if (recordQuickCheck(covered) !== split.quick) throw corrupt(id, 'restore record checksum mismatch (its quick check)');
}

/**
 * The error a restore record with these checksums gives, as openCheckpoint without deferring would
 * throw it, or undefined when they hold (loads node:crypto).
 */
export function recordChecksumError(id: string, checksums: RecordChecksums): SnapshotError | undefined {
  const failure = recordChecksumFailure(checksums);
  if (failure === undefined) return undefined;
  return failure === 'manifest' ? new SnapshotError(`checkpoint ${id} has a corrupt manifest (checksum mismatch)`) : corrupt(id, recordChecksumReason(failure));
}

/** readMetaFile's checks in order (seal, version, sizes, checksums, decoding); `otherwise`, thrown if they all pass. */
function checkedMeta(dir: string, id: string, manifest: Uint8Array, rest: Uint8Array, otherwise?: unknown): { manifest: ManifestV2; manifestBytes: Uint8Array; graph: unknown; runs: PagemapRun[] } {
  const m = parseManifest(id, manifest);
  if (rest.length !== m.graphBytes + m.pagemapBytes) throw corrupt(id, 'restore record size mismatch');
  const graphBytes = rest.subarray(0, m.graphBytes);
  const pagemap = rest.subarray(m.graphBytes);
  if (sha256Hex(graphBytes) !== m.graphSha256) throw corrupt(id, 'graph checksum mismatch in its restore record');
  if (sha256Hex(pagemap) !== m.pagemapSha256) throw corrupt(id, 'pagemap checksum mismatch in its restore record');
  if (otherwise !== undefined) throw otherwise;
  return decodedMeta(dir, id, m, manifest, graphBytes, pagemap);
}

/** The pagemap's runs and the graph of a restore record whose manifest is `m`. */
function decodedMeta(dir: string, id: string, m: ManifestV2, manifestBytes: Uint8Array, graphBytes: Uint8Array, pagemap: Uint8Array): { manifest: ManifestV2; manifestBytes: Uint8Array; graph: unknown; runs: PagemapRun[] } {
  const decoded = decodePagemap(pagemap, m.memorySizeBytes, m.layers?.length ?? 0, elidedChecks(dir, m));
  if (typeof decoded === 'string') throw corrupt(id, decoded);
  if (decoded.pages !== m.pages) throw corrupt(id, 'pagemap page count mismatch');
  let graph: unknown;
  try {
    graph = decodeCbor(graphBytes);
  } catch (err) {
    throw corrupt(id, `graph cannot be decoded (${errorMessage(err)})`);
  }
  return { manifest: m, manifestBytes, graph, runs: decoded.runs };
}

/**
 * Which inherited pages a checkpoint into store `dir` may leave where they are: all of
 * `inherited` when it names this store, not too many layers, and every layer's page file is
 * there; else none (undefined: every page is written).
 */
function usableInheritance(dir: string, inherited: InheritedPages | undefined): InheritedPages | undefined {
  if (!inherited || resolvePath(inherited.storeDir) !== dir) return undefined;
  const used = backingLayers(inherited);
  if (used.length >= MAX_PAGE_LAYERS) return undefined;
  return used.every((k) => inherited.layerIds[k - 1] !== undefined && hasPageFile(dir, inherited.layerIds[k - 1])) ? inherited : undefined;
}

/** The layers (≥ 1) `inherited.backed` names, ascending; made once per `backed`. */
function backingLayers(inherited: InheritedPages): number[] {
  let used = backingMemo.get(inherited.backed);
  if (!used) {
    // A search per layer (native, ~20 µs per 60,000 pages) instead of a loop over the pages (3–6 ms of CPU here, still cold).
    used = [];
    for (let k = 1; k <= Math.min(255, inherited.layerIds.length); k++) if (inherited.backed.includes(k)) used.push(k);
    backingMemo.set(inherited.backed, used);
  }
  return used;
}
const backingMemo = new WeakMap<Uint8Array, number[]>();

/** The pagemap runs a writeCheckpoint summary carries (not enumerable: not in its JSON). */
export function runsOf(summary: CheckpointSummary): PagemapRun[] {
  return (summary as CheckpointSummary & { runs?: PagemapRun[] }).runs ?? [];
}

/** The ids its runs' layers name (run layer k → [k - 1]), carried like runsOf. */
export function layersOf(summary: CheckpointSummary): string[] {
  return (summary as CheckpointSummary & { layers?: string[] }).layers ?? [];
}

/** A read buffer back from the crunch with its result. */
interface CrunchedBuffer extends CrunchResult { buf: Buffer }

/**
 * Page workers a checkpoint uses at most: one per CPU but the writer's thread's (which crunches
 * too), up to this many. On this 2-CPU VM a second worker did not shorten the bench's checkpoint
 * (245–260 ms of scan either way, load ~1): the CPUs were busy, and each worker compiles the
 * crunch anew (its CPU grew by ~90 ms); `SNAPVISOR_PAGE_WORKERS` sets the count (1 to 8).
 */
const PAGE_WORKERS_MAX = 4;

/** One page worker and what it owes: answers come back in the order its buffers were sent. */
interface CrunchLane {
  worker: Worker;
  /** Shared with the worker (see ./page-crunch-worker.ts): [0] buffers done, [1] its CPU ms, [2] its waits ms, [3] stop. */
  status: Int32Array;
  waiting: Array<{ resolve(r: CrunchedBuffer): void; reject(e: Error): void }>;
  sent: number;
  /** Resolves once its thread has exited (its 'exit' event: Node has joined it). */
  exited: Promise<void>;
  ended?: () => void;
}

/**
 * Runs crunchPages (./page-crunch.ts) on the page writer's read buffers: on worker threads
 * (./page-crunch-worker.ts, one per CPU up to PAGE_WORKERS_MAX) when `start` is asked to and the
 * worker's code is there, so that the writer's thread keeps the books (and, unless the workers
 * read the memfd themselves, reads) meanwhile, and on the writer's thread for the buffers it is
 * asked to do `here` (scanPages: when every worker has WORKER_BACKLOG to do, known from
 * `backlog`); else inline, synchronously. A buffer goes to the worker with the least to do; each
 * worker's results come back in the order it was sent them. Worker threads are started with
 * every CPU allowed: the ptrace platform pins the kernel's thread to one CPU, and a thread
 * inherits its creator's CPUs.
 */
export class PageCrunch {
  private failure?: Error;
  /** Settles once every worker's thread has exited (halt). */
  private halted?: Promise<void>;
  /** Set by halt: the workers' exits are expected, not failures. */
  private halting = false;
  /** Buffers done on this thread. */
  private inline = 0;
  /** close()'s promise, once called. */
  private closing?: Promise<void>;
  /** The pull under way (pull): where the workers' results and the first failure go. */
  private pulling?: { deliver(i: number, r: CrunchResult): void; fail(e: Error): void };
  private constructor(private readonly lanes: CrunchLane[]) {
    for (const lane of lanes) {
      const { worker } = lane;
      worker.on('message', (m: { buf: ArrayBuffer; kind: Uint8Array; checks: Uint32Array; packed?: CrunchResult['packed']; warmed?: boolean } | ({ pulled: number } & CrunchResult) | { error: { message: string; code?: string; syscall?: string } } | 'ended') => {
        if (m === 'ended') { lane.ended?.(); return; }
        if ('error' in m) { this.fail(Object.assign(new Error(m.error.message), { code: m.error.code, syscall: m.error.syscall })); return; }
        if ('pulled' in m) {
          lane.sent++;
          this.pulling?.deliver(m.pulled, { kind: m.kind, checks: m.checks, packed: m.packed, warmed: m.warmed });
          return;
        }
        lane.waiting.shift()?.resolve({ buf: Buffer.from(m.buf), kind: m.kind, checks: m.checks, packed: m.packed, warmed: m.warmed });
      });
      worker.on('error', (e) => this.fail(new SnapshotError(`the checkpoint's page worker failed: ${e.message}`)));
      worker.on('exit', () => { if (!this.halting) this.fail(new SnapshotError("the checkpoint's page worker ended early")); });
    }
  }

  /** The first failure ends everything: every buffer still owed is rejected with it, and close() stops waiting. */
  private fail(e: Error): void {
    this.failure ??= e;
    this.pulling?.fail(this.failure);
    for (const lane of this.lanes) {
      for (const w of lane.waiting.splice(0)) w.reject(this.failure);
      lane.ended?.();
    }
  }

  /**
   * A crunch with worker threads if `threaded` and they can be started (those prestartPageWorker
   * started first, then new ones up to one per CPU), else an inline one.
   */
  static start(threaded: boolean): PageCrunch {
    if (!threaded) return new PageCrunch([]);
    const lanes: CrunchLane[] = prestarted.splice(0).map((p) => { p.worker.ref(); return lane(p.worker, p.status); });
    try {
      const url = pageWorkerUrl();
      while (url && lanes.length < pageWorkerCount()) {
        const w = newPageWorker(url);
        lanes.push(lane(w.worker, w.status));
      }
    } catch { /* fewer workers: the others' share is crunched here */ }
    return new PageCrunch(lanes);
  }

  /** Whether the work runs on worker threads. */
  get threaded(): boolean { return this.lanes.length > 0; }

  /** How many worker threads it has. */
  get workers(): number { return this.lanes.length; }

  /**
   * Buffers sent to the worker with the least to do that it has not finished (read from a
   * counter it shares, so known before its answers are received); 0 without a worker.
   */
  backlog(): number {
    let least = Infinity;
    for (const l of this.lanes) least = Math.min(least, owed(l));
    return this.lanes.length ? least : 0;
  }

  /** For SNAPVISOR_TRACE_CHECKPOINT: buffers done on each worker (its CPU time and waits, ms) and on this thread. */
  stats(): string {
    const each = this.lanes.map((l) => `${l.sent} (CPU ${Atomics.load(l.status, 1)} ms, waited ${Atomics.load(l.status, 2)} ms between them)`);
    return `buffers on ${this.lanes.length} worker${this.lanes.length === 1 ? '' : 's'}: ${each.join(', ') || 'none'}; ${this.inline} on this thread`;
  }

  /**
   * crunchPages of `len` bytes of `buf` (an own ArrayBuffer: it is transferred to a worker and
   * comes back in the result; not to be touched meanwhile) holding the memory file from `base`,
   * read into it first from `read` if given: on the worker with the least to do, or on this
   * thread when there is none or `here`.
   */
  submit(buf: Buffer, len: number, base: number, skip: Uint8Array | undefined, writeFd: number, read?: ReadParts, here = false, pack?: PackAsk, parts?: number[]): Promise<CrunchedBuffer> {
    if (!this.lanes.length || here) {
      this.inline++;
      try {
        return Promise.resolve({ buf, ...crunchPages(buf, len, base, skip, writeFd, read, pack, parts) });
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (this.failure) return Promise.reject(this.failure);
    let lane = this.lanes[0];
    for (const l of this.lanes) if (owed(l) < owed(lane)) lane = l;
    lane.sent++;
    return new Promise((resolve, reject) => {
      lane.waiting.push({ resolve, reject });
      lane.worker.postMessage({ buf: buf.buffer, len, base, skip, writeFd, read, pack, parts }, [buf.buffer as ArrayBuffer]);
    });
  }

  /**
   * Share `jobs` (whole pack pieces, each read from the memory's fd by whoever crunches it) with
   * every worker and this thread: a counter on shared memory hands out job indices, so each thread
   * takes the next job as soon as it is done with one, and neither waits on a queue the other holds
   * (the submit queue's order left the writer's thread waiting 20–35 ms for the worker, and the
   * worker as long for the writer, in a checkpoint of the bench's python3). Returns `claim()`:
   * the next job index for this thread (≥ jobs.length once none is left; call it until then).
   * The workers' results go to `deliver(i, result)` as their messages arrive, a failure (a
   * worker's, or halt) to `fail`, once. Only with workers (threaded); nothing may be submitted
   * meanwhile, and every job is taken before close().
   */
  pull(jobs: PullJob[], deliver: (i: number, r: CrunchResult) => void, fail: (e: Error) => void): () => number {
    const claim = new Int32Array(new SharedArrayBuffer(4));
    let failed = false;
    this.pulling = { deliver, fail: (e) => { if (!failed) { failed = true; fail(e); } } };
    if (this.failure) this.pulling.fail(this.failure);
    for (const lane of this.lanes) lane.worker.postMessage({ pull: { claim, jobs } });
    return () => {
      const i = Atomics.add(claim, 0, 1);
      if (i < jobs.length) this.inline++;
      return i;
    };
  }

  /**
   * Wait until every worker has done everything submitted (its writes included) and ended. Throws
   * the first failure. Nothing may be submitted once called; the same promise every time (the
   * writer starts it once its pages are written and awaits it after the catalogue).
   */
  close(): Promise<void> {
    return this.closing ??= (async () => {
      if (!this.failure) {
        await Promise.all(this.lanes.map((l) => new Promise<void>((resolve) => { l.ended = resolve; l.worker.postMessage('end'); })));
      }
      if (this.failure && !/ended early/.test(this.failure.message)) throw this.failure;
    })();
  }

  /** Stop the workers once closed (each answered 'end' and is closing itself: nothing of it is in flight). */
  terminate(): void {
    if (!this.lanes.length) return;
    this.halting = true;
    this.failure ??= new SnapshotError("the checkpoint's page worker was stopped");
    for (const l of this.lanes) void l.worker.terminate();
  }

  /**
   * Stop the workers after a failure and wait until their threads have exited ('exit' is emitted
   * once Node has joined a thread): every pread and pwrite they issued has returned and none is
   * issued after, so the page file's fd (and the memory source's) may be closed. Buffers still
   * with them are rejected with the failure. Idempotent.
   *
   * Each worker is asked to stop (status element 3, then 'halt': it skips the jobs it has not
   * begun and closes its port, ending its thread), not terminated: terminating it inside a
   * brotliCompressSync aborts the whole process (./page-crunch-worker.ts). Only a worker that
   * has not ended 10 s later (a pwrite stuck in the host kernel) is terminated.
   */
  halt(): Promise<void> {
    if (!this.halted) {
      this.halting = true;
      this.failure ??= new SnapshotError("the checkpoint's page worker was stopped");
      for (const lane of this.lanes) for (const w of lane.waiting.splice(0)) w.reject(this.failure);
      this.pulling?.fail(this.failure);
      this.halted = Promise.all(this.lanes.map((lane) => {
        Atomics.store(lane.status, 3, 1);
        lane.worker.postMessage('halt');
        const stuck = setTimeout(() => void lane.worker.terminate(), 10_000);
        return lane.exited.then(() => clearTimeout(stuck));
      })).then(() => undefined);
    }
    return this.halted;
  }
}

/** Buffers sent to lane `l`'s worker that it has not finished (its shared counter: known before its answers arrive). */
const owed = (l: CrunchLane): number => l.sent - Atomics.load(l.status, 0);

/** A new page worker of `url` (every CPU allowed, see onEveryCpu) and the status array it shares. Throws what `new Worker` throws. */
function newPageWorker(url: URL): { worker: Worker; status: Int32Array } {
  const status = new Int32Array(new SharedArrayBuffer(4 * 4));
  return { worker: onEveryCpu(() => new Worker(url, { workerData: { status, trace: !!traceCheckpoint } })), status };
}

/** A lane for `worker`, sharing `status` with it. */
function lane(worker: Worker, status: Int32Array): CrunchLane {
  return { worker, status, waiting: [], sent: 0, exited: new Promise((resolve) => worker.once('exit', () => resolve())) };
}

/** Page workers a checkpoint starts: SNAPVISOR_PAGE_WORKERS if set (1 to 8), else one per CPU but one, at least 1 and at most PAGE_WORKERS_MAX. */
function pageWorkerCount(): number {
  const asked = Number(process.env.SNAPVISOR_PAGE_WORKERS);
  if (Number.isInteger(asked) && asked >= 1 && asked <= 8) return asked;
  return Math.max(1, Math.min(PAGE_WORKERS_MAX, cpus().length - 1));
}

/** The compiled page worker's URL, or undefined run from TypeScript sources (tests): there is no compiled worker, the crunch runs inline. */
function pageWorkerUrl(): URL | undefined {
  const url = new URL('./page-crunch-worker.js', import.meta.url);
  return fs.existsSync(fileURLToPath(url)) ? url : undefined;
}

/** Page workers started ahead of a checkpoint (prestartPageWorker), idle until PageCrunch.start takes them. */
const prestarted: Array<{ worker: Worker; status: Int32Array }> = [];

/**
 * Start the checkpoint's page workers (./page-crunch-worker.ts) now, idle and not keeping the
 * process alive, for the next checkpoint large enough to use them: a named sandbox does once it is
 * quiet (cli/control.ts), so that a checkpoint does not wait the 60–80 ms of CPU a worker's start
 * takes here before the workers share its work. Nothing if they are waiting already, or none can start.
 */
export function prestartPageWorker(): void {
  try {
    const url = pageWorkerUrl();
    while (url && prestarted.length < pageWorkerCount()) {
      const { worker, status } = newPageWorker(url);
      worker.unref();
      const gone = (): void => { const i = prestarted.findIndex((p) => p.worker === worker); if (i >= 0) prestarted.splice(i, 1); };
      worker.on('error', gone);
      worker.on('exit', gone);
      prestarted.push({ worker, status });
    }
  } catch { /* the checkpoint starts its own */ }
}

/**
 * `make()` run with this thread allowed on every CPU of the host, then pinned back as it was:
 * threads created by `make` keep every CPU. Returns what `make` returns.
 */
export function onEveryCpu<T>(make: () => T): T {
  const mine = new Uint8Array(128);
  if (schedGetaffinity(0, mine.length, mine) < 0) return make();
  const all = new Uint8Array(128);
  for (let c = 0; c < Math.min(cpus().length, all.length * 8); c++) all[c >> 3] |= 1 << (c & 7);
  const widened = schedSetaffinity(0, all.length, all) === 0;
  try {
    return make();
  } finally {
    if (widened) schedSetaffinity(0, mine.length, mine);
  }
}

/**
 * Where scanPages hands a checkpoint's own pages: `store(off, buf, at, check)` a page to store
 * (its bytes are `buf[at, at + 4096)`, valid until `endOfRead(end)`; `check` its CRC-32).
 */
interface PageSink {
  store(off: number, buf: Buffer, at: number, check: number): void;
  endOfRead(end: number): void;
  /**
   * For a read of one whole pack piece at `off` (PACK_CHUNK_BYTES, nothing inherited): whether
   * the crunch compresses its chunk (the pages `store` will get that `mask` leaves out) where it
   * reads it, and how; undefined: not there.
   */
  wholePiece?(off: number): PackAsk | undefined;
  /** The chunk of the piece at `off`, compressed by the crunch as wholePiece asked: before its pages are handed to `storeRun`. */
  precompressed?(off: number, packed: { z: Uint8Array; raw: number; check: number }, warmed: boolean): void;
  /** With precompressed: `count` consecutive own pages at `off` of the piece just precompressed (what `store` is for other pages; their bytes are not needed). */
  storeRun?(off: number, count: number): void;
}


/** What scanPages found: the pagemap and its counts. */
interface ScannedPages { runs: PagemapRun[]; pages: number; zeroPages: number; newPages: number; layers: string[] }

/**
 * Walk the non-zero pages of `memory` (within the sorted `ranges`) for a checkpoint into the
 * store holding `pagesDir`, building its pagemap: pages `inherit` places in an earlier
 * checkpoint's page file are not read: they become runs naming that checkpoint (`layers`, in
 * order of first use); a page written since that still equals its former layer's bytes is
 * named there too; zero pages are skipped; every other page is this checkpoint's own and goes
 * to `store(off, buf, at)` (its bytes are `buf[at, at + 4096)`, valid until `endOfRead(end)`,
 * which is called with the memory offset where that read ended before the read buffer is reused;
 * reads end on multiples of READ_CHUNK_BYTES or at a range's end). Gives the event loop a turn every YIELD_MS and
 * reports progress. Returns the pagemap runs (CRC-32 per page, sorted by offset), all non-zero
 * pages, the zero pages, this checkpoint's own pages (newPages) and the layers. Throws what a
 * read, a write (ENOSPC, EIO…), the sink or `onProgress` throws, or checkpointInterrupted() when
 * `signal` aborts; before it throws, the crunch's worker is stopped and its thread joined
 * (PageCrunch.halt), so that no read or write of a buffer it was given (into `writeFd` or from
 * `memory.fd`) is in flight or still to come when the caller closes those fds.
 */
async function scanPages(pagesDir: string, memory: MemorySource, ranges: Array<[number, number]>, sink: PageSink, crunch: PageCrunch, onProgress?: ProgressCallback, inherit?: InheritedPages, writeFd = -1, signal?: AbortSignal): Promise<ScannedPages> {
  /** Page files of former layers opened for comparison (-1: could not be opened). */
  const layerFds = new Map<number, number>();
  try {
    const runs: PagemapRun[] = [];
    const layers: string[] = [];
    /** Manifest layer (0 own, k ≥ 1 layers[k - 1]) of each kernel layer, made on first use. */
    const manifestLayer = new Map<number, number>();
    const layerOf = (kernelLayer: number): number => {
      let l = manifestLayer.get(kernelLayer);
      if (l === undefined) {
        layers.push(inherit!.layerIds[kernelLayer - 1]);
        l = layers.length;
        manifestLayer.set(kernelLayer, l);
      }
      return l;
    };
    // The run being built: its first page's offset, its layer and its CRC-32s so far (a growable
    // array: an inherited stretch is appended with one copy, not page by page). Room for every
    // page of the memory file (up to 4 MiB of room): a growth in the middle of the scan sent
    // the optimized page loop back to the interpreter, to be compiled again (~10 ms of CPU).
    let runStart = -1;
    let runLayerNow = 0;
    let runChecks = new Uint32Array(Math.min(pageCount(memory.sizeBytes), 1 << 20) + 1);
    let runLen = 0;
    const closeRun = (): void => {
      if (runLen === 0) return;
      const c = Buffer.allocUnsafe(runLen * PAGE_CHECK_BYTES);
      if (LITTLE_ENDIAN) c.set(new Uint8Array(runChecks.buffer, 0, runLen * PAGE_CHECK_BYTES));
      else for (let i = 0; i < runLen; i++) c.writeUInt32LE(runChecks[i], i * PAGE_CHECK_BYTES);
      runs.push(runLayerNow ? [runStart, c, runLayerNow] : [runStart, c]);
      runLen = 0;
    };
    /** Append pages at `at` with CRC-32s `checks` (consecutive, all of `layer`) to the runs. */
    const addPages = (at: number, layer: number, checks: Uint32Array | number): void => {
      const n = typeof checks === 'number' ? 1 : checks.length;
      if (runLen === 0 || runLayerNow !== layer || runStart + runLen * PAGE_SIZE !== at) {
        closeRun();
        runStart = at;
        runLayerNow = layer;
      }
      if (runLen + n > runChecks.length) {
        const grown = new Uint32Array(Math.max(runChecks.length * 2, runLen + n));
        grown.set(runChecks.subarray(0, runLen));
        runChecks = grown;
      }
      if (typeof checks === 'number') runChecks[runLen] = checks; else runChecks.set(checks, runLen);
      runLen += n;
    };
    let pages = 0;
    let newPages = 0;
    let zeroPages = 0;
    const totalBytes = ranges.reduce((n, [start, end]) => n + end - start, 0);
    let doneBytes = 0;
    let lastYield = performance.now();
    const backed = inherit?.backed;
    const former = inherit?.former;
    const page = Buffer.allocUnsafe(PAGE_SIZE);
    /** Whether the page at `off` (bytes `buf` at `p`) still equals its bytes in its former layer's page file. */
    const sameAsFormer = (k: number, off: number, data: Uint8Array, p: number): boolean => {
      const id = inherit!.layerIds[k - 1];
      if (!id || (!manifestLayer.has(k) && layers.length >= MAX_PAGE_LAYERS - 1)) return false;
      let fd = layerFds.get(k);
      if (fd === undefined) {
        // A flat page file, or a pack's restore cache (a pack not materialized here: no comparison).
        const dir = dirname(pagesDir);
        fd = -1;
        for (const p of [pagePath(dir, id), cachePath(dir, id)]) {
          try { fd = fs.openSync(p, 'r'); break; } catch { /* next */ }
        }
        layerFds.set(k, fd);
      }
      if (fd < 0) return false;
      let got = 0;
      while (got < PAGE_SIZE) { const n = fs.readSync(fd, page, got, PAGE_SIZE - got, off + got); if (n === 0) break; got += n; }
      if (got < PAGE_SIZE) page.fill(0, got);
      return Buffer.compare(page, data.subarray(p, p + PAGE_SIZE)) === 0;
    };
    /** Pages [a, b) (page indices), all inherited from kernel layer `k`: named there, zero ones skipped. */
    const inheritStretch = (a: number, b: number, k: number): void => {
      const nonZero = inherit!.nonZero, checks = inherit!.checks;
      for (let p = a; p < b;) {
        if (!nonZero[p]) { zeroPages++; closeRun(); p++; continue; }
        // The end of the non-zero stretch by a native search (a loop here ran in the interpreter
        // over the sandbox's every page in a second checkpoint: its code is cold by then).
        let q = nonZero.indexOf(0, p + 1);
        if (q < 0 || q > b) q = b;
        addPages(p * PAGE_SIZE, layerOf(k), checks.subarray(p, q));
        pages += q - p;
        p = q;
      }
    };
    // Reads go into a few buffers of READ_CHUNK_BYTES, each handed to the crunch (zero check,
    // CRC-32, flat writes) and taken back with its result, in order: with a worker, the next
    // reads (and a pack's compression of the last) overlap its work. Of each window of
    // READ_CHUNK_BYTES only the pages from its first to its last page not inherited are read (an
    // incremental checkpoint reads what changed, not the windows around it).
    const free: Buffer[] = [];
    let waitedMs = 0;
    const depth = crunch.threaded ? CRUNCH_DEPTH + (crunch.workers - 1) * WORKER_BACKLOG : 1;
    /** A window [off, off+len) of memory, of which pages [lo, hi) (indices in the window) were read. */
    interface Job { off: number; len: number; lo: number; covered: number; done?: Promise<CrunchedBuffer> }
    const queue: Job[] = [];
    /**
     * The pagemap entries of pages [0, n) of the window at `off` (page `first`), read from page
     * `lo` into `r` (inherited pages need no read). A function of its own, not finish's body: finish
     * (async, once per window) stays out of TurboFan, which compiled it twice per checkpoint, ~40 ms
     * of CPU, the second time after a path its first compile had not seen.
     */
    const windowPages = (r: CrunchedBuffer | undefined, off: number, n: number, lo: number, first: number): void => {
      if (r?.packed && !backed && !former && sink.storeRun) {
        // A piece the crunch compressed (nothing inherited, every page read): its stretches of
        // data pages found by native searches, not page by page (a loop over the sandbox's every
        // page, hot enough for TurboFan, whose compile of it cost more than it ran).
        const kind = r.kind;
        for (let i = 0; i < n;) {
          const d = kind.indexOf(CRUNCH_DATA, i), e = d < 0 ? n : d;
          if (e > i) { zeroPages += e - i; closeRun(); }
          if (d < 0) break;
          let j = kind.indexOf(CRUNCH_ZERO, d + 1);
          if (j < 0) j = n;
          addPages(off + d * PAGE_SIZE, 0, r.checks.subarray(d, j));
          pages += j - d;
          newPages += j - d;
          sink.storeRun(off + d * PAGE_SIZE, j - d);
          i = j;
        }
        return;
      }
      const inheritedEnd = backed ? Math.min(n, Math.max(0, backed.length - first)) : 0;
      for (let i = 0; i < n;) {
        const k = i < inheritedEnd ? backed![first + i] : 0;
        if (k) {
          // Unchanged since the layer was written: named, not copied.
          let j = i + 1;
          while (j < inheritedEnd && backed![first + j] === k) j++;
          inheritStretch(first + i, first + j, k);
          i = j;
          continue;
        }
        const ri = i - lo, p = ri * PAGE_SIZE, at = off + i * PAGE_SIZE;
        i++;
        if (r!.kind[ri] === CRUNCH_ZERO) {
          zeroPages++;
          closeRun();
          continue;
        }
        const check = r!.checks[ri];
        const was = former ? former[at / PAGE_SIZE] ?? 0 : 0;
        if (was && sameAsFormer(was, at, r!.buf, p)) {
          // In a chunk the guest wrote, but this page is as its former layer holds it.
          addPages(at, layerOf(was), check);
          pages++;
          continue;
        }
        addPages(at, 0, check);
        pages++;
        newPages++;
        sink.store(at, r!.buf, p, check);
      }
    };
    /** The pagemap entries of one window, once its crunch is done. */
    const finish = async (job: Job): Promise<void> => {
      const w0 = performance.now();
      const r = job.done ? await job.done : undefined;
      waitedMs += performance.now() - w0;
      finishWindow(r, job.off, job.len, job.lo, job.covered);
      if (r) free.push(r.buf);
    };
    /** The books of window [off, off+len) (pages from `lo` read, `covered` bytes of it populated), once its crunch `r` is done. */
    const finishWindow = (r: CrunchedBuffer | undefined, off: number, len: number, lo: number, covered: number): void => {
      if (r?.packed) sink.precompressed!(off, r.packed, !!r.warmed);
      windowPages(r, off, len / PAGE_SIZE, lo, off / PAGE_SIZE);
      sink.endOfRead(off + len);
      doneBytes += covered;
      onProgress?.(doneBytes, totalBytes);
    };
    /** How the crunch reads `len` bytes from `off` of memory file `fd` itself: only `parts` if given, else up to the memory's size. */
    const fdRead = (fd: number, off: number, len: number, parts: number[] | undefined): ReadParts =>
      (parts ? { fd, bytes: 0, parts } : { fd, bytes: Math.max(0, Math.min(len, memory.sizeBytes - off)) });
    /** Bytes of a window of `len` that a read covers: its `parts`' if given. */
    const partsBytes = (len: number, parts: number[] | undefined): number => {
      if (!parts) return len;
      let n = 0;
      for (let i = 1; i < parts.length; i += 2) n += parts[i];
      return n;
    };
    /**
     * A compressed checkpoint with nothing inherited, with workers reading the memory file
     * themselves (`fd`): its whole pieces shared with the workers through PageCrunch.pull, this
     * thread taking them from the same counter and finishing every window (books, pack writes) in
     * order as results come; a window that is no whole piece (the memory file's last, shorter) is
     * read and crunched here when its turn to be finished comes.
     */
    const pullPieces = async (fd: number): Promise<void> => {
      const windows = [...readWindows(ranges, true, pageCount(memory.sizeBytes) * PAGE_SIZE)];
      const jobOf = new Int32Array(windows.length).fill(-1);
      const jobs: PullJob[] = [];
      for (let k = 0; k < windows.length; k++) {
        const { off, len, parts } = windows[k];
        const pack = len === READ_CHUNK_BYTES && off % READ_CHUNK_BYTES === 0 ? sink.wholePiece!(off) : undefined;
        if (!pack) continue;
        jobOf[k] = jobs.length;
        jobs.push({ base: off, read: fdRead(fd, off, len, parts), pack, parts });
      }
      const results: Array<CrunchResult | undefined> = new Array(jobs.length);
      let failure: Error | undefined;
      let wake: (() => void) | undefined;
      const claim = crunch.pull(jobs, (i, r) => { results[i] = r; wake?.(); }, (e) => { failure ??= e; wake?.(); });
      const buf = Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
      let k = 0;
      /** Finish the windows whose results are in, in order (a window that is no job is crunched here now). */
      const finishReady = (): void => {
        for (; k < windows.length; k++) {
          const { off, len, parts } = windows[k];
          const j = jobOf[k];
          let r: CrunchResult;
          if (j >= 0) {
            const got = results[j];
            if (!got) return;
            results[j] = undefined;
            r = got;
          } else {
            // (crunchPages zeroes what `parts` leave out.)
            r = crunchPages(buf, len, off, undefined, -1, fdRead(fd, off, len, parts), undefined, parts);
          }
          finishWindow({ buf, ...r }, off, len, 0, partsBytes(len, parts));
        }
      };
      for (;;) {
        if (failure) throw failure;
        finishReady();
        if (performance.now() - lastYield >= YIELD_MS) {
          // A turn for the event loop (the workers' results come in on it too).
          await new Promise((r) => setImmediate(r));
          lastYield = performance.now();
          continue;
        }
        if (signal?.aborted) throw checkpointInterrupted();
        const i = claim();
        if (i >= jobs.length) break;
        const job = jobs[i];
        results[i] = crunchPages(buf, READ_CHUNK_BYTES, job.base, undefined, -1, job.read, job.pack, job.parts);
      }
      // The workers' last jobs.
      for (;;) {
        finishReady();
        if (k >= windows.length) return;
        if (failure) throw failure;
        if (signal?.aborted) throw checkpointInterrupted();
        const w0 = performance.now();
        await new Promise<void>((resolve) => { wake = resolve; });
        wake = undefined;
        waitedMs += performance.now() - w0;
      }
    };
    // A pack with nothing inherited is read piece by piece, whatever the ranges: a piece that
    // ranges cover in part (python3's small mappings: 87 of the bench's 304 reads) is read in
    // parts, the rest zero, so that the crunch compresses it (on either thread; the writer's
    // thread did those alone) and may put it in the restore cache (WarmCache).
    const byPiece = !!sink.wholePiece && !inherit;
    if (byPiece && crunch.threaded && memory.fd !== undefined && writeFd < 0) {
      await pullPieces(memory.fd);
      traceCheckpoint?.(`scan: waited ${waitedMs.toFixed(1)} ms for the crunch`);
      closeRun();
      if (totalBytes === 0) onProgress?.(0, 0);
      return { runs, pages, zeroPages, newPages, layers };
    }
    for (const { off, len, parts } of readWindows(ranges, byPiece, pageCount(memory.sizeBytes) * PAGE_SIZE)) {
      if (performance.now() - lastYield >= YIELD_MS) {
        // A turn for the event loop; the memory source is a frozen guest or a copy-on-write capture: it stays as it was.
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
      if (signal?.aborted) {
        // WriteOptions.signal: the buffers in flight are finished first (the crunch may be writing them into the page file), then no more.
        while (queue.length) await finish(queue.shift()!);
        throw checkpointInterrupted();
      }
      const n = len / PAGE_SIZE, first = off / PAGE_SIZE;
      let lo = 0, hi = n;
      let skip: Uint8Array | undefined;
      if (backed) {
        // Pages past the end of `backed` are not inherited.
        const m = Math.min(n, Math.max(0, backed.length - first));
        const inWindow = backed.subarray(first, first + m);
        const firstRead = inWindow.indexOf(0);
        lo = firstRead < 0 ? m : firstRead;
        hi = m < n ? n : inWindow.lastIndexOf(0) + 1;
        if (lo >= hi) { queue.push({ off, len, lo: n, covered: len }); continue; }
        skip = new Uint8Array(hi - lo);
        skip.set(inWindow.subarray(lo, Math.min(hi, m)));
      }
      while (queue.length >= depth) await finish(queue.shift()!);
      // A whole piece read at once, nothing inherited: its pack chunk is compressed where it is crunched (both CPUs compress).
      const pack = !skip && lo === 0 && len === READ_CHUNK_BYTES && off % READ_CHUNK_BYTES === 0 ? sink.wholePiece?.(off) : undefined;
      const buf = free.pop() ?? Buffer.allocUnsafeSlow(READ_CHUNK_BYTES);
      const readOff = off + lo * PAGE_SIZE, readLen = (hi - lo) * PAGE_SIZE;
      // Every CPU: a worker takes a buffer while it has fewer than WORKER_BACKLOG to do; this
      // thread (which compresses a pack and keeps the books) does the others itself, and all
      // of them until the workers are up. A plain memfd is read where the buffer is crunched.
      const here = crunch.backlog() >= WORKER_BACKLOG;
      let read: ReadParts | undefined;
      const covered = partsBytes(len, parts);
      // Read part by part (here, or by the crunch from a plain memfd); the rest is zero. (Windows
      // with parts come whole pieces with nothing inherited: readOff is off then.)
      if (memory.fd !== undefined) read = fdRead(memory.fd, readOff, readLen, parts);
      else if (parts) {
        buf.fill(0, 0, len);
        for (let i = 0; i < parts.length; i += 2) {
          const into = buf.subarray(parts[i], parts[i] + parts[i + 1]);
          if (memory.readInto) readChunk(memory, off + parts[i], parts[i + 1], into);
          else into.set(readView(memory, off + parts[i], parts[i + 1]));
        }
      } else if (memory.readInto) readChunk(memory, readOff, readLen, buf);
      else buf.set(readView(memory, readOff, readLen));
      const done = crunch.submit(buf, readLen, readOff, skip, writeFd, read, here, pack, parts);
      // Awaited in order by finish; a failure ends the scan, and the buffers queued behind it
      // (rejected with it) are never awaited: not an unhandled rejection (which ends the process).
      done.catch(() => undefined);
      queue.push({ off, len, lo, covered, done });
    }
    while (queue.length) await finish(queue.shift()!);
    traceCheckpoint?.(`scan: waited ${waitedMs.toFixed(1)} ms for the crunch`);
    closeRun();
    if (totalBytes === 0) onProgress?.(0, 0);
    return { runs, pages, zeroPages, newPages, layers };
  } catch (err) {
    // The worker may still be reading or writing buffers queued behind the failure (into
    // `writeFd`, which the caller closes next: a write issued after that would land in whatever
    // file reuses the fd's number). Joined first, then the error is the caller's.
    await crunch.halt();
    throw err;
  } finally {
    for (const lfd of layerFds.values()) if (lfd >= 0) fs.closeSync(lfd);
  }
}

/**
 * Write the non-zero pages of `memory` (within the sorted `ranges`) to a new flat page file at
 * `path`, at their memory-file offsets (zero pages and pages named elsewhere are holes), and
 * fdatasync it. See scanPages for what is named rather than written, and what is returned.
 */
async function writePageFile(path: string, memory: MemorySource, ranges: Array<[number, number]>, crunch: PageCrunch, onProgress?: ProgressCallback, inherit?: InheritedPages, signal?: AbortSignal): Promise<ScannedPages> {
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  // Synced as it is written: the final fdatasync of a 242 MiB page file had all of it to write.
  const sync = new EarlySync(fd);
  try {
    fs.ftruncateSync(fd, pageCount(memory.sizeBytes) * PAGE_SIZE);
    // The crunch writes every non-zero page it finds, unless a page may yet turn out to equal its
    // former layer's (then named there, and it must stay a hole here): then pages are written here.
    const direct = !inherit?.former;
    // A stretch of consecutive own pages of the current read buffer, written in one call.
    let buf: Buffer | undefined, from = -1, to = -1, memOff = 0;
    const flush = (): void => {
      if (from >= 0) writeAll(fd, buf!, from, to - from, memOff);
      from = -1;
    };
    let lastEnd = -1;
    const scanned = await scanPages(dirname(path), memory, ranges, {
      store(off, b, at) {
        if (direct) return;
        if (from >= 0 && b === buf && at === to) { to += PAGE_SIZE; return; }
        flush();
        buf = b; from = at; to = at + PAGE_SIZE; memOff = off;
      },
      endOfRead(end) {
        flush();
        // The read's pages are written by now (here, or by the crunch before it answered).
        sync.wrote(lastEnd < 0 ? PAGE_SIZE : Math.max(0, end - lastEnd));
        lastEnd = end;
      },
    }, crunch, onProgress, inherit, direct ? fd : -1, signal);
    await sync.finish();
    return scanned;
  } finally {
    await sync.settle();
    fs.closeSync(fd);
  }
}

/**
 * What a pack tells of itself to a later incremental checkpoint of its store: the pages it holds
 * compressed (one byte per page index, 1 for those: the only pages a copy may name, CopyRef) and
 * the packs it copies pages from (a pack that names it needs them too).
 */
interface PackFacts { packBytes: number; compressed: Uint8Array; sources: string[] }

/**
 * The facts of the last packs this process wrote (by path), so that the next checkpoint of a
 * running sandbox does not read them back from the pack's trailer (7–25 ms of CPU for the bench's
 * python3's first pack, here). A pack of another size at that path is read.
 */
const packsWritten = new Map<string, PackFacts>();
/** Bytes of memory a pack's writer reads at once for the sources of copies (writePack). */
const SOURCE_READ_BYTES = 64 << 10;
/** Packs packsWritten remembers. */
const PACKS_REMEMBERED = 4;

/**
 * The PackFacts of checkpoint `id`'s pack in store `dir`: from packsWritten, else read from its
 * trailer; undefined for a flat page file or a pack that cannot be read (nothing is copied from
 * it). `seen` holds the answers of one checkpoint's write.
 */
function earlierPack(dir: string, id: string, seen: Map<string, PackFacts | undefined>): PackFacts | undefined {
  if (seen.has(id)) return seen.get(id);
  const path = packPath(dir, id);
  let f: PackFacts | undefined;
  let fd = -1;
  try {
    fd = fs.openSync(path, 'r');
    const packBytes = fs.fstatSync(fd).size;
    const known = packsWritten.get(path);
    if (known?.packBytes === packBytes) f = known;
    else {
      const p = PackPages.open(fd);
      if (typeof p !== 'string') f = { packBytes, compressed: Uint8Array.from(p.kind, (k) => (k === 1 ? 1 : 0)), sources: (p.trailer.copies ?? []).map(([src]) => src) };
    }
  } catch { /* no pack (a flat page file) */ } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  seen.set(id, f);
  return f;
}

/**
 * The restore cache a compressed checkpoint leaves on this host (`cache/<id>.<boot>` and its
 * ready file, snapshots/pack.ts): made under temporary names while the pack is written, holding
 * the pieces the crunch warmed (PackAsk.warmFd: those that are costly to decompress), and put in
 * place (`commit`) once the checkpoint is in the catalogue, its ready file marking those pieces,
 * so that the first restore on this host fills only the others. A cache, never the checkpoint:
 * any failure to make it or put it in place leaves the checkpoint as it would be without it
 * (the first restore fills every piece it needs).
 */
class WarmCache {
  private readonly pieces: number[] = [];
  private closed = false;
  private constructor(private readonly dir: string, private readonly id: string, private readonly pageFileBytes: number, private readonly tmp: string, readonly fd: number) {}

  /** A cache for pack `id` of the store at `dir` (memory image of `pageFileBytes`), or undefined if none can be made. */
  static make(dir: string, id: string, pageFileBytes: number): WarmCache | undefined {
    const tmp = `${cachePath(dir, id)}.${tmpSuffix()}`;
    let fd = -1;
    try {
      makeDirs(join(dir, CACHE_DIR));
      fd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      fs.ftruncateSync(fd, pageFileBytes);
      return new WarmCache(dir, id, pageFileBytes, tmp, fd);
    } catch {
      if (fd >= 0) fs.closeSync(fd);
      removeQuietly(tmp);
      return undefined;
    }
  }

  /** The piece at memory offset `off` is in the cache. */
  warmed(off: number): void {
    this.pieces.push(off / PACK_CHUNK_BYTES);
  }

  /** Pieces warmed so far. */
  get count(): number { return this.pieces.length; }

  /** Close its fd (the crunch's writes are done). */
  close(): void {
    if (!this.closed) { this.closed = true; fs.closeSync(this.fd); }
  }

  /**
   * Put the cache in place (with the known-good copy of the pack's `trailer`, pack.ts
   * writeKnownTrailer) as a restore would find it at every step: its piece map first, all
   * 0 (a cache with no piece map is taken as whole), then the cache, then the warmed pieces'
   * bytes set to 1. If a restore made either file first, or `gc` removed the temporary cache,
   * it stops there (the restore's own cache stands; pieces still 0 are filled on demand).
   * Never throws.
   */
  commit(trailer?: { cbor: Uint8Array; tail: Uint8Array }): void {
    this.close();
    const cache = cachePath(this.dir, this.id);
    const readyTmp = `${cache}.ready.${tmpSuffix()}`;
    try {
      // The pack's trailer as it wrote it: the first restore need not hash it (readPackTrailer).
      if (trailer) writeKnownTrailer(`${cache}.trailer`, trailer.cbor, trailer.tail);
      if (!this.pieces.length) return;
      const bytes = Math.ceil(this.pageFileBytes / PACK_CHUNK_BYTES);
      const rfd = fs.openSync(readyTmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      try { fs.ftruncateSync(rfd, bytes); } finally { fs.closeSync(rfd); }
      fs.linkSync(readyTmp, `${cache}.ready`);
      fs.linkSync(this.tmp, cache);
      const ready = fs.openSync(`${cache}.ready`, fs.constants.O_RDWR);
      try { for (const i of this.pieces) fs.writeSync(ready, PIECE_READY, 0, 1, i); } finally { fs.closeSync(ready); }
    } catch { /* a cache: a restore fills what it needs */ } finally {
      removeQuietly(readyTmp);
      removeQuietly(this.tmp);
    }
  }

  /** Drop it (the checkpoint failed). */
  discard(): void {
    this.close();
    removeQuietly(this.tmp);
  }
}

/** Remove `path` if there, ignoring every error (a cache's temporary file: ENOTDIR where a file took its directory's place). */
function removeQuietly(path: string): void {
  try { fs.rmSync(path, { force: true }); } catch { /* nothing to remove */ }
}

/**
 * Write the pack (snapshots/pack.ts) of the non-zero pages of `memory` (within the sorted
 * `ranges`) at `path`, and fdatasync it: own pages listed in `memory.hostFilePages` are named by
 * file, own pages a copy-on-write moved from a page an earlier pack of the store holds (and still
 * byte for byte that page) are named there (`copies`), the others compressed by 1 MiB piece. See
 * scanPages for what is named rather than written; returns its result, the own pages named in
 * host files and the pack's size in bytes.
 */
async function writePack(path: string, memory: MemorySource, ranges: Array<[number, number]>, crunch: PageCrunch, onProgress?: ProgressCallback, inherit?: InheritedPages, signal?: AbortSignal): Promise<ScannedPages & { filePages: number; packBytes: number; synced: Promise<void>; warm?: WarmCache; trailerBytes?: { cbor: Uint8Array; tail: Uint8Array } }> {
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  // A full checkpoint's pack checks its chunks, not each page (store format 6: no CRC-32 of the
  // 242 MiB of the bench's python3 on the checkpoint's path); an incremental one, page by page.
  const writer = new PackWriter(fd, !inherit);
  /** The last fdatasync, under way once the pack is written: it closes the fd when done. */
  let synced: Promise<void> | undefined;
  // The restore cache this checkpoint leaves (only where the crunch compresses whole pieces: nothing inherited).
  const warm = inherit ? undefined : WarmCache.make(dirname(dirname(path)), basename(path, PACK_SUFFIX), pageCount(memory.sizeBytes) * PAGE_SIZE);
  try {
    // The pack's current chunk: its own pages of one PACK_CHUNK_BYTES piece of the memory file,
    // either one stretch of the current read buffer (compressed from there, no copy) or, once
    // they are not consecutive there, copied into `chunk` (one buffer, reused: each chunk is
    // compressed before the next begins).
    let chunkStart = -1;
    const chunk = Buffer.allocUnsafeSlow(PACK_CHUNK_BYTES);
    let chunkLen = 0;
    let src: Buffer | undefined, srcFrom = 0, srcTo = 0;
    const spill = (): void => {
      if (!src) return;
      src.copy(chunk, chunkLen, srcFrom, srcTo);
      chunkLen += srcTo - srcFrom;
      src = undefined;
    };
    const submitChunk = (): void => {
      if (src && chunkLen === 0) writer.add(chunkStart, src.subarray(srcFrom, srcTo));
      else {
        spill();
        if (chunkLen) writer.add(chunkStart, chunk.subarray(0, chunkLen));
      }
      src = undefined;
      chunkLen = 0;
    };
    // Host-file pages: triples (memory offset, file offset, bytes) per file, merged while contiguous.
    const fileRefs = new Map<string, HostFileRef>();
    const hostPages = memory.hostFilePages;
    // 1 per host-file page (where pageBlock is set), made from the blocks with native fills.
    let hostMask: Uint8Array | undefined;
    if (hostPages) {
      hostMask = new Uint8Array(hostPages.pageBlock.length);
      for (const b of hostPages.blocks) {
        const first = b.memOffset / PAGE_SIZE;
        hostMask.fill(1, first, Math.min(first + Math.ceil(b.len / PAGE_SIZE), hostMask.length));
      }
    }
    let filePages = 0;
    // A block's file entry, found once per block (blocks of one file share it), not a key string
    // made per page: this runs for every host-file page (6,690 in the bench's python3).
    const refOfBlock: Array<HostFileRef | undefined> = [];
    const blockRef = (blockIndex: number): HostFileRef => {
      const b = hostPages!.blocks[blockIndex];
      const key = `${b.path}\0${b.size}\0${b.mtimeMs}`;
      let ref = fileRefs.get(key);
      if (!ref) { ref = [b.path, b.size, b.mtimeMs, []]; fileRefs.set(key, ref); }
      return refOfBlock[blockIndex] = ref;
    };
    /** `count` consecutive pages from memory offset `at`, all of block `blockIndex`. */
    const addFilePages = (at: number, blockIndex: number, count: number): void => {
      const b = hostPages!.blocks[blockIndex];
      const t = (refOfBlock[blockIndex] ?? blockRef(blockIndex))[3];
      const inBlock = at - b.memOffset;
      // Only a block's last page may hold less than a page of the file.
      const bytes = Math.min(count * PAGE_SIZE, b.len - inBlock);
      const n = t.length;
      if (n && t[n - 3] + t[n - 1] === at && t[n - 2] + t[n - 1] === b.fileOffset + inBlock && t[n - 1] % PAGE_SIZE === 0) t[n - 1] += bytes;
      else t.push(at, b.fileOffset + inBlock, bytes);
      filePages += count;
    };
    // Pages moved by a copy-on-write (the kernel's hint, InheritedPages.moved) whose source page
    // matched a layer that stored it compressed, and whose bytes are still the source's, are named
    // in that layer's pack (compared with the source in memory or the copy the kernel kept of it:
    // no chunk decompressed, no search by CRC-32).
    const storeDir = dirname(dirname(path));
    const earlier = new Map<string, PackFacts | undefined>();
    const copies = new Map<string, number[]>();
    const moved = inherit?.moved;
    // Sources are read 64 KiB at a time (a copy-on-write moves a 64 KiB chunk: its pages come in a
    // row), not a pread per page (~300 of them in the bench's second checkpoint).
    const srcChunk = Buffer.allocUnsafe(SOURCE_READ_BYTES);
    let srcChunkAt = -1, srcChunkLen = 0;
    const sourcePage = (s: number): Uint8Array => {
      const off = s * PAGE_SIZE;
      if (srcChunkAt < 0 || off < srcChunkAt || off + PAGE_SIZE > srcChunkAt + srcChunkLen) {
        srcChunkAt = off - (off % SOURCE_READ_BYTES);
        srcChunkLen = Math.min(SOURCE_READ_BYTES, pageCount(memory.sizeBytes) * PAGE_SIZE - srcChunkAt);
        const into = srcChunk.subarray(0, srcChunkLen);
        if (memory.readInto) memory.readInto(srcChunkAt, into); else into.set(memory.read(srcChunkAt, srcChunkLen));
      }
      return srcChunk.subarray(off - srcChunkAt, off - srcChunkAt + PAGE_SIZE);
    };
    /** The layers backing pages: usableInheritance kept them below MAX_PAGE_LAYERS; copies name no other. */
    const backing = inherit ? backingLayers(inherit) : [];
    const copied = (off: number, buf: Buffer, at: number): boolean => {
      const p = off / PAGE_SIZE, from = moved!.from[p] ?? 0;
      if (!from) return false;
      const s = from - 1, k = moved!.layer[p], id = inherit!.layerIds[k - 1];
      if (!id || !backing.includes(k) || earlierPack(storeDir, id, earlier)?.compressed[s] !== 1) return false;
      let source: Uint8Array;
      if (inherit!.backed[s] === k) {
        // Still as that layer stored it: compared in memory (its check may be its chunk's, store
        // format 6, not a CRC-32 to compare with `check`).
        source = sourcePage(s);
      } else {
        // Dropped since (its block freed): the bytes the kernel kept of it then.
        const kept = moved!.kept.get(s);
        if (kept?.layer !== k) return false;
        source = kept.bytes;
      }
      if (Buffer.compare(source, buf.subarray(at, at + PAGE_SIZE)) !== 0) return false;
      let t = copies.get(id);
      if (!t) copies.set(id, t = []);
      const n = t.length;
      if (n && t[n - 3] + t[n - 1] === off && t[n - 2] + t[n - 1] === s * PAGE_SIZE) t[n - 1] += PAGE_SIZE;
      else t.push(off, s * PAGE_SIZE, PAGE_SIZE);
      return true;
    };
    // The pages this pack holds compressed, for the next checkpoint (packsWritten).
    const compressed = new Uint8Array(pageCount(memory.sizeBytes));
    // A piece the crunch compressed (sink.precompressed): its pages to be handed to `store`, counted.
    let pre: { off: number; z: Uint8Array; raw: number; check: number; pages: number } | undefined;
    const scanned = await scanPages(dirname(path), memory, ranges, {
      wholePiece(off) {
        // Only where every data page not in a host file is compressed (no page may be named in an older pack).
        if (inherit) return undefined;
        const warmFd = warm?.fd;
        if (!hostMask) return { warmFd };
        const first = off / PAGE_SIZE, mask = hostMask.slice(first, first + PACK_CHUNK_BYTES / PAGE_SIZE);
        return mask.indexOf(1) >= 0 ? { mask, warmFd } : { warmFd };
      },
      precompressed(off, packed, warmed) {
        if (warmed) warm!.warmed(off);
        if (chunkStart >= 0) { submitChunk(); chunkStart = -1; }
        pre = { off, z: packed.z, raw: packed.raw, check: packed.check, pages: 0 };
      },
      storeRun(off, count) {
        const p = off / PAGE_SIZE;
        compressed.fill(1, p, p + count);
        pre!.pages += count;
        if (!hostMask) return;
        // Host-file pages: named in their files, not in the chunk; a stretch of one block at a time.
        const inRun = hostMask.subarray(p, p + count), pageBlock = hostPages!.pageBlock;
        for (let q = inRun.indexOf(1); q >= 0; q = inRun.indexOf(1, q)) {
          const block = pageBlock[p + q];
          let end = inRun.indexOf(0, q + 1);
          if (end < 0) end = count;
          // Blocks are distinct stretches of the memory file: the block's own end bounds it.
          const b = hostPages!.blocks[block - 1];
          const blockEnd = b.memOffset / PAGE_SIZE + Math.ceil(b.len / PAGE_SIZE) - p;
          if (blockEnd < end) end = blockEnd;
          compressed.fill(0, p + q, p + end);
          pre!.pages -= end - q;
          addFilePages(off + q * PAGE_SIZE, block - 1, end - q);
          q = end;
        }
      },
      store(off, buf, at, check) {
        const block = hostPages ? hostPages.pageBlock[off / PAGE_SIZE] ?? 0 : 0;
        if (block) { addFilePages(off, block - 1, 1); return; }
        // (A precompressed piece's pages come to storeRun, never here: endOfRead checks its count.)
        if (moved && copied(off, buf, at)) return;
        compressed[off / PAGE_SIZE] = 1;
        const piece = Math.floor(off / PACK_CHUNK_BYTES) * PACK_CHUNK_BYTES;
        if (piece !== chunkStart) {
          submitChunk();
          chunkStart = piece;
        }
        if (src === buf && srcTo === at) { srcTo += PAGE_SIZE; return; }
        spill();
        if (chunkLen === 0) { src = buf; srcFrom = at; srcTo = at + PAGE_SIZE; return; }
        buf.copy(chunk, chunkLen, at, at + PAGE_SIZE);
        chunkLen += PAGE_SIZE;
      },
      endOfRead(end) {
        if (pre) {
          // The crunch compressed exactly the pages this piece stores: else the pack would not match its runs.
          if (pre.pages * PAGE_SIZE !== pre.raw) throw new SnapshotError(`checkpoint pack writer: piece 0x${pre.off.toString(16)} was compressed with ${pre.raw / PAGE_SIZE} pages, ${pre.pages} stored`);
          if (pre.raw) writer.addCompressed(pre.off, pre.z, pre.raw, pre.check);
          pre = undefined;
          return;
        }
        // The read buffer is about to be reused: a piece that ends here is complete (compress it
        // from the buffer), one that goes on keeps a copy of its pages.
        if (chunkStart >= 0 && chunkStart + PACK_CHUNK_BYTES <= end) { submitChunk(); chunkStart = -1; } else spill();
      },
    }, crunch, onProgress, inherit, -1, signal);
    submitChunk();
    // A layer named only by copies is a layer all the same (delete and gc keep it). The packs a
    // pack copies from must live as long as it: every checkpoint that names it (or inherits from
    // one that copies) lists them in its layers, which delete and gc keep.
    for (const id of copies.keys()) if (!scanned.layers.includes(id)) scanned.layers.push(id);
    if (inherit) {
      for (const id of [...scanned.layers]) for (const from of earlierPack(storeDir, id, earlier)?.sources ?? []) if (!scanned.layers.includes(from)) scanned.layers.push(from);
    }
    // Its last fdatasync runs while the restore record is written and synced (writeLocked waits
    // for both before the catalogue's batch): one disk flush less in a row.
    const done = writer.finishDeferred({ pageFileBytes: pageCount(memory.sizeBytes) * PAGE_SIZE, runs: scanned.runs.filter((r) => runLayer(r) === 0), hostFiles: [...fileRefs.values()], copies: [...copies] });
    synced = done.synced.finally(() => fs.closeSync(fd));
    synced.catch(() => undefined); // awaited by the caller, if it gets that far
    const packBytes = done.bytes;
    if (packsWritten.size >= PACKS_REMEMBERED) packsWritten.delete(packsWritten.keys().next().value!);
    packsWritten.set(path, { packBytes, compressed, sources: [...copies.keys()] });
    warm?.close();
    return { ...scanned, filePages, packBytes, synced, warm, trailerBytes: writer.trailerBytes };
  } finally {
    if (!synced) {
      await writer.settle();
      fs.closeSync(fd);
      warm?.discard();
    }
  }
}

function writeAll(fd: number, buf: Uint8Array, at: number, len: number, position: number): void {
  let done = 0;
  while (done < len) done += fs.writeSync(fd, buf, at + done, len - done, position + done);
}

/** Write `data` as the file at `path` (created, or truncated) and fdatasync it (on libuv's thread pool). */
async function writeFileSyncedAsync(path: string, data: Uint8Array): Promise<void> {
  const fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
  try {
    writeAll(fd, data, 0, data.length, 0);
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  } finally {
    fs.closeSync(fd);
  }
}

function syncDir(path: string): void {
  try {
    const fd = fs.openSync(path, 'r');
    try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  } catch { /* some filesystems refuse fsync on directories: the rename is still atomic */ }
}

// ---------------------------------------------------------------------------
// Store access

const queues = new Map<string, Promise<void>>();

/**
 * Run `fn` with the store open, after any earlier call on the same directory from this
 * process has finished; always closes the store. 'existing' requires an existing store,
 * 'create' creates it. LevelDB errors become SnapshotErrors. `meanwhile`, if given, is started
 * (after the earlier calls, the store's directory made) while the store opens, and `fn` gets
 * what it resolves to; if it rejects, or the open fails once it settled, so does this. It runs
 * without the lock: another process may hold the store meanwhile (`fn` checks what it needs).
 */
async function withStore<T, M = undefined>(storeDir: string, mode: 'existing' | 'create', fn: (db: Db, meanwhile: M) => Promise<T>, meanwhile?: () => Promise<M>, opening?: StoreOpening): Promise<T> {
  const key = resolvePath(storeDir);
  if (opening && opening.key !== key) opening = undefined;
  const turn = opening ?? takeTurn(key);
  await turn.previous;
  try {
    if (mode === 'existing') {
      if (!(await exists(join(key, 'CURRENT')))) throw new SnapshotError(`no checkpoint store at ${storeDir}`);
    } else if (!opening) {
      await makeDirsAsync(key);
    }
    const early = meanwhile?.();
    early?.catch(() => undefined); // awaited below, after the open
    let db: Db;
    try {
      db = await (opening?.db ?? openDb(key, mode === 'create'));
    } catch (err) {
      await early?.catch(() => undefined);
      throw openError(err, storeDir);
    }
    try {
      return await fn(db, (await early) as M);
    } finally {
      await db.close();
    }
  } catch (err) {
    if (!(err instanceof SnapshotError) && isLevelError(err)) {
      throw new SnapshotError(`checkpoint store ${storeDir}: ${oneLine(errorMessage(err))}`);
    }
    throw err;
  } finally {
    turn.done();
  }
}

/** This process's turn at store `key` (queues): `previous` settles when it begins, `done()` ends it. */
function takeTurn(key: string): { previous: Promise<void>; done(): void } {
  const previous = queues.get(key) ?? Promise.resolve();
  let release: (() => void) | undefined;
  let ended = false;
  const mine = previous.then(() => new Promise<void>((r) => { release = r; if (ended) r(); }));
  queues.set(key, mine);
  return {
    previous,
    done: () => {
      if (ended) return;
      ended = true;
      release?.();
      if (queues.get(key) === mine) queues.delete(key);
    },
  };
}

/**
 * How long an open of the catalogue waits for another process's lock (ms) before it is refused
 * as "in use by another process": a named sandbox settles its store's catalogue in the background
 * after a checkpoint (settleCatalogue, tens of ms), which must not fail a listing, gc or
 * checkpoint that another process starts meanwhile.
 */
const LOCK_WAIT_MS = 2000;
/** Between two tries of an open that found the catalogue locked (ms). */
const LOCK_RETRY_MS = 10;

/**
 * Open the LevelDB catalogue at `key` (loaded here, not at the top: restores never load LevelDB's
 * native module). Held by another process, it is tried again every LOCK_RETRY_MS for up to
 * `lockWaitMs`, then the LEVEL_LOCKED error is thrown.
 */
async function openDb(key: string, create: boolean, lockWaitMs = LOCK_WAIT_MS): Promise<Db> {
  const { Level: LevelDb } = await import('level');
  const until = performance.now() + lockWaitMs;
  for (;;) {
    const db: Db = new LevelDb<string, Uint8Array>(key, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open({ createIfMissing: create });
      catalogueOpened = true;
      return db;
    } catch (err) {
      if (!isLockedError(err) || performance.now() >= until) throw err;
    }
    await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
  }
}

/** Whether this process has opened a catalogue (see catalogueWarm). */
let catalogueOpened = false;

/**
 * Whether this process has opened a catalogue before: the JavaScript of LevelDB's open (level,
 * abstract-level, classic-level) is compiled on its first run, 3–4 ms of the caller's thread
 * here, after which asking for an open costs a fraction of a millisecond.
 */
export function catalogueWarm(): boolean {
  return catalogueOpened;
}

/** Whether `err` is classic-level's refusal of a catalogue another process (or another handle in this one) holds. */
function isLockedError(err: unknown): boolean {
  return (err as { cause?: { code?: string } })?.cause?.code === 'LEVEL_LOCKED';
}

/** The one-line SnapshotError for a failed open of the store at `storeDir`. */
function openError(err: unknown, storeDir: string): Error {
  if (err instanceof SnapshotError) return err;
  // A store directory that cannot be made (openStoreEarly's mkdir): as withStore's own mkdir fails.
  if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string' && !isLevelError(err)) return err;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (isLockedError(err)) return new SnapshotError(`checkpoint store ${storeDir} is in use by another process`);
  return new SnapshotError(`cannot open checkpoint store ${storeDir}: ${oneLine(cause?.message ?? (err instanceof Error ? errorMessage(err) : String(err)))}`);
}

/**
 * A store's catalogue being opened ahead of a checkpoint's write (openStoreEarly): this process's
 * turn at the store (queues) is taken, and its LevelDB lock once `db` settles.
 */
export interface StoreOpening {
  readonly key: string;
  readonly previous: Promise<void>;
  readonly db: Promise<Db>;
  done(): void;
}

/**
 * Begin opening the catalogue of store `storeDir` (created if needed) for a checkpoint about to be
 * written there (`WriteOptions.opening`): LevelDB's open (10–60 ms here, most of it on the thread
 * pool: its log replayed into a table, synced) then runs while the checkpoint finds its data and
 * encodes its graph, not after. The caller must hand it to writeCheckpoint or give it up with `cancelStoreOpening`
 * (which closes it): it holds the store's lock meanwhile.
 */
export function openStoreEarly(storeDir: string): StoreOpening {
  const key = resolvePath(storeDir);
  const turn = takeTurn(key);
  const db = (async () => {
    await turn.previous;
    // An existing store: LevelDB's open is asked for at once (in this turn's promise continuations,
    // no round trip of a mkdir on the thread pool first, neither here nor in classic-level's open).
    if (fs.existsSync(join(key, 'CURRENT'))) return openDb(key, false);
    await makeDirsAsync(key);
    return openDb(key, true);
  })();
  db.catch(() => undefined); // seen by withStore, or by cancelStoreOpening
  return { key, previous: turn.previous, db, done: turn.done };
}

/**
 * Load LevelDB's module and CBOR's native string decoder now (a named sandbox, once idle: its
 * first checkpoint then does not wait for the one, nor its second for the other, which the first
 * decode of a manifest loads: 1–3 ms).
 */
export async function preloadCatalogue(): Promise<void> {
  // cbor-x decodes the strings of a buffer under 140 bytes in JavaScript: this one is longer.
  decodeCbor(encodeCbor({ magic: FORMAT_MAGIC, note: 'preload '.repeat(24) }));
  await import('level');
}

/**
 * Settle the catalogue of store `storeDir` after a checkpoint was written there: open and close
 * it, so that LevelDB turns its log (the checkpoint's records: its graph and pagemap, ~40–300
 * KiB) into a table now rather than in the next open, which is a checkpoint's critical path
 * (LevelDB replays the log of the last session at every open: 12–17 ms of the bench's second
 * checkpoint). Done in this process's turn at the store (queued behind its other catalogue
 * calls); a catalogue another process holds is left as it is (no wait), and any failure is
 * ignored: the next open replays the log as before. Another process opening the store
 * meanwhile waits for the lock (openDb, up to LOCK_WAIT_MS). Resolves when done.
 */
export async function settleCatalogue(storeDir: string): Promise<void> {
  const key = resolvePath(storeDir);
  const turn = takeTurn(key);
  try {
    await turn.previous;
    const db = await openDb(key, false, 0);
    await db.close();
  } catch { /* held by another process, or gone: nothing to settle */ } finally {
    turn.done();
  }
}

/** Give up a StoreOpening writeCheckpoint did not take: close its catalogue once open, end its turn. */
export function cancelStoreOpening(o: StoreOpening): void {
  void o.db.then((db) => db.close()).catch(() => undefined).finally(() => o.done());
}

/** Full id of the single checkpoint whose id starts with `given` (≥ 4 hex characters). */
async function resolveId(db: Db, storeDir: string, given: string, extraIds: string[] = []): Promise<string> {
  if (typeof given !== 'string' || !isCheckpointIdPrefix(given)) {
    throw new SnapshotError(`invalid checkpoint id '${String(given)}': expected ${MIN_ID_PREFIX} to 16 hex characters`);
  }
  const prefix = given.toLowerCase();
  const matches: string[] = [];
  for await (const key of db.keys({ ...prefixRange(KEY.manifest + prefix), limit: 3 })) {
    matches.push(key.slice(KEY.manifest.length));
  }
  // Restore records whose catalogue entry was lost can still be named (to delete them).
  for (const id of extraIds) if (id.startsWith(prefix) && !matches.includes(id)) matches.push(id);
  if (matches.length === 0) throw new SnapshotError(`checkpoint ${given} not found in store ${storeDir}`);
  if (matches.length > 1) {
    throw new SnapshotError(`checkpoint id ${given} is ambiguous in store ${storeDir} (matches ${matches.slice(0, 2).join(', ')}${matches.length > 2 ? ', …' : ''})`);
  }
  return matches[0];
}

async function readManifest(db: Db, id: string): Promise<ManifestV2> {
  const bytes = await db.get(manifestKey(id));
  if (bytes === undefined) throw new SnapshotError(`checkpoint ${id} not found`);
  return parseManifest(id, bytes);
}

/**
 * Check and decode a manifest record: seal, magic, format version, then structure.
 * A record whose seal fails but which decodes to a higher format version is reported as
 * that version (a future format may seal differently); otherwise a broken seal means
 * corruption. `assumeSealed`: the seal is not computed here (readMetaFile's deferred checks).
 */
function parseManifest(id: string, bytes: Uint8Array, assumeSealed = false): ManifestV2 {
  const sealed = assumeSealed || manifestSealIsValid(bytes);
  let m: unknown;
  try {
    m = decodeCbor(bytes);
  } catch {
    m = undefined;
  }
  const obj = isPlainRecord(m) ? m : undefined;
  const version = obj?.formatVersion;
  const foreign = sealed
    ? !READ_FORMAT_VERSIONS.includes(version as number)
    : typeof version === 'number' && Number.isSafeInteger(version) && version > FORMAT_VERSION;
  if (obj?.magic === FORMAT_MAGIC && foreign) {
    throw new SnapshotError(`checkpoint ${id} has format version ${oneLine(String(obj.formatVersion))}, but this snapvisor reads only format versions ${READ_FORMAT_VERSIONS.join(', ')}`);
  }
  if (!sealed) {
    throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (${obj === undefined ? 'cannot be decoded' : 'checksum mismatch'})`);
  }
  if (obj === undefined) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (cannot be decoded)`);
  if (obj.magic !== FORMAT_MAGIC) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (not a snapvisor checkpoint)`);
  const problem = manifestProblem(obj, id);
  if (problem !== undefined) throw new SnapshotError(`checkpoint ${id} has a corrupt manifest (${problem})`);
  return obj as ManifestV2;
}

/** Read, checksum and decode a checkpoint's pagemap (of the store at `dir`). */
async function readPagemap(db: Db, m: ManifestV2, dir: string): Promise<PagemapRun[]> {
  const bytes = await db.get(pagemapKey(m.id));
  if (bytes === undefined) throw corrupt(m.id, 'pagemap is missing');
  if (bytes.length !== m.pagemapBytes || sha256Hex(bytes) !== m.pagemapSha256) throw corrupt(m.id, 'pagemap checksum mismatch');
  const decoded = decodePagemap(bytes, m.memorySizeBytes, m.layers?.length ?? 0, elidedChecks(dir, m));
  if (typeof decoded === 'string') throw corrupt(m.id, decoded);
  if (decoded.pages !== m.pages) throw corrupt(m.id, 'pagemap page count mismatch');
  return decoded.runs;
}

/**
 * For verifyPages of checkpoint `m` of the store at `dir`: per layer of its pagemap (0 its own
 * pages, k ≥ 1 `m.layers[k - 1]`), the pages whose check is their pack chunk's (a pack of store
 * format 6: chunkCheckedPages), undefined where there are none (flat page files, older packs).
 * A pack that cannot be read gives none: the pages it holds were checked as its cache was made.
 */
export function chunkCheckedLayers(storeDir: string, m: Pick<ManifestV2, 'id' | 'layers'>): Array<Uint8Array | undefined> {
  const dir = resolvePath(storeDir);
  return [m.id, ...(m.layers ?? [])].map((id) => {
    let fd: number;
    try { fd = fs.openSync(packPath(dir, id), 'r'); } catch { return undefined; } // a flat page file
    try {
      const t = readPackTrailer(fd);
      return typeof t === 'string' ? undefined : chunkCheckedPages(t);
    } finally {
      fs.closeSync(fd);
    }
  });
}

/**
 * For a format-5 checkpoint of the store at `dir`: the CRC-32s its pagemap leaves to its layers'
 * packs, read from their trailers (each read once); a pack that cannot be read, or that does not
 * hold one of the pages, is one line naming it. Undefined for other formats (nothing is elided).
 */
function elidedChecks(dir: string, m: ManifestV2): ElidedChecks | undefined {
  if (m.formatVersion !== PACK_INCREMENTAL_FORMAT_VERSION) return undefined;
  const packs = new Map<number, { kind: Uint8Array; checks: Uint32Array } | string>();
  return (layer, memOffset, n) => {
    const layerId = m.layers![layer - 1];
    const where = `the page pack ${PAGES_DIR}/${layerId}${PACK_SUFFIX} it inherits pages from`;
    let p = packs.get(layer);
    if (p === undefined) {
      try {
        const fd = fs.openSync(packPath(dir, layerId), 'r');
        try { p = packPageChecks(fd); } finally { fs.closeSync(fd); }
        if (typeof p === 'string') p = `cannot be used (${p.replace(/^its /, '')})`;
      } catch (e) {
        p = `cannot be read (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)})`;
      }
      packs.set(layer, p);
    }
    if (typeof p === 'string') return `${where} ${p}`;
    const first = memOffset / PAGE_SIZE;
    if (first + n > p.kind.length) return `${where} is shorter than the pages it names`;
    for (let i = first; i < first + n; i++) if (!p.kind[i]) return `${where} lacks the page at offset 0x${(i * PAGE_SIZE).toString(16)}`;
    const out = new Uint8Array(n * PAGE_CHECK_BYTES);
    const v = new DataView(out.buffer);
    for (let i = 0; i < n; i++) v.setUint32(i * PAGE_CHECK_BYTES, p.checks[first + i], true);
    return out;
  };
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
 * Delete catalogue records (graph chunks, pagemaps) and files (page files, unfinished
 * restore records) of checkpoints that have no manifest: what interrupted writes left.
 * Restore records with a final name are kept even without a manifest: they are the
 * evidence (and the data) of a catalogue entry LevelDB lost, which `listCheckpoints`
 * and `checkStore` report.
 */
/** Ids whose page files some checkpoint of the catalogue inherits pages from (its `layers`). */
async function inheritedPageFiles(db: Db): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const [key, value] of db.iterator(prefixRange(KEY.manifest))) {
    let m: unknown;
    try { m = decodeCbor(value); } catch { continue; /* a damaged manifest: store check names it */ }
    const layers = isPlainRecord(m) ? m.layers : undefined;
    if (Array.isArray(layers)) for (const l of layers) if (typeof l === 'string' && isCheckpointId(l)) out.add(l);
    void key;
  }
  return out;
}

async function collectGarbage(db: Db, dir: string): Promise<void> {
  const ids = new Set<string>();
  for await (const key of db.keys(prefixRange(KEY.manifest))) ids.add(key.slice(KEY.manifest.length));
  const kept = new Set([...ids, ...metaIds(dir), ...(await inheritedPageFiles(db))]);
  const batch = new BatchWriter(db);
  for await (const key of db.keys(prefixRange(KEY.graph))) {
    const id = key.slice(KEY.graph.length).split('/')[0];
    if (!kept.has(id)) await batch.del(key);
  }
  for await (const key of db.keys(prefixRange(KEY.pagemap))) {
    if (!kept.has(key.slice(KEY.pagemap.length))) await batch.del(key);
  }
  await batch.flush();
  for (const [sub, keep] of [[PAGES_DIR, (n: string) => kept.has(n.replace(/\.pack$/, ''))], [META_DIR, (n: string) => isCheckpointId(n)]] as const) {
    let names: string[] = [];
    try { names = fs.readdirSync(join(dir, sub)); } catch { /* no such directory yet */ }
    for (const n of names) {
      const id = n.replace(/\.tmp$/, '').replace(/\.pack$/, '');
      if (!keep(n) && !ids.has(id)) fs.rmSync(join(dir, sub, n), { force: true });
    }
  }
  // Restore caches: of packs still kept and of this boot only; leftovers of interrupted restores go
  // (a cache being made by a running restore is recreated by it: its tmp name is its own).
  let caches: string[] = [];
  try { caches = fs.readdirSync(join(dir, CACHE_DIR)); } catch { /* none yet */ }
  for (const n of caches) {
    const [id, boot, ...rest] = n.split('.');
    // A lazily filled cache's piece map, its working set and its pack's known-good trailer, kept with the cache.
    const readyFile = rest.length === 1 && (rest[0] === 'ready' || rest[0] === 'ws' || rest[0] === 'trailer');
    if (!kept.has(id) || boot !== bootTag() || (rest.length && !readyFile && !isFreshTmp(join(dir, CACHE_DIR, n)))) fs.rmSync(join(dir, CACHE_DIR, n), { force: true });
  }
}

/** A cache being made right now (written to in the last minute): left alone by gc. */
function isFreshTmp(p: string): boolean {
  try { return Date.now() - fs.statSync(p).mtimeMs < 60_000; } catch { return false; }
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

/**
 * The read windows of a scan over the sorted, disjoint `ranges` (bytes of the memory file, page
 * aligned): each within one READ_CHUNK_BYTES piece (a pack's piece is never split between two
 * reads). Without `byPiece`, the ranges cut at piece boundaries. With it, one window per piece
 * any range touches, the whole piece (up to `memoryEnd`), with `parts` (flat pairs of offset in
 * the window and bytes) when the ranges cover only some of it: the rest is not read, and is zero.
 */
function* readWindows(ranges: Array<[number, number]>, byPiece: boolean, memoryEnd: number): Generator<{ off: number; len: number; parts?: number[] }> {
  if (!byPiece) {
    for (const [start, end] of ranges) {
      for (let off = start, len = 0; off < end; off += len) {
        len = Math.min(READ_CHUNK_BYTES - (off % READ_CHUNK_BYTES), end - off);
        yield { off, len };
      }
    }
    return;
  }
  let piece = -1;
  let parts: number[] = [];
  const window = (): { off: number; len: number; parts?: number[] } => {
    const len = Math.min(READ_CHUNK_BYTES, memoryEnd - piece);
    const whole = parts.length === 2 && parts[0] === 0 && parts[1] === len;
    return { off: piece, len, parts: whole ? undefined : parts };
  };
  for (const [start, end] of ranges) {
    for (let off = start; off < end;) {
      const p = off - (off % READ_CHUNK_BYTES);
      const to = Math.min(end, p + READ_CHUNK_BYTES);
      if (p !== piece) {
        if (piece >= 0) yield window();
        piece = p;
        parts = [];
      }
      parts.push(off - p, to - off);
      off = to;
    }
  }
  if (piece >= 0) yield window();
}

/**
 * `len` bytes from `off` of the memory source, zero-padding past its size: the source's
 * own view when it is whole (used before the next read), else a padded copy.
 */
/** `len` bytes from `off` copied into the reused `chunk` (zeros past the memory's end). */
function readChunk(memory: MemorySource, off: number, len: number, chunk: Buffer): Buffer {
  const buf = chunk.subarray(0, len);
  const want = Math.max(0, Math.min(len, memory.sizeBytes - off));
  memory.readInto!(off, buf.subarray(0, want));
  if (want < len) buf.fill(0, want);
  return buf;
}

function readView(memory: MemorySource, off: number, len: number): Buffer {
  const want = Math.min(len, memory.sizeBytes - off);
  const data = memory.read(off, want);
  if (!(data instanceof Uint8Array) || data.length !== want) {
    throw new SnapshotError(`memory source returned ${data instanceof Uint8Array ? data.length : 'no'} bytes for a read of ${want} bytes at offset ${off}`);
  }
  if (want === len) return Buffer.from(data.buffer, data.byteOffset, data.length);
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

function summaryOf(m: ManifestV2): CheckpointSummary {
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
  if (m.packBytes !== undefined) s.packBytes = m.packBytes;
  if (m.filePages !== undefined) s.filePages = m.filePages;
  if (m.name !== undefined) s.name = m.name;
  if (m.parent !== undefined) s.parent = m.parent;
  return s;
}

function corrupt(id: string, reason: string): SnapshotError {
  return new SnapshotError(checkpointProblem(id, reason));
}

function isPlainRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Map);
}

function isLevelError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('LEVEL_');
}

/** Whether `path` exists (stat(2) on the thread pool; fs's callback form: node:fs/promises is not loaded for it). */
function exists(path: string): Promise<boolean> {
  return new Promise((resolve) => fs.stat(path, (err) => resolve(!err)));
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
