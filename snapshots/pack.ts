/**
 * Compressed page files (store formats 4 to 6) and the restore cache made from them.
 *
 * A checkpoint's own pages are kept at rest in `pages/<id>.pack`: the memory file cut into
 * 1 MiB pieces (PACK_CHUNK_BYTES of memory-file offsets), and of each piece the checkpoint's
 * own non-zero pages, concatenated in offset order and brotli-compressed (Node's zlib) as one
 * chunk. Pages that are copies of host files (the kernel's page cache of private file
 * mappings: libpython's text, libc's, the interpreter's; never written, since every write to
 * them copies first) are not stored at all: the pack names the file, its size and mtime and
 * the ranges, and a restore reads them from the file again, as gVisor and CRIU do for
 * file-backed memory. The pack ends with a self-describing trailer (so an inherited pack
 * still restores after its own checkpoint's records are deleted):
 *
 *   chunks… | CBOR trailer | sha256 of the CBOR (32 bytes) | its length (u32 LE) | "SVPACK01"
 *
 * The trailer is { v: 1, pageFileBytes, index, runs, hostFiles } (v: 2 adds `copies`: pages
 * that are byte for byte pages of another pack of the store, CopyRef, read from there when a
 * piece is filled; docs/snapshot-format.md "Copies"): `index` holds 24 bytes per
 * chunk (u64 LE memory offset of its piece, u64 LE offset in the pack, u32 LE compressed and
 * u32 LE uncompressed length); `runs` are the pack's own pages with their checks (a pagemap
 * with layer 0 only, host-file pages included); `hostFiles` lists
 * [guest path, size, mtimeMs, [memory offset, file offset, bytes]…]. v: 3 (store format 6, a
 * full checkpoint's pack) adds `chunkChecks`, 4 bytes per index entry (u32 LE, the CRC-32 of the
 * chunk's compressed bytes, checked before it is decompressed), and `chunkChecked`, 1 byte per
 * index entry: 1 when its pages' checks in `runs` are that chunk check (their own CRC-32s were
 * never computed: a checkpoint CRC'd 242 MiB of python3 heap for nothing but this), 0 when they
 * are each page's CRC-32; `copies` is optional.
 *
 * Guests map pages, so a restore needs them uncompressed, in `cache/<id>.<boot>` (laid out like
 * the memory file, zero pages as holes), which every restore and clone on the host maps
 * read-only and shares through the host page cache. The checkpoint that writes the pack leaves
 * the pieces costly to fill there already (snapshots/store.ts WarmCache). A restore fills the
 * others lazily (LazyPack): a
 * piece (1 MiB of memory-file offsets) is decompressed and written, each page checked against
 * its CRC-32, when the kernel first reads one of its pages or a guest first touches one (the
 * guest's stub maps only filled pieces; a fault on another fills it). `cache/<id>.<boot>.ready`
 * holds one byte per piece, 1 once that piece is in the cache, shared by every process using
 * the cache (two filling one piece at once write the same bytes). Store operations that read
 * every page (`store check`, export) fill it whole, or make it whole at once (materializePack)
 * when there is none. The cache is a cache: named by the host's boot id (after a reboot it is
 * made again; a process that died while filling a piece left its byte 0), removed with its
 * checkpoint and by `snapvisor gc`.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { type LazyPageLayer, PageSourceError } from '../src/mm/memory-file.js';
import { PAGE_CHECK_BYTES, PAGE_SIZE, type PagemapRun, checkpointProblem, decodeCbor, encodeCbor, pageCheck, readRunChecks } from './format.js';
import { PACK_PIECE_BYTES, packCompressOptions } from './page-crunch.js';

/** Memory-file bytes per pack chunk (1 MiB: 256 pages). */
export const PACK_CHUNK_BYTES = PACK_PIECE_BYTES;
/** Last 8 bytes of every pack. */
const PACK_MAGIC = Buffer.from('SVPACK01');
/** Bytes written between two early fdatasyncs (EarlySync). */
const EARLY_SYNC_BYTES = 1 << 20;

/**
 * Makes a file being written durable as it goes: after every EARLY_SYNC_BYTES written (`wrote`),
 * an fdatasync on libuv's thread pool (one at a time), so that the fdatasync that ends the write
 * (`finish`) has only the tail left to put on disk. A failure of an early one is thrown by
 * `finish` (Linux reports a writeback error to one fdatasync of a file description only).
 */
export class EarlySync {
  private inFlight?: Promise<void>;
  private sinceSync = 0;
  private failure?: Error;
  constructor(private readonly fd: number) {}

  /** `bytes` more were written to the file. */
  wrote(bytes: number): void {
    this.sinceSync += bytes;
    if (this.inFlight || this.failure || this.sinceSync < EARLY_SYNC_BYTES) return;
    this.sinceSync = 0;
    this.inFlight = new Promise((resolve) => fs.fdatasync(this.fd, (e) => {
      if (e) this.failure ??= e;
      this.inFlight = undefined;
      resolve();
    }));
  }

  /** Wait for the fdatasync in flight, then fdatasync the file. Throws the first failure. */
  async finish(): Promise<void> {
    await this.inFlight;
    if (this.failure) throw this.failure;
    fs.fdatasyncSync(this.fd);
  }

  /** finish(), its last fdatasync on libuv's thread pool (the caller goes on meanwhile). */
  async finishAsync(): Promise<void> {
    await this.inFlight;
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }

  /** Wait for the fdatasync in flight, if any (before the file is closed after a failure). */
  async settle(): Promise<void> {
    await this.inFlight;
  }
}

/** Compressed bytes PackWriter gathers before it writes them. */
const PENDING_WRITE_BYTES = 256 << 10;
/** Bytes per chunk in the trailer's index. */
const INDEX_ENTRY_BYTES = 24;
/**
 * Chunks decompressed at once while a pack is materialized: libuv's thread pool (4 threads)
 * does the work, so both CPUs of a small host are used while the main thread reads the next.
 */
const IN_FLIGHT = 3;
let brotliDecompressAsync: ((z: Uint8Array, o: zlib.BrotliOptions) => Promise<Buffer>) | undefined;
/** zlib.brotliDecompress as a promise, made on first use (zlib is loaded only when a pack is read or written). */
const brotliDecompress = (z: Uint8Array, o: zlib.BrotliOptions): Promise<Buffer> => (brotliDecompressAsync ??= promisify(zlib.brotliDecompress))(z, o);
/**
 * Options of every chunk's decompression: bounded (a damaged chunk must not inflate past the
 * piece it stands for), and output in one buffer of the piece's size: with zlib's default 16 KiB
 * output chunks a 1 MiB piece cost 3.8 ms of CPU here, with one 1 MiB chunk 1.4–1.7 ms (20 chunks
 * of the bench's python3, load 9).
 */
