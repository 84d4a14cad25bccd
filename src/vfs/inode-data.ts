/**
 * Contents of upper-layer (sandbox-written) regular files. A file lives in the graph as
 * sparse 64 KiB chunks (holes read as zeros, so a file with data at 4 GiB costs 64 KiB)
 * until something maps it MAP_SHARED; then its bytes move into a block of the memory file,
 * which the mappings share, so stores through a mapping and read(2)/write(2) see the same
 * bytes (compare the page cache). Either way the contents are checkpointed: chunks with
 * the graph, memory-file blocks with the guest's pages.
 */
import { E, SyscallError } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { InodeState } from '../kernel/state.js';
import { pageRoundUp } from '../mm/memory-file.js';
import { PAGE_SIZE } from '../abi/linux.js';

/** Largest upper-layer file (bytes); shared (memory-file) files are bounded by MAX_SHARED_FILE. */
export const MAX_UPPER_FILE = 2 ** 40;
const MAX_SHARED_FILE = 1 << 30;
const CHUNK = 65536;
const ZERO_CHUNK = Buffer.alloc(CHUNK);

/** The memory-file user id an inode holds its shared block under (address spaces are positive). */
const inodeUser = (ino: InodeState) => -ino.id;

/** Visit the chunk pieces covering [pos, end): (chunk index, offset in chunk, length, offset in range). */
function pieces(pos: number, end: number, fn: (index: number, at: number, len: number, ro: number) => void): void {
  for (let p = pos; p < end;) {
    const index = Math.floor(p / CHUNK), at = p - index * CHUNK, len = Math.min(CHUNK - at, end - p);
    fn(index, at, len, p - pos);
    p += len;
  }
}

/** Bytes [pos, end) of a file (always a copy). */
export function inodeRead(k: Kernel, ino: InodeState, pos: number, end: number): Uint8Array {
  end = Math.min(end, ino.size);
  if (end <= pos) return new Uint8Array(0);
  if (ino.shared) return new Uint8Array(k.mf.read(ino.shared.offset + pos, end - pos));
  const out = new Uint8Array(end - pos);
  const chunks = ino.chunks ?? {};
  pieces(pos, end, (i, at, len, ro) => { const c = chunks[i]; if (c) out.set(c.subarray(at, at + len), ro); });
  return out;
}

/** Write `len` bytes at `at`, produced by `fill(put)` calls of (bytes, offset in the range). EFBIG past the limit. */
export function inodeWrite(k: Kernel, ino: InodeState, at: number, len: number, fill: (put: (src: Uint8Array, ro: number) => void) => void): void {
  if (at + len > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  if (ino.shared) {
    if (at + len > ino.shared.capacity) growShared(k, ino, at + len);
    const base = ino.shared.offset + at;
    fill((src, ro) => k.mf.write(base + ro, src));
  } else {
    const chunks = (ino.chunks ??= {});
    fill((src, ro) => pieces(at + ro, at + ro + src.length, (i, off, n, sro) => {
      (chunks[i] ??= new Uint8Array(CHUNK)).set(src.subarray(sro, sro + n), off);
    }));
  }
  if (at + len > ino.size) ino.size = at + len;
}

/** Move a shared file that outgrew its block to a larger one (mappings made before keep the old pages). */
function growShared(k: Kernel, ino: InodeState, size: number): void {
  if (size > MAX_SHARED_FILE) throw new SyscallError(E.EFBIG);
  const capacity = pageRoundUp(Math.max(size, ino.shared!.capacity * 2));
  const offset = k.mf.newBlock(capacity, inodeUser(ino));
  k.mf.copy(offset, ino.shared!.offset, ino.size);
  k.mf.ref(ino.shared!.offset, inodeUser(ino), -1);
  ino.shared = { offset, capacity };
}

/** Set the size; bytes past it read as zeros if the file grows again (ftruncate semantics). */
export function inodeTruncate(k: Kernel, ino: InodeState, size: number): void {
  if (size > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  if (size < ino.size) inodeZero(k, ino, size, ino.size);
  if (ino.shared && size > ino.shared.capacity) growShared(k, ino, size);
  if (!ino.shared && ino.chunks) {
    // Drop whole chunks past the end: they are holes now.
    for (const i of Object.keys(ino.chunks)) if (Number(i) * CHUNK >= size) delete ino.chunks[Number(i)];
  }
  ino.size = size;
}

/** Zero [from, to) inside the file (truncation, fallocate PUNCH_HOLE / ZERO_RANGE). */
export function inodeZero(k: Kernel, ino: InodeState, from: number, to: number): void {
  to = Math.min(to, ino.size);
  if (to <= from) return;
  if (ino.shared) { k.mf.write(ino.shared.offset + from, new Uint8Array(to - from)); return; }
  const chunks = ino.chunks ?? {};
  pieces(from, to, (i, at, len) => {
    const c = chunks[i];
    if (!c) return;
    if (at === 0 && len === CHUNK) delete chunks[i]; else c.fill(0, at, at + len);
  });
}

/**
 * Fill a new file of `size` bytes (copy-up of a host file): only the data ranges
 * ([start, end) byte pairs, from SEEK_DATA/SEEK_HOLE) are read, through `read(buf, offset)`
 * (returns bytes read, 0 at end of file), chunk by chunk; holes stay holes. A chunk that
 * reads as all zeros is not kept either.
 */
export function inodeSetContents(ino: InodeState, size: number, ranges: Array<[number, number]>, read: (buf: Uint8Array, offset: number) => number): void {
  if (size > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  const chunks: Record<number, Uint8Array> = {};
  for (const [start, end] of ranges) {
    for (let i = Math.floor(start / CHUNK); i * CHUNK < Math.min(end, size); i++) {
      if (chunks[i]) continue;
      const c = new Uint8Array(CHUNK);
      let done = 0;
      const len = Math.min(CHUNK, size - i * CHUNK);
      while (done < len) {
        const n = read(c.subarray(done, len), i * CHUNK + done);
        if (n <= 0) break;
        done += n;
      }
      if (!ZERO_CHUNK.equals(c)) chunks[i] = c;
    }
  }
  ino.chunks = chunks;
  ino.size = size;
}

/**
 * The memory-file block behind a file, for a MAP_SHARED mapping of at least `minBytes`:
 * the first such mapping moves the file's bytes out of the graph into the memory file.
 */
export function inodeShare(k: Kernel, ino: InodeState, minBytes: number): { offset: number; capacity: number } {
  if (!ino.shared) {
    const capacity = pageRoundUp(Math.max(ino.size, minBytes, PAGE_SIZE));
    if (capacity > MAX_SHARED_FILE) throw new SyscallError(E.EFBIG);
    const offset = k.mf.newBlock(capacity, inodeUser(ino));
    for (const [i, c] of Object.entries(ino.chunks ?? {})) {
      const at = Number(i) * CHUNK;
      if (at < ino.size) k.mf.write(offset + at, c.subarray(0, Math.min(CHUNK, ino.size - at)));
    }
    ino.shared = { offset, capacity };
    ino.chunks = undefined;
  } else if (minBytes > ino.shared.capacity) {
    growShared(k, ino, minBytes);
  }
  return ino.shared;
}
