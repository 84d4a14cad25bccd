/**
 * Checking a page file against its pagemap (used by `store check` and by every restore):
 * finds the file's data ranges with lseek (SEEK_DATA/SEEK_HOLE, through the host's libc) and
 * checks them with ./page-check.ts. A worker thread gets the ranges from its parent and uses
 * ./page-check.ts alone (it must not load koffi: see there).
 */
import { SEEK_DATA, SEEK_HOLE, lseek } from '../platforms/host/libc.js';
import type { PagemapRun } from './format.js';
import { checkPageFile } from './page-check.js';

/**
 * The data ranges of the first `pageFileBytes` bytes of page file `fd`: byte [start, end)
 * pairs in increasing order (SEEK_DATA/SEEK_HOLE; everything else is a hole, zeros). A file
 * system without SEEK_DATA reports the whole file as data.
 */
export function pageFileDataRanges(fd: number, pageFileBytes: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let pos = 0; pos < pageFileBytes;) {
    const data = lseek(fd, pos, SEEK_DATA);
    if (data < 0 || data >= pageFileBytes) break;
    let hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole > pageFileBytes) hole = pageFileBytes;
    ranges.push([data, hole]);
    pos = hole;
  }
  return ranges;
}

/**
 * Check a page file's contents against its pagemap (checkPageFile of ./page-check.ts over the
 * file's data ranges): undefined if all is well, else one line naming the first bad page.
 * `layerFds[k - 1]`: the page file of layer k; `unchecked`: pages checked by their pack chunk
 * (see checkPageFile). Synchronous: a restore whose guest waits runs
 * checkPageFile in a worker thread instead.
 */
export function verifyPages(fd: number, allRuns: PagemapRun[], pageFileBytes: number, layerFds: readonly number[] = [], unchecked: ReadonlyArray<Uint8Array | undefined> = []): string | undefined {
  return checkPageFile(fd, allRuns, pageFileBytes, pageFileDataRanges(fd, pageFileBytes), layerFds, unchecked);
}
