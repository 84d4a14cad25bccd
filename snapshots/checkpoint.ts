/**
 * Checkpoint and restore of a whole sandbox: the kernel's state graph and its memory
 * file, through the store (snapshots/store.ts). The guest is stopped only while the
 * graph and the populated memory ranges are copied (`Kernel.capture`); the store write
 * happens after, with the guest running again if it is to go on.
 */
import fs from 'node:fs';
import { changedVolumes, volumeIdentities } from './volumes.js';
import { Worker } from 'node:worker_threads';
import type { Kernel } from '../src/kernel/kernel.js';
import { AssembleOptions, assembleKernel } from '../src/sandbox/compose.js';
import { GRAPH_VERSION, KernelState, type SandboxConfig, type SuperblockState } from '../src/kernel/state.js';
import type { Writable } from '../src/kernel/events.js';
import { GraphVersionError, migrateGraph } from '../src/kernel/graph-schema.js';
import { CheckpointSummary, type HostFilePages, type MemorySource, OpenedCheckpoint, type ProgressCallback, SnapshotError, cancelStoreOpening, catalogueWarm, checkpointInterrupted, checkRootfs, openStoreEarly, layersOf, onEveryCpu, openCheckpoint, readWorkingSet, recordChecksumError, runsOf, settleCatalogue, traceCheckpoint, WORKING_SET_MAX, writeCheckpoint, writeWorkingSet } from './store.js';
import { PAGE_CHECK_BYTES, PAGE_SIZE, type PagemapRun, readRunChecks, runLayer } from './format.js';
import path from 'node:path';
import { closePublished, publishedConnections } from '../src/net/publish.js';
import { hostInetDescriptions } from '../src/net/hostinet.js';
import { pageFileDataRanges, verifyPages } from './pages.js';
import { hostIdentity } from '../src/vfs/host-files.js';
import { hostCpuFeatures, missingCpuFeatures } from '../platforms/host/cpu-features.js';
import { restoreTrace } from './restore-trace.js';

/**
 * After a checkpoint that leaves its sandbox running, the store's catalogue is settled (its log
 * made a table: settleCatalogue) this many ms later, off the answer's path and not in the
 * pause of a checkpoint that follows at once.
 */
const SETTLE_DELAY_MS = 200;

export interface CheckpointResult extends CheckpointSummary {
  /** Time the guest was stopped (quiesce + capture), ms. */
  pauseMs: number;
}

/**
 * Checkpoint a running kernel into `storeDir`. With `leaveRunning` the guest continues;
 * otherwise it is killed once the checkpoint is safely written. If the write fails the
 * guest is never killed (a failed checkpoint loses nothing). Throws SnapshotError.
 */
