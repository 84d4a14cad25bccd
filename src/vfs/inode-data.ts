/**
 * Contents of upper-layer (sandbox-written) regular files. A file lives in the graph as a
 * byte buffer until something maps it MAP_SHARED; then its bytes move into a block of the
 * memory file, which the mappings share, so stores through a mapping and read(2)/write(2)
 * see the same bytes (compare the page cache). Either way the contents are checkpointed:
 * buffers with the graph, memory-file blocks with the guest's pages.
 */
import { E, SyscallError } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { InodeState } from '../kernel/state.js';
import { PAGE_SIZE, pageRoundUp } from '../mm/memory-file.js';

/** Largest upper-layer file (bytes). */
export const MAX_UPPER_FILE = 1 << 30;

/** The memory-file user id an inode holds its shared block under (address spaces are positive). */
const inodeUser = (ino: InodeState) => -ino.id;

/** Bytes [pos, end) of a file (a copy when the file lives in the memory file). */
export function inodeRead(k: Kernel, ino: InodeState, pos: number, end: number): Uint8Array {
  end = Math.min(end, ino.size);
  if (end <= pos) return new Uint8Array(0);
  if (ino.shared) return new Uint8Array(k.mf.read(ino.shared.offset + pos, end - pos));
  return ino.data!.subarray(pos, end);
}

/** Make room for `size` bytes (growing the buffer, or moving a too-small shared block). EFBIG past the limit. */
function reserve(k: Kernel, ino: InodeState, size: number): void {
  if (size > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  if (ino.shared) {
    if (size <= ino.shared.capacity) return;
    // Existing mappings keep the old block (they map at most the old size, as a mapping past EOF would not see growth).
    const capacity = pageRoundUp(Math.max(size, ino.shared.capacity * 2));
    const offset = k.mf.newBlock(capacity, inodeUser(ino));
    k.mf.copy(offset, ino.shared.offset, ino.size);
    k.mf.ref(ino.shared.offset, inodeUser(ino), -1);
    ino.shared = { offset, capacity };
    return;
  }
  const data = ino.data ?? new Uint8Array(0);
  if (size <= data.length) return;
  const nb = new Uint8Array(Math.min(MAX_UPPER_FILE, Math.max(size, data.length * 2, 4096)));
  nb.set(data.subarray(0, ino.size));
  ino.data = nb;
}

/** Write `len` bytes at `at`, produced by `fill(view, offsetInRange)` into the file's storage. */
export function inodeWrite(k: Kernel, ino: InodeState, at: number, len: number, fill: (put: (src: Uint8Array, ro: number) => void) => void): void {
  reserve(k, ino, at + len);
  if (ino.shared) {
    const base = ino.shared.offset + at;
    fill((src, ro) => k.mf.write(base + ro, src));
  } else {
    const data = ino.data!;
    fill((src, ro) => data.set(src, at + ro));
  }
  if (at + len > ino.size) ino.size = at + len;
}

/** Set the size; bytes past it read as zeros if the file grows again (ftruncate semantics). */
export function inodeTruncate(k: Kernel, ino: InodeState, size: number): void {
  if (size > ino.size) reserve(k, ino, size);
  const from = Math.min(size, ino.size), to = Math.max(size, ino.size);
  if (ino.shared) k.mf.write(ino.shared.offset + from, new Uint8Array(Math.max(0, Math.min(to, ino.shared.capacity) - from)));
  else ino.data!.fill(0, from, Math.min(to, ino.data!.length));
  ino.size = size;
}

/** Zero [from, to) inside the file (fallocate PUNCH_HOLE / ZERO_RANGE). */
export function inodeZero(k: Kernel, ino: InodeState, from: number, to: number): void {
  to = Math.min(to, ino.size);
  if (to <= from) return;
  if (ino.shared) k.mf.write(ino.shared.offset + from, new Uint8Array(to - from));
  else ino.data!.fill(0, from, to);
}

/**
 * The memory-file block behind a file, for a MAP_SHARED mapping of at least `minBytes`:
 * the first such mapping moves the file's bytes out of the graph into the memory file.
 */
export function inodeShare(k: Kernel, ino: InodeState, minBytes: number): { offset: number; capacity: number } {
  if (!ino.shared) {
    const capacity = pageRoundUp(Math.max(ino.size, minBytes, PAGE_SIZE));
    if (capacity > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
    const offset = k.mf.newBlock(capacity, inodeUser(ino));
    if (ino.size) k.mf.write(offset, ino.data!.subarray(0, ino.size));
    ino.shared = { offset, capacity };
    ino.data = undefined;
  } else if (minBytes > ino.shared.capacity) {
    reserve(k, ino, minBytes);
  }
  return ino.shared;
}
