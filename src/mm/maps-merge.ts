/**
 * Which of our VMAs Linux would show as one line of /proc/PID/maps. Ours stay apart where their
 * memory-file blocks differ (a heap grown by brk, a private file mapping split by copy-on-write),
 * which is no business of the guest's, nor of `snapvisor inspect`'s reader.
 */
import { MAP_ANONYMOUS } from '../abi/linux.js';
import type { Vma } from '../kernel/state.js';

/**
 * Whether `next` continues `prev` as Linux's vma_merge (mm/mmap.c) would have kept them one VMA:
 * adjacent (prev.end === next.start, guest addresses), same protection, flags and name, and for a
 * file mapping the file offset (pgoff, bytes) continuing.
 */
export function mergesInMaps(prev: Vma, next: Vma): boolean {
  const anon = (next.flags & MAP_ANONYMOUS) !== 0 || next.name === '' || next.name.startsWith('[');
  return prev.end === next.start && prev.prot === next.prot && prev.flags === next.flags && prev.name === next.name &&
    (anon || prev.pgoff + (prev.end - prev.start) === next.pgoff);
}

/** `vmas` (sorted by start) grouped into the runs /proc/PID/maps shows as one line each. */
export function mapsRuns<V extends Vma>(vmas: readonly V[]): V[][] {
  const runs: V[][] = [];
  for (const v of vmas) {
    const run = runs[runs.length - 1];
    if (run && mergesInMaps(run[run.length - 1], v)) run.push(v);
    else runs.push([v]);
  }
  return runs;
}
