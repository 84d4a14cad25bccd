/**
 * Contents of upper-layer (sandbox-written) regular files. A file's data lives in the
 * memory file, off the kernel's heap: sparse 64 KiB blocks by chunk index (holes read as
 * zeros, so a file with data at 4 GiB costs 64 KiB), read and written with pread/pwrite on
 * the memfd so the pages are not mapped into the kernel (they do not add to its RSS). When
 * something maps the file MAP_SHARED, its bytes move into one contiguous memory-file block
 * the mappings share, so stores through a mapping and read(2)/write(2) see the same bytes
 * (compare the page cache). Either way the graph holds only offsets and the data is
 * checkpointed with the memory file's pages (deduplicated, zero pages skipped).
 *
 * The bytes held by upper files are counted in FilesystemState.diskBytes; past
 * SandboxConfig.diskLimit (run --disk) a write that needs a new block fails with ENOSPC.
 * Graphs written before this (contents as `chunks` of bytes in the graph) are moved into
 * blocks the first time the file is touched.
 */
import { E, SyscallError } from '../errno.js';
import type { FilesystemState, InodeState, SandboxConfig } from '../kernel/state.js';
import { MemoryFile, MemoryFileError, pageRoundUp } from '../mm/memory-file.js';
import { PAGE_SIZE } from '../abi/linux.js';
import type { GraphOp, KernelEventBody } from '../kernel/events.js';

/**
 * What file data needs from the kernel: the memory file, the graph's filesystem and configuration
 * (read only), and the kernel's door (`emit`): every change to an inode's block index, size or the
 * disk accounting is an `inode.update` event whose ops are the change (the bytes are memory-file
 * pages, outside the graph).
 */
export interface DataStore {
  readonly mf: MemoryFile;
  readonly state: { readonly fs: FilesystemState; readonly config: SandboxConfig };
  emit(body: KernelEventBody, ops: GraphOp[]): void;
  /** A shared file's block moved from memory-file offset `from` to `to`: point every mapping of it at the new one. */
  sharedBlockMoved?(from: number, to: number): void;
}

/**
 * Largest upper-layer file (bytes): ext4's with 4 KiB blocks, (2^32 - 1) blocks, 16 TiB less
 * 4 KiB (ext4_max_size), where the differential tests' native runs write. Files are sparse, so
 * only written blocks cost anything. Shared (memory-file) files are bounded by MAX_SHARED_FILE.
 */
export const MAX_UPPER_FILE = 2 ** 44 - 4096;
/**
 * Largest file that can be mapped MAP_SHARED (bytes): its block spans the whole file in the
 * 64 GiB sparse memory file, but only pages written cost memory or checkpoint space.
 */
export const MAX_SHARED_FILE = 16 * 2 ** 30;
/** A shared block grows by doubling up to this many bytes at a time. */
const SHARED_GROWTH = 2 ** 30;
/** Bytes per block of file data (a multiple of the page size). */
export const CHUNK = 65536;
const ZERO_CHUNK = Buffer.alloc(CHUNK);

/** Ops for an inode's field (an undefined value deletes it), the disk accounting, and the event that carries them. */
const ino$ = (ino: InodeState, field: string, v: unknown): GraphOp => (v === undefined ? ['del', ['fs', 'inodes', ino.id, field]] : ['set', ['fs', 'inodes', ino.id, field], v]);
/**
 * The accounting op for `delta` bytes of `ino`'s data: a tmpfs inode counts in its superblock's
 * usedBytes (its size= limit), others in FilesystemState.diskBytes (run --disk).
 */
function disk$(k: DataStore, ino: InodeState, delta: number): GraphOp {
  const sb = ino.sb !== undefined ? k.state.fs.superblocks?.[ino.sb] : undefined;
  if (sb?.type === 'tmpfs') return ['set', ['fs', 'superblocks', sb.id, 'usedBytes'], Math.max(0, sb.usedBytes + delta)];
  if (ino.sb !== undefined) return ['set', ['fs', 'diskBytes'], k.state.fs.diskBytes ?? 0]; // its tmpfs is unmounted: nothing to count
  return ['set', ['fs', 'diskBytes'], Math.max(0, (k.state.fs.diskBytes ?? 0) + delta)];
}
const update = (k: DataStore, ino: InodeState, what: string, ops: GraphOp[]): void => k.emit({ type: 'inode.update', inode: ino.id, what }, ops);

