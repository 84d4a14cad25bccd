/**
 * Where a checkpoint looks for a frozen guest's data (MemoryFile.populatedRanges with the charged
 * runs, `allCharged`): the charged units whole when the memfd holds nearly all of their bytes (no
 * SEEK_HOLE walk over every present page on the checkpoint's path), else the data runs the walk
 * finds. Either way every page holding data is in the ranges, and a sparse memfd's untouched
 * pages are not.
 */
import { describe, expect, it } from 'vitest';
import { HostMemfd } from '../platforms/host/host-services.js';
import { CHARGE_UNIT, MemoryFile } from '../src/mm/memory-file.js';
import type { MemoryFileState } from '../src/kernel/state.js';

const PAGE = 4096;
const UNITS = 16;

/** A memory file with one block of UNITS charge units, and `pages` (page indices in it) written non-zero. */
function memoryFile(pages: Iterable<number>): { mf: MemoryFile; block: number } {
  const state: MemoryFileState = { end: 0, free: [], blocks: {} };
  const mf = new MemoryFile(state, (name, size) => new HostMemfd(name, size));
  const block = mf.newBlock(UNITS * CHARGE_UNIT, 1);
  // Every unit charged (as a guest's first touch charges it), whatever is written in it.
  mf.charge(block, UNITS * CHARGE_UNIT);
  for (const p of pages) mf.pwrite(block + p * PAGE, new Uint8Array(PAGE).fill(p % 251 + 1));
  return { mf, block };
}

const bytesIn = (ranges: Array<[number, number]>): number => ranges.reduce((n, [, l]) => n + l, 0);
const covers = (ranges: Array<[number, number]>, off: number): boolean => ranges.some(([o, l]) => off >= o && off + PAGE <= o + l);

describe('memory file: where a checkpoint looks for data', () => {
  const pagesPerUnit = CHARGE_UNIT / PAGE, all = UNITS * pagesPerUnit;

  it('takes the charged units whole when nearly every page of them holds data (one page missing)', () => {
    const written = [...Array(all).keys()].filter((p) => p !== 5);
    const { mf, block } = memoryFile(written);
    try {
      const charged = mf.chargedRuns();
      expect(bytesIn(charged)).toBe(UNITS * CHARGE_UNIT);
      const ranges = mf.populatedRanges(charged, true);
      expect(ranges).toEqual(charged);
      for (const p of written) expect(covers(ranges, block + p * PAGE)).toBe(true);
      // Without allCharged (a running guest's, or spans that are not all the charged runs): searched.
      const searched = mf.populatedRanges(charged);
      expect(bytesIn(searched)).toBe(written.length * PAGE);
      expect(covers(searched, block + 5 * PAGE)).toBe(false);
    } finally {
      mf.destroy();
    }
  });

  it('searches a sparse memfd: one page in each charged unit', () => {
    const written = [...Array(UNITS).keys()].map((u) => u * pagesPerUnit + 3);
    const { mf, block } = memoryFile(written);
    try {
      const ranges = mf.populatedRanges(mf.chargedRuns(), true);
      expect(bytesIn(ranges)).toBe(written.length * PAGE);
      for (const p of written) expect(covers(ranges, block + p * PAGE)).toBe(true);
    } finally {
      mf.destroy();
    }
  });
});
