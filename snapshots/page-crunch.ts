/**
 * The per-page work of a checkpoint's page writer (snapshots/store.ts, scanPages), on one read
 * buffer of the memory file: reading it (when the memory file is a plain host file), which pages
 * are zero, the CRC-32 of the others and, for a flat page file, writing those at their offsets. Done by a worker thread (./page-crunch-worker.ts) while
 * the writer's thread reads the next buffer (and, for a pack, compresses the last), or inline
 * when no worker is worth starting. Loads no native addon (the worker may be terminated at any
 * moment: see ./verify-worker.ts); `npm run lint:layers` keeps it so.
 */
import fs from 'node:fs';
import zlib from 'node:zlib';
import { PAGE_SIZE, isZeroPage, pageCheck } from './page-format.js';
import { PIECE_BYTES, type PieceFinder, pieceFinder } from './piece-finder.js';

/** Page kinds in a CrunchResult. */
export const CRUNCH_ZERO = 0, CRUNCH_DATA = 1, CRUNCH_SKIPPED = 2;

/**
 * One buffer's pages: `kind[i]` (CRUNCH_*) and, for CRUNCH_DATA pages, `checks[i]` (CRC-32);
 * when asked (`pack`), `packed`: the pack chunk of the buffer's data pages not masked, brotli
 * compressed (`z`), their uncompressed bytes (`raw`; 0 and no bytes when there are none) and the
 * CRC-32 of `z` (`check`), which is then the check of each of those pages in `checks` (their own
 * CRC-32s are not computed: store format 6, snapshots/pack.ts); masked pages keep their CRC-32s;
 * `warmed`: its data pages were written into the restore cache being made (PackAsk.warmFd).
 */
export interface CrunchResult { kind: Uint8Array; checks: Uint32Array; packed?: { z: Uint8Array; raw: number; check: number }; warmed?: boolean }

/**
 * What crunchPages reads into its buffer first: `bytes` bytes of host fd `fd` from the buffer's
 * memory offset, or, with `parts` (flat pairs of offset in the buffer and bytes), those parts
 * (the rest of the buffer is zeroed).
 */
export interface ReadParts { fd: number; bytes: number; parts?: number[] }

/**
 * A pack's ask of a whole piece: `mask`, its pages the pack names in host files (not compressed);
 * `warmFd`, the restore cache the checkpoint makes (snapshots/store.ts WarmCache): a piece whose
 * chunk compresses less than WARM_RATIO to one (python3's own data and code, not its heap of
 * equal objects), or whose data pages are all in host files (the interpreter's text), has its
 * data pages (the masked ones too) written there at their offsets, so that the first restore
 * does not decompress it (4–5 ms of CPU per MiB of such pages here) or read it from its files.
 */
export interface PackAsk { mask?: Uint8Array; warmFd?: number }

/**
 * A whole pack piece of a pull (snapshots/store.ts PageCrunch.pull, ./page-crunch-worker.ts):
 * PACK_PIECE_BYTES from memory offset `base`, read from `read` (only `parts` if given),
 * compressed as `pack` asks.
 */
export interface PullJob { base: number; read: ReadParts; pack: PackAsk; parts?: number[] }

/** A piece is warmed (PackAsk.warmFd) when its chunk is more than 1 / WARM_RATIO of its bytes. */
export const WARM_RATIO = 64;

/** Memory-file bytes per pack chunk (1 MiB: 256 pages; snapshots/pack.ts PACK_CHUNK_BYTES). */
export const PACK_PIECE_BYTES = PIECE_BYTES;
/** Brotli quality 1: ~4× faster than zlib's deflate at level 1 on heap pages, and smaller. */
const BROTLI_QUALITY = 1;
let compressOptions: zlib.BrotliOptions | undefined;
/**
 * Options of every pack chunk's compression (here and PackWriter.add: the same bytes either way),
 * made on first use: reading zlib.constants loads zlib, which a restore of a flat page file never needs.
 */
export function packCompressOptions(): zlib.BrotliOptions {
  return compressOptions ??= { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: PACK_PIECE_BYTES } };
}

/**
 * CRC-32 of a page of zeros (pageCheck(ZERO_PAGE)), written out: computing it when this module is
 * evaluated would load zlib in every restore, which may never check a page itself.
 * test/page-format.test.ts checks the value.
 */
export const ZERO_PAGE_CHECK = 0xc71c0011;

