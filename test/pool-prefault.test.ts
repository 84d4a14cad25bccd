/**
 * A warm pool's waiting clone fills its stubs' page tables for the pages the first take's guest
 * touched (docs/pools.md, "The working set"): AddressSpace.residentRuns reads what a stub has in
 * its page tables, AddressSpace.prefault touches pages in the stub's own user mode
 * (PlatformTask.touchPages, the stub's touch loop). Checked on a restored checkpoint, in process.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, REPO_ROOT, snapvisor } from './helpers.js';
import { PROT_READ } from '../src/abi/linux.js';

const GUEST = ['/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; echo "$(cat /proc/snapvisor/checkpoint)"'];

describe('pool working set: stub page tables', () => {
  it('prefault makes the stub hold the pages (residentRuns sees them); a touch of an unmapped page fails alone and the stub lives on', async () => {
    const store = freshDir('prefault-store');
    const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...GUEST], { timeoutMs: 30_000 });
    expect(r.stdout.toString()).toBe('original\n');
    const id = /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
    // The built restore (dist/), as test/persist.test.ts does.
    const { restoreKernel } = await import(pathToFileURL(path.join(REPO_ROOT, 'dist', 'snapshots', 'checkpoint.js')).href) as typeof import('../snapshots/checkpoint.js');
    const { kernel } = await restoreKernel(store, id, { pagesVerified: true });
    try {
      const [t] = [...kernel.tasks.values()];
      const as = t.mm;
      // The guest has not run since its restore: a readable VMA's pages are not in the stub yet.
      const v = as.state.vmas.find((x) => (x.prot & PROT_READ) && x.end - x.start >= 8 * 4096)!;
      expect(v).toBeDefined();
      /** Pages of [lo, hi) in runs. */
      const within = (runs: Array<[number, number]>, lo: number, hi: number) => runs.reduce((n, [a, p]) => n + Math.max(0, Math.min(hi, a + p * 4096) - Math.max(lo, a)) / 4096, 0);
      const first8 = (runs: Array<[number, number]>) => within(runs, v.start, v.start + 8 * 4096);
      expect(first8(as.residentRuns())).toBeLessThan(8);
      // Touching 8 pages of it, plus a run in no VMA (skipped): the stub holds those 8 pages now.
      expect(as.prefault([[v.start, 8], [0x10000, 4]])).toBe(8);
      expect(first8(as.residentRuns())).toBe(8);
      // The platform's touch of a page nobody mapped faults: it gives up and says so, and the stub still works.
      expect(as.state.vmas.some((x) => x.start <= 0x10000 && x.end > 0x10000)).toBe(false);
      expect(t.platform.touchPages!([[0x10000, 1]])).toBe(false);
      expect(t.platform.touchPages!([[v.start, 2]])).toBe(true);
    } finally {
      kernel.destroy();
    }
    await new Promise((res) => setTimeout(res, 200));
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});
