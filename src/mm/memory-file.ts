/**
 * The memory file (runtime side): one sparse memfd holding every guest page of a
 * sandbox (compare gVisor pkg/sentry/pgalloc). The kernel maps it into its own address
 * space in windows and reads and writes guest memory through zero-copy views; platforms
 * map ranges of the same memfd into guest address spaces. The allocator's state
 * (MemoryFileState) is plain data in the graph; the memfd and the views are runtime.
 */
import type { MemoryBacking } from '../../platforms/host-services.js';
import type { MemoryFileState } from '../kernel/state.js';
import { PAGE_SIZE } from '../abi/linux.js';

/** Size of one kernel-side window over the memory file (bytes); views stay well under 4 GiB. */
const WINDOW_SIZE = 256 * 1024 * 1024;
/** Logical size of the memfd: sparse, so only touched pages cost memory. */
const FILE_SIZE = 64 * 1024 * 1024 * 1024;

export const pageRoundUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
export const pageRoundDown = (n: number): number => Math.floor(n / PAGE_SIZE) * PAGE_SIZE;

export class MemoryFileError extends Error {}

export class MemoryFile {
  /** Host fd of the memfd (runtime only). */
  readonly fd: number;
  private readonly windows: Uint8Array[] = [];
  private readonly backing: MemoryBacking;

  /** `createBacking(size)` makes the sparse host memory (HostServices.createMemoryBacking). */
  constructor(readonly state: MemoryFileState, createBacking: (name: string, size: number) => MemoryBacking) {
    try {
      this.backing = createBacking('snapvisor-memory', FILE_SIZE);
    } catch (e) {
      throw new MemoryFileError((e as Error).message);
    }
    this.fd = this.backing.fd;
  }

  /** Allocate `len` bytes (page multiple) of zeroed memory-file space; returns the byte offset. */
  allocate(len: number): number {
    const free = this.state.free;
    for (let i = 0; i < free.length; i++) {
      const [off, flen] = free[i];
      if (flen >= len) {
        if (flen === len) free.splice(i, 1); else free[i] = [off + len, flen - len];
        return off;
      }
    }
    const off = this.state.end;
    if (off + len > FILE_SIZE) throw new MemoryFileError('memory file exhausted');
    this.state.end += len;
    return off;
  }

  /** Allocate a block of `len` bytes with one VMA reference from address space `asId`. */
  newBlock(len: number, asId: number): number {
    const off = this.allocate(len);
    this.state.blocks[off] = { len, users: { [asId]: 1 } };
    return off;
  }

  /** Add `delta` VMA references of address space `asId` to a block; frees it when none are left. */
  ref(block: number, asId: number, delta: number): void {
    const b = this.state.blocks[block];
    if (!b) return;
    const n = (b.users[asId] ?? 0) + delta;
    if (n > 0) b.users[asId] = n; else delete b.users[asId];
    for (const _ in b.users) return;
    delete this.state.blocks[block];
    this.release(block, b.len);
  }

  /** Whether only address space `asId` refers to a block (its private pages may be written in place). */
  exclusive(block: number, asId: number): boolean {
    const b = this.state.blocks[block];
    if (!b) return true;
    for (const k in b.users) if (Number(k) !== asId) return false;
    return true;
  }

  /** Drop the pages of a range (they read back as zeros) without freeing it. */
  punch(off: number, len: number): void {
    if (len > 0) this.backing.punchHole(off, len);
  }

  /** Return a range to the allocator and drop its pages (FALLOC_FL_PUNCH_HOLE), so it reads as zeros. */
  release(off: number, len: number): void {
    if (len <= 0) return;
    this.backing.punchHole(off, len);
    const free = this.state.free;
    free.push([off, len]);
    free.sort((a, b) => a[0] - b[0]);
    // Coalesce neighbours; give the tail back to the bump pointer.
    for (let i = free.length - 1; i > 0; i--) {
      if (free[i - 1][0] + free[i - 1][1] === free[i][0]) { free[i - 1][1] += free[i][1]; free.splice(i, 1); }
    }
    const last = free[free.length - 1];
    if (last && last[0] + last[1] === this.state.end) { this.state.end = last[0]; free.pop(); }
  }

  private window(index: number): Uint8Array {
    let w = this.windows[index];
    if (!w) {
      try {
        w = this.backing.mapView(index * WINDOW_SIZE, WINDOW_SIZE);
      } catch (e) {
        throw new MemoryFileError((e as Error).message);
      }
      this.windows[index] = w;
    }
    return w;
  }

  /**
   * Zero-copy views covering [off, off+len) of the memory file, split at window
   * boundaries; `fn` is called for each piece in order with its offset into the range.
   */
  forEachChunk(off: number, len: number, fn: (view: Uint8Array, rangeOffset: number) => void): void {
    let done = 0;
    while (done < len) {
      const abs = off + done;
      const wi = Math.floor(abs / WINDOW_SIZE);
      const wo = abs - wi * WINDOW_SIZE;
      const n = Math.min(len - done, WINDOW_SIZE - wo);
      fn(this.window(wi).subarray(wo, wo + n), done);
      done += n;
    }
  }

  /** Bytes [off, off+len): a view when inside one window, else a copy. */
  read(off: number, len: number): Uint8Array {
    const wi = Math.floor(off / WINDOW_SIZE);
    const wo = off - wi * WINDOW_SIZE;
    if (wo + len <= WINDOW_SIZE) return this.window(wi).subarray(wo, wo + len);
    const out = new Uint8Array(len);
    this.forEachChunk(off, len, (v, ro) => out.set(v, ro));
    return out;
  }

  write(off: number, data: Uint8Array): void {
    this.forEachChunk(off, data.length, (v, ro) => v.set(data.subarray(ro, ro + v.length)));
  }

  /**
   * pread(2) of the memfd into `buf` from byte `off`: the pages are not mapped into the
   * kernel's own address space (file data of the upper layer; keeps the kernel's RSS small).
   */
  pread(off: number, buf: Uint8Array): void {
    this.backing.read(off, buf);
  }

  /** pwrite(2) of `data` to the memfd at byte `off` (see pread). */
  pwrite(off: number, data: Uint8Array): void {
    this.backing.write(off, data);
  }

  /** Copy len bytes within the memory file (for mremap and copy-on-write). */
  copy(dstOff: number, srcOff: number, len: number): void {
    this.write(dstOff, new Uint8Array(this.read(srcOff, len)));
  }

  /** Byte ranges [offset, length] that may hold data (SEEK_DATA/SEEK_HOLE over the allocated part). */
  populatedRanges(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    let pos = 0;
    const end = this.state.end;
    while (pos < end) {
      const data = this.backing.seekData(pos);
      if (data < 0 || data >= end) break;
      let hole = this.backing.seekHole(data);
      if (hole < 0 || hole > end) hole = end;
      out.push([data, hole - data]);
      pos = hole;
    }
    return out;
  }

  /** Unmap the kernel's windows and close the memfd. Views must not be used afterwards. */
  destroy(): void {
    this.windows.length = 0;
    this.backing.destroy();
  }
}
