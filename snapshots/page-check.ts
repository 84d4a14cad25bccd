/**
 * Checking a page file against its pagemap, given where its data is (used by `store check`
 * and every restore through ./pages.ts, and by the restore's page verifier in a worker thread,
 * ./verify-worker.ts). Only node:fs and ./page-format.ts: this module must load no native
 * addon (no koffi, no cbor-x), because a worker thread terminated while one is being loaded
 * aborts the whole process (FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw).
 * `npm run lint:layers` checks that the worker reaches no native package.
 */
import fs from 'node:fs';
import { PAGE_CHECK_BYTES, PAGE_SIZE, type PagemapRun, isZeroPage, pageCheck, runLayer } from './page-format.js';

/** Bytes read per call while verifying. */
const VERIFY_CHUNK_BYTES = 4 << 20;

/**
 * Check a page file's contents against its pagemap: every page in a run has its CRC-32,
 * every other page is zero. Reads, in 4 MiB pieces through `fd`, the file's data ranges
 * `dataRanges` (byte [start, end) pairs, as pageFileDataRanges of ./pages.ts finds them with
 * SEEK_DATA/SEEK_HOLE: its holes are zero pages by definition, so a sparse 4 GiB file costs
 * only its data) and every pagemap run (a stored page lost to a hole fails its checksum).
 * `layerFds[k - 1]`: the page file of layer k (only its runs are checked). `unchecked[k]` (0: the
 * file's own pages, k ≥ 1: layer k's), when given, marks per page (memory offset / 4096) pages
 * whose check is their pack chunk's (store format 6, chunkCheckedPages of ./pack.ts: checked as
 * the chunk was decompressed into this file): neither their CRC-32 nor zeros are asked of them.
 * Returns undefined if all is well, else one line naming the first bad page (its byte offset in
 * the memory file). Synchronous: run it in a worker thread when a guest waits.
 */
export function checkPageFile(fd: number, allRuns: PagemapRun[], pageFileBytes: number, dataRanges: ReadonlyArray<readonly [number, number]>, layerFds: readonly number[] = [], unchecked: ReadonlyArray<Uint8Array | undefined> = []): string | undefined {
  // An incremental checkpoint's own file holds only its layer-0 runs (every other page is a hole);
  // the pages of each inherited layer are checked where they are.
  const runs = allRuns.some((r) => runLayer(r) !== 0) ? allRuns.filter((r) => runLayer(r) === 0) : allRuns;
  for (let k = 1; k <= layerFds.length; k++) {
    const bad = verifyRuns(layerFds[k - 1], allRuns.filter((r) => runLayer(r) === k), unchecked[k]);
    if (bad) return bad;
  }
  const buf = Buffer.allocUnsafe(VERIFY_CHUNK_BYTES);
  const own = unchecked[0];
  let r = 0;
  for (const [start, end] of rangesToCheck(runs, pageFileBytes, dataRanges)) {
    for (let off = start; off < end; off += VERIFY_CHUNK_BYTES) {
      const len = Math.min(VERIFY_CHUNK_BYTES, end - off);
      let got = 0;
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, off + got);
        if (n === 0) return `its page file ends at offset 0x${(off + got).toString(16)}, expected 0x${pageFileBytes.toString(16)}`;
        got += n;
      }
      for (let p = 0; p < len; p += PAGE_SIZE) {
        const at = off + p;
        while (r < runs.length && runs[r][0] + (runs[r][1].length / PAGE_CHECK_BYTES) * PAGE_SIZE <= at) r++;
        const run = runs[r];
        if (own?.[at / PAGE_SIZE]) continue;
        if (run && at >= run[0]) {
          const i = (at - run[0]) / PAGE_SIZE;
          const c = run[1];
          const want = (c[i * 4] | (c[i * 4 + 1] << 8) | (c[i * 4 + 2] << 16) | (c[i * 4 + 3] << 24)) >>> 0;
          if (pageCheck(buf, p) !== want) return `page at offset 0x${at.toString(16)} failed its checksum`;
        } else if (!isZeroPage(buf, p)) {
          return `page at offset 0x${at.toString(16)} should be zero but holds data`;
        }
      }
    }
  }
  const size = fs.fstatSync(fd).size;
  if (size < pageFileBytes) return `its page file ends at offset 0x${size.toString(16)}, expected 0x${pageFileBytes.toString(16)}`;
  return undefined;
}

/** The page-aligned [start, end) ranges of the page file to read: its data ranges and the pagemap's runs, sorted and merged. */
function rangesToCheck(runs: PagemapRun[], pageFileBytes: number, dataRanges: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const all: Array<[number, number]> = [];
  for (const [off, sums] of runs) all.push([off, Math.min(pageFileBytes, off + (sums.length / PAGE_CHECK_BYTES) * PAGE_SIZE)]);
  for (const [data, hole] of dataRanges) all.push([Math.floor(data / PAGE_SIZE) * PAGE_SIZE, Math.min(pageFileBytes, Math.ceil(hole / PAGE_SIZE) * PAGE_SIZE)]);
  all.sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [a, b] of all) {
    const last = merged[merged.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b); else if (b > a) merged.push([a, b]);
  }
  return merged;
}

/**
 * Check only the pages of `runs` in the page file `fd` (an inherited layer: its other pages
 * belong to other checkpoints), but those `unchecked` marks. Returns undefined, or one line
 * naming the first bad page.
 */
function verifyRuns(fd: number, runs: PagemapRun[], unchecked?: Uint8Array): string | undefined {
  for (const [start, checks] of runs) {
    const n = checks.length / PAGE_CHECK_BYTES;
    for (let first = 0; first < n; first += VERIFY_CHUNK_BYTES / PAGE_SIZE) {
      const count = Math.min(VERIFY_CHUNK_BYTES / PAGE_SIZE, n - first);
      const buf = Buffer.alloc(count * PAGE_SIZE);
      const at = start + first * PAGE_SIZE;
      let got = 0;
      while (got < buf.length) {
        const r = fs.readSync(fd, buf, got, buf.length - got, at + got);
        if (r === 0) return `the page file of a checkpoint it inherits pages from ends at offset 0x${(at + got).toString(16)}`;
        got += r;
      }
      for (let j = 0; j < count; j++) {
        const i = first + j;
        if (unchecked?.[(at + j * PAGE_SIZE) / PAGE_SIZE]) continue;
        const want = (checks[i * 4] | (checks[i * 4 + 1] << 8) | (checks[i * 4 + 2] << 16) | (checks[i * 4 + 3] << 24)) >>> 0;
        if (pageCheck(buf, j * PAGE_SIZE) !== want) return `page at offset 0x${(at + j * PAGE_SIZE).toString(16)} (inherited) failed its checksum`;
      }
    }
  }
  return undefined;
}