/** The memory-file user id an inode holds its blocks under (address spaces are positive). */
const inodeUser = (ino: InodeState) => -ino.id;

/** Visit the chunk pieces covering [pos, end): (chunk index, offset in chunk, length, offset in range). */
function pieces(pos: number, end: number, fn: (index: number, at: number, len: number, ro: number) => void): void {
  for (let p = pos; p < end;) {
    const index = Math.floor(p / CHUNK), at = p - index * CHUNK, len = Math.min(CHUNK - at, end - p);
    fn(index, at, len, p - pos);
    p += len;
  }
}

/** ENOSPC unless `n` more blocks of `ino` fit under its tmpfs's size limit, or the sandbox's disk limit. */
function reserve(k: DataStore, ino: InodeState, n: number): void {
  if (n <= 0) return;
  const sb = ino.sb !== undefined ? k.state.fs.superblocks?.[ino.sb] : undefined;
  if (sb?.type === 'tmpfs') {
    if (sb.sizeLimit !== undefined && sb.usedBytes + n * CHUNK > sb.sizeLimit) throw new SyscallError(E.ENOSPC);
    return;
  }
  const limit = k.state.config.diskLimit;
  if (limit !== undefined && (k.state.fs.diskBytes ?? 0) + n * CHUNK > limit) throw new SyscallError(E.ENOSPC);
}

/** A new zeroed block for chunk `i` of `ino` (ENOSPC when the memory file is exhausted). */
function newChunk(k: DataStore, ino: InodeState, i: number): number {
  let off: number;
  try { off = k.mf.newBlock(CHUNK, inodeUser(ino)); } catch (e) {
    if (e instanceof MemoryFileError) throw new SyscallError(E.ENOSPC);
    throw e;
  }
  update(k, ino, 'block', [['set', ['fs', 'inodes', ino.id, 'blocks', i], off], disk$(k, ino, CHUNK)]);
  return off;
}

function dropChunk(k: DataStore, ino: InodeState, i: number): void {
  const off = ino.blocks![i];
  if (off === undefined) return;
  update(k, ino, 'hole', [['del', ['fs', 'inodes', ino.id, 'blocks', i]], disk$(k, ino, -CHUNK)]);
  k.mf.ref(off, inodeUser(ino), -1);
}

/** The blocks of a file, moving bytes of an older graph (`chunks`) into the memory file first. */
function blocksOf(k: DataStore, ino: InodeState): Readonly<Record<number, number>> {
  if (!ino.blocks) {
    const legacy = ino.chunks;
    update(k, ino, 'blocks', [ino$(ino, 'blocks', {}), ino$(ino, 'chunks', undefined)]);
    for (const [i, c] of Object.entries(legacy ?? {})) k.mf.pwrite(newChunk(k, ino, Number(i)), c);
  }
  return ino.blocks!;
}

/** Bytes [pos, end) of a file (always a copy). */
export function inodeRead(k: DataStore, ino: InodeState, pos: number, end: number): Uint8Array {
  end = Math.min(end, ino.size);
  if (end <= pos) return new Uint8Array(0);
  if (ino.shared) return new Uint8Array(k.mf.read(ino.shared.offset + pos, end - pos));
  const out = new Uint8Array(end - pos);
  const blocks = blocksOf(k, ino);
  pieces(pos, end, (i, at, len, ro) => { const b = blocks[i]; if (b !== undefined) k.mf.pread(b + at, out.subarray(ro, ro + len)); });
  return out;
}

/**
 * Write `len` bytes at `at`, produced by `fill(put)` calls of (bytes, offset in the range).
 * EFBIG past the largest file; ENOSPC (nothing written) when the new blocks it needs do
 * not fit under the disk limit.
 */
