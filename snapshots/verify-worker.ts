/**
 * Worker thread of a restore: verifies the page file the restored sandbox is already
 * running on (snapshots/page-check.ts), then posts `null` (all pages good) or one line naming
 * the first bad page. workerData: { path (of the page file, e.g. /proc/self/fd/N), runs
 * (the pagemap), pageFileBytes, dataRanges (the page file's data ranges, found by the parent:
 * pageFileDataRanges of ./pages.ts), layerPaths (page files of inherited layers, layer k at k - 1),
 * checksums (the restore record's, checked first when given: record-check.ts) }.
 *
 * This worker loads no native addon (koffi, cbor-x's cbor-extract): the parent terminates it
 * whenever the sandbox ends (and Node terminates it when the process exits), and a worker
 * terminated while an addon is initialising or declaring functions aborts the whole process
 * (FATAL ERROR: Error::ThrowAsJavaScriptException napi_throw: koffi's napi_throw fails in a
 * terminating environment). `npm run lint:layers` keeps it so (.dependency-cruiser.cjs).
 */
import fs from 'node:fs';
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { checkPageFile } from './page-check.js';
import { type RecordChecksums, recordChecksumFailure, recordChecksumReason } from './record-check.js';

/** Check the page file and post the verdict (only when running as the restore's worker). */
function main(): void {
  // The lowest priority, for this thread only (setpriority(2) of a thread id on Linux): the
  // restored guest and its tracer come first.
  try { os.setPriority(19); } catch { /* left at the default */ }
  const { path, runs, pageFileBytes, dataRanges, layerPaths, checksums } = workerData as { path: string; runs: Array<[number, Uint8Array, number?]>; pageFileBytes: number; dataRanges: Array<[number, number]>; layerPaths?: string[]; checksums?: RecordChecksums };
  // The restore record's checksums first, when the restore left them to this check.
  const failure = checksums ? recordChecksumFailure(checksums) : undefined;
  if (failure) {
    parentPort!.postMessage(recordChecksumReason(failure));
    return;
  }
  let result: string | undefined;
  const fds: number[] = [];
  try {
    for (const p of [path, ...(layerPaths ?? [])]) fds.push(fs.openSync(p, 'r'));
    result = checkPageFile(fds[0], runs, pageFileBytes, dataRanges, fds.slice(1));
  } catch (e) {
    result = `its page file cannot be read (${(e as Error).message})`;
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
  parentPort!.postMessage(result ?? null);
}

if (parentPort && workerData) main();
