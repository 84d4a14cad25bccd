/**
 * The per-page loops of a pack piece (./page-crunch.ts crunchPiece) in WebAssembly: which of the
 * piece's 256 pages are all zero, and the gathering of the pages its chunk compresses. Source:
 * ./piece-finder.wat (compiled with wabt's `wat2wasm`; test/piece-finder.test.ts checks that the
 * bytes below are that file's and that both functions agree with the JavaScript ones).
 *
 * Why not JavaScript: a checkpoint is a first pass over tens of thousands of pages. The same loops
 * in JavaScript (a Buffer.compare per page, loops over the page kinds) ran hot enough for
 * TurboFan, in the kernel's isolate and again in each page worker's: ~130 ms of compile CPU per
 * checkpoint of the bench's python3 (`node --trace-opt`), on a 2-CPU host where the checkpoint is
 * CPU-bound. This module is 278 bytes of code that Liftoff compiles at once.
 *
 * No native addon (./verify-worker.ts): WebAssembly is V8's own. Under `node --jitless` (no
 * WebAssembly) `pieceFinder()` is undefined and the crunch keeps its JavaScript loops.
 */
import { PAGE_SIZE } from './page-format.js';

/** Bytes of one pack piece (1 MiB, PACK_CHUNK_BYTES of ./pack.ts): ./piece-finder.wat's layout is made for it. */
export const PIECE_BYTES = 1 << 20;
/** Pages of one piece. */
export const PIECE_PAGES = PIECE_BYTES / PAGE_SIZE;

/**
 * One thread's finder. Its memory (33 wasm pages: 2 MiB + 64 KiB, never grown, so the views
 * stay valid) holds:
 * - `pages`: the piece's bytes (1 MiB at 0; read into directly);
 * - `kinds`: a byte per page at 0x100000, 0 for an all-zero page, 1 for a data page
 *   (CRUNCH_ZERO and CRUNCH_DATA of ./page-crunch.ts);
 * - `mask`: a byte per page at 0x100100, 1 for a page `gather` leaves out (a host-file page);
 * - `gathered`: the chunk `gather` makes (1 MiB at 0x110000).
 *
 * `classify(from, to)` sets `kinds[from, to)` (page indices, 0 ≤ from ≤ to ≤ 256) and returns
 * how many of those pages are data; `gather(n)` copies the data pages of [0, n) that `mask`
 * does not mark to `gathered`, in order, and returns how many it copied.
 */
export interface PieceFinder {
  classify(from: number, to: number): number;
  gather(n: number): number;
  pages: Buffer;
  kinds: Uint8Array;
  mask: Uint8Array;
  gathered: Buffer;
}

/** ./piece-finder.wat compiled by `wat2wasm` (wabt 1.0.32), base64. */
export const PIECE_FINDER_WASM = 'AGFzbQEAAAABDAJgAn9/AX9gAX8BfwMDAgABBQQBASEhBx4DBm1lbW9yeQIACGNsYXNzaWZ5AAAGZ2F0aGVyAAEK0gECgQEBBX8gACECAkADQCACIAFPDQEgAkEMdCEDIANBgCBqIQRBACEFAkADQCAD/QAEACAD/QAEEP1QIAP9AAQgIAP9AAQw/VD9UP1TBEBBASEFDAILIANBwABqIQMgAyAESQ0ACwsgAiAFOgCAgEAgBiAFaiEGIAJBAWohAgwACwsgBgtNAQJ/AkADQCABIABPDQEgAS0AgIBAIAEtAICCQEVxBEBBgIDEACACQQx0aiABQQx0QYAg/AoAACACQQFqIQILIAFBAWohAQwACwsgAgs=';

/** This thread's finder: made on first use (undefined: not yet; null: WebAssembly unavailable). */
let finder: PieceFinder | null | undefined;

/**
 * This thread's PieceFinder (one per thread: a crunch handles one piece at a time), made on first
 * use (~0.1 ms: a synchronous compile of 278 bytes), or undefined where WebAssembly (or its SIMD)
 * is not available.
 */
export function pieceFinder(): PieceFinder | undefined {
  if (finder === undefined) finder = makePieceFinder() ?? null;
  return finder ?? undefined;
}

/** A new PieceFinder with its own memory, or undefined where it cannot be compiled. */
export function makePieceFinder(): PieceFinder | undefined {
  try {
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(PIECE_FINDER_WASM, 'base64')));
    const mem = (exports.memory as WebAssembly.Memory).buffer;
    const kindsAt = PIECE_BYTES, maskAt = kindsAt + PIECE_PAGES, gatheredAt = PIECE_BYTES + (64 << 10);
    return {
      classify: exports.classify as PieceFinder['classify'],
      gather: exports.gather as PieceFinder['gather'],
      pages: Buffer.from(mem, 0, PIECE_BYTES),
      kinds: new Uint8Array(mem, kindsAt, PIECE_PAGES),
      mask: new Uint8Array(mem, maskAt, PIECE_PAGES),
      gathered: Buffer.from(mem, gatheredAt, PIECE_BYTES),
    };
  } catch {
    return undefined;
  }
}
