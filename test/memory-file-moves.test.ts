/**
 * The memory file's record of copies (MemoryFile.takeMoves), the hint an incremental compressed
 * checkpoint uses to name pages a copy-on-write moved in the earlier pack that holds them
 * (docs/snapshot-format.md "Copies"): a copy of pages that match a stored layer is recorded with
 * that layer; a copy of untracked pages is not; a source dropped later (its block freed) while
 * it still matched keeps its bytes; taking the record starts a new one.
 */
import { describe, expect, it } from 'vitest';
import { HostMemfd } from '../platforms/host/host-services.js';
import { MemoryFile } from '../src/mm/memory-file.js';
import type { MemoryFileState } from '../src/kernel/state.js';

const PAGE = 4096;
const CHUNK = 16 * PAGE;

function pattern(seed: number): Uint8Array {
  const b = new Uint8Array(CHUNK);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('memory file: copies recorded for incremental checkpoints', () => {
  it('records copies of clean pages with their layer, keeps a freed source, and starts anew once taken', () => {
    const state: MemoryFileState = { end: 0, free: [], blocks: {} };
    const mf = new MemoryFile(state, (name, size) => new HostMemfd(name, size));
    try {
      const a = mf.newBlock(CHUNK, 1);
      mf.pwrite(a, pattern(1));
      const untracked = mf.newBlock(CHUNK, 1);
      mf.pwrite(untracked, pattern(2));
      // A checkpoint stored block a as layer 3; the untracked block was never stored.
      mf.markClean(a, CHUNK, 3);
      const b = mf.newBlock(CHUNK, 1);
      mf.copy(b, a, CHUNK);
      const c = mf.newBlock(CHUNK, 1);
      mf.copy(c, untracked, CHUNK);
      // The source's block freed (the capture's hold released): its pages' bytes are kept.
      mf.ref(a, 1, -1);
      expect(state.blocks[a]).toBeUndefined();

      const m = mf.takeMoves()!;
      expect(m).toBeDefined();
      for (let i = 0; i < CHUNK / PAGE; i++) {
        expect(m.from[b / PAGE + i]).toBe(a / PAGE + i + 1);
        expect(m.layer[b / PAGE + i]).toBe(3);
        expect(m.from[c / PAGE + i] ?? 0).toBe(0);
        const kept = m.kept.get(a / PAGE + i)!;
        expect(kept.layer).toBe(3);
        expect(Buffer.from(kept.bytes).equals(Buffer.from(pattern(1).subarray(i * PAGE, (i + 1) * PAGE)))).toBe(true);
      }
      expect(m.kept.size).toBe(CHUNK / PAGE);
      // Taken: nothing recorded since.
      expect(mf.takeMoves()).toBeUndefined();
    } finally {
      mf.destroy();
    }
  });
});