export function inodeWrite(k: DataStore, ino: InodeState, at: number, len: number, fill: (put: (src: Uint8Array, ro: number) => void) => void): void {
  if (at + len > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  if (ino.shared) {
    if (at + len > ino.shared.capacity) growShared(k, ino, at + len);
    // Disk: the units of the block this write fills for the first time.
    const fresh = len - k.mf.chargedIn(ino.shared.offset + at, len);
    const units = Math.ceil(fresh / CHUNK);
    reserve(k, ino, units);
    const base = ino.shared.offset + at;
    fill((src, ro) => k.mf.write(base + ro, src));
    countShared(k, ino, units * CHUNK);
  } else {
    const blocks = blocksOf(k, ino);
    let missing = 0;
    pieces(at, at + len, (i) => { if (blocks[i] === undefined) missing++; });
    reserve(k, ino, missing);
    fill((src, ro) => pieces(at + ro, at + ro + src.length, (i, off, n, sro) => {
      k.mf.pwrite((blocks[i] ?? newChunk(k, ino, i)) + off, src.subarray(sro, sro + n));
    }));
  }
  if (at + len > ino.size) update(k, ino, 'size', [ino$(ino, 'size', at + len)]);
}

/**
 * Bytes of disk a shared file is counted for in FilesystemState.diskBytes: what it held in
 * blocks when it became shared plus what write(2) filled since (stores through mappings are
 * charged as memory instead). Graphs from before this counted the whole capacity.
 */
const sharedCounted = (ino: InodeState): number => ino.shared!.counted ?? ino.shared!.capacity;

function countShared(k: DataStore, ino: InodeState, bytes: number): void {
  if (bytes === 0) return;
  update(k, ino, 'counted', [['set', ['fs', 'inodes', ino.id, 'shared', 'counted'], sharedCounted(ino) + bytes], disk$(k, ino, bytes)]);
}

/**
 * Move a shared file that outgrew its block to a larger one, and every mapping of it with it
 * (DataStore.sharedBlockMoved); EFBIG past MAX_SHARED_FILE, ENOSPC when the memory file is
 * full. Only the old block's populated pieces are copied.
 */
function growShared(k: DataStore, ino: InodeState, size: number): void {
  if (size > MAX_SHARED_FILE) throw new SyscallError(E.EFBIG);
  const old = ino.shared!;
  const capacity = Math.min(MAX_SHARED_FILE, pageRoundUp(Math.max(size, old.capacity + Math.min(old.capacity, SHARED_GROWTH))));
  let offset: number;
  try { offset = k.mf.newBlock(capacity, inodeUser(ino)); } catch (e) {
    if (e instanceof MemoryFileError) throw new SyscallError(E.ENOSPC);
    throw e;
  }
  k.mf.copy(offset, old.offset, Math.min(ino.size, old.capacity), false);
  k.sharedBlockMoved?.(old.offset, offset);
  k.mf.ref(old.offset, inodeUser(ino), -1);
  update(k, ino, 'shared', [ino$(ino, 'shared', { offset, capacity, counted: sharedCounted(ino) })]);
}

/** Set the size; bytes past it read as zeros if the file grows again (ftruncate semantics). */
export function inodeTruncate(k: DataStore, ino: InodeState, size: number): void {
  if (size > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  if (size < ino.size) inodeZero(k, ino, size, ino.size);
  if (ino.shared && size > ino.shared.capacity) growShared(k, ino, size);
  if (!ino.shared) {
    // Drop whole blocks past the end: they are holes now.
    const blocks = blocksOf(k, ino);
    for (const i of Object.keys(blocks)) if (Number(i) * CHUNK >= size) dropChunk(k, ino, Number(i));
  }
  if (ino.size !== size) update(k, ino, 'size', [ino$(ino, 'size', size)]);
}

/** Zero [from, to) inside the file (truncation, fallocate PUNCH_HOLE / ZERO_RANGE); whole blocks become holes. */
export function inodeZero(k: DataStore, ino: InodeState, from: number, to: number): void {
  to = Math.min(to, ino.size);
  if (to <= from) return;
  if (ino.shared) {
    // Partial pages are zeroed in place; whole pages are dropped (holes of the memfd), and
    // mappings of any still in a restored page file are pointed at the memfd.
    const base = ino.shared.offset;
    const a = Math.min(to, pageRoundUp(from)), b = Math.max(a, Math.floor(to / PAGE_SIZE) * PAGE_SIZE);
    if (a > from) k.mf.write(base + from, new Uint8Array(a - from));
    if (to > b) k.mf.write(base + b, new Uint8Array(to - b));
    if (b > a && k.mf.punch(base + a, b - a)) k.mf.onMaterialized?.(base + a, b - a);
    return;
  }
  // Only the blocks the file has (a truncation of a sparse 16 TiB file visits its few blocks, not 2^28 holes).
  const blocks = blocksOf(k, ino);
  const first = Math.floor(from / CHUNK), last = Math.floor((to - 1) / CHUNK);
  for (const key of Object.keys(blocks)) {
    const i = Number(key), b = blocks[i];
    if (i < first || i > last || b === undefined) continue;
    const at = Math.max(from - i * CHUNK, 0), end = Math.min(to - i * CHUNK, CHUNK);
    if (at === 0 && end === CHUNK) dropChunk(k, ino, i); else k.mf.pwrite(b + at, ZERO_CHUNK.subarray(0, end - at));
  }
}

/**
 * Fill a new file of `size` bytes (copy-up of a host file): only the data ranges
 * ([start, end) byte pairs, from SEEK_DATA/SEEK_HOLE) are read, through `read(buf, offset)`
 * (returns bytes read, 0 at end of file), block by block; holes stay holes, and a block
 * that reads as all zeros is not kept either. ENOSPC past the disk limit.
 */
export function inodeSetContents(k: DataStore, ino: InodeState, size: number, ranges: Array<[number, number]>, read: (buf: Uint8Array, offset: number) => number): void {
  if (size > MAX_UPPER_FILE) throw new SyscallError(E.EFBIG);
  update(k, ino, 'contents', [ino$(ino, 'blocks', {}), ino$(ino, 'chunks', undefined), ino$(ino, 'size', size)]);
  const c = new Uint8Array(CHUNK);
  for (const [start, end] of ranges) {
    for (let i = Math.floor(start / CHUNK); i * CHUNK < Math.min(end, size); i++) {
      if (ino.blocks![i] !== undefined) continue;
      c.fill(0);
      let done = 0;
      const len = Math.min(CHUNK, size - i * CHUNK);
      while (done < len) {
        const n = read(c.subarray(done, len), i * CHUNK + done);
        if (n <= 0) break;
        done += n;
      }
      if (ZERO_CHUNK.equals(c)) continue;
      try {
        reserve(k, ino, 1);
        k.mf.pwrite(newChunk(k, ino, i), c);
      } catch (e) {
        inodeRelease(k, ino);
        throw e;
      }
    }
  }
}

/** Free a file's data (its last link and last open file are gone). */
export function inodeRelease(k: DataStore, ino: InodeState): void {
  if (ino.blocks) for (const i of Object.keys(ino.blocks)) dropChunk(k, ino, Number(i));
  const ops: GraphOp[] = [ino$(ino, 'chunks', undefined), ino$(ino, 'size', 0)];
  if (ino.shared) {
    k.mf.ref(ino.shared.offset, inodeUser(ino), -1);
    ops.push(disk$(k, ino, -sharedCounted(ino)), ino$(ino, 'shared', undefined));
  }
  update(k, ino, 'release', ops);
}

/**
 * The memory-file block behind a file, for a MAP_SHARED mapping of at least `minBytes`:
 * the first such mapping moves the file's blocks into one contiguous block spanning the
 * whole file (a sparse one: holes stay holes, uncharged). EFBIG past MAX_SHARED_FILE,
 * ENOSPC when the memory file has no room left.
 */
export function inodeShare(k: DataStore, ino: InodeState, minBytes: number): { offset: number; capacity: number } {
  if (!ino.shared) {
    const capacity = pageRoundUp(Math.max(ino.size, minBytes, PAGE_SIZE));
    if (capacity > MAX_SHARED_FILE) throw new SyscallError(E.EFBIG);
    const blocks = blocksOf(k, ino);
    let offset: number;
    try { offset = k.mf.newBlock(capacity, inodeUser(ino)); } catch (e) {
      if (e instanceof MemoryFileError) throw new SyscallError(E.ENOSPC);
      throw e;
    }
    let counted = 0;
    for (const [i, b] of Object.entries(blocks)) {
      const at = Number(i) * CHUNK;
      if (at < ino.size) k.mf.copy(offset + at, b, Math.min(CHUNK, ino.size - at));
      dropChunk(k, ino, Number(i));
      counted += CHUNK;
    }
    update(k, ino, 'shared', [disk$(k, ino, counted), ino$(ino, 'shared', { offset, capacity, counted }), ino$(ino, 'blocks', undefined)]);
  } else if (minBytes > ino.shared.capacity) {
    growShared(k, ino, minBytes);
  }
  return ino.shared!;
}