export async function checkpointKernel(kernel: Kernel, storeDir: string, opts: {
  leaveRunning: boolean; name?: string; parent?: string;
  /** Store the pages compressed (format 6, WriteOptions.compress). */
  compress?: boolean;
  /**
   * Called once the checkpoint is safely written (in the store, synced), with what this returns,
   * before a sandbox that does not go on is killed: a caller may answer its client now, not after
   * the kill (the host tears the stub's memory down at once on this CPU: 3–4 ms for the bench's
   * python3), while the guest is still frozen and can do nothing more.
   */
  onWritten?: (result: CheckpointResult) => void;
  /** Bytes of the captured memory's populated ranges written so far, and their total (writeCheckpoint). */
  onProgress?: ProgressCallback;
  /**
   * Aborted (the client that asked went away, or asked to stop: cli/control.ts): the checkpoint
   * stops before its capture, or its page write stops (WriteOptions.signal), nothing is left in
   * the store, the guest runs on (also without `leaveRunning`) and checkpointInterrupted() is
   * thrown; once the catalogue is being written it is too late: the checkpoint completes.
   */
  signal?: AbortSignal;
}): Promise<CheckpointResult> {
  const t0 = performance.now();
  traceCheckpoint?.('start');
  // The store's catalogue opens from here (LevelDB's open on the thread pool: its log replayed if
  // it was not settled, a new log and manifest synced, 5–60 ms here) while the guest is captured,
  // the data found and the graph encoded, not after; given up (closed) if the write never begins.
  // Its JavaScript runs now, before the guest's pause, bar a few promise continuations; unless
  // this process never opened a catalogue: then its first run (compiling it, 3–4 ms) would fall
  // in the pause, and the open begins right after the capture instead.
  let opening = catalogueWarm() ? openStoreEarly(storeDir) : undefined;
  const giveUp = (e: unknown): unknown => { if (opening) cancelStoreOpening(opening); return e; };
  try {
    if (opts.signal?.aborted) throw checkpointInterrupted();
    await kernel.quiesce();
  } catch (e) {
    throw giveUp(e);
  }
  traceCheckpoint?.('quiesced');
  if (opts.signal?.aborted) {
    kernel.thaw();
    throw giveUp(checkpointInterrupted());
  }
  if (kernel.exitInfo) throw giveUp(new SnapshotError('the sandbox exited before it could be checkpointed'));
  const published = publishedConnections(kernel);
  if (published.length && !kernel.state.config.tcpCloseOnCheckpoint) {
    kernel.thaw();
    const ports = [...new Set(published.map((p) => p.label))].join(', ');
    throw giveUp(new SnapshotError(`${published.length} connection${published.length > 1 ? 's' : ''} through published port${ports.includes(',') ? 's' : ''} ${ports} ${published.length > 1 ? 'are' : 'is'} open: the host side cannot be checkpointed (close ${published.length > 1 ? 'them' : 'it'}, or run with --tcp-close-on-checkpoint: a restore then closes them)`));
  }
  const hostSockets = hostInetDescriptions(kernel);
  if (hostSockets.length && !kernel.state.config.tcpCloseOnCheckpoint) {
    kernel.thaw();
    throw giveUp(new SnapshotError(`${hostSockets.length} host socket${hostSockets.length > 1 ? 's are' : ' is'} open (--network=host): ${hostSockets.join(', ')}; host sockets cannot be checkpointed (close ${hostSockets.length > 1 ? 'them' : 'it'}, or run with --tcp-close-on-checkpoint: a restore then resets connections and opens listeners and UDP sockets again)`));
  }
  let captured;
  try {
    // Ending the sandbox: it stays frozen until written. Running on: copy-on-write, held until written.
    captured = kernel.capture(opts.leaveRunning);
    // Volumes are the host's: the checkpoint records what they hold now, with the guest still paused.
    for (const [sb, identity] of volumeIdentities(captured.graph)) (captured.graph.fs.superblocks![sb] as Writable<SuperblockState & { type: 'volume' }>).identity = identity;
  } catch (e) {
    captured?.release();
    kernel.thaw();
    throw giveUp(e);
  }
  // A restored kernel's pages it never wrote are still those of its page files, and pages a
  // checkpoint stored and the guest has not written since are still those (markClean): an
  // incremental checkpoint into the same store names them instead of copying them.
  const origin = origins.get(kernel);
  const sameStore = origin?.storeDir === path.resolve(storeDir);
  const backed = sameStore ? kernel.backedLayers() : undefined;
  // Copies a copy-on-write made since the last capture (taken at every capture: moves since this one are the next's).
  const moved = kernel.takeMoves();
  const inherited = origin && backed ? { storeDir: origin.storeDir, layerIds: origin.layerIds, backed, former: kernel.formerLayers(), checks: origin.checks, nonZero: origin.nonZero, moved } : undefined;
  // Running on: from now on the pages this checkpoint stores count as clean (tracked writes).
  const tracking = opts.leaveRunning ? beginTracking(kernel, storeDir, captured.held, backed) : undefined;
  const pauseMs = performance.now() - t0;
  traceCheckpoint?.('captured');
  if (opts.leaveRunning) kernel.thaw();
  opening ??= openStoreEarly(storeDir);
  let summary: CheckpointSummary;
  try {
    // Where the data is (~15 ms per GiB) and which pages the host's files hold (a stat per file),
    // found once the guest runs on: the captured graph and held blocks do not change meanwhile.
    let memory: MemorySource;
    try {
      const { sizeBytes, read, readInto, fd } = captured.memory;
      const cached = opts.compress || backed ? cachedFileBlocks(kernel, captured.graph) : [];
      if (backed) dropChangedFiles(kernel, cached, backed, tracking);
      const filePages = opts.compress ? hostFilePages(cached, sizeBytes) : undefined;
      // Inherited pages are named, never read: where they are is known without a search for data.
      const populated = captured.memory.populated(backed && origin ? inheritedSpans(backed, origin.layerIds.length) : undefined);
      memory = { sizeBytes, populated, read, readInto, fd, inherited, hostFilePages: filePages };
    } catch (e) {
      throw giveUp(e);
    }
    traceCheckpoint?.('data found');
    summary = await writeCheckpoint(storeDir, captured.graph, memory, { name: opts.name, parent: opts.parent ?? (sameStore ? origin!.parent || undefined : lastCheckpoint.get(kernel)?.[path.resolve(storeDir)]) }, opts.onProgress, { compress: opts.compress, opening, signal: opts.signal });
    if (tracking) finishTracking(kernel, tracking, summary);
  } catch (e) {
    if (tracking) kernel.forgetClean(); // the pages it marked were never stored
    if (!opts.leaveRunning) kernel.thaw();
    throw e;
  } finally {
    captured.release();
  }
  // The next checkpoint of this sandbox into this store names this one as its parent.
  const after = origins.get(kernel);
  if (after && after.storeDir === path.resolve(storeDir)) after.parent = summary.id;
  else lastCheckpoint.set(kernel, { ...lastCheckpoint.get(kernel), [path.resolve(storeDir)]: summary.id });
  opts.onWritten?.({ ...summary, pauseMs });
  // The sandbox runs on and is likely to be checkpointed into this store again: LevelDB's log of
  // this checkpoint is turned into a table once things are quiet, not in the next one's open.
  if (opts.leaveRunning) setTimeout(() => void settleCatalogue(storeDir), SETTLE_DELAY_MS).unref();
  traceCheckpoint?.('written');
  if (!opts.leaveRunning) kernel.kill();
  if (!opts.leaveRunning) traceCheckpoint?.('sandbox killed');
  return { ...summary, pauseMs };
}