const DECOMPRESS_OPTIONS: zlib.BrotliOptions = { maxOutputLength: PACK_CHUNK_BYTES, chunkSize: PACK_CHUNK_BYTES };

/**
 * Pages of a checkpoint that are bytes of a host file: [canonical guest path, the file's size
 * (bytes) and mtime (ms, as the kernel's page cache keys it), and flat triples of (memory-file
 * offset, file offset, bytes)]. Bytes past the end of a triple's last full page are zero.
 */
export type HostFileRef = [path: string, size: number, mtimeMs: number, triples: number[]];

/**
 * Pages of a checkpoint that are byte for byte pages of an earlier checkpoint's pack of the same
 * store, at other offsets (pages a copy-on-write moved while that checkpoint was written): [that
 * checkpoint's id, flat triples of (memory-file offset, its offset in that pack's image, bytes)].
 * Only pages that pack holds compressed itself are named (never its own copies or host-file pages).
 */
export type CopyRef = [layerId: string, triples: number[]];

/** What a pack's trailer holds (see the module comment). */
export interface PackTrailer {
  /** 1, or 2 when it has `copies`, or 3 with chunk checks (`copies` optional). */
  v: 1 | 2 | 3;
  /** Length of the memory-file image the pack restores (a multiple of PAGE_SIZE). */
  pageFileBytes: number;
  /** INDEX_ENTRY_BYTES per chunk, in increasing memory offset. */
  index: Uint8Array;
  /** The pack's own pages (compressed ones and host-file ones) with their CRC-32s. */
  runs: PagemapRun[];
  hostFiles: HostFileRef[];
  /** Version 2: pages named in other packs of the store (their CRC-32s are in `runs` too). */
  copies?: CopyRef[];
  /** Version 3: per index entry, the CRC-32 of the chunk's compressed bytes (u32 LE). */
  chunkChecks?: Uint8Array;
  /** Version 3: per index entry, 1 when its pages' checks (in `runs`) are its chunk check, not their CRC-32s. */
  chunkChecked?: Uint8Array;
}

/** Opens a host file by canonical guest path, read-only, beneath the sandbox's root (Vfs.openHostFile); throws. */
export type HostFileOpener = (guestPath: string) => { fd: number; size: number; mtimeMs: number };

/**
 * Writes a pack: `add` compresses a chunk's pages and appends them; `finish` appends the
 * trailer and fdatasyncs. Chunks are compressed synchronously, on the calling thread, one at a
 * time: on the benchmark's heap (216 MiB of pages in 231 chunks, docs/benchmarks.md), brotli on
 * libuv's thread pool (zlib.brotliCompress, 3 chunks in flight, as before) took 430–530 ms of
 * CPU where brotliCompressSync on the main thread took 100–120 ms for the same output (each call
 * makes a new encoder; where the pool threads' extra time goes was not pinned down). A chunk
 * (≤ 1 MiB of pages) takes about half a millisecond.
 */
export class PackWriter {
  private pos = 0;
  /** Per chunk: memory offset, offset in the pack, compressed and raw length, CRC-32 of the compressed bytes, chunk-checked (1) or not. */
  private readonly entries: Array<[number, number, number, number, number, number]> = [];
  /** Chunks compressed and not written yet (from `written` on), and their bytes. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;
  private readonly sync: EarlySync;
  /** Bytes of pages handed to `add` (uncompressed). */
  rawBytes = 0;
  /** The trailer as written (its CBOR and the 44 bytes after it), once it is. */
  trailerBytes?: { cbor: Uint8Array; tail: Uint8Array };
  /** `chunkChecks`: write a version-3 trailer (store format 6), with a CRC-32 per chunk. */
  constructor(private readonly fd: number, private readonly chunkChecks = false) {
    this.sync = new EarlySync(fd);
  }

  /**
   * Compress `pages` (whole pages of the piece at memory offset `memOffset`, in offset order)
   * and append them. The caller may reuse `pages` once it returns. Chunks are written a few
   * hundred KiB at a time (one pwritev): a write per chunk (~17 KiB each for the bench's heap)
   * cost 20–40 ms of the writer's thread per 231 chunks here.
   */
  add(memOffset: number, pages: Uint8Array): void {
    this.addCompressed(memOffset, zlib.brotliCompressSync(pages, packCompressOptions()), pages.length);
  }

  /**
   * add() of a chunk compressed already (with packCompressOptions(): crunchPages' `packed`) from
   * `raw` bytes of pages. `check`: the CRC-32 of `z`, given when the pages' checks in the runs are
   * that value (chunk checked, crunchPages in a pack's piece); else the pages' checks are their
   * own CRC-32s (a chunk-checked writer still records the chunk's CRC-32, computed here).
   */
  addCompressed(memOffset: number, z: Uint8Array, raw: number, check?: number): void {
    this.rawBytes += raw;
    const zcheck = check ?? (this.chunkChecks ? pageCheck(z, 0, z.length) : 0);
    this.entries.push([memOffset, this.pos, z.length, raw, zcheck, check === undefined ? 0 : 1]);
    this.pos += z.length;
    this.pending.push(Buffer.isBuffer(z) ? z : Buffer.from(z.buffer, z.byteOffset, z.byteLength));
    this.pendingBytes += z.length;
    if (this.pendingBytes >= PENDING_WRITE_BYTES || this.pending.length >= 512) this.flush();
  }

  /** Wait for an early fdatasync in flight (before the pack's fd is closed after a failure). */
  settle(): Promise<void> {
    return this.sync.settle();
  }

