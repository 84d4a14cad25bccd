/**
 * Worker thread of a restore: verifies the page file the restored sandbox is already
 * running on (snapshots/pages.ts), then posts `null` (all pages good) or one line naming
 * the first bad page. workerData: { path (of the page file, e.g. /proc/self/fd/N), runs
 * (the pagemap), pageFileBytes, layerPaths (page files of inherited layers, layer k at k - 1) }.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyPages } from './pages.js';

/** Check the page file and post the verdict (only when running as the restore's worker). */
function main(): void {
  const { path, runs, pageFileBytes, layerPaths } = workerData as { path: string; runs: Array<[number, Uint8Array, number?]>; pageFileBytes: number; layerPaths?: string[] };
  let result: string | undefined;
  const fds: number[] = [];
  try {
    for (const p of [path, ...(layerPaths ?? [])]) fds.push(fs.openSync(p, 'r'));
    result = verifyPages(fds[0], runs, pageFileBytes, fds.slice(1));
  } catch (e) {
    result = `its page file cannot be read (${(e as Error).message})`;
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
  parentPort!.postMessage(result ?? null);
}

if (parentPort && workerData) main();
