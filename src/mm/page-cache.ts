/**
 * A page cache for host files: the bytes of a (file, offset, length) range are read into
 * the memory file once per sandbox and mapped copy-on-write by every private mapping and
 * every exec of them, as Linux's page cache serves private file mappings. A python3
 * process tree then holds one copy of libc and libpython, not one per process, and exec
 * does not re-read them. Keys include the host file's size and mtime, so a changed file
 * gets new pages; cached blocks live as long as the sandbox (and travel with checkpoints).
 */
import type { Kernel } from '../kernel/kernel.js';
import { pageRoundDown, pageRoundUp } from './memory-file.js';

/** The memory-file user id under which the cache holds its blocks (address spaces are positive). */
const CACHE_USER = -0x7fff_ffff;

/**
 * The block caching `len` bytes of a host file at `offset`, filled by `fill` the first time
 * (it receives the block's offset in the memory file and must write at most `len` bytes; if it
 * throws, the block is freed and the error goes on).
 */
export function pageCacheBlock(k: Kernel, hostPath: string, size: number, mtimeMs: number, offset: number, len: number, fill: (blockOffset: number) => void): number {
  const key = `${hostPath}\0${size}\0${mtimeMs}\0${offset}\0${len}`;
  const cached = k.state.memoryFile.pageCache?.[key];
  if (cached !== undefined && k.state.memoryFile.blocks[cached]) return cached;
  const block = k.mf.newBlock(pageRoundUp(Math.max(len, 1)), CACHE_USER);
  try { fill(block); } catch (e) { k.mf.ref(block, CACHE_USER, -1); throw e; } // a failed read caches nothing
  if (!k.state.memoryFile.pageCache) k.stage([['set', ['memoryFile', 'pageCache'], {}]]);
  k.stage([['set', ['memoryFile', 'pageCache', key], block]]);
  return block;
}

/**
 * Fill a page-cache block from a host file, in place: bytes [offset, offset+len) of the file go
 * to the block at memory-file offset `block` by pread(2) straight into the memory file's windows,
 * never through a buffer on the kernel's heap. Only the file's data ranges are read, and so
 * charged: `ranges` are its [start, end) byte pairs (SEEK_DATA/SEEK_HOLE, as HostTree.dataRanges
 * gives them, ending at the file's size). Holes, bytes past the file's end or past `len`, and the
 * rest of a short read (the file shrank) stay uncharged zeros, as the tail of a file's last page.
 * `pread(buf, off)` reads file byte `off` on into `buf` and returns the count (0 at the end); what
 * it throws goes on, as does SyscallError(ENOMEM) from charging the memory limit (pageCacheBlock
 * then frees the block). Used by mmap of a host file (src/files/host.ts) and by execve's
 * PT_LOAD segments (src/loader/exec.ts), whose blocks it fills as filemap_read_folio fills Linux's.
 */
export function fillFromHostFile(k: Kernel, block: number, offset: number, len: number, ranges: ReadonlyArray<readonly [number, number]>, pread: (buf: Uint8Array, off: number) => number): void {
  for (const [s, e] of ranges) {
    const lo = pageRoundDown(Math.max(s, offset) - offset), hi = Math.min(len, e - offset);
    if (lo >= hi) continue;
    let short = false;
    k.mf.forEachChunk(block + lo, hi - lo, (view, ro) => {
      if (short) return;
      for (let done = 0; done < view.length;) {
        const n = pread(view.subarray(done), offset + lo + ro + done);
        if (n <= 0) { short = true; return; }
        done += n;
      }
    }, true);
  }
}

/**
 * Drop the cached blocks no mapping uses any more (only the cache holds them), as Linux reclaims
 * clean page-cache pages under memory pressure; a later mapping reads the file again. Returns
 * the bytes of memory file freed.
 */
export function shrinkPageCache(k: Kernel): number {
  const cache = k.state.memoryFile.pageCache;
  if (!cache) return 0;
  let freed = 0;
  for (const [key, block] of Object.entries(cache)) {
    const b = k.state.memoryFile.blocks[block];
    if (!b) { k.stage([['del', ['memoryFile', 'pageCache', key]]]); continue; }
    const users = Object.keys(b.users);
    if (users.length !== 1 || Number(users[0]) !== CACHE_USER) continue;
    freed += b.len;
    k.stage([['del', ['memoryFile', 'pageCache', key]]]);
    k.mf.ref(block, CACHE_USER, -1);
  }
  return freed;
}