/** A block of the kernel's page cache: which host file's bytes it holds, and whether that file is still as it was read. */
interface CachedFileBlock { path: string; size: number; mtimeMs: number; memOffset: number; fileOffset: number; len: number; same: boolean }

/**
 * The blocks of the kernel's page cache (private mappings of host files: their bytes as the file
 * holds them, never written in place) in `graph`, each with whether its file is in the sandbox's
 * root filesystem and still has the size and mtime the cache recorded (one open and fstat per
 * file, beneath the sandbox's root). Files of volumes, and files gone, unreadable or changed
 * since they were read, are not `same`.
 */
function cachedFileBlocks(kernel: Kernel, graph: KernelState): CachedFileBlock[] {
  const cache = graph.memoryFile.pageCache;
  if (!cache) return [];
  const out: CachedFileBlock[] = [];
  const stillSame = new Map<string, boolean>();
  for (const [key, memOffset] of Object.entries(cache)) {
    const block = graph.memoryFile.blocks[memOffset];
    if (!block) continue;
    const [path, size, mtimeMs, fileOffset, len] = key.split('\0');
    const idKey = `${path}\0${size}\0${mtimeMs}`;
    let same = stillSame.get(idKey);
    if (same === undefined) {
      same = false;
      try {
        if (!kernel.vfs.locate(path).sb) {
          const { fd, st } = kernel.vfs.openHostFile(path);
          fs.closeSync(fd);
          const now = hostIdentity(st);
          same = now.size === Number(size) && now.mtimeMs === Number(mtimeMs);
        }
      } catch { /* gone or unreadable: its pages are stored */ }
      stillSame.set(idKey, same);
    }
    out.push({ path, size: Number(size), mtimeMs: Number(mtimeMs), memOffset, fileOffset: Number(fileOffset), len: Math.min(Number(len), block.len), same });
  }
  return out;
}

/**
 * The page-cache pages whose file is unchanged (cachedFileBlocks): a compressed checkpoint names
 * them instead of storing them, and a restore reads them back from the file
 * (snapshots/pack.ts). Files of volumes, and files changed since they were mapped, are stored
 * like any page.
 */
function hostFilePages(cached: CachedFileBlock[], sizeBytes: number): HostFilePages | undefined {
  const pageBlock = new Uint32Array(Math.ceil(sizeBytes / PAGE_SIZE));
  const blocks: HostFilePages['blocks'] = [];
  for (const c of cached) {
    if (!c.same) continue;
    blocks.push({ path: c.path, size: c.size, mtimeMs: c.mtimeMs, memOffset: c.memOffset, fileOffset: c.fileOffset, len: c.len });
    const first = c.memOffset / PAGE_SIZE, n = Math.ceil(c.len / PAGE_SIZE);
    for (let i = 0; i < n && first + i < pageBlock.length; i++) pageBlock[first + i] = blocks.length;
  }
  return blocks.length ? { pageBlock, blocks } : undefined;
}

/**
 * Page-cache pages of files changed since they were read are not inherited (`backed` set to 0
 * there: this checkpoint reads and stores their bytes): the layer that holds them may name the
 * file instead of holding its bytes, and a restore would then refuse the checkpoint for the
 * file's change. Pages this checkpoint's tracking left clean with that older layer (`tracking`,
 * see beginTracking: `backed` excepted them) count as clean pages of this checkpoint instead.
 */
function dropChangedFiles(kernel: Kernel, cached: CachedFileBlock[], backed: Uint8Array, tracking: Tracking | undefined): void {
  for (const c of cached) {
    if (c.same) continue;
    const first = c.memOffset / PAGE_SIZE, last = Math.min(backed.length, first + Math.ceil(c.len / PAGE_SIZE));
    for (let p = first; p < last; p++) {
      const k = backed[p];
      if (!k) continue;
      backed[p] = 0;
      if (tracking) kernel.relabelClean(p * PAGE_SIZE, PAGE_SIZE, k, tracking.layer);
    }
  }
}

/**
 * The pages `backed` names a layer for (1 to `layers`), as sorted [offset, length] byte spans: a
 * native search per layer in use and per span edge, no loop over the pages (one over the 62,000
 * of the bench's python3 cost milliseconds: its code is cold at a checkpoint).
 */