/**
 * Look at the `len / 4096` pages of `buf` (bytes [0, len) of the memory file from byte `base`;
 * `len` a multiple of 4096): pages with `skip[i]` set are left alone (CRUNCH_SKIPPED), all-zero
 * pages are CRUNCH_ZERO, the others CRUNCH_DATA with their CRC-32; when `writeFd` ≥ 0 each
 * stretch of consecutive data pages is written there at its memory-file offset (pwrite). When
 * `read` is given, `buf` is first filled from it: `read.bytes` bytes of host fd `read.fd` from
 * offset `base` (pread; past those, or past the file's end, zeros; with `read.parts`, those parts).
 * With `parts` (flat pairs of offset in `buf` and bytes, page aligned), only the pages in them
 * are looked at: the others are CRUNCH_ZERO (holes of the memory file between its ranges). With
 * `pack`, the chunk is compressed, its data pages' checks are the chunk's CRC-32 (but for those
 * the pack's mask marks, which keep their own) and the piece may be warmed (PackAsk). Throws
 * what the read or the write throws (ENOSPC, EIO…).
 */
export function crunchPages(buf: Uint8Array, len: number, base: number, skip: Uint8Array | undefined, writeFd: number, read?: ReadParts, pack?: PackAsk, parts?: number[]): CrunchResult {
  if (pack && read && !skip && writeFd < 0 && len === PACK_PIECE_BYTES) {
    // The common case (a compressed checkpoint's piece, read here): without a page loop in JavaScript.
    const f = pieceFinder();
    if (f) return crunchPiece(f, base, read, pack, parts);
  }
  // Per buffer, not per page: a function called ~120 times per thread stays out of TurboFan,
  // whose compile of it (with fs, zlib and Buffer inlined) took ~40 ms of CPU per thread in
  // the middle of the checkpoint it was to speed up. The per-page loops are small functions.
  const n = len / PAGE_SIZE;
  const kind = new Uint8Array(n), checks = new Uint32Array(n);
  const b = Buffer.from(buf.buffer, buf.byteOffset, len);
  if (read) readBuffer(b, len, base, read, true);
  if (pack) {
    // A pack's piece: its pages are checked by the chunk's CRC-32 (below), but for those in host files.
    if (parts) {
      for (let i = 0; i < parts.length; i += 2) classifyPiecePages(b, parts[i] / PAGE_SIZE, (parts[i] + parts[i + 1]) / PAGE_SIZE, pack.mask, kind, checks);
    } else classifyPiecePages(b, 0, n, pack.mask, kind, checks);
  } else if (parts) {
    // Pages outside `parts` are zero and not looked at (kind CRUNCH_ZERO already).
    for (let i = 0; i < parts.length; i += 2) classifyPages(b, parts[i] / PAGE_SIZE, (parts[i] + parts[i + 1]) / PAGE_SIZE, skip, kind, checks);
  } else classifyPages(b, 0, n, skip, kind, checks);
  if (writeFd >= 0) writeDataPages(writeFd, b, kind, base);
  if (!pack) return { kind, checks };
  const packed = compressChunk(chunkPages(b, kind, n, pack.mask));
  if (packed.raw) setChunkChecks(kind, checks, n, pack.mask, packed.check);
  return { kind, checks, packed, warmed: warmPiece(pack, kind.includes(CRUNCH_DATA), packed, b, kind, base) };
}

/**
 * Fill `b` (bytes [0, len) of the memory file from byte `base`) from `read` (ReadParts): zeros
 * past `read.bytes` or the file's end; with `read.parts`, only those parts are read, and the rest
 * is zeroed if `zeroGaps`.
 */
function readBuffer(b: Buffer, len: number, base: number, read: ReadParts, zeroGaps: boolean): void {
  if (read.parts) {
    if (zeroGaps) b.fill(0, 0, len);
    for (let i = 0; i < read.parts.length; i += 2) readFully(read.fd, b, read.parts[i], read.parts[i + 1], base + read.parts[i]);
  } else {
    readFully(read.fd, b, 0, read.bytes, base);
    if (read.bytes < len) b.fill(0, read.bytes, len);
  }
}

/**
 * Whether a piece goes into the restore cache being made (PackAsk.warmFd), and if so its data
 * pages (`kind`, bytes `b` from memory offset `base`) written there: a piece with data whose pages
 * are all in host files (the interpreter's text: what a restored guest runs first), or whose chunk
 * is costly to decompress (WARM_RATIO). A cache: a write that fails (ENOSPC…) leaves the piece to
 * the first restore (false), not the checkpoint failed.
 */
