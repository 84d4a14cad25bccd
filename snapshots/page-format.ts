/**
 * Pages and pagemap runs of the snapshot format (docs/snapshot-format.md): constants and the
 * pure helpers that check a page. Re-exported by ./format.ts; a module of its own because it
 * loads no native addon (no koffi, no cbor-x/cbor-extract): the restore's page verifier runs
 * in a worker thread that may be terminated at any moment, and a native addon being loaded
 * by a worker under termination aborts the whole process (see ./verify-worker.ts).
 */
import zlib from 'node:zlib';

/** Size of a guest page and of every `page/` record, in bytes. */
export const PAGE_SIZE = 4096;
/** Size of a page checksum in the pagemap (CRC-32, little-endian), in bytes. */
export const PAGE_CHECK_BYTES = 4;

/** zlib's crc32, taken on the first page check: zlib (and node:stream, which it loads) costs a restore that checks no page ~3 ms. */
let crc32: ((data: Uint8Array) => number) | undefined;

/** CRC-32 (zlib's, as gzip uses) of `len` bytes of `buf` from byte `at`. */
export function pageCheck(buf: Uint8Array, at = 0, len = PAGE_SIZE): number {
  // A plain Uint8Array view: cheaper to make than a Buffer's subarray (tens of thousands per checkpoint).
  return (crc32 ??= zlib.crc32)(new Uint8Array(buf.buffer, buf.byteOffset + at, Math.max(0, Math.min(len, buf.length - at)))) >>> 0;
}

/** Whether this host stores numbers little-endian (a pagemap's CRC-32s are little-endian). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Put the first `n` CRC-32s of a pagemap run (`c`: PAGE_CHECK_BYTES little-endian per page) into
 * `checks` from index `first` on. One typed-array copy (after a copy of `c` when it is unaligned:
 * cbor-x hands out byte strings in place), where a DataView read per page ran interpreted over a
 * restore's 60,000 pages. The caller keeps `n` within both arrays.
 */
export function readRunChecks(checks: Uint32Array, first: number, c: Uint8Array, n: number): void {
  if (LITTLE_ENDIAN) {
    const a = c.byteOffset % 4 === 0 ? c : c.slice(0, n * PAGE_CHECK_BYTES);
    checks.set(new Uint32Array(a.buffer, a.byteOffset, n), first);
  } else {
    const v = new DataView(c.buffer, c.byteOffset, c.byteLength);
    for (let i = 0; i < n; i++) checks[first + i] = v.getUint32(i * PAGE_CHECK_BYTES, true);
  }
}

/** A page of zeros, for fast comparisons (never mutate it). */
export const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);

/**
 * True if the `PAGE_SIZE` bytes of `buf` starting at byte `at` are all zero
 * (a native memcmp against {@link ZERO_PAGE}; `buf` must hold the whole page).
 */
export function isZeroPage(buf: Buffer, at: number): boolean {
  return buf.compare(ZERO_PAGE, 0, PAGE_SIZE, at, at + PAGE_SIZE) === 0;
}

/**
 * One run of consecutive non-zero pages: the byte offset of its first page in the
 * memory file (a multiple of PAGE_SIZE) and the CRC-32 of each page, concatenated
 * (4 bytes little-endian per page, in address order); in an incremental checkpoint
 * (format 3) optionally a third element `layer` ≥ 1: the run's pages are in the page file
 * of checkpoint `manifest.layers[layer - 1]` (at the same offsets), not in its own.
 */
export type PagemapRun = [memOffset: number, checks: Uint8Array, layer?: number];

/** The layer of a run: 0 for the checkpoint's own page file, k ≥ 1 for `layers[k - 1]`. */
export const runLayer = (run: PagemapRun): number => run[2] ?? 0;

/**
 * The line for checkpoint `id` refused for `reason`: `checkpoint ID is corrupt: REASON`, but
 * `checkpoint ID cannot be restored here: REASON` when the reason is a host file the checkpoint
 * names (or one a page file it inherits from names) that changed or is gone (pack.ts): the
 * checkpoint is sound, the host is not as it was.
 */
export function checkpointProblem(id: string, reason: string): string {
  return `checkpoint ${id} ${/(^|: )the host file /.test(reason) ? 'cannot be restored here' : 'is corrupt'}: ${reason}`;
}