function inheritedSpans(backed: Uint8Array, layers: number): Array<[number, number]> {
  let values: number[] = [];
  for (let k = 1; k <= Math.min(255, layers); k++) if (backed.includes(k)) values.push(k);
  const next = (p: number): number => {
    let m = -1;
    values = values.filter((k) => {
      const i = backed.indexOf(k, p);
      if (i >= 0 && (m < 0 || i < m)) m = i;
      return i >= 0; // not past p: not past any later p either
    });
    return m;
  };
  const out: Array<[number, number]> = [];
  for (let p = next(0); p >= 0;) {
    let q = backed.indexOf(0, p + 1);
    if (q < 0) q = backed.length;
    out.push([p * PAGE_SIZE, (q - p) * PAGE_SIZE]);
    p = q < backed.length ? next(q) : -1;
  }
  return out;
}

/** A checkpoint's write tracking begun at its capture (beginTracking), finished once it is written. */
interface Tracking { origin: Origin; layer: number; held: ReadonlyArray<readonly [number, number]>; inherited?: Uint8Array }

/**
 * At the capture of a checkpoint the sandbox survives (--leave-running), with the guest paused:
 * the pages of the blocks the capture holds (copy-on-write until written: they stay the bytes
 * being stored) that it does not inherit from an older layer (`inherited`, one byte per page)
 * count from now on as clean pages of this checkpoint, so the next checkpoint into this store
 * inherits them until the guest writes them (Kernel.markClean). No remapping: holding them made
 * every mapping of them read-only already. The checkpoint's id fills its layer slot once
 * written (finishTracking). One store per sandbox (a restored one: the store it came from);
 * undefined where it does not apply.
 */
function beginTracking(kernel: Kernel, storeDir: string, held: ReadonlyArray<readonly [number, number]>, inherited?: Uint8Array): Tracking | undefined {
  const dir = path.resolve(storeDir);
  let origin = origins.get(kernel);
  if (origin && origin.storeDir !== dir) return undefined;
  if (!origin) {
    origin = { storeDir: dir, parent: '', layerIds: [], checks: new Uint32Array(0), nonZero: new Uint8Array(0) };
    origins.set(kernel, origin);
  }
  if (origin.layerIds.length >= 255) { kernel.forgetClean(); return undefined; }
  const layer = origin.layerIds.push(''); // the id, once written
  kernel.markClean(held, layer, inherited, false);
  return { origin, layer, held, inherited };
}

/** The checkpoint of `t` is written: name its layer and record its pages' CRC-32s and zero pages. */
function finishTracking(kernel: Kernel, t: Tracking, summary: CheckpointSummary): void {
  const { origin, held, inherited } = t;
  origin.layerIds[t.layer - 1] = summary.id;
  const pages = held.reduce((m, [off, len]) => Math.max(m, (off + len) / PAGE_SIZE), 0);
  if (pages > origin.checks.length) {
    const checks = new Uint32Array(pages), nonZero = new Uint8Array(pages);
    checks.set(origin.checks);
    nonZero.set(origin.nonZero);
    origin.checks = checks;
    origin.nonZero = nonZero;
  }
  // The held pages it did not inherit are in its own page file: zero unless one of its runs says otherwise.
  for (const [off, len] of held) {
    for (let p = off / PAGE_SIZE; p < (off + len) / PAGE_SIZE; p++) if (!inherited || !inherited[p]) origin.nonZero[p] = 0;
  }
  const layers = layersOf(summary);
  for (const run of runsOf(summary)) {
    const [off, c] = run;
    const n = c.length / PAGE_CHECK_BYTES, first = off / PAGE_SIZE;
    if (runLayer(run) !== 0) {
      // Pages it found equal to an older layer's bytes (written since, but as they were) are named
      // there, not stored in its own file: they are clean pages of that layer, not of this one.
      const older = origin.layerIds.indexOf(layers[runLayer(run) - 1]) + 1;
      if (older > 0) kernel.relabelClean(off, n * PAGE_SIZE, t.layer, older); else kernel.forgetClean();
    }
    copyRunChecks(origin.checks, origin.nonZero, first, c);
  }
}

/**
 * Copy a pagemap run's CRC-32s (`c`: 4 bytes little-endian per page) into `checks` from page
 * `first` on, and mark those pages non-zero; pages past the end of `checks` are left out. A
 * restore does this for every page of the checkpoint (62,000 for a 200 MB python3).
 */
function copyRunChecks(checks: Uint32Array, nonZero: Uint8Array, first: number, c: Uint8Array): void {
  const n = Math.max(0, Math.min(c.length / PAGE_CHECK_BYTES, checks.length - first));
  if (n === 0) return;
  readRunChecks(checks, first, c, n);
  nonZero.fill(1, first, first + n);
}

/** Per kernel never restored: the last checkpoint it took into each store (resolved path → id), the parent of its next one there. */
const lastCheckpoint = new WeakMap<Kernel, Record<string, string>>();