  /** Write the chunks compressed so far. */
  private flush(): void {
    let bufs = this.pending;
    while (bufs.length) {
      let n = fs.writevSync(this.fd, bufs, this.written);
      this.written += n;
      this.sync.wrote(n);
      // A short write: go on from the first byte not written.
      while (bufs.length && n >= bufs[0].length) n -= bufs.shift()!.length;
      if (n && bufs.length) bufs[0] = bufs[0].subarray(n);
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /**
   * Write the trailer, fdatasync (chunks were synced early as they were written: EarlySync).
   * Returns the pack's size in bytes. Throws what the writes and syncs throw.
   */
  async finish(trailer: Omit<PackTrailer, 'v' | 'index'>): Promise<number> {
    const bytes = this.finishWrites(trailer);
    await this.sync.finish();
    return bytes;
  }

  /**
   * Write the trailer; the pack's size in bytes and its last fdatasync, under way on libuv's
   * thread pool (`synced` rejects with what it or an early one threw; the fd stays open until it
   * settles), so that the caller writes the checkpoint's other files meanwhile. Throws what the
   * writes throw.
   */
  finishDeferred(trailer: Omit<PackTrailer, 'v' | 'index'>): { bytes: number; synced: Promise<void> } {
    const bytes = this.finishWrites(trailer);
    return { bytes, synced: this.sync.finishAsync() };
  }

  /** Write the chunks not written yet and the trailer; returns the pack's size in bytes. */
  private finishWrites(trailer: Omit<PackTrailer, 'v' | 'index'>): number {
    this.flush();
    this.entries.sort((a, b) => a[0] - b[0]);
    const index = Buffer.alloc(this.entries.length * INDEX_ENTRY_BYTES);
    const chunkChecks = Buffer.alloc(this.entries.length * PAGE_CHECK_BYTES), chunkChecked = new Uint8Array(this.entries.length);
    this.entries.forEach(([mem, at, len, raw, zcheck, checked], i) => {
      const o = i * INDEX_ENTRY_BYTES;
      index.writeBigUInt64LE(BigInt(mem), o);
      index.writeBigUInt64LE(BigInt(at), o + 8);
      index.writeUInt32LE(len, o + 16);
      index.writeUInt32LE(raw, o + 20);
      chunkChecks.writeUInt32LE(zcheck >>> 0, i * PAGE_CHECK_BYTES);
      chunkChecked[i] = checked;
    });
    const copies = trailer.copies?.length ? { copies: trailer.copies } : {};
    const v = this.chunkChecks ? 3 : trailer.copies?.length ? 2 : 1;
    const checks = this.chunkChecks ? { chunkChecks, chunkChecked } : {};
    const cbor = encodeCbor({ v, pageFileBytes: trailer.pageFileBytes, index, runs: trailer.runs, hostFiles: trailer.hostFiles, ...copies, ...checks });
    const tail = Buffer.alloc(32 + 4 + PACK_MAGIC.length);
    createHash('sha256').update(cbor).digest().copy(tail, 0);
    tail.writeUInt32LE(cbor.length, 32);
    PACK_MAGIC.copy(tail, 36);
    writeAll(this.fd, cbor, this.pos);
    writeAll(this.fd, tail, this.pos + cbor.length);
    this.trailerBytes = { cbor, tail };
    this.pos += cbor.length + tail.length;
    return this.pos;
  }
}

/**
 * Read and check a pack's trailer. Returns it, or one line saying what is wrong. `knownGood`: the
 * path of a copy of a trailer already checked (its CBOR and the 44 bytes after it, as the pack
 * ends: `cache/<id>.<boot>.trailer`, written by the checkpoint or the first restore on the host,
 * writeKnownTrailer): a trailer equal to it byte for byte is not hashed again (the sha256 would
 * load node:crypto, ~6 ms of a restore's CPU here); one that differs, or without a copy, is
 * checked in full, and its copy then written.
 */
export function readPackTrailer(fd: number, knownGood?: string): PackTrailer | string {
  const size = fs.fstatSync(fd).size;
  const tailLen = 32 + 4 + PACK_MAGIC.length;
  if (size < tailLen) return 'its page pack is truncated (no trailer)';
  const tail = Buffer.alloc(tailLen);
  readAll(fd, tail, size - tailLen);
  if (!tail.subarray(36).equals(PACK_MAGIC)) return 'its page pack is truncated or damaged (no SVPACK01 trailer)';
  const len = tail.readUInt32LE(32);
  if (len > size - tailLen) return 'its page pack trailer is damaged (length)';
  const cbor = Buffer.alloc(len);
  readAll(fd, cbor, size - tailLen - len);
  let known = false;
  if (knownGood) {
    try {
      const copy = fs.readFileSync(knownGood);
      known = copy.length === len + tailLen && copy.subarray(0, len).equals(cbor) && copy.subarray(len).equals(tail);
    } catch { /* none yet */ }
  }
  if (!known) {
    if (!createHash('sha256').update(cbor).digest().equals(tail.subarray(0, 32))) return 'its page pack trailer failed its checksum';
    if (knownGood) writeKnownTrailer(knownGood, cbor, tail);
  }
  let t: PackTrailer;
  try { t = decodeCbor(cbor) as PackTrailer; } catch { return 'its page pack trailer cannot be decoded'; }
  if (!t || (t.v !== 1 && t.v !== 2 && t.v !== 3) || !Number.isSafeInteger(t.pageFileBytes) || !(t.index instanceof Uint8Array) || t.index.length % INDEX_ENTRY_BYTES !== 0
    || !Array.isArray(t.runs) || !Array.isArray(t.hostFiles) || (t.v === 1 && t.copies !== undefined) || (t.v === 2 && !Array.isArray(t.copies))
    || (t.v === 3 && t.copies !== undefined && !Array.isArray(t.copies))) return 'its page pack trailer is malformed';
  const entries = t.index.length / INDEX_ENTRY_BYTES;
  if (t.v === 3 ? !(t.chunkChecks instanceof Uint8Array && t.chunkChecks.length === entries * PAGE_CHECK_BYTES && t.chunkChecked instanceof Uint8Array && t.chunkChecked.length === entries)
    : t.chunkChecks !== undefined || t.chunkChecked !== undefined) return 'its page pack trailer is malformed (chunk checks)';
  const dataEnd = size - tailLen - len;
  const view = Buffer.from(t.index.buffer, t.index.byteOffset, t.index.byteLength);
  for (let o = 0; o < view.length; o += INDEX_ENTRY_BYTES) {
    const at = Number(view.readBigUInt64LE(o + 8)), zlen = view.readUInt32LE(o + 16);
    if (at + zlen > dataEnd) return 'its page pack index points past its data';
  }
  return t;
}


/**
 * Write `cbor` and `tail` (a pack's trailer, checked or just written) as the known-good copy at
 * `path` (readPackTrailer): to a temporary file renamed into place. Best effort: a copy that
 * cannot be written only means the next reader hashes the trailer.
 */
export function writeKnownTrailer(path: string, cbor: Uint8Array, tail: Uint8Array): void {
  const tmp = `${path}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`;
  try {
    fs.writeFileSync(tmp, Buffer.concat([cbor, tail]), { mode: 0o600 });
    fs.renameSync(tmp, path);
  } catch {
    try { fs.rmSync(tmp, { force: true }); } catch { /* its directory is not one (ENOTDIR): nothing was made */ }
  }
}

/** Per page of the image: 0 not the pack's, 1 compressed in the pack, 2 read from a host file, 3 a copy of another pack's page; and each page's CRC-32. */
function pageKinds(t: PackTrailer): { kind: Uint8Array; checks: Uint32Array } | string {
  const pages = t.pageFileBytes / PAGE_SIZE;
  const kind = new Uint8Array(pages), checks = new Uint32Array(pages);
  for (const [off, c] of t.runs) {
    const first = off / PAGE_SIZE, n = c.length / PAGE_CHECK_BYTES;
    if (!Number.isSafeInteger(first) || first + n > pages) return 'its page pack lists a page past the memory size';
    kind.fill(1, first, first + n);
    readRunChecks(checks, first, c, n);
  }
  for (const [, , , triples] of t.hostFiles) {
    for (let i = 0; i + 2 < triples.length; i += 3) {
      const first = triples[i] / PAGE_SIZE, n = Math.ceil(triples[i + 2] / PAGE_SIZE);
      for (let p = first; p < first + n; p++) {
        if (kind[p] !== 1) return 'its page pack names a host-file page it has no checksum for';
        kind[p] = 2;
      }
    }
  }
  for (const ref of t.copies ?? []) {
    if (!Array.isArray(ref) || typeof ref[0] !== 'string' || !/^[0-9a-f]{16}$/.test(ref[0]) || !Array.isArray(ref[1]) || ref[1].length % 3) return 'its page pack trailer is malformed (copies)';
    const triples = ref[1];
    for (let i = 0; i + 2 < triples.length; i += 3) {
      if (![0, 1, 2].every((k) => Number.isSafeInteger(triples[i + k]) && triples[i + k] >= 0 && triples[i + k] % PAGE_SIZE === 0)) return 'its page pack trailer is malformed (copies)';
      const first = triples[i] / PAGE_SIZE, n = triples[i + 2] / PAGE_SIZE;
      for (let p = first; p < first + n; p++) {
        if (kind[p] !== 1) return 'its page pack names a copied page it has no checksum for';
        kind[p] = 3;
      }
    }
  }
  return { kind, checks };
}

/**
 * The pages pack `fd` holds itself, per page of its memory image: `kind` 0 none, 1 compressed,
 * 2 named in a host file, and each one's CRC-32 in `checks`; or one line saying what is wrong
 * with the pack. What a format-5 pagemap run that elides its CRC-32s takes them from.
 */
export function packPageChecks(fd: number): { kind: Uint8Array; checks: Uint32Array } | string {
  const t = readPackTrailer(fd);
  return typeof t === 'string' ? t : pageKinds(t);
}

/**
 * Why the compressed chunk `z` of index entry offset `o` (bytes into `t.index`) of a version-3
 * pack, the piece at memory offset `start`, is not as written: its CRC-32 differs from the one
 * its trailer records. Undefined when it matches, or for an older pack (no chunk checks).
 */
function chunkCheckProblem(t: PackTrailer, o: number, z: Uint8Array, start: number): string | undefined {
  if (!t.chunkChecks) return undefined;
  const at = (o / INDEX_ENTRY_BYTES) * PAGE_CHECK_BYTES, c = t.chunkChecks;
  const want = (c[at] | (c[at + 1] << 8) | (c[at + 2] << 16) | (c[at + 3] << 24)) >>> 0;
  return pageCheck(z, 0, z.length) === want ? undefined : `its page pack chunk at 0x${start.toString(16)} failed its checksum`;
}

/** Whether the pages of the chunk of index entry offset `o` are checked by its chunk check alone (version 3), not page by page. */
const isChunkChecked = (t: PackTrailer, o: number): boolean => t.chunkChecked?.[o / INDEX_ENTRY_BYTES] === 1;

/**
 * Per page of a pack's memory image, 1 where the pack holds the page compressed in a chunk
 * whose check is the chunk's (version 3): the page's check in a pagemap is that chunk check, not
 * its CRC-32, so a page file or cache is not checked page by page there (the chunk was checked as
 * it was decompressed). Undefined when there is none (older packs; pages of host files).
 */
export function chunkCheckedPages(t: PackTrailer): Uint8Array | undefined {
  if (!t.chunkChecked?.includes(1)) return undefined;
  const k = pageKinds(t);
  if (typeof k === 'string') return undefined; // refused wherever its pages are read
  const pages = new Uint8Array(k.kind.length);
  const index = Buffer.from(t.index.buffer, t.index.byteOffset, t.index.byteLength);
  for (let o = 0; o < index.length; o += INDEX_ENTRY_BYTES) {
    if (!isChunkChecked(t, o)) continue;
    const first = Number(index.readBigUInt64LE(o)) / PAGE_SIZE;
    const end = Math.min(pages.length, first + PACK_CHUNK_BYTES / PAGE_SIZE);
    for (let p = first; p < end; p++) if (k.kind[p] === 1) pages[p] = 1;
  }
  return pages;
}

/**
 * Single pages of a pack, by memory offset, for a checkpoint that compares its pages with them
 * or a restore that copies them (`copies` of another pack's trailer): a chunk is decompressed
 * on first need and the last few are kept. Only pages the pack holds compressed are given.
 */
export class PackPages {
  private readonly pieces = new Map<number, Buffer | string>();
  private constructor(readonly fd: number, readonly trailer: PackTrailer, readonly kind: Uint8Array, readonly checks: Uint32Array, private readonly entry: Map<number, number>) {}

  /** The pages of the pack open as `fd` (the caller keeps owning it), or one line saying what is wrong. */
  static open(fd: number): PackPages | string {
    const t = readPackTrailer(fd);
    if (typeof t === 'string') return t;
    const k = pageKinds(t);
    if (typeof k === 'string') return k;
    const index = Buffer.from(t.index.buffer, t.index.byteOffset, t.index.byteLength);
    const entry = new Map<number, number>();
    for (let o = 0; o < index.length; o += INDEX_ENTRY_BYTES) entry.set(Number(index.readBigUInt64LE(o)) / PACK_CHUNK_BYTES, o);
    return new PackPages(fd, t, k.kind, k.checks, entry);
  }

  /** The 4096 bytes of the page at memory offset `off` (a view, valid until the next call), undefined if the pack does not hold it compressed; a string if its chunk is damaged. */
  page(off: number): Buffer | string | undefined {
    const p = off / PAGE_SIZE;
    if (!Number.isSafeInteger(p) || this.kind[p] !== 1) return undefined;
    const piece = Math.floor(off / PACK_CHUNK_BYTES);
    let raw = this.pieces.get(piece);
    if (raw === undefined) {
      const o = this.entry.get(piece);
      const index = Buffer.from(this.trailer.index.buffer, this.trailer.index.byteOffset, this.trailer.index.byteLength);
      if (o === undefined) raw = `its page pack has no chunk at 0x${(piece * PACK_CHUNK_BYTES).toString(16)}`;
      else {
        const z = Buffer.alloc(index.readUInt32LE(o + 16));
        try {
          readAll(this.fd, z, Number(index.readBigUInt64LE(o + 8)));
          raw = chunkCheckProblem(this.trailer, o, z, piece * PACK_CHUNK_BYTES) ?? zlib.brotliDecompressSync(z, DECOMPRESS_OPTIONS);
        } catch {
          raw = `its page pack chunk at 0x${(piece * PACK_CHUNK_BYTES).toString(16)} is damaged (cannot be decompressed)`;
        }
      }
      if (this.pieces.size >= PACK_PAGES_PIECES) this.pieces.delete(this.pieces.keys().next().value!);
      this.pieces.set(piece, raw);
    }
    return this.pageIn(raw, off);
  }

  /** Page `off` out of its piece's decompressed chunk `raw` (or the line saying what is wrong with it). */
  private pageIn(raw: Buffer | string, off: number): Buffer | string {
    if (typeof raw === 'string') return raw;
    const p = off / PAGE_SIZE, piece = Math.floor(off / PACK_CHUNK_BYTES);
    let at = 0;
    for (let q = piece * (PACK_CHUNK_BYTES / PAGE_SIZE); q < p; q++) if (this.kind[q] === 1) at += PAGE_SIZE;
    return at + PAGE_SIZE <= raw.length ? raw.subarray(at, at + PAGE_SIZE) : `its page pack chunk at 0x${(piece * PACK_CHUNK_BYTES).toString(16)} holds too few pages`;
  }
}


/** Decompressed chunks a PackPages keeps (1 MiB each at most): the pages a copy-on-write moved come from a few dozen. */
const PACK_PAGES_PIECES = 24;

/**
 * Open pack `id` of the store that holds the pack open as `packFd` (its sibling in the same
 * directory, found through /proc/self/fd: a pack names the packs it copies pages from by
 * checkpoint id only). Returns the PackPages and its fd (the caller closes it), or one line.
 */
function openSiblingPack(packFd: number, id: string): PackPages | string {
  let fd: number;
  try {
    fd = fs.openSync(`${path.dirname(fs.readlinkSync(`/proc/self/fd/${packFd}`))}/${id}.pack`, 'r');
  } catch (e) {
    return `the page pack of ${id}, which it copies pages from, cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`;
  }
  const pages = PackPages.open(fd);
  if (typeof pages === 'string') { fs.closeSync(fd); return `the page pack of ${id}, which it copies pages from: ${pages}`; }
  return pages;
}

/** What materializing a pack did. */
export interface Materialized {
  /** Pages written (decompressed and read from host files). */
  pages: number;
  /** Of which read from host files. */
  filePages: number;
  ms: number;
}

/**
 * Write the image a pack stands for into `outFd` (truncated to its length first: zero pages
 * stay holes), checking every page against its CRC-32 as it goes. Host-file pages are read
 * through `open` and their file must still have the size and mtime recorded. Returns what it
 * did, or one line naming the first problem (a damaged chunk, a page failing its check, a
 * host file missing or changed). Throws CacheWriteError if `outFd` cannot be written.
 */
/**
 * Why a host file whose pages a pack names is not the one the checkpoint saw: its size and
 * modification time now and then (ms since the epoch; printed to the ns when a difference
 * below a millisecond would print the same ISO times).
 */
function hostFileChanged(guestPath: string, now: { size: number; mtimeMs: number }, size: number, mtimeMs: number): string {
  let a = new Date(now.mtimeMs).toISOString(), b = new Date(mtimeMs).toISOString();
  if (a === b) { a = `${now.mtimeMs} ms`; b = `${mtimeMs} ms`; }
  return `the host file ${guestPath}, which its memory maps, changed since the checkpoint (size ${now.size}, was ${size}; mtime ${a}, was ${b})`;
}

export async function materializePack(packFd: number, t: PackTrailer, open: HostFileOpener, outFd: number): Promise<Materialized | string> {
  const t0 = performance.now();
  const kinds = pageKinds(t);
  if (typeof kinds === 'string') return kinds;
  const { kind, checks } = kinds;
  try { fs.ftruncateSync(outFd, t.pageFileBytes); } catch (e) { throw new CacheWriteError((e as NodeJS.ErrnoException).code ?? (e as Error).message); }
  let pages = 0, filePages = 0;
  const checkPage = (buf: Buffer, at: number, off: number): string | undefined =>
    pageCheck(buf, at) === checks[off / PAGE_SIZE] ? undefined : `page at offset 0x${off.toString(16)} failed its checksum`;

  // Host files: read again, as the kernel's page cache read them.
  for (const [guestPath, size, mtimeMs, triples] of t.hostFiles) {
    let file: { fd: number; size: number; mtimeMs: number };
    try { file = open(guestPath); } catch (e) { return `the host file ${guestPath}, which its memory maps, cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`; }
    try {
      if (file.size !== size || file.mtimeMs !== mtimeMs) return hostFileChanged(guestPath, file, size, mtimeMs);
      for (let i = 0; i + 2 < triples.length; i += 3) {
        const [memOff, fileOff, bytes] = [triples[i], triples[i + 1], triples[i + 2]];
        const buf = readHostPages(file.fd, fileOff, bytes);
        for (let p = 0; p < buf.length; p += PAGE_SIZE) {
          const bad = checkPage(buf, p, memOff + p);
          if (bad) return `the host file ${guestPath}, which its memory maps, differs from the checkpoint's copy (${bad})`;
        }
        writeOut(outFd, buf, memOff);
        pages += buf.length / PAGE_SIZE;
        filePages += buf.length / PAGE_SIZE;
      }
    } finally {
      fs.closeSync(file.fd);
    }
  }

  // Copies of other packs' pages.
  let copyPages = 0;
  for (const [id, triples] of t.copies ?? []) {
    const src = openSiblingPack(packFd, id);
    if (typeof src === 'string') return src;
    try {
      for (let i = 0; i + 2 < triples.length; i += 3) {
        for (let d = 0; d < triples[i + 2]; d += PAGE_SIZE) {
          const page = src.page(triples[i + 1] + d);
          if (typeof page === 'string') return `the page pack of ${id}, which it copies pages from: ${page}`;
          if (!page) return `its page pack copies a page the page pack of ${id} does not hold (0x${(triples[i + 1] + d).toString(16)})`;
          const bad = checkPage(page, 0, triples[i] + d);
          if (bad) return bad;
          writeOut(outFd, page, triples[i] + d);
          pages++;
          copyPages++;
        }
      }
    } finally {
      fs.closeSync(src.fd);
    }
  }

  // Compressed chunks: decompressed on the thread pool, a few at once, scattered to their pages.
  const index = Buffer.from(t.index.buffer, t.index.byteOffset, t.index.byteLength);
  const inFlight = new Set<Promise<void>>();
  let problem: string | undefined;
  let writeFailure: unknown;
  const scatter = (memStart: number, raw: Buffer, chunkChecked: boolean): string | undefined => {
    let r = 0;
    const end = Math.min(memStart + PACK_CHUNK_BYTES, t.pageFileBytes);
    let stretch = -1; // first page of a run of consecutive pack pages not yet written
    let stretchAt = 0;
    const flush = (upTo: number): void => {
      if (stretch < 0) return;
      writeOut(outFd, raw.subarray(stretchAt, stretchAt + (upTo - stretch)), stretch);
      stretch = -1;
    };
    for (let off = memStart; off < end; off += PAGE_SIZE) {
      if (kind[off / PAGE_SIZE] !== 1) { flush(off); continue; }
      if (r + PAGE_SIZE > raw.length) return `its page pack chunk at 0x${memStart.toString(16)} holds too few pages`;
      // A chunk-checked chunk's pages were checked as one, before it was decompressed.
      const bad = chunkChecked ? undefined : checkPage(raw, r, off);
      if (bad) return bad;
      if (stretch < 0) { stretch = off; stretchAt = r; }
      r += PAGE_SIZE;
      pages++;
    }
    flush(end);
    return r === raw.length ? undefined : `its page pack chunk at 0x${memStart.toString(16)} holds too many pages`;
  };
  const seen = new Set<number>();
  try {
    for (let o = 0; o < index.length && !problem && !writeFailure; o += INDEX_ENTRY_BYTES) {
      const memStart = Number(index.readBigUInt64LE(o)), at = Number(index.readBigUInt64LE(o + 8));
      const zlen = index.readUInt32LE(o + 16), rawLen = index.readUInt32LE(o + 20);
      if (memStart % PACK_CHUNK_BYTES !== 0 || memStart >= t.pageFileBytes || seen.has(memStart) || rawLen > PACK_CHUNK_BYTES || rawLen % PAGE_SIZE) { problem = 'its page pack index is malformed'; break; }
      seen.add(memStart);
      const z = Buffer.alloc(zlen);
      readAll(packFd, z, at);
      const damaged = chunkCheckProblem(t, o, z, memStart);
      if (damaged) { problem = damaged; break; }
      const chunkChecked = isChunkChecked(t, o);
      while (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      // Bounded: a damaged chunk must not inflate past the piece it stands for.
      const job = brotliDecompress(z, DECOMPRESS_OPTIONS).then((raw) => {
        if (problem || writeFailure) return;
        try {
          problem = raw.length !== rawLen ? `its page pack chunk at 0x${memStart.toString(16)} is damaged` : scatter(memStart, raw, chunkChecked);
        } catch (e) {
          writeFailure = e;
        }
      }, () => { problem ??= `its page pack chunk at 0x${memStart.toString(16)} is damaged (cannot be decompressed)`; })
        .finally(() => { inFlight.delete(job); });
      inFlight.add(job);
    }
  } catch (e) {
    writeFailure ??= e; // a read of the pack failed: the chunks in flight write nothing more
    throw e;
  } finally {
    // Every chunk in flight settled (a problem found meanwhile stops their writes) before this
    // returns or throws: the caller closes `outFd` next, and a write after that would land in
    // whatever file took its number.
    await Promise.allSettled(inFlight);
  }
  if (writeFailure) throw writeFailure;
  if (problem) return problem;
  // Every compressed page must have come from some chunk.
  let want = 0;
  for (let p = 0; p < kind.length; p++) if (kind[p] === 1) want++;
  if (pages - filePages - copyPages !== want) return `its page pack holds ${pages - filePages - copyPages} of its ${want} pages`;
  return { pages, filePages, ms: performance.now() - t0 };
}

/**
 * The restore cache of a pack, filled piece by piece on first use (MemoryFile's LazyPageLayer;
 * see the module comment). Made by `open`, which checks that every host file the pack names is
 * still the one recorded (else it throws a line naming it, and the restore is refused) and
 * keeps them open for the pieces that need them. `fill` throws PageSourceError, one line
 * naming the checkpoint `owner` and what is wrong, for a damaged chunk, a page failing its
 * CRC-32 or a cache it cannot write.
 */
export class LazyPack implements LazyPageLayer {
  readonly pieceBytes = PACK_CHUNK_BYTES;
  /** Per piece: 1 once known to be in the cache. */
  private readonly ready: Uint8Array;
  /** Per piece with compressed pages: the byte offset of its index entry. */
  private readonly chunkEntry = new Map<number, number>();
  /** Per piece: its host-file pages, as [file fd, memory offset, file offset, bytes] (bytes ≤ the piece's end). */
  private readonly fileParts = new Map<number, Array<[number, number, number, number]>>();
  /** Per piece: its copies of other packs' pages, as [index in trailer.copies, memory offset, offset in that pack, bytes]. */
  private readonly copyParts = new Map<number, Array<[number, number, number, number]>>();
  /** The packs it copies pages from, opened on first need (by index in trailer.copies). */
  private readonly sources = new Map<number, PackPages>();
  private readonly index: Buffer;
  private closed = false;

  private constructor(
    private readonly owner: string,
    private readonly packFd: number,
    private readonly t: PackTrailer,
    private readonly kind: Uint8Array,
    private readonly checks: Uint32Array,
    private readonly cacheFd: number,
    private readonly readyFd: number,
    private readonly fileFds: number[],
  ) {
    this.ready = new Uint8Array(Math.ceil(t.pageFileBytes / PACK_CHUNK_BYTES));
    this.index = Buffer.from(t.index.buffer, t.index.byteOffset, t.index.byteLength);
    for (let o = 0; o < this.index.length; o += INDEX_ENTRY_BYTES) {
      const memStart = Number(this.index.readBigUInt64LE(o));
      this.chunkEntry.set(memStart / PACK_CHUNK_BYTES, o);
    }
  }

  /**
   * A lazily filled cache of pack `packFd` (its checked `trailer`): `cacheFd` (read-write, the
   * cache file, pageFileBytes long) and `readyFd` (read-write, one byte per piece). Host files
   * are opened through `open`. The fds passed are owned by the LazyPack from now on (closed by
   * `close`). Returns it, or one line saying what is wrong (the fds are then closed).
   */
  static open(owner: string, packFd: number, trailer: PackTrailer, open: HostFileOpener, cacheFd: number, readyFd: number): LazyPack | string {
    const fileFds: number[] = [];
    const fail = (why: string): string => {
      for (const fd of [...fileFds, packFd, cacheFd, readyFd]) { try { fs.closeSync(fd); } catch { /* closed */ } }
      return why;
    };
    const kinds = pageKinds(trailer);
    if (typeof kinds === 'string') return fail(kinds);
    const index = Buffer.from(trailer.index.buffer, trailer.index.byteOffset, trailer.index.byteLength);
    const seen = new Set<number>();
    for (let o = 0; o < index.length; o += INDEX_ENTRY_BYTES) {
      const memStart = Number(index.readBigUInt64LE(o)), rawLen = index.readUInt32LE(o + 20);
      if (memStart % PACK_CHUNK_BYTES !== 0 || memStart >= trailer.pageFileBytes || seen.has(memStart) || rawLen > PACK_CHUNK_BYTES || rawLen % PAGE_SIZE) return fail('its page pack index is malformed');
      seen.add(memStart);
    }
    const parts: Array<[number, number, number, number, number]> = []; // [file #, memOff, fileOff, bytes, piece]
    for (const [guestPath, size, mtimeMs, triples] of trailer.hostFiles) {
      let file: { fd: number; size: number; mtimeMs: number };
      try { file = open(guestPath); } catch (e) { return fail(`the host file ${guestPath}, which its memory maps, cannot be opened (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
      fileFds.push(file.fd);
      if (file.size !== size || file.mtimeMs !== mtimeMs) return fail(hostFileChanged(guestPath, file, size, mtimeMs));
      for (let i = 0; i + 2 < triples.length; i += 3) {
        // Split at piece boundaries: each piece fills its own part.
        for (let done = 0; done < triples[i + 2];) {
          const memOff = triples[i] + done;
          const piece = Math.floor(memOff / PACK_CHUNK_BYTES);
          const n = Math.min(triples[i + 2] - done, (piece + 1) * PACK_CHUNK_BYTES - memOff);
          parts.push([fileFds.length - 1, memOff, triples[i + 1] + done, n, piece]);
          done += n;
        }
      }
    }
    const lazy = new LazyPack(owner, packFd, trailer, kinds.kind, kinds.checks, cacheFd, readyFd, fileFds);
    for (const [f, memOff, fileOff, bytes, piece] of parts) {
      let list = lazy.fileParts.get(piece);
      if (!list) lazy.fileParts.set(piece, list = []);
      list.push([fileFds[f], memOff, fileOff, bytes]);
    }
    (trailer.copies ?? []).forEach(([, triples], c) => {
      for (let i = 0; i + 2 < triples.length; i += 3) {
        for (let d = 0; d < triples[i + 2]; d += PAGE_SIZE) {
          const piece = Math.floor((triples[i] + d) / PACK_CHUNK_BYTES);
          let list = lazy.copyParts.get(piece);
          if (!list) lazy.copyParts.set(piece, list = []);
          list.push([c, triples[i] + d, triples[i + 1] + d, PAGE_SIZE]);
        }
      }
    });
    // A piece with no page of the pack is all holes in the cache already: ready as it is (a sparse
    // file of gigabytes maps at once, as from a flat page file).
    for (let i = 0; i < lazy.ready.length; i++) if (!lazy.chunkEntry.has(i) && !lazy.fileParts.has(i) && !lazy.copyParts.has(i)) lazy.ready[i] = 1;
    // What earlier restores filled, read once (not a pread per piece asked about: a restore's
    // mappings ask about every piece); a piece another process fills later is seen by `fill`.
    const onDisk = new Uint8Array(lazy.ready.length);
    try { fs.readSync(readyFd, onDisk, 0, onDisk.length, 0); } catch { /* none known: each is checked when filled */ }
    for (let i = 0; i < onDisk.length; i++) if (onDisk[i] === 1) lazy.ready[i] = 1;
    return lazy;
  }

  /** Whether piece `i` is in the cache as far as this process knows (filled here, or by another process before `open`). */
  isReady(i: number): boolean {
    return this.ready[i] === 1;
  }

  fill(i: number): void {
    if (this.closed) throw new PageSourceError(`checkpoint ${this.owner}: its restore cache was closed`);
    // Another process may have filled it since `open`: then its bytes are there already.
    if (fs.readSync(this.readyFd, ONE_BYTE, 0, 1, i) === 1 && ONE_BYTE[0] === 1) { this.ready[i] = 1; return; }
    const corrupt = (why: string): PageSourceError => new PageSourceError(checkpointProblem(this.owner, why));
    const start = i * PACK_CHUNK_BYTES, end = Math.min(start + PACK_CHUNK_BYTES, this.t.pageFileBytes);
    const checkPage = (buf: Uint8Array, at: number, off: number): void => {
      if (pageCheck(buf, at) !== this.checks[off / PAGE_SIZE]) throw corrupt(`page at offset 0x${off.toString(16)} failed its checksum`);
    };
    const o = this.chunkEntry.get(i);
    if (o !== undefined) {
      const at = Number(this.index.readBigUInt64LE(o + 8)), zlen = this.index.readUInt32LE(o + 16), rawLen = this.index.readUInt32LE(o + 20);
      const z = scratch('in', zlen);
      try { readAll(this.packFd, z, at); } catch (e) { throw corrupt(`its page pack cannot be read (${(e as Error).message})`); }
      const damaged = chunkCheckProblem(this.t, o, z, start);
      if (damaged) throw corrupt(damaged);
      const chunkChecked = isChunkChecked(this.t, o);
      let raw: Buffer;
      try { raw = brotliInto(z, rawLen) ?? zlib.brotliDecompressSync(z, DECOMPRESS_OPTIONS); } catch { throw corrupt(`its page pack chunk at 0x${start.toString(16)} is damaged (cannot be decompressed)`); }
      if (raw.length !== rawLen) throw corrupt(`its page pack chunk at 0x${start.toString(16)} is damaged`);
      // Scatter: the chunk holds the piece's compressed pages in offset order.
      let r = 0, stretch = -1, stretchAt = 0;
      const flush = (): void => { if (stretch >= 0) { this.write(raw.subarray(stretchAt, r), stretch); stretch = -1; } };
      for (let off = start; off < end; off += PAGE_SIZE) {
        if (this.kind[off / PAGE_SIZE] !== 1) { flush(); continue; }
        if (r + PAGE_SIZE > raw.length) throw corrupt(`its page pack chunk at 0x${start.toString(16)} holds too few pages`);
        if (!chunkChecked) checkPage(raw, r, off);
        if (stretch < 0) { stretch = off; stretchAt = r; }
        r += PAGE_SIZE;
      }
      flush();
      if (r !== raw.length) throw corrupt(`its page pack chunk at 0x${start.toString(16)} holds too many pages`);
    }
    for (const [fd, memOff, fileOff, bytes] of this.fileParts.get(i) ?? []) {
      // Read again as the kernel's page cache read it (zeros past the file's end), checked page by page.
      const buf = readHostPages(fd, fileOff, bytes, scratch('file', Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE));
      for (let p = 0; p < buf.length; p += PAGE_SIZE) checkPage(buf, p, memOff + p);
      this.write(buf, memOff);
    }
    for (const [c, memOff, srcOff] of this.copyParts.get(i) ?? []) {
      let src = this.sources.get(c);
      if (!src) {
        const opened = openSiblingPack(this.packFd, this.t.copies![c][0]);
        if (typeof opened === 'string') throw corrupt(opened);
        this.sources.set(c, src = opened);
      }
      const page = src.page(srcOff);
      if (typeof page === 'string') throw corrupt(`the page pack of ${this.t.copies![c][0]}, which it copies pages from: ${page}`);
      if (!page) throw corrupt(`its page pack copies a page the page pack of ${this.t.copies![c][0]} does not hold (0x${srcOff.toString(16)})`);
      checkPage(page, 0, memOff);
      this.write(page, memOff);
    }
    try { fs.writeSync(this.readyFd, PIECE_READY, 0, 1, i); } catch (e) { throw this.cannotWrite(e); }
    this.ready[i] = 1;
  }

  dataRuns(off: number, len: number, fn: (off: number, len: number) => void): void {
    const end = Math.min(off + len, this.t.pageFileBytes);
    let runStart = -1, runEnd = -1;
    for (let i = Math.floor(off / PACK_CHUNK_BYTES); i * PACK_CHUNK_BYTES < end; i++) {
      if (!this.chunkEntry.has(i) && !this.fileParts.has(i) && !this.copyParts.has(i)) continue; // no page of the pack in it
      const lo = Math.max(off, i * PACK_CHUNK_BYTES), hi = Math.min(end, (i + 1) * PACK_CHUNK_BYTES);
      for (let a = Math.floor(lo / PAGE_SIZE) * PAGE_SIZE; a < hi; a += PAGE_SIZE) {
        if (!this.kind[a / PAGE_SIZE]) continue;
        const s = Math.max(a, off), e = Math.min(a + PAGE_SIZE, end);
        if (s === runEnd) runEnd = e;
        else { if (runStart >= 0) fn(runStart, runEnd - runStart); runStart = s; runEnd = e; }
      }
    }
    if (runStart >= 0) fn(runStart, runEnd - runStart);
  }

  /** Fill every piece not filled yet (a store operation about to read every page). Throws PageSourceError. */
  fillAll(): void {
    for (let i = 0; i < this.ready.length; i++) if (!this.isReady(i)) this.fill(i);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fd of [...this.fileFds, ...[...this.sources.values()].map((src) => src.fd), this.packFd, this.cacheFd, this.readyFd]) { try { fs.closeSync(fd); } catch { /* closed */ } }
  }

  private write(buf: Uint8Array, position: number): void {
    try { writeAll(this.cacheFd, buf, position); } catch (e) { throw this.cannotWrite(e); }
  }

  private cannotWrite(e: unknown): PageSourceError {
    return new PageSourceError(`checkpoint ${this.owner}: cannot write its restore cache (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
/** Scratch for reading one byte of a piece map. */
const ONE_BYTE = Buffer.alloc(1);
/** The byte that marks a piece filled in a restore cache's piece map (`.ready`). */
export const PIECE_READY = new Uint8Array([1]);

/** Writing the restore cache failed (disk full, I/O error): the pack itself may well be sound. */
export class CacheWriteError extends Error {
  constructor(readonly code: string) { super(`cannot write its restore cache (${code})`); }
}

/** writeAll into the cache being made: failures are CacheWriteErrors. */
function writeOut(fd: number, buf: Uint8Array, position: number): void {
  try { writeAll(fd, buf, position); } catch (e) { throw new CacheWriteError((e as NodeJS.ErrnoException).code ?? (e as Error).message); }
}

/**
 * `bytes` of host file `fd` from byte `fileOff`, in whole pages, as the kernel's page cache read
 * them: zeros past the file's end and past `bytes`.
 */
function readHostPages(fd: number, fileOff: number, bytes: number, into?: Buffer): Buffer {
  const buf = into ?? Buffer.alloc(Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE);
  let got = 0;
  while (got < bytes) {
    const n = fs.readSync(fd, buf, got, bytes - got, fileOff + got);
    if (n <= 0) break; // past the end: zeros
    got += n;
  }
  if (into) into.fill(0, got);
  return buf;
}

/**
 * Buffers a restore's piece fills reuse (`name`: what for), at least `bytes` long; the subarray
 * of that length is returned. On this VM the first touch of fresh memory costs ~15 µs a page: a
 * 1 MiB buffer per fill cost 4 ms before any work was done.
 */
function scratch(name: 'in' | 'out' | 'file', bytes: number): Buffer {
  let b = scratchBuffers.get(name);
  if (!b || b.length < bytes) scratchBuffers.set(name, b = Buffer.alloc(Math.max(bytes, name === 'in' ? 64 * 1024 : PACK_CHUNK_BYTES)));
  return b.subarray(0, bytes);
}
const scratchBuffers = new Map<string, Buffer>();

/** zlib's internals brotliInto drives (Node 20: lib/zlib.js processChunkSync does the same). */
interface ZlibHandle { reset(): void; writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void }
let brotli: { stream: zlib.BrotliDecompress; handle: ZlibHandle; state: Uint32Array } | null | undefined;

/**
 * Decompress brotli `z`, which must give exactly `rawLen` bytes, into a reused buffer (the
 * result is valid until the next call); undefined when it cannot (a damaged chunk, or a Node
 * whose zlib differs): the caller then uses brotliDecompressSync, which reports the damage.
 * brotliDecompressSync writes into fresh buffers, 16 KiB at a time then joined: 6-9 ms per
 * 1 MiB piece here, 2-3 ms into one reused buffer.
 */
function brotliInto(z: Uint8Array, rawLen: number): Buffer | undefined {
  if (brotli === undefined) {
    const stream = zlib.createBrotliDecompress();
    const handle = (stream as unknown as { _handle?: ZlibHandle })._handle;
    const state = (stream as unknown as { _writeState?: unknown })._writeState;
    if (handle && typeof handle.writeSync === 'function' && typeof handle.reset === 'function' && state instanceof Uint32Array && state.length === 2) {
      stream.on('error', () => undefined); // a damaged chunk: zlib destroys the stream (seen below; the fallback reports it)
      brotli = { stream, handle, state };
    } else brotli = null;
  }
  if (!brotli || rawLen > PACK_CHUNK_BYTES) return undefined;
  const out = scratch('out', PACK_CHUNK_BYTES);
  try {
    brotli.handle.reset();
    brotli.handle.writeSync(zlib.constants.BROTLI_OPERATION_FINISH, z, 0, z.length, out, 0, out.length);
  } catch {
    brotli = undefined; // made anew next time
    return undefined;
  }
  if (brotli === null || brotli.stream.destroyed) { brotli = undefined; return undefined; }
  const [outLeft, inLeft] = brotli.state;
  return inLeft === 0 && out.length - outLeft === rawLen ? out.subarray(0, rawLen) : undefined;
}

function writeAll(fd: number, buf: Uint8Array, position: number): void {
  for (let done = 0; done < buf.length;) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

function readAll(fd: number, buf: Buffer, position: number): void {
  for (let got = 0; got < buf.length;) {
    const n = fs.readSync(fd, buf, got, buf.length - got, position + got);
    if (n === 0) throw new Error(`short read at ${position + got}`);
    got += n;
  }
}
