/**
 * Checking a page file against its pagemap (used by `store check` and, in a worker thread,
 * by every restore). Only node:fs and the pure format helpers: a worker that loads this
 * module does not load LevelDB.
 */
import fs from 'node:fs';
import { PAGE_CHECK_BYTES, PAGE_SIZE, type PagemapRun, isZeroPage, pageCheck } from './format.js';

/** Bytes read per call while verifying. */
const VERIFY_CHUNK_BYTES = 4 << 20;

/**
 * Check a page file's contents against its pagemap: every page in a run has its CRC-32,
 * every other page is zero. Reads `pageFileBytes` bytes through `fd` in 4 MiB pieces.
 * Returns undefined if all is well, else one line naming the first bad page (its byte
 * offset in the memory file). Synchronous: run it in a worker thread when a guest waits.
 */
export function verifyPages(fd: number, runs: PagemapRun[], pageFileBytes: number): string | undefined {
  const buf = Buffer.allocUnsafe(VERIFY_CHUNK_BYTES);
  let r = 0;
  for (let off = 0; off < pageFileBytes; off += VERIFY_CHUNK_BYTES) {
    const len = Math.min(VERIFY_CHUNK_BYTES, pageFileBytes - off);
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
  return undefined;
}