/** Check that a decoded graph has the shape this kernel writes (refuse anything else before starting a guest). */
function validateGraph(g: unknown): asserts g is KernelState {
  if (g && typeof g === 'object') {
    try {
      migrateGraph(g as Record<string, unknown>);
    } catch (e) {
      if (e instanceof GraphVersionError) throw new SnapshotError(e.message);
      throw e;
    }
  }
  const s = g as KernelState;
  if (!s || typeof s !== 'object' || s.graphVersion !== GRAPH_VERSION || typeof s.tasks !== 'object' || typeof s.memoryFile !== 'object' || typeof s.config?.rootfs !== 'string') {
    throw new SnapshotError(`checkpoint graph is not a snapvisor state graph of version ${GRAPH_VERSION}`);
  }
}

/**
 * Checkpoints with at most this many bytes of pages (and a page file at most
 * SYNC_VERIFY_FILE_BYTES long) are verified before the guest starts: it costs a few ms.
 * Larger ones are verified by a worker thread while the guest runs.
 */
const SYNC_VERIFY_BYTES = 8 << 20;
const SYNC_VERIFY_FILE_BYTES = 64 << 20;

/** What restoreKernel gives back. */
export interface RestoredKernel {
  kernel: Kernel;
  /** Full checkpoint id. */
  id: string;
  /** From the call to the kernel being ready to run, ms. */
  restoreMs: number;
  /**
   * Settles when the background check of every page is done: undefined if all pages were
   * good, else the one-line error with which the sandbox was stopped (it names the
   * checkpoint and the page). Never rejects.
   */
  verified: Promise<string | undefined>;
}

/**
 * Rebuild a kernel from checkpoint `id` without copying its memory: decode and check the
 * graph (read from the restore record, without the store's lock), map the checkpoint's
 * page file under a fresh, empty memory file (pages are copied in on their first write),
 * start new stubs, replay mappings and registers, and give the sandbox a new identity
 * (boot id, generation). Page checksums are verified before the guest starts for small
 * checkpoints (≤ 8 MiB of pages), else in a worker thread while the guest runs: a bad page
 * then stops the sandbox with a line on the kernel's log. The returned kernel
 * is ready to `run()`. Throws SnapshotError before any guest starts (unknown id, damaged
 * records, missing rootfs). `pagesVerified`: the caller has checked every page of this
 * checkpoint already (`verifyPages`; a warm pool does once at start), so no check is made.
 * `workingSet`: replay the write faults earlier restores of this checkpoint took first before
 * the guest runs, or record them for the next restore (useWorkingSet). `onFirstOutput`: called on
 * a later turn of the event loop once the guest first wrote to a host fd.
 */
