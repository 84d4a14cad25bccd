/**
 * The per-page work of a checkpoint's page writer (snapshots/store.ts, scanPages), on one read
 * buffer of the memory file: which pages are zero, the CRC-32 of the others and, for a flat page
 * file, writing those at their offsets. Done by a worker thread (./page-crunch-worker.ts) while
 * the writer's thread reads the next buffer (and, for a pack, compresses the last), or inline
 * when no worker is worth starting. Loads no native addon (the worker may be terminated at any
 * moment: see ./verify-worker.ts); `npm run lint:layers` keeps it so.
 */
import fs from 'node:fs';
import { PAGE_SIZE, ZERO_PAGE, pageCheck } from './page-format.js';

/** Page kinds in a CrunchResult. */
export const CRUNCH_ZERO = 0, CRUNCH_DATA = 1, CRUNCH_SKIPPED = 2;

/** One buffer's pages: `kind[i]` (CRUNCH_*) and, for CRUNCH_DATA pages, `checks[i]` (CRC-32). */
export interface CrunchResult { kind: Uint8Array; checks: Uint32Array }

/**
 * Look at the `len / 4096` pages of `buf` (bytes [0, len) of the memory file from byte `base`;
 * `len` a multiple of 4096): pages with `skip[i]` set are left alone (CRUNCH_SKIPPED), all-zero
 * pages are CRUNCH_ZERO, the others CRUNCH_DATA with their CRC-32; when `writeFd` ≥ 0 each
 * stretch of consecutive data pages is written there at its memory-file offset (pwrite). Throws
 * what the write throws (ENOSPC, EIO…).
 */
export function crunchPages(buf: Uint8Array, len: number, base: number, skip: Uint8Array | undefined, writeFd: number): CrunchResult {
  const n = len / PAGE_SIZE;
  const kind = new Uint8Array(n), checks = new Uint32Array(n);
  const b = Buffer.from(buf.buffer, buf.byteOffset, len);
  let from = -1;
  const flush = (to: number): void => {
    if (from < 0) return;
    for (let done = from; done < to;) done += fs.writeSync(writeFd, b, done, to - done, base + done);
    from = -1;
  };
  for (let i = 0; i < n; i++) {
    const p = i * PAGE_SIZE;
    if (skip?.[i]) { kind[i] = CRUNCH_SKIPPED; if (writeFd >= 0) flush(p); continue; }
    if (b.compare(ZERO_PAGE, 0, PAGE_SIZE, p, p + PAGE_SIZE) === 0) { kind[i] = CRUNCH_ZERO; if (writeFd >= 0) flush(p); continue; }
    kind[i] = CRUNCH_DATA;
    checks[i] = pageCheck(b, p);
    if (writeFd >= 0 && from < 0) from = p;
  }
  if (writeFd >= 0) flush(len);
  return { kind, checks };
}