function warmPiece(pack: PackAsk, hasData: boolean, packed: NonNullable<CrunchResult['packed']>, b: Buffer, kind: Uint8Array, base: number): boolean {
  if (pack.warmFd === undefined || !hasData || (packed.raw !== 0 && packed.z.length * WARM_RATIO <= packed.raw)) return false;
  try {
    writeDataPages(pack.warmFd, b, kind, base);
    return true;
  } catch {
    return false;
  }
}

/**
 * Set `kind` (and `checks`) of pages [from, to) of `b`: CRUNCH_SKIPPED where `skip` is set,
 * CRUNCH_ZERO for all-zero pages, else CRUNCH_DATA with its CRC-32.
 */
function classifyPages(b: Buffer, from: number, to: number, skip: Uint8Array | undefined, kind: Uint8Array, checks: Uint32Array): void {
  for (let i = from; i < to; i++) {
    if (skip?.[i]) { kind[i] = CRUNCH_SKIPPED; continue; }
    // The CRC-32 first (every data page needs it): a page whose CRC-32 is not the zero page's is
    // not zero, so only the rest are compared (in the bench's python3, 99 of 62,099 populated pages).
    const check = pageCheck(b, i * PAGE_SIZE);
    if (check === ZERO_PAGE_CHECK && isZeroPage(b, i * PAGE_SIZE)) { kind[i] = CRUNCH_ZERO; continue; }
    kind[i] = CRUNCH_DATA;
    checks[i] = check;
  }
}

/**
 * Set `kind` (and `checks`) of pages [from, to) of a pack's piece `b`: CRUNCH_ZERO for all-zero
 * pages (a memcmp, which stops at the first byte that is not: heap pages end it within their
 * first words), else CRUNCH_DATA; only pages `mask` marks (host-file pages) get their CRC-32.
 */
function classifyPiecePages(b: Buffer, from: number, to: number, mask: Uint8Array | undefined, kind: Uint8Array, checks: Uint32Array): void {
  for (let i = from; i < to; i++) {
    if (isZeroPage(b, i * PAGE_SIZE)) { kind[i] = CRUNCH_ZERO; continue; }
    kind[i] = CRUNCH_DATA;
    if (mask?.[i]) checks[i] = pageCheck(b, i * PAGE_SIZE);
  }
}

/** The check of every data page of the chunk (those `mask` does not mark) is the chunk's, `check`. */
function setChunkChecks(kind: Uint8Array, checks: Uint32Array, n: number, mask: Uint8Array | undefined, check: number): void {
  for (let i = 0; i < n; i++) if (kind[i] === CRUNCH_DATA && !mask?.[i]) checks[i] = check;
}

/** Write the CRUNCH_DATA pages of `b` (memory offset `base`) to `fd` at their memory offsets, a stretch of consecutive ones at a time. */
function writeDataPages(fd: number, b: Buffer, kind: Uint8Array, base: number): void {
  // Stretches found by native searches: a loop over every page here ran hot enough for TurboFan.
  for (let i = kind.indexOf(CRUNCH_DATA); i >= 0; i = kind.indexOf(CRUNCH_DATA, i)) {
    let j = kind.indexOf(CRUNCH_ZERO, i + 1);
    const k = kind.indexOf(CRUNCH_SKIPPED, i + 1);
    if (j < 0 || (k >= 0 && k < j)) j = k;
    if (j < 0) j = kind.length;
    const from = i * PAGE_SIZE, to = j * PAGE_SIZE;
    for (let done = from; done < to;) done += fs.writeSync(fd, b, done, to - done, base + done);
    i = j;
  }
}

/** Read `len` bytes of `fd` at `position` into `b` from `at`; zeros past the file's end. */
function readFully(fd: number, b: Buffer, at: number, len: number, position: number): void {
  let got = 0;
  while (got < len) {
    const k = fs.readSync(fd, b, at + got, len - got, position + got);
    if (k <= 0) break;
    got += k;
  }
  if (got < len) b.fill(0, at + got, at + len);
}

/**
 * The pack chunk of a piece's pages (its data pages that the pack does not name in host files, in
 * order): brotli compressed with packCompressOptions(), as PackWriter.add compresses a chunk the
 * writer gathers itself (snapshots/store.ts writePack), its uncompressed bytes and the CRC-32 of
 * the compressed ones; an empty chunk (0 bytes, check 0) without pages.
 */