export async function restoreKernel(storeDir: string, id: string, opts: AssembleOptions & { pagesVerified?: boolean; acceptChangedVolumes?: boolean; workingSet?: boolean; onFirstOutput?: () => void } = {}): Promise<RestoredKernel> {
  const t0 = monotonicMs();
  const trace = restoreTrace();
  trace?.('start');
  // The record's checksums (node:crypto) are checked here, or in the background below (with the pages of a flat page file).
  const opened = await openCheckpoint(storeDir, id, 'lazy', true);
  trace?.('opened');
  let verifier: (() => Worker | Error) | undefined;
  const small = opened.manifest.storedPageBytes <= SYNC_VERIFY_BYTES && opened.pageFileBytes <= SYNC_VERIFY_FILE_BYTES;
  const background = !opts.pagesVerified && !opened.fresh && !small;
  // A large pack's restore cache checks its pages as it fills them (fresh): its restore record's
  // checksums are left, checked in the background too (their sha256 would load node:crypto, ~7 ms
  // of CPU, on the way to the guest; the record's quick check ran before the kernel is built).
  const recordOnly = !opts.pagesVerified && opened.fresh && !small && opened.checksums !== undefined;
  if (!background && !recordOnly && opened.checksums) {
    const bad = recordChecksumError(opened.id, opened.checksums);
    if (bad) {
      closeOpened(opened);
      throw bad;
    }
    opened.checksums = undefined;
  }
  if (recordOnly) {
    // As below, the record alone: no run to check, and its own file (like its layers) a cache
    // whose pages are checked as they are filled.
    verifier = () => startVerifier(opened, [], true);
  } else if (opts.pagesVerified || opened.fresh) {
    // The caller checked every page of this checkpoint already (a warm pool, once at its start), or
    // openCheckpoint just made its restore cache from its pack, checking every page as it wrote it.
  } else if (!background) {
    // Small: check every page now (a few ms), so a damaged checkpoint never runs at all.
    const bad = verifyPages(opened.pageFd, checkedRuns(opened), opened.pageFileBytes, opened.layers.map((l) => l.fd));
    if (bad !== undefined) {
      closeOpened(opened);
      throw new SnapshotError(`checkpoint ${opened.id} is corrupt: ${bad}`);
    }
  } else {
    // Started once the guest has had its first steps (watchVerifier): see VERIFY_DELAY_MS. It
    // checks the restore record's checksums first: a record found damaged stops the sandbox as a
    // damaged page does.
    // Its runs are chosen now: once the memory file owns the lazily filled caches (below), the
    // layers no longer say which are lazy, and the worker would read a cache's unfilled pieces.
    const runs = checkedRuns(opened);
    // Its own file a lazily filled cache (a pack incremental on a flat page file): that file's
    // filled pieces are not looked at either (checked as they were filled; the pieces the guest
    // filled before the check began showed as data where no run of the others says any).
    const ownLazy = !!opened.lazy;
    verifier = () => startVerifier(opened, runs, ownLazy);
  }
  let kernel: Kernel;
  try {
    validateGraph(opened.graph);
    checkRestorable(opened.id, opened.graph);
    const changed = opts.acceptChangedVolumes ? [] : changedVolumes(opened.graph);
    if (changed.length) throw new SnapshotError(`checkpoint ${opened.id}: volume${changed.length > 1 ? 's' : ''} ${changed.join(', ')} changed since the checkpoint (restore --accept-changed-volumes uses ${changed.length > 1 ? 'them' : 'it'} as ${changed.length > 1 ? 'they are' : 'it is'})`);
    beginGeneration(opened.graph);
    kernel = assembleKernel(opened.graph, opts);
    trace?.('kernel');
  } catch (e) {
    closeOpened(opened);
    throw e;
  }
  try {
    // Layer 1: the checkpoint's own page file; layer k + 1: the k-th page file it inherits from.
    // A pack's restore cache is filled piece by piece as the kernel and the guest need its pages (LazyPack).
    kernel.attachPageFiles([opened.pageFd, ...opened.layers.map((l) => l.fd)],
      opened.runs.filter((r) => runLayer(r) > 0).map((r) => [r[0], (r[1].length / PAGE_CHECK_BYTES) * PAGE_SIZE, runLayer(r) + 1] as const),
      [opened.lazy, ...opened.layers.map((l) => l.lazy)]);
    opened.lazy = undefined; // the memory file owns them now
    for (const l of opened.layers) l.lazy = undefined;
    origins.set(kernel, originOf(storeDir, opened));
    kernel.restoreFiles();
    // Connections from the host through published ports did not survive (--tcp-close-on-checkpoint).
    closePublished(kernel);
    kernel.resumeRestored();
    if (opts.workingSet) useWorkingSet(kernel, storeDir, opened.id, trace);
    trace?.('resumed');
    if (trace || opts.onFirstOutput) {
      const then = opts.onFirstOutput;
      onFirstOutput(kernel, () => { trace?.('first output'); if (then) setImmediate(then); });
    }
  } catch (e) {
    kernel.destroy();
    throw e;
  }
  const verified = verifier ? watchVerifier(kernel, opened, verifier) : Promise.resolve(undefined);
  return { kernel, id: opened.id, restoreMs: monotonicMs() - t0, verified };
}

/** The host's monotonic clock in ms (not `performance.now()`: perf_hooks costs a restore ~2 ms to load). */
const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * How long a restored guest's first write faults are recorded for the next restore (ms from the
 * restore; a warm pool's probe records one second too). Long enough for a loaded host, where the
 * bench's python3 took its 27 write faults over 300 ms.
 */
const WORKING_SET_RECORD_MS = 1000;

/**
 * The working set of a plain restore (docs/snapshot-format.md, "Working set"): if earlier
 * restores of checkpoint `id` recorded the write faults their guests took first, take them now,
 * before the guest runs (the stubs are stopped: each copies its chunk out of the page file and
 * its remapping joins the restore's first batch of mappings), instead of one ptrace round trip
 * each while the guest runs (the bench's python3 took 27 before its next line: 40–60 ms, 13–18
 * with them taken here for ~6 ms). Else record the faults the guest takes until its first
 * output (or for WORKING_SET_RECORD_MS) for the next restore. A fault that does not apply is skipped; one that
 * fails (the memory limit, a damaged page) ends the replay, and the guest meets it itself.
 */
