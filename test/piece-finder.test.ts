import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { CRUNCH_DATA, CRUNCH_ZERO, crunchPages } from '../snapshots/page-crunch.js';
import { PAGE_SIZE, isZeroPage, pageCheck } from '../snapshots/page-format.js';
import { PIECE_FINDER_WASM, PIECE_PAGES, makePieceFinder } from '../snapshots/piece-finder.js';

const PIECE = PIECE_PAGES * PAGE_SIZE;

/** A piece of 256 pages: each page all zero, or zero but for one byte somewhere (its first, its last, or any), or dense. */
const pieceArb = fc.array(
  fc.oneof(
    fc.constant<[string, number]>(['zero', 0]),
    fc.tuple(fc.constant('one'), fc.oneof(fc.constant(0), fc.constant(PAGE_SIZE - 1), fc.integer({ min: 0, max: PAGE_SIZE - 1 }))),
    fc.constant<[string, number]>(['dense', 0]),
  ),
  { minLength: PIECE_PAGES, maxLength: PIECE_PAGES },
).map((pages) => {
  const b = Buffer.alloc(PIECE);
  pages.forEach(([what, at], i) => {
    if (what === 'one') b[i * PAGE_SIZE + at] = 1 + (i % 255);
    if (what === 'dense') for (let j = 0; j < PAGE_SIZE; j += 8) b[i * PAGE_SIZE + j] = (i + j) & 0xff | 1;
  });
  return b;
});
const maskArb = fc.array(fc.boolean(), { minLength: PIECE_PAGES, maxLength: PIECE_PAGES }).map((m) => Uint8Array.from(m, (x) => (x ? 1 : 0)));

/** The chunk the JavaScript loops make: the data pages `mask` leaves out, in order. */
function expectedChunk(b: Buffer, mask: Uint8Array): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < PIECE_PAGES; i++) if (!isZeroPage(b, i * PAGE_SIZE) && !mask[i]) out.push(b.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
  return Buffer.concat(out);
}

describe('piece finder (WebAssembly page loops of a pack piece)', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'piece-finder-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('its embedded bytes are snapshots/piece-finder.wat compiled', (ctx) => {
    const wat = path.join(__dirname, '..', 'snapshots', 'piece-finder.wat');
    const out = path.join(tmp, 'piece-finder.wasm');
    try {
      execFileSync('wat2wasm', [wat, '-o', out], { stdio: 'pipe' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        console.log('skipped: wat2wasm (Debian package wabt) is not installed');
        ctx.skip();
      }
      throw e;
    }
    expect(fs.readFileSync(out).toString('base64')).toBe(PIECE_FINDER_WASM);
  });

  it('classify and gather agree with isZeroPage and the JavaScript gathering', () => {
    const f = makePieceFinder();
    expect(f).toBeDefined();
    fc.assert(fc.property(pieceArb, maskArb, fc.integer({ min: 0, max: PIECE_PAGES }), fc.integer({ min: 0, max: PIECE_PAGES }), (b, mask, x, y) => {
      const [from, to] = x <= y ? [x, y] : [y, x];
      f!.pages.set(b);
      f!.kinds.fill(7);
      const data = f!.classify(from, to);
      let want = 0;
      for (let i = 0; i < PIECE_PAGES; i++) {
        if (i < from || i >= to) { expect(f!.kinds[i]).toBe(7); continue; }
        const k = isZeroPage(b, i * PAGE_SIZE) ? CRUNCH_ZERO : CRUNCH_DATA;
        expect(f!.kinds[i]).toBe(k);
        want += k;
      }
      expect(data).toBe(want);
      f!.classify(0, PIECE_PAGES);
      f!.mask.set(mask);
      const n = f!.gather(PIECE_PAGES);
      const chunk = expectedChunk(b, mask);
      expect(n * PAGE_SIZE).toBe(chunk.length);
      expect(f!.gathered.subarray(0, chunk.length).equals(chunk)).toBe(true);
    }), { numRuns: 40 });
  });

  it("crunchPages of a whole piece: the kinds, chunk and checks the page loops would give", () => {
    const file = path.join(tmp, 'memory');
    fc.assert(fc.property(pieceArb, fc.option(maskArb, { nil: undefined }), fc.boolean(), (b, mask, inParts) => {
      // The piece at memory offset 1 MiB of a file; with `inParts`, only two parts of it are read (the rest is zero).
      const memory = Buffer.alloc(2 * PIECE);
      b.copy(memory, PIECE);
      fs.writeFileSync(file, memory);
      const parts = inParts ? [0, 64 * PAGE_SIZE, 128 * PAGE_SIZE, 100 * PAGE_SIZE] : undefined;
      const seen = Buffer.alloc(PIECE);
      if (parts) for (let i = 0; i < parts.length; i += 2) b.copy(seen, parts[i], parts[i], parts[i] + parts[i + 1]);
      else b.copy(seen);
      const fd = fs.openSync(file, 'r');
      const buf = Buffer.alloc(PIECE, 0xee);
      let r;
      try {
        r = crunchPages(buf, PIECE, PIECE, undefined, -1, { fd, bytes: PIECE, parts }, { mask }, parts);
      } finally {
        fs.closeSync(fd);
      }
      const noMask = new Uint8Array(PIECE_PAGES);
      const chunk = expectedChunk(seen, mask ?? noMask);
      expect(r.packed!.raw).toBe(chunk.length);
      if (chunk.length) {
        expect(zlib.brotliDecompressSync(r.packed!.z).equals(chunk)).toBe(true);
        expect(r.packed!.check).toBe(pageCheck(r.packed!.z, 0, r.packed!.z.length));
      } else expect(r.packed!.z.length).toBe(0);
      for (let i = 0; i < PIECE_PAGES; i++) {
        const zero = isZeroPage(seen, i * PAGE_SIZE);
        expect(r.kind[i]).toBe(zero ? CRUNCH_ZERO : CRUNCH_DATA);
        if (zero) continue;
        // Host-file pages keep their own CRC-32; the others are checked by the chunk's.
        expect(r.checks[i]).toBe(mask?.[i] ? pageCheck(seen, i * PAGE_SIZE) : r.packed!.check);
      }
      // The caller's buffer is left as it was.
      expect(buf.every((x) => x === 0xee)).toBe(true);
    }), { numRuns: 25 });
  });
});
