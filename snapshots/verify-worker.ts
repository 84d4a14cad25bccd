/**
 * Worker thread of a restore: verifies the page file the restored sandbox is already
 * running on (snapshots/pages.ts), then posts `null` (all pages good) or one line naming
 * the first bad page. workerData: { path (of the page file, e.g. /proc/self/fd/N), runs
 * (the pagemap), pageFileBytes }.
 */
import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { verifyPages } from './pages.js';

/** Check the page file and post the verdict (only when running as the restore's worker). */
function main(): void {
  const { path, runs, pageFileBytes } = workerData as { path: string; runs: Array<[number, Uint8Array]>; pageFileBytes: number };
  let result: string | undefined;
  let fd = -1;
  try {
    fd = fs.openSync(path, 'r');
    result = verifyPages(fd, runs, pageFileBytes);
  } catch (e) {
    result = `its page file cannot be read (${(e as Error).message})`;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  parentPort!.postMessage(result ?? null);
}

if (parentPort && workerData) main();