function useWorkingSet(kernel: Kernel, storeDir: string, id: string, trace?: (what: string) => void): void {
  const faults = readWorkingSet(storeDir, id);
  if (faults) {
    let n = 0;
    try {
      for (const [asId, addr] of faults) if (kernel.addressSpaces.get(asId)?.handleWriteFault(addr)) n++;
    } catch { /* the guest takes it itself (and reports a damaged page as it would) */ }
    trace?.(`working set: ${n} of ${faults.length} write faults taken`);
    return;
  }
  const rec: Array<[number, number]> = [];
  let on = true;
  for (const as of kernel.addressSpaces.values()) {
    const handle = as.handleWriteFault.bind(as);
    as.handleWriteFault = (addr: number) => {
      const r = handle(addr);
      if (on && r && rec.length < WORKING_SET_MAX) rec.push([as.id, addr]);
      return r;
    };
  }
  // Saved at the guest's first output (its first write to a host fd, before the bytes leave: a
  // restore killed once its caller has the line still leaves them, and what the next restore takes
  // up front is what that line needed), else after WORKING_SET_RECORD_MS or when the sandbox ends.
  const host = kernel.host;
  const own = Object.prototype.hasOwnProperty.call(host, 'writeSync');
  const writeSync = host.writeSync;
  host.writeSync = (...a) => { save(); return writeSync.apply(host, a); };
  const save = (): void => {
    if (!on) return;
    on = false;
    if (own) host.writeSync = writeSync;
    else delete (host as Partial<typeof host>).writeSync;
    writeWorkingSet(storeDir, id, rec);
  };
  setTimeout(save, WORKING_SET_RECORD_MS).unref();
  void kernel.exited.then(save);
}

/** Call `fn` when the guest first writes to a host fd (its output), before the bytes leave. */
function onFirstOutput(kernel: Kernel, fn: () => void): void {
  const host = kernel.host;
  const writeSync = host.writeSync;
  host.writeSync = (...a) => {
    host.writeSync = writeSync;
    fn();
    return writeSync.apply(host, a);
  };
}

/** Close the fds an opened checkpoint holds (its page file and inherited layers, and what fills them lazily). */
function closeOpened(opened: OpenedCheckpoint): void {
  fs.closeSync(opened.pageFd);
  opened.lazy?.close();
  for (const l of opened.layers) { fs.closeSync(l.fd); l.lazy?.close(); }
}

/** The runs a page check reads: those of page files complete on disk (a lazily filled cache checks each piece as it fills it). */
function checkedRuns(opened: OpenedCheckpoint): PagemapRun[] {
  const lazy = (layer: number): boolean => !!(layer === 0 ? opened.lazy : opened.layers[layer - 1]?.lazy);
  return opened.runs.filter((r) => !lazy(runLayer(r)));
}

/**
 * Where a restored kernel's memory came from, for the checkpoints it takes later: the store,
 * the checkpoint it was restored from (or last checkpointed into that store: the parent of
 * its next one), and per memory-file page the CRC-32 and non-zero mark its page-file layer
 * gives it (layer 1: the checkpoint's own page file, k + 1: its k-th inherited one).
 */
interface Origin {
  storeDir: string;
  parent: string;
  layerIds: string[];
  checks: Uint32Array;
  nonZero: Uint8Array;
}
/** Origins of restored kernels (runtime only: a kernel restored again gets a new one). */
const origins = new WeakMap<Kernel, Origin>();

/** The Origin of a kernel restored from `opened`; its per-page arrays are made when a checkpoint first reads them, not before the guest runs (~1 ms for the bench's 62,000 pages). */
function originOf(storeDir: string, opened: OpenedCheckpoint): Origin {
  const pages = Math.ceil(opened.pageFileBytes / PAGE_SIZE);
  const runs = opened.runs;
  let made: { checks: Uint32Array; nonZero: Uint8Array } | undefined;
  const make = (): { checks: Uint32Array; nonZero: Uint8Array } => {
    if (made) return made;
    const checks = new Uint32Array(pages), nonZero = new Uint8Array(pages);
    for (const [off, c] of runs) copyRunChecks(checks, nonZero, off / PAGE_SIZE, c);
    return made = { checks, nonZero };
  };
  return {
    storeDir: path.resolve(storeDir), parent: opened.id, layerIds: [opened.id, ...opened.layers.map((l) => l.id)],
    get checks() { return make().checks; },
    set checks(v) { make().checks = v; },
    get nonZero() { return make().nonZero; },
    set nonZero(v) { make().nonZero = v; },
  };
}

/**
 * A random (version 4) UUID, from /dev/urandom: node:crypto's randomUUID would load node:crypto
 * (and node:stream) before the guest runs, ~5 ms of a restore that checks its record in the background.
 */
function randomUuid(): string {
  const b = Buffer.alloc(16);
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    for (let n = 0; n < 16;) n += fs.readSync(fd, b, n, 16 - n, null);
  } finally {
    fs.closeSync(fd);
  }
  b[6] = (b[6] & 0x0f) | 0x40; // version 4
  b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * A restored sandbox is a new sandbox: a new boot id and the next generation (see
 * /proc/snapvisor/generation in docs/snapshot-format.md). Everything else is as captured.
 */
function beginGeneration(graph: KernelState): void {
  // A graph no kernel runs yet (Writable, src/kernel/events.ts).
  const config = graph.config as Writable<SandboxConfig>;
  config.bootId = randomUuid();
  // New processes of the restored sandbox see this host's CPU features (checkRestorable made
  // sure it has every one the checkpoint recorded).
  const host = hostCpuFeatures();
  if (host.length) config.cpuFeatures = host;
  config.generation = (graph.config.generation ?? 0) + 1;
}