function compressChunk(pages: Uint8Array | undefined): NonNullable<CrunchResult['packed']> {
  if (!pages) return { z: new Uint8Array(0), raw: 0, check: 0 };
  const z = zlib.brotliCompressSync(pages, packCompressOptions());
  return { z, raw: pages.length, check: pageCheck(z, 0, z.length) };
}

/** The data pages of `b` (`kind`) that `mask` does not mark, in order: a view when they are consecutive, else a copy; undefined when there are none. */
function chunkPages(b: Buffer, kind: Uint8Array, n: number, mask: Uint8Array | undefined): Uint8Array | undefined {
  let count = 0, first = -1, last = -1;
  for (let i = 0; i < n; i++) {
    if (kind[i] !== CRUNCH_DATA || mask?.[i]) continue;
    count++;
    if (first < 0) first = i;
    last = i;
  }
  if (count === 0) return undefined;
  // Plain typed arrays, not Buffer#subarray or Buffer.allocUnsafe: this loop is hot enough for
  // TurboFan, and those (inlined with their checks and pool) made its compile ~20 ms of CPU.
  if (last - first + 1 === count) return new Uint8Array(b.buffer, b.byteOffset + first * PAGE_SIZE, count * PAGE_SIZE);
  return gatherPages(b, kind, first, last, count, mask);
}

/** A copy of the data pages of `b` in [first, last] not marked in `mask` (`count` of them), in order. */
function gatherPages(b: Buffer, kind: Uint8Array, first: number, last: number, count: number, mask: Uint8Array | undefined): Uint8Array {
  const out = new Uint8Array(count * PAGE_SIZE);
  let at = 0;
  for (let i = first; i <= last; i++) {
    if (kind[i] !== CRUNCH_DATA || mask?.[i]) continue;
    out.set(new Uint8Array(b.buffer, b.byteOffset + i * PAGE_SIZE, PAGE_SIZE), at);
    at += PAGE_SIZE;
  }
  return out;
}

/**
 * crunchPages of a whole pack piece (PACK_PIECE_BYTES from memory offset `base`, pages in `parts`
 * only if given), read from `read` into this thread's PieceFinder's memory, not the caller's buffer
 * (which is left as it was: a piece's pages are needed by no one once its chunk is made). Zero
 * pages and the chunk's pages are found by the finder's WebAssembly; the stretches of the mask
 * and of data pages by native searches (indexOf): no loop over the piece's pages in JavaScript.
 * Same result as crunchPages' loops, but that zero pages' checks are the chunk's (never read).
 */
function crunchPiece(f: PieceFinder, base: number, read: ReadParts, pack: PackAsk, parts: number[] | undefined): CrunchResult {
  const w = f.pages, n = PACK_PIECE_BYTES / PAGE_SIZE;
  // Only the pages read are classified; the others are CRUNCH_ZERO and their bytes (left from an
  // earlier piece: not zeroed, 1 MiB of memset for each of python3's ~90 pieces read in parts)
  // are never looked at: the chunk, the checks and the restore cache take data pages only.
  const cover = parts ?? read.parts;
  readBuffer(w, PACK_PIECE_BYTES, base, read, false);
  f.kinds.fill(CRUNCH_ZERO);
  let data = 0;
  if (cover) for (let i = 0; i < cover.length; i += 2) data += f.classify(cover[i] / PAGE_SIZE, (cover[i] + cover[i + 1]) / PAGE_SIZE);
  else data = f.classify(0, n);
  const kind = f.kinds.slice(0, n), checks = new Uint32Array(n);
  const mask = pack.mask;
  f.mask.fill(0);
  if (mask) f.mask.set(mask.subarray(0, n));
  // Host-file pages: not in the chunk (each keeps its own CRC-32, below).
  let masked = 0;
  if (mask) for (let i = mask.indexOf(1); i >= 0; i = mask.indexOf(1, i + 1)) if (kind[i] === CRUNCH_DATA) masked++;
  const inChunk = data - masked;
  const packed = compressChunk(inChunk === n ? w : inChunk > 0 ? f.gathered.subarray(0, f.gather(n) * PAGE_SIZE) : undefined);
  // Every data page not masked is checked by the chunk's check (zero pages' checks are not read).
  if (packed.raw) checks.fill(packed.check);
  if (masked) for (let i = mask!.indexOf(1); i >= 0; i = mask!.indexOf(1, i + 1)) if (kind[i] === CRUNCH_DATA) checks[i] = pageCheck(w, i * PAGE_SIZE);
  return { kind, checks, packed, warmed: warmPiece(pack, data > 0, packed, w, kind, base) };
}