/**
 * What a checkpoint needs of this host besides its own records, checked before anything is
 * built: its rootfs directory, and every CPU feature its guest may have seen (without one, the
 * guest would die of SIGILL later, at an unrelated point). `graph` is a checkpoint's graph as
 * stored. Throws SnapshotError with one line naming what is missing.
 */
export function checkRestorable(id: string, graph: Pick<KernelState, 'config'>): void {
  checkRootfs(id, graph);
  const recorded = graph.config.cpuFeatures;
  const host = hostCpuFeatures();
  if (recorded && host.length) {
    const missing = missingCpuFeatures(recorded, host);
    if (missing.length) {
      throw new SnapshotError(`checkpoint ${id} needs CPU features this host lacks: ${missing.join(' ')} (its guest may use them; restore it on a host that has them)`);
    }
  }
}

/**
 * How long after the restore the background page check starts (ms): a restored guest's first
 * steps (its write faults, its next output) come before the worker's start-up and its reads of
 * the whole page file, which on a 2-CPU host took the CPU and memory bandwidth the guest needed
 * (a flat 243 MiB checkpoint's guest took 200 ms to its next line, 60 ms with the check after it).
 */
const VERIFY_DELAY_MS = 150;

/**
 * A worker thread checking `runs` of the opened checkpoint (snapshots/verify-worker.ts: its
 * checkedRuns, chosen before the memory file took the lazily filled caches; none: its restore
 * record's checksums only), or why none could start. `ownLazy`: the checkpoint's own file is a
 * lazily filled cache, whose data ranges are then not checked (only its inherited layers' runs
 * are). It may use every CPU (the platform pinned this thread to the tracer's,
 * and a thread inherits its creator's CPUs) and runs at the lowest priority (the worker lowers
 * its own): it must not take the CPU from the guest it checks.
 */
function startVerifier(opened: OpenedCheckpoint, runs: PagemapRun[], ownLazy = false): Worker | Error {
  try {
    // The worker opens its own descriptor of the same file (the memory file owns pageFd).
    const path = `/proc/self/fd/${opened.pageFd}`;
    const layerPaths = opened.layers.map((l) => `/proc/self/fd/${l.fd}`);
    // The worker loads no koffi (see verify-worker.ts): the data ranges are found here.
    const dataRanges = ownLazy ? [] : pageFileDataRanges(opened.pageFd, opened.pageFileBytes);
    // stdout/stderr: its own streams (it writes nothing), not piped into this process's, whose
    // creation would load node:net and node:stream here.
    const worker = onEveryCpu(() => new Worker(new URL('./verify-worker.js', import.meta.url), { workerData: { path, runs, pageFileBytes: opened.pageFileBytes, dataRanges, layerPaths, checksums: opened.checksums }, stdout: true, stderr: true }));
    worker.unref();
    return worker;
  } catch (e) {
    return e as Error;
  }
}

/**
 * Start the page check VERIFY_DELAY_MS from now (unless the sandbox ended by then); stop the
 * sandbox when it finds a bad page (or cannot run); settle with its verdict. A kernel destroyed
 * without running to its end (a restore refused after restoreKernel, e.g. `restore --name` of a
 * name taken) ends the check at once, unheard: its page files are closed then, and a worker
 * opening `/proc/self/fd/N` after that would report ENOENT as a corrupt checkpoint.
 */
function watchVerifier(kernel: Kernel, opened: OpenedCheckpoint, start: () => Worker | Error): Promise<string | undefined> {
  return new Promise((resolve) => {
    let done = false;
    let worker: Worker | undefined;
    const finish = (bad: string | undefined): void => {
      if (done) return;
      done = true;
      if (bad !== undefined && !kernel.exitInfo) {
        kernel.log(`snapvisor: ${bad}; stopping the sandbox`);
        kernel.kill();
      }
      resolve(bad);
    };
    const cancel = (): void => {
      clearTimeout(timer);
      destroyed.unsubscribe();
      if (done) return;
      done = true;
      resolve(undefined);
      void worker?.terminate();
    };
    const destroyed = kernel.destroyed$.subscribe(cancel);
    const timer = setTimeout(() => {
      if (done || kernel.exitInfo) return;
      const w = start();
      if (w instanceof Error) {
        finish(`checkpoint ${opened.id}: cannot verify its pages (${w.message})`);
        return;
      }
      worker = w;
      w.on('message', (m: string | null) => finish(m === null ? undefined : `checkpoint ${opened.id} is corrupt: ${m}`));
      w.on('error', (e) => finish(`checkpoint ${opened.id}: page verification failed (${e.message})`));
      w.on('exit', () => finish(`checkpoint ${opened.id}: page verification ended without a result`));
    }, VERIFY_DELAY_MS);
    timer.unref();
    void kernel.exited.then(cancel);
  });
}
