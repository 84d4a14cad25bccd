/**
 * The memory file (runtime side): one sparse memfd holding every guest page of a
 * sandbox (compare gVisor pkg/sentry/pgalloc). The kernel maps it into its own address
 * space in windows and reads and writes guest memory through zero-copy views; platforms
 * map ranges of the same memfd into guest address spaces. The allocator's state
 * (MemoryFileState) is plain data in the graph; the memfd and the views are runtime.
 */
import { persisted } from '../kernel/persist.js';
import type { MemoryBacking, ReadOnlyFileMapping } from '../../platforms/host-services.js';
import type { KernelState, MemoryFileState } from '../kernel/state.js';
import { applyOps, type GraphOp } from '../kernel/events.js';
import { PAGE_SIZE } from '../abi/linux.js';
import { E, SyscallError } from '../errno.js';

/**
 * The share of its charged bytes a memfd must hold for populatedRanges to report the charged runs
 * without searching them for holes: the search walks every present page (15-20 ms per GiB here),
 * on the checkpoint's path before a page is read, while the few holes left (the bench's python3:
 * 403 pages of 62,500 charged) are read as zeros and told apart as zero pages.
 */
const ALLOCATED_ENOUGH = 0.97;
/** Size of one kernel-side window over the memory file (bytes); views stay well under 4 GiB. */
const WINDOW_SIZE = 256 * 1024 * 1024;
/** Reads and writes up to this many bytes (syscall arguments and results) are pread/pwrite while the window they fall in is not mapped yet. */
const SMALL_BACKED_READ = 64 * 1024;
/** Logical size of the memfd: sparse, so only touched pages cost memory. */
const FILE_SIZE = 64 * 1024 * 1024 * 1024;

/**
 * Bytes per charge unit of the memory limit (a multiple of PAGE_SIZE): memory-file space is
 * charged a unit at a time, when first written or first touched by a guest (see charge()).
 */
export const CHARGE_UNIT = 64 * 1024;
/**
 * What backs a piece of the memory file: the memfd (charged), a restored page file, nothing yet
 * (reads as zeros), or the memfd with pages unchanged since a checkpoint stored them (Clean:
 * mapped without PROT_WRITE so the first write is seen, see markClean).
 */
export const PieceKind = { Memfd: 0, Backed: 1, None: 2, Clean: 3 } as const;
export type PieceKind = typeof PieceKind[keyof typeof PieceKind];
/** Zeros handed out as read-only views of memory never charged (never written into). */
const ZEROS = new Uint8Array(1 << 20);

export const pageRoundUp = (n: number): number => Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
export const pageRoundDown = (n: number): number => Math.floor(n / PAGE_SIZE) * PAGE_SIZE;

export class MemoryFileError extends Error {}

/**
 * A page-file layer cannot give the bytes of a page (a damaged compressed chunk, a page failing
 * its checksum, a host file changed): the sandbox cannot go on. The message is one line naming
 * the checkpoint and the page (`checkpoint ID is corrupt: …`).
 */
export class PageSourceError extends Error {}

/**
 * A page-file layer whose file is filled piece by piece on first use (a compressed checkpoint's
 * restore cache, snapshots/pack.ts LazyPack): the kernel asks for a piece before it reads any of
 * its pages or lets a guest map them. Runtime only.
 */
export interface LazyPageLayer {
  /** Bytes of memory-file offsets per piece (a multiple of PAGE_SIZE); piece i is [i·pieceBytes, (i+1)·pieceBytes). */
  readonly pieceBytes: number;
  /** Whether piece `i`'s bytes are in the layer's file, as far as this process knows (no I/O: asked for every piece a mapping covers). */
  isReady(i: number): boolean;
  /** Put piece `i`'s bytes into the file (nothing if another process did meanwhile), synchronously; throws PageSourceError when they cannot be had. */
  fill(i: number): void;
  /**
   * The byte runs of [off, off+len) that hold data once filled (every other page is zeros),
   * `fn(offset, length)` in order, without filling anything.
   */
  dataRuns(off: number, len: number, fn: (off: number, len: number) => void): void;
  /** Release what the layer holds (fds). */
  close(): void;
}

/**
 * The read-only page files under a restored memory file (runtime only, never in the graph):
 * layer 1 is the checkpoint's own page file, layers 2… the page files of the checkpoints it
 * inherits unchanged pages from (an incremental checkpoint). Each is laid out like the memory
 * file (byte X of a page file is byte X of the memory file; holes read as zeros). A page
 * marked with layer k in `backed` still lives in layer k's file: stubs map it read-only
 * straight from that file (shared through the host's page cache by every clone) and the
 * kernel reads it through read-only windows. The first write to such a page copies it into
 * the memfd (`materialize`).
 */
interface PageLayers {
  files: ReadOnlyFileMapping[];
  /** One byte per memory-file page: k ≥ 1 while the page's bytes are still in layer k (files[k - 1]), 0 once not. */
  backed: Uint8Array;
  /** Per layer, its kernel windows. */
  windows: Uint8Array[][];
  /** Per layer, how its file is filled when it is filled on first use (undefined: complete). */
  lazy: Array<LazyPageLayer | undefined>;
}

/**
 * Pages the memory file copied (MemoryFile.takeMoves; page indexes are memory-file offsets /
 * 4096): a hint, not kept up to date by later writes to the copies.
 */
export interface MovedPages {
  /** Per page: 1 + the page it was copied from, 0 if none (or its source matched no layer). */
  from: Int32Array;
  /** Per page with a `from`: the layer (as MemoryFile.backedLayers numbers them) its source matched then. */
  layer: Uint8Array;
  /** Sources dropped since (freed, punched) while they still matched a layer: that layer and their bytes (4096). */
  kept: ReadonlyMap<number, { layer: number; bytes: Uint8Array }>;
}

/** Sources of copies a memory file keeps at most when they are dropped (MemoryFile.keptSources): 4 MiB. */
const MAX_KEPT_SOURCES = 1024;

export class MemoryFile {
  /** Host fd of the memfd (runtime only). */
  readonly fd: number;
  private readonly windows: Uint8Array[] = [];
  private readonly backing: MemoryBacking;
  private pageFile?: PageLayers;
  /**
   * Write tracking for incremental checkpoints (runtime only): one byte per memory-file page,
   * j ≥ 1 while the page's memfd bytes are still those a checkpoint stored (layer j of the
   * caller's list of checkpoints, as `backed` numbers page files), 0 once written or never
   * stored. Clean pages are mapped read-only; the first write (guest fault or kernel write)
   * makes them dirty again (`unclean`).
   */
  private clean?: Uint8Array;
  /**
   * One byte per page: the layer (as in `backed`/`clean`) a page matched before its first write
   * since then (materialize, unclean), 0 if none. Tracking is by 64 KiB chunk, writes are often
   * smaller: a checkpoint compares such pages with that layer's bytes and still inherits the
   * ones a write left as they were.
   */
  private former?: Uint8Array;
  /**
   * Copies (runtime only, a hint): one entry per memory-file page, 1 + the page it was copied
   * from by `copy` (a copy-on-write's chunk: the guest's first write to a block a checkpoint's
   * capture holds copies 64 KiB to new space) when that page matched a stored layer (clean or
   * in a page file), 0 otherwise or if none since `takeMoves`. Not updated by later writes: a
   * checkpoint compares a page with its source's stored bytes before naming them.
   */
  private moves?: Int32Array;
  /** Per page with a `moves` entry: the layer (as in `backed`/`clean`) its source matched when it was copied. */
  private movedLayer?: Uint8Array;
  /** One byte per page: 1 for a page some `moves` entry names as its source. */
  private moveSources?: Uint8Array;
  /**
   * Sources of `moves` dropped since (their block freed, or punched) while they still matched a
   * layer: page → that layer and the bytes they had, so a checkpoint can still compare the copies
   * without reading the layer's pack back (at most MAX_KEPT_SOURCES).
   */
  private keptSources = new Map<number, { layer: number; bytes: Uint8Array }>();
  /**
   * Called after pages of [off, off+len) moved from the page file into the memfd, so every
   * guest mapping of them can be pointed at the memfd (set by the kernel).
   */
  onMaterialized?: (off: number, len: number) => void;
  /**
   * One byte per CHARGE_UNIT of the memory file: 1 when charged. Only a charged unit's memfd
   * pages may hold data or be mapped into a guest; an uncharged one reads as zeros without
   * touching the memfd, and a guest's first access to it traps (AddressSpace.handleMissing), so
   * the memfd's pages never exceed the charged bytes. Runtime only: a restored memory file
   * starts uncharged (its pages are in the page file until written).
   */
  private charged = new Uint8Array(4096);
  /** Bytes charged (a multiple of CHARGE_UNIT). */
  chargedBytes = 0;
  /**
   * Asked before `bytes` more are charged; true lets the charge go ahead (the kernel's memory
   * limit, which may reclaim or OOM-kill first). Unset: no limit.
   */
  admit?: (bytes: number, soft: boolean) => boolean;
  /**
   * The kernel's door for this allocator's graph record (paths from the graph root,
   * ['memoryFile', …]): Kernel.stage, so the next event carries the changes. Unset (a memory
   * file no kernel owns yet), the ops are applied to the record here.
   */
  change: (ops: readonly GraphOp[]) => void = (ops) => applyOps({ memoryFile: this.state } as unknown as KernelState, ops);

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
        this.change([flen === len ? ['splice', ['memoryFile', 'free'], i, 1] : ['splice', ['memoryFile', 'free'], i, 1, [off + len, flen - len]]]);
        return off;
      }
    }
    const off = this.state.end;
    if (off + len > FILE_SIZE) throw new MemoryFileError('memory file exhausted');
    this.change([['set', ['memoryFile', 'end'], off + len]]);
    return off;
  }

  /** Allocate a block of `len` bytes with one VMA reference from address space `asId`. */
  newBlock(len: number, asId: number): number {
    const off = this.allocate(len);
    this.change([['set', ['memoryFile', 'blocks', off], { len, users: { [asId]: 1 } }]]);
    return off;
  }

  /**
   * Grow block `block` so that it covers [off, off+len) (bytes; `off` inside or at the end of the
   * block), taking the space past its end from the bump pointer or a free range that starts
   * there. The range reads as zeros afterwards (punched: it may hold a shrunk heap's old pages).
   * Returns false, changing nothing, when the space past the block is taken. For brk growth: one
   * block and one VMA for the whole heap, as Linux's vma_merge keeps it, instead of a block per
   * 132 KiB step (each its own host mapping, write-protect and fault on every later pass).
   */
  growBlock(block: number, off: number, len: number): boolean {
    const b = this.state.blocks[block];
    if (!b || off < block || off > block + b.len || len <= 0) return false;
    const blockEnd = block + b.len, end = off + len;
    if (end > blockEnd) {
      const need = end - blockEnd;
      if (blockEnd === this.state.end) {
        if (end > FILE_SIZE) return false;
        this.change([['set', ['memoryFile', 'end'], end]]);
      } else {
        const i = this.state.free.findIndex(([o]) => o === blockEnd);
        if (i < 0 || this.state.free[i][1] < need) return false;
        const [o, flen] = this.state.free[i];
        this.change([flen === need ? ['splice', ['memoryFile', 'free'], i, 1] : ['splice', ['memoryFile', 'free'], i, 1, [o + need, flen - need]]]);
      }
      this.change([['set', ['memoryFile', 'blocks', block, 'len'], end - block]]);
    }
    this.punch(off, len);
    return true;
  }

  /** Add `delta` VMA references of address space `asId` to a block; frees it when none are left. */
  ref(block: number, asId: number, delta: number): void {
    const b = this.state.blocks[block];
    if (!b) return;
    const n = (b.users[asId] ?? 0) + delta;
    if (n > 0) { this.change([['set', ['memoryFile', 'blocks', block, 'users', asId], n]]); return; }
    for (const k in b.users) if (Number(k) !== asId) { this.change([['del', ['memoryFile', 'blocks', block, 'users', asId]]]); return; }
    this.change([['del', ['memoryFile', 'blocks', block]]]);
    this.release(block, b.len);
  }

  /** Whether only address space `asId` refers to a block (its private pages may be written in place). */
  exclusive(block: number, asId: number): boolean {
    const b = this.state.blocks[block];
    if (!b) return true;
    for (const k in b.users) if (Number(k) !== asId) return false;
    return true;
  }

  /**
   * Drop the pages of a range (they read back as zeros) without freeing it. Returns true if
   * some were still in a page file: mappings of them must then be pointed at the memfd.
   */
  punch(off: number, len: number): boolean {
    if (len <= 0) return false;
    if (this.moveSources) this.keepSources(off, len);
    this.backing.punchHole(off, len);
    return this.forget(off, len);
  }

  /** Return a range to the allocator and drop its pages (FALLOC_FL_PUNCH_HOLE), so it reads as zeros. */
  release(off: number, len: number): void {
    if (len <= 0) return;
    if (this.moveSources) this.keepSources(off, len);
    this.backing.punchHole(off, len);
    this.forget(off, len);
    this.unchargeInside(off, len); // no guest maps a freed block; edge units shared with a neighbour stay charged
    // The free list after this release (sorted, neighbours coalesced, the tail given back to the
    // bump pointer), as one change: a few ranges, not a copy of the whole.
    const free = this.state.free;
    let at = 0;
    while (at < free.length && free[at][0] < off) at++;
    let start = off, end = off + len, from = at, count = 0;
    if (at > 0 && free[at - 1][0] + free[at - 1][1] === start) { start = free[at - 1][0]; from = at - 1; count++; }
    if (at < free.length && free[at][0] === end) { end = free[at][0] + free[at][1]; count++; }
    if (end === this.state.end && from + count === free.length) {
      this.change([['splice', ['memoryFile', 'free'], from, count], ['set', ['memoryFile', 'end'], start]]);
    } else {
      this.change([['splice', ['memoryFile', 'free'], from, count, [start, end - start]]]);
    }
  }

  // ---- charging (the memory limit) ----

  /** Whether the unit holding byte `off` is charged. */
  isCharged(off: number): boolean { return this.charged[Math.floor(off / CHARGE_UNIT)] === 1; }

  /**
   * Charge every unit touching [off, off+len) (bytes of the memory file): asks `admit` for the
   * units not charged yet. Returns false, charging nothing, when admit refuses. `soft`: only if
   * they fit as things are (no reclaim, no OOM kill).
   */
  charge(off: number, len: number, soft = false): boolean {
    if (len <= 0) return true;
    const u0 = Math.floor(off / CHARGE_UNIT), u1 = Math.ceil((off + len) / CHARGE_UNIT);
    if (u1 > this.charged.length) {
      const grown = new Uint8Array(Math.max(u1, this.charged.length * 2));
      grown.set(this.charged);
      this.charged = grown;
    }
    let need = 0;
    for (let u = this.charged.indexOf(0, u0); u >= 0 && u < u1; u = this.charged.indexOf(0, u + 1)) need++;
    if (need === 0) return true;
    if (this.admit && !this.admit(need * CHARGE_UNIT, soft)) return false;
    // Count again: admit may have reclaimed (uncharged) units of this very range meanwhile.
    for (let u = u0; u < u1; u++) {
      if (!this.charged[u]) { this.charged[u] = 1; this.chargedBytes += CHARGE_UNIT; }
    }
    return true;
  }

  /** charge(), throwing SyscallError(ENOMEM) when refused (the kernel's own writes). */
  private chargeOrThrow(off: number, len: number): void {
    if (!this.charge(off, len)) throw new SyscallError(E.ENOMEM);
  }

  /** Uncharge the units wholly inside [off, off+len) (their pages must already be dropped and unmapped everywhere). */
  private unchargeInside(off: number, len: number): void {
    const u0 = Math.ceil(off / CHARGE_UNIT), u1 = Math.min(this.charged.length, Math.floor((off + len) / CHARGE_UNIT));
    for (let u = u0; u < u1; u++) {
      if (this.charged[u]) { this.charged[u] = 0; this.chargedBytes -= CHARGE_UNIT; }
    }
  }

  /**
   * Charged units whose memfd pages are all holes (dropped by madvise, munmap of part of a
   * block, …), as sorted [offset, length] runs, found with SEEK_DATA/SEEK_HOLE (a syscall pair
   * per data run, not per unit). Guests may still map them: unmap before uncharging.
   */
  emptyChargedRuns(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const ch = this.charged;
    let u = ch.indexOf(1);
    while (u >= 0) {
      const at = u * CHARGE_UNIT;
      const data = this.backing.seekData(at);
      const firstData = data < 0 ? ch.length : Math.floor(data / CHARGE_UNIT);
      // Units u .. firstData-1 hold no data: report the charged ones.
      for (let v = u; v < firstData && v < ch.length;) {
        if (!ch[v]) { v = ch.indexOf(1, v); if (v < 0 || v >= firstData) break; continue; }
        let w = v;
        while (w < firstData && w < ch.length && ch[w]) w++;
        out.push([v * CHARGE_UNIT, (w - v) * CHARGE_UNIT]);
        v = w;
      }
      if (data < 0) break;
      const hole = this.backing.seekHole(data);
      const next = hole < 0 ? ch.length : Math.ceil(hole / CHARGE_UNIT);
      u = next >= ch.length ? -1 : ch.indexOf(1, next);
    }
    return out;
  }

  /** Uncharge [off, off+len) (whole units) after the caller made sure no guest maps them; their pages are dropped. */
  uncharge(off: number, len: number): void {
    this.backing.punchHole(off, len);
    this.unchargeInside(off, len);
  }

  /** Charged runs no block covers (freed space whose edge units stayed charged), as [offset, length]. */
  unownedChargedRuns(): Array<[number, number]> {
    const covered = new Uint8Array(this.charged.length);
    for (const k of Object.keys(this.state.blocks)) {
      const off = Number(k), len = this.state.blocks[off].len;
      covered.fill(1, Math.floor(off / CHARGE_UNIT), Math.ceil((off + len) / CHARGE_UNIT));
    }
    const out: Array<[number, number]> = [];
    for (let u = this.charged.indexOf(1); u >= 0;) {
      let w = u;
      while (w < this.charged.length && this.charged[w] && !covered[w]) w++;
      if (w > u) out.push([u * CHARGE_UNIT, (w - u) * CHARGE_UNIT]);
      u = this.charged.indexOf(1, Math.max(w, u + 1));
    }
    return out;
  }

  /** Charged bytes of [off, off+len) (whole units, clipped to the range). */
  chargedIn(off: number, len: number): number {
    const end = off + len;
    let n = 0;
    for (let u = this.charged.indexOf(1, Math.floor(off / CHARGE_UNIT)); u >= 0 && u * CHARGE_UNIT < end; u = this.charged.indexOf(1, u + 1)) {
      n += Math.min(end, (u + 1) * CHARGE_UNIT) - Math.max(off, u * CHARGE_UNIT);
    }
    return n;
  }

  /**
   * Split [off, off+len) into runs by what backs them (a page-file layer, charged memfd, or
   * nothing): `fn(offset, length, kind, layer)` in order (`layer` ≥ 1 for PieceKind.Backed,
   * else 0). O(runs) without a page file.
   */
  pieces(off: number, len: number, fn: (off: number, len: number, kind: PieceKind, layer: number) => void): void {
    if (len <= 0) return;
    const end = off + len;
    const b = this.pageFile;
    const ch = this.charged;
    const cl = this.clean;
    // Backed pieces of different layers are different pieces: encode the layer into the kind (Backed + layer).
    const kindAt = (p: number): number => {
      const pi = Math.floor(p / PAGE_SIZE);
      const l = b ? b.backed[pi] ?? 0 : 0;
      if (l) return PieceKind.Backed + 16 * l;
      if (ch[Math.floor(p / CHARGE_UNIT)] !== 1) return PieceKind.None;
      return cl && cl[pi] ? PieceKind.Clean : PieceKind.Memfd;
    };
    const emit = (a: number, n: number, k: number) => fn(a, n, (k >= 16 ? PieceKind.Backed : k) as PieceKind, k >= 16 ? k >> 4 : 0);
    const backedEnd = Math.max(b ? b.backed.length : 0, cl ? cl.length : 0) * PAGE_SIZE;
    let start = off, kind = kindAt(off);
    let p = off;
    const bb = b?.backed;
    const unitPages = CHARGE_UNIT / PAGE_SIZE;
    while (p < end) {
      // The next place the kind may change: inside the page file's range, the first page of
      // another kind (one tight loop: a restored 240 MiB heap is 60,000 pages, walked by every
      // replay and remap); past it, the next unit boundary where the charge changes.
      let q: number;
      if (p < backedEnd) {
        const lim = Math.min(Math.ceil(end / PAGE_SIZE), backedEnd / PAGE_SIZE);
        let j = Math.floor(p / PAGE_SIZE) + 1;
        if (kind >= 16) {
          const l = kind >> 4;
          while (j < lim && bb![j] === l) j++;
        } else {
          for (; j < lim; j++) {
            if (bb && j < bb.length && bb[j]) break;
            const k = ch[Math.floor(j / unitPages)] !== 1 ? PieceKind.None : cl && cl[j] ? PieceKind.Clean : PieceKind.Memfd;
            if (k !== kind) break;
          }
        }
        q = j * PAGE_SIZE;
      } else {
        const u = Math.floor(p / CHARGE_UNIT);
        const nu = u >= ch.length ? -1 : ch.indexOf(ch[u] ? 0 : 1, u + 1);
        q = nu < 0 ? (ch[u] && u < ch.length ? ch.length * CHARGE_UNIT : end) : nu * CHARGE_UNIT;
        if (q <= p) q = end;
      }
      if (q >= end) break;
      const k = kindAt(q);
      if (k !== kind) { emit(start, q - start, kind); start = q; kind = k; }
      p = q;
    }
    emit(start, end - start, kind);
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

  /** Whether the kernel's window `index` over what serves a piece of `kind` (of page-file layer `layer` when backed) is mapped. */
  private windowMapped(index: number, kind: PieceKind, layer: number): boolean {
    return !!(kind === PieceKind.Backed ? this.pageFile!.windows[layer - 1][index] : this.windows[index]);
  }

  /** What serves a piece of `kind` (of page-file layer `layer` when backed), for pread. */
  private fileOf(kind: PieceKind, layer: number): { read(off: number, buf: Uint8Array): void } {
    return kind === PieceKind.Backed ? this.pageFile!.files[layer - 1] : this.backing;
  }

  /** A read-only window over page-file layer `layer` (never written through: it is mapped PROT_READ). */
  private backingWindow(index: number, layer: number): Uint8Array {
    const b = this.pageFile!;
    const ws = b.windows[layer - 1];
    let w = ws[index];
    if (!w) {
      try {
        w = b.files[layer - 1].mapView(index * WINDOW_SIZE, WINDOW_SIZE);
      } catch (e) {
        throw new MemoryFileError((e as Error).message);
      }
      ws[index] = w;
    }
    return w;
  }

  // ---- the backing file (lazy restore) ----

  /**
   * Serve the allocated part of this memory file from a checkpoint's page files (read-only,
   * laid out like the memory file) until each page is first written. `files[0]` is the
   * checkpoint's own page file: every page of every allocated block is served from it (zero
   * pages are its holes) except the pages of `inherited`, runs [offset, length, layer] (bytes,
   * layer ≥ 2) served from `files[layer - 1]`. The memfd must be empty. The mappings are owned
   * from now on (destroyed by `destroy`).
   */
  attachPageFiles(files: ReadOnlyFileMapping[], inherited: ReadonlyArray<readonly [number, number, number]> = [], lazy: ReadonlyArray<LazyPageLayer | undefined> = []): void {
    const pages = Math.ceil(this.state.end / PAGE_SIZE);
    const backed = new Uint8Array(pages);
    for (const k of Object.keys(this.state.blocks)) {
      const off = Number(k), len = this.state.blocks[off].len;
      backed.fill(1, off / PAGE_SIZE, Math.min(pages, (off + len) / PAGE_SIZE));
    }
    for (const [off, len, layer] of inherited) {
      if (layer < 2 || layer > files.length) throw new MemoryFileError(`page run at 0x${off.toString(16)} names layer ${layer} of ${files.length}`);
      const a = off / PAGE_SIZE, z = Math.min(pages, (off + len) / PAGE_SIZE);
      for (let p = a; p < z; p++) if (backed[p]) backed[p] = layer;
    }
    this.pageFile = { files, backed, windows: files.map(() => []), lazy: files.map((_, i) => lazy[i]) };
    this.anyLazy = lazy.some((l) => l);
  }

  /** Whether some page-file layer is filled on first use (see LazyPageLayer). */
  private anyLazy = false;
  get hasLazyLayers(): boolean { return this.anyLazy; }

  /**
   * Before the bytes of [off, off+len) are read from a page-file layer filled on first use: fill
   * every piece of such a layer that a backed page of the range lives in and that is not filled
   * yet. Throws PageSourceError (from LazyPageLayer.fill).
   */
  ensureReady(off: number, len: number): void {
    if (!this.anyLazy || len <= 0) return;
    const b = this.pageFile!;
    const first = Math.floor(off / PAGE_SIZE), last = Math.min(b.backed.length, Math.ceil((off + len) / PAGE_SIZE));
    let checkedLayer = 0, checkedPiece = -1;
    for (let p = first; p < last; p++) {
      const layer = b.backed[p];
      const lazy = layer ? b.lazy[layer - 1] : undefined;
      if (!lazy) continue;
      const piece = Math.floor((p * PAGE_SIZE) / lazy.pieceBytes);
      if (layer === checkedLayer && piece === checkedPiece) continue;
      checkedLayer = layer;
      checkedPiece = piece;
      if (!lazy.isReady(piece)) lazy.fill(piece);
    }
  }

  /** Bytes per piece of the page-file layer filled on first use that serves the page at byte `off`; 0 if none does. */
  lazyPieceBytes(off: number): number {
    if (!this.anyLazy) return 0;
    const layer = this.layerAt(off);
    return layer ? this.pageFile!.lazy[layer - 1]?.pieceBytes ?? 0 : 0;
  }

  /**
   * The parts of backed piece [off, off+len) of layer `layer` whose bytes are in the layer's file
   * already (all of it for a complete layer): `fn(offset, length)` in order. What a guest may map.
   */
  readyRuns(off: number, len: number, layer: number, fn: (off: number, len: number) => void): void {
    const lazy = this.pageFile?.lazy[layer - 1];
    if (!lazy) { fn(off, len); return; }
    const end = off + len;
    let runStart = -1;
    for (let a = off; a < end;) {
      const piece = Math.floor(a / lazy.pieceBytes);
      const next = Math.min(end, (piece + 1) * lazy.pieceBytes);
      if (lazy.isReady(piece)) { if (runStart < 0) runStart = a; }
      else if (runStart >= 0) { fn(runStart, a - runStart); runStart = -1; }
      a = next;
    }
    if (runStart >= 0) fn(runStart, end - runStart);
  }

  /** Host fds of the page-file layers (layer k at index k - 1; the platform's stubs map them), empty without. */
  get backingFds(): number[] { return this.pageFile ? this.pageFile.files.map((f) => f.fd) : []; }

  /** Whether the page at byte `off` still lives in a page file. */
  isBacked(off: number): boolean {
    const b = this.pageFile;
    return !!b && b.backed[Math.floor(off / PAGE_SIZE)] > 0;
  }

  /**
   * Which stored layer each page still matches, for a checkpoint that inherits those pages: k ≥ 1
   * where the page lives in page-file layer k or is a clean memfd page of layer k (markClean), 0
   * for a page written since (or never stored). A copy; undefined when neither is tracked.
   */
  backedLayers(): Uint8Array | undefined {
    const b = this.pageFile?.backed, c = this.clean;
    if (!c) return b?.slice();
    const out = new Uint8Array(Math.max(b?.length ?? 0, c.length));
    out.set(c);
    if (b) for (let p = 0; p < b.length; p++) if (b[p]) out[p] = b[p];
    return out;
  }

  /**
   * Mark the memfd pages of [off, off+len) (page aligned) clean: unchanged since checkpoint layer
   * `layer` (1–255) stored them. Pages in a page file, and those marked in `except` (one byte per
   * page: pages that checkpoint inherited from an older layer), are left as they are. The caller then maps
   * them read-only in every guest (onMaterialized does it when they turn dirty again).
   */
  markClean(off: number, len: number, layer: number, except?: Uint8Array): void {
    const pages = Math.ceil(this.state.end / PAGE_SIZE);
    if (!this.clean || this.clean.length < pages) {
      const grown = new Uint8Array(pages);
      if (this.clean) grown.set(this.clean);
      this.clean = grown;
    }
    const b = this.pageFile?.backed;
    const first = off / PAGE_SIZE, last = Math.min(pages, (off + len) / PAGE_SIZE);
    // Inside the guest's pause (a checkpoint that leaves it running): a plain fill when no page is excepted.
    if (!b && !except) { this.clean.fill(layer, first, last); return; }
    for (let p = first; p < last; p++) if ((!b || !b[p]) && !(except && except[p])) this.clean[p] = layer;
  }

  /**
   * Pages of [off, off+len) clean with layer `from` are clean with layer `to` instead (a
   * checkpoint found they equal an older layer's bytes and named that one). No remapping.
   */
  relabelClean(off: number, len: number, from: number, to: number): void {
    const c = this.clean;
    if (!c) return;
    const last = Math.min(c.length, Math.ceil((off + len) / PAGE_SIZE));
    for (let p = Math.floor(off / PAGE_SIZE); p < last; p++) if (c[p] === from) c[p] = to;
  }

  /** Whether the page at byte `off` is clean (see markClean). */
  isClean(off: number): boolean { return !!this.clean && (this.clean[Math.floor(off / PAGE_SIZE)] ?? 0) > 0; }

  /**
   * Pages of [off, off+len) stop being clean (they are about to be written); if any were,
   * `onMaterialized` maps them writable again wherever a guest maps them. Returns whether any were.
   */
  unclean(off: number, len: number): boolean {
    const c = this.clean;
    if (!c) return false;
    const first = Math.floor(off / PAGE_SIZE), last = Math.min(c.length, Math.ceil((off + len) / PAGE_SIZE));
    let any = false;
    for (let p = first; p < last; p++) if (c[p]) { any = true; break; }
    if (any) { this.rememberFormer(c, first, last); c.fill(0, first, last); }
    if (any) this.onMaterialized?.(first * PAGE_SIZE, (last - first) * PAGE_SIZE);
    return any;
  }

  /** Record that the pages of [dstOff, dstOff+len) are copies of those from `srcOff` on (see `moves`). */
  private noteMoves(dstOff: number, srcOff: number, len: number): void {
    const first = Math.floor(dstOff / PAGE_SIZE), n = Math.floor(len / PAGE_SIZE), src = Math.floor(srcOff / PAGE_SIZE);
    if (dstOff % PAGE_SIZE || srcOff % PAGE_SIZE || n === 0) return;
    const size = Math.max(first + n, src + n, Math.ceil(this.state.end / PAGE_SIZE));
    if (!this.moves || this.moves.length < size) {
      const grown = Math.max(size, (this.moves?.length ?? 0) * 2);
      const moves = new Int32Array(grown), layer = new Uint8Array(grown), sources = new Uint8Array(grown);
      if (this.moves) { moves.set(this.moves); layer.set(this.movedLayer!); sources.set(this.moveSources!); }
      this.moves = moves;
      this.movedLayer = layer;
      this.moveSources = sources;
    }
    const b = this.pageFile?.backed, c = this.clean;
    for (let i = 0; i < n; i++) {
      const l = (b ? b[src + i] ?? 0 : 0) || (c ? c[src + i] ?? 0 : 0);
      this.moves[first + i] = l ? src + i + 1 : 0;
      this.movedLayer![first + i] = l;
      if (l) this.moveSources![src + i] = 1;
    }
  }

  /** Before the pages of [off, off+len) are dropped: keep the bytes of those that are sources of `moves` and still match a layer. */
  private keepSources(off: number, len: number): void {
    const sources = this.moveSources!, b = this.pageFile?.backed, c = this.clean;
    const first = Math.floor(off / PAGE_SIZE), last = Math.min(sources.length, Math.ceil((off + len) / PAGE_SIZE));
    // Searched within the dropped range only: a search from `first` to the array's end would cost
    // every small munmap or madvise a scan of the whole memory file's pages.
    const inRange = sources.subarray(first, Math.max(first, last));
    for (let i = inRange.indexOf(1); i >= 0; i = inRange.indexOf(1, i + 1)) {
      const p = first + i;
      const l = (b ? b[p] ?? 0 : 0) || (c ? c[p] ?? 0 : 0);
      if (!l || this.keptSources.has(p) || this.keptSources.size >= MAX_KEPT_SOURCES) continue;
      const bytes = new Uint8Array(PAGE_SIZE);
      this.pread(p * PAGE_SIZE, bytes);
      this.keptSources.set(p, { layer: l, bytes });
    }
  }

  /**
   * The copies recorded since the last call (see MovedPages), and start recording anew;
   * undefined if none were. For an incremental checkpoint, taken at its capture.
   */
  takeMoves(): MovedPages | undefined {
    const m = this.moves && { from: this.moves, layer: this.movedLayer!, kept: this.keptSources };
    this.moves = undefined;
    this.movedLayer = undefined;
    this.moveSources = undefined;
    this.keptSources = new Map();
    return m;
  }

  /** The layers pages matched before their first write since (see `former`): a copy, or undefined. */
  formerLayers(): Uint8Array | undefined { return this.former?.slice(); }

  /** Pages [first, last) turn dirty: remember the layers they matched (`from`, one byte per page). */
  private rememberFormer(from: Uint8Array, first: number, last: number): void {
    if (!this.former || this.former.length < last) {
      const grown = new Uint8Array(Math.max(last, Math.ceil(this.state.end / PAGE_SIZE)));
      if (this.former) grown.set(this.former);
      this.former = grown;
    }
    for (let p = first; p < last; p++) if (from[p]) this.former[p] = from[p];
  }

  /** Stop all write tracking: every page counts as written (a checkpoint will store it again). */
  forgetClean(): void {
    if (!this.clean) return;
    const c = this.clean;
    this.clean = undefined;
    this.former = undefined;
    for (let p = 0; p < c.length;) {
      if (!c[p]) { p++; continue; }
      let q = p;
      while (q < c.length && c[q]) q++;
      this.onMaterialized?.(p * PAGE_SIZE, (q - p) * PAGE_SIZE);
      p = q;
    }
  }

  /** Pages backed in [off, off+len) stop being backed (their contents were dropped); true if there were any. */
  private forget(off: number, len: number): boolean {
    if (this.clean) this.clean.fill(0, Math.floor(off / PAGE_SIZE), Math.min(this.clean.length, Math.ceil((off + len) / PAGE_SIZE)));
    if (this.former) this.former.fill(0, Math.floor(off / PAGE_SIZE), Math.min(this.former.length, Math.ceil((off + len) / PAGE_SIZE)));
    const b = this.pageFile;
    if (!b) return false;
    const first = Math.floor(off / PAGE_SIZE), last = Math.min(b.backed.length, Math.ceil((off + len) / PAGE_SIZE));
    if (first >= last || b.backed.subarray(first, last).every((x) => x === 0)) return false;
    b.backed.fill(0, first, last);
    return true;
  }

  /** The layer the page at byte `off` lives in (≥ 1), or 0 (memfd or nothing). */
  private layerAt(off: number): number {
    const b = this.pageFile;
    const p = Math.floor(off / PAGE_SIZE);
    return b && p < b.backed.length ? b.backed[p] : 0;
  }

  /**
   * Split [off, off+len) (page aligned) into runs that live in one page-file layer or in the
   * memfd: `fn(offset, length, layer)` in order (layer 0: the memfd). Without page files: one run.
   */
  segments(off: number, len: number, fn: (off: number, len: number, layer: number) => void): void {
    const b = this.pageFile;
    if (!b || off >= b.backed.length * PAGE_SIZE) { if (len > 0) fn(off, len, 0); return; }
    const end = off + len;
    let runStart = off;
    let runLayer = this.layerAt(off);
    for (let p = off + PAGE_SIZE; p < end; p += PAGE_SIZE) {
      const l = this.layerAt(p);
      if (l !== runLayer) { fn(runStart, p - runStart, runLayer); runStart = p; runLayer = l; }
    }
    fn(runStart, end - runStart, runLayer);
  }

  /**
   * Copy the backed pages of [off, off+len) into the memfd (all-zero ones stay holes) and
   * mark them as no longer backed; then `onMaterialized` repoints guest mappings of each
   * run that moved. Called before any write into those pages.
   */
  materialize(off: number, len: number): void {
    const b = this.pageFile;
    if (!b) return;
    this.ensureReady(off, len);
    const first = Math.floor(off / PAGE_SIZE), last = Math.min(b.backed.length, Math.ceil((off + len) / PAGE_SIZE));
    for (let p = first; p < last;) {
      const layer = b.backed[p];
      if (!layer) { p++; continue; }
      let q = p;
      while (q < last && b.backed[q] === layer) q++;
      const runOff = p * PAGE_SIZE, runLen = (q - p) * PAGE_SIZE;
      this.chargeOrThrow(runOff, runLen);
      // Copied with pread/pwrite through one reused buffer, not through mapped views: on this VM
      // the first touch of each mapped page costs tens of µs (twice per page: source and target).
      // Zero pages stay holes in the memfd.
      const file = b.files[layer - 1];
      for (let at = 0; at < runLen; at += MATERIALIZE_CHUNK) {
        const n = Math.min(MATERIALIZE_CHUNK, runLen - at);
        const buf = (materializeBuffer ??= new Uint8Array(MATERIALIZE_CHUNK)).subarray(0, n);
        file.read(runOff + at, buf);
        for (let i = 0; i < n;) {
          if (isZero(buf, i)) { i += PAGE_SIZE; continue; }
          let j = i + PAGE_SIZE;
          while (j < n && !isZero(buf, j)) j += PAGE_SIZE;
          this.backing.write(runOff + at + i, buf.subarray(i, j));
          i = j;
        }
      }
      this.rememberFormer(b.backed, p, q);
      b.backed.fill(0, p, q);
      this.onMaterialized?.(runOff, runLen);
      p = q;
    }
  }

  /** Byte ranges [offset, length, layer] still served by a page-file layer (layer ≥ 1). */
  backedRanges(): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = [];
    const b = this.pageFile;
    if (!b) return out;
    for (let p = 0; p < b.backed.length;) {
      const layer = b.backed[p];
      if (!layer) { p++; continue; }
      let q = p;
      while (q < b.backed.length && b.backed[q] === layer) q++;
      out.push([p * PAGE_SIZE, (q - p) * PAGE_SIZE, layer]);
      p = q;
    }
    return out;
  }

  /**
   * Ready the kernel's own access to [off, off+len) (bytes of the memory file): make the windows
   * over it and read a byte of each page through the view that serves it (the memfd's, or a page
   * file's for pages still there; never-charged space is skipped), so the kernel's page tables
   * hold those pages. For a warm pool's waiting clones: the first touch of a mapped page costs
   * tens of µs on some VMs, and a window's first use (a 256 MiB view) can start a garbage
   * collection. Returns the pages read.
   */
  warm(off: number, len: number): number {
    let n = 0, sum = 0;
    this.ensureReady(off, len);
    this.pieces(off, len, (a, m, kind, layer) => {
      if (kind === PieceKind.None) return;
      this.eachWindowPiece(a, m, (wi, wo, k) => {
        const w = kind === PieceKind.Backed ? this.backingWindow(wi, layer) : this.window(wi);
        for (let i = 0; i < k; i += PAGE_SIZE) { sum += w[wo + i]; n++; }
      });
    });
    return sum >= 0 ? n : 0;
  }

  /** Pieces of [off, off+len) within one window each: fn(windowIndex, offsetInWindow, length). */
  private eachWindowPiece(off: number, len: number, fn: (wi: number, wo: number, n: number) => void): void {
    let done = 0;
    while (done < len) {
      const abs = off + done;
      const wi = Math.floor(abs / WINDOW_SIZE);
      const wo = abs - wi * WINDOW_SIZE;
      const n = Math.min(len - done, WINDOW_SIZE - wo);
      fn(wi, wo, n);
      done += n;
    }
  }

  /**
   * Zero-copy views covering [off, off+len) of the memory file, split at window and
   * backing boundaries; `fn` is called for each piece in order with its offset into the
   * range. With `forWrite` the range is charged (SyscallError(ENOMEM) if the memory limit
   * refuses) and materialized first and every view is writable; otherwise views of backed
   * pages are read-only memory and views of never-charged space are shared zeros: neither
   * may be written.
   */
  forEachChunk(off: number, len: number, fn: (view: Uint8Array, rangeOffset: number) => void, forWrite = false): void {
    if (forWrite) {
      this.chargeOrThrow(off, len);
      if (this.pageFile) this.materialize(pageRoundDown(off), pageRoundUp(off + len) - pageRoundDown(off));
      if (this.clean) this.unclean(off, len);
      this.eachWindowPiece(off, len, (wi, wo, n) => fn(this.window(wi).subarray(wo, wo + n), wo + wi * WINDOW_SIZE - off));
      return;
    }
    const hi = off + len;
    this.ensureReady(off, len);
    this.pieces(off, len, (a, n, kind, layer) => {
      if (kind === PieceKind.None) {
        for (let d = 0; d < n; d += ZEROS.length) fn(ZEROS.subarray(0, Math.min(ZEROS.length, n - d)), a + d - off);
        return;
      }
      this.eachWindowPiece(a, Math.min(n, hi - a), (wi, wo, m) => {
        if (len <= SMALL_BACKED_READ && !this.windowMapped(wi, kind, layer)) {
          // A few bytes (a write(2) of a line): a copy, as in `read`.
          const out = new Uint8Array(m);
          this.fileOf(kind, layer).read(wi * WINDOW_SIZE + wo, out);
          fn(out, wo + wi * WINDOW_SIZE - off);
          return;
        }
        const w = kind === PieceKind.Backed ? this.backingWindow(wi, layer) : this.window(wi);
        fn(w.subarray(wo, wo + m), wo + wi * WINDOW_SIZE - off);
      });
    });
  }

  /** Bytes [off, off+len) for reading: a view when inside one window and one backing run, else a copy. Never write into it. */
  read(off: number, len: number): Uint8Array {
    this.ensureReady(off, len);
    const wi = Math.floor(off / WINDOW_SIZE);
    const wo = off - wi * WINDOW_SIZE;
    if (wo + len <= WINDOW_SIZE) {
      let pieces = 0, kind: PieceKind = PieceKind.None, layer = 0;
      this.pieces(off, len, (_o, _l, k, l) => { pieces++; kind = k; layer = l; });
      if (pieces <= 1) {
        if (kind === PieceKind.None) return len <= ZEROS.length ? ZEROS.subarray(0, len) : new Uint8Array(len);
        if (len <= SMALL_BACKED_READ && !this.windowMapped(wi, kind, layer)) {
          // A few bytes (a syscall's argument) while the window they fall in is not mapped: pread,
          // rather than map a 256 MiB window, whose external memory makes V8 collect garbage
          // (4–17 ms here) right as a restored guest makes its first calls.
          const out = new Uint8Array(len);
          this.fileOf(kind, layer).read(off, out);
          return out;
        }
        return (kind === PieceKind.Backed ? this.backingWindow(wi, layer) : this.window(wi)).subarray(wo, wo + len);
      }
    }
    const out = new Uint8Array(len);
    this.forEachChunk(off, len, (v, ro) => out.set(v, ro));
    return out;
  }

  /** Write `data` at byte `off` (charged first: SyscallError(ENOMEM) if the memory limit refuses). */
  write(off: number, data: Uint8Array): void {
    const wi = Math.floor(off / WINDOW_SIZE);
    if (data.length <= SMALL_BACKED_READ && !this.windows[wi]) {
      // A few bytes (a syscall's result) while the kernel has no window here: pwrite, as `read`
      // preads, so a restored guest's first calls map no 256 MiB window (and start no GC).
      this.pwrite(off, data);
      return;
    }
    this.forEachChunk(off, data.length, (v, ro) => v.set(data.subarray(ro, ro + v.length)), true);
  }

  /**
   * pread(2) of the memfd into `buf` from byte `off`: the pages are not mapped into the
   * kernel's own address space (file data of the upper layer; keeps the kernel's RSS small).
   */
  pread(off: number, buf: Uint8Array): void {
    if (!this.pageFile) { this.backing.read(off, buf); return; }
    // Pages still in a restored checkpoint's page file are read from there.
    this.ensureReady(off, buf.length);
    const end = off + buf.length;
    const lo = pageRoundDown(off);
    this.segments(lo, pageRoundUp(end) - lo, (so, sl, layer) => {
      const a = Math.max(so, off), e = Math.min(so + sl, end);
      if (a >= e) return;
      const into = buf.subarray(a - off, e - off);
      if (!layer) { this.backing.read(a, into); return; }
      this.eachWindowPiece(a, e - a, (wi, wo, n) => into.set(this.backingWindow(wi, layer).subarray(wo, wo + n), wo + wi * WINDOW_SIZE - a));
    });
  }

  /** pwrite(2) of `data` to the memfd at byte `off` (see pread); charged first (ENOMEM), pages still in a page file are copied in first. */
  pwrite(off: number, data: Uint8Array): void {
    this.chargeOrThrow(off, data.length);
    if (this.pageFile) this.materialize(pageRoundDown(off), pageRoundUp(off + data.length) - pageRoundDown(off));
    if (this.clean) this.unclean(off, data.length);
    this.backing.write(off, data);
  }

  /**
   * Copy len bytes within the memory file into fresh (zero) space (for copy-on-write and a
   * growing shared file); never-charged source pieces and holes of a page file stay holes.
   * The whole destination is charged first (SyscallError(ENOMEM) if refused, nothing copied)
   * unless `chargeAll` is false: then only the units written are (a sparse file's block).
   */
  copy(dstOff: number, srcOff: number, len: number, chargeAll = true): void {
    if (chargeAll) this.chargeOrThrow(dstOff, len);
    this.ensureReady(srcOff, len);
    if (this.clean || this.pageFile) this.noteMoves(dstOff, srcOff, len);
    this.pieces(srcOff, len, (o, n, kind, layer) => {
      if (kind === PieceKind.None) return; // the destination is fresh space: zeros already
      const move = (a: number, m: number) => {
        for (let d = 0; d < m; d += WINDOW_SIZE) {
          const k = Math.min(WINDOW_SIZE, m - d);
          this.write(dstOff + (a + d - srcOff), new Uint8Array(this.read(a + d, k)));
        }
      };
      if (kind === PieceKind.Backed) this.pageFileData(o, n, layer, move); else move(o, n);
    });
  }

  /**
   * Byte ranges [offset, length] that may hold data: SEEK_DATA/SEEK_HOLE over the allocated
   * part of the memfd, plus the data runs of the ranges still served by a backing file
   * (SEEK_DATA/SEEK_HOLE again: a restored sparse file's holes are not read). Sorted, may touch
   * or overlap. `memfdWithin` ([offset, length] byte spans): search only these spans of the
   * memfd (the page files' data is reported whole either way). `allCharged`: `memfdWithin` is
   * chargedRuns() (sorted, not overlapping, bounding all the memfd's data): when the memfd holds
   * at least ALLOCATED_ENOUGH of their bytes, they are returned as they are, unsearched.
   */
  populatedRanges(memfdWithin?: ReadonlyArray<readonly [number, number]>, allCharged = false): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const end = this.state.end;
    if (allCharged && memfdWithin && !this.pageFile) {
      let bytes = 0;
      for (const [lo, n] of memfdWithin) bytes += Math.max(0, Math.min(lo + n, end) - lo);
      if (bytes > 0 && this.backing.allocatedBytes() >= bytes * ALLOCATED_ENOUGH) {
        for (const [lo, n] of memfdWithin) if (lo < end) out.push([lo, Math.min(lo + n, end) - lo]);
        return out;
      }
    }
    // SEEK_HOLE walks every present page of a data run (15-20 ms per GiB of shmem here, measured
    // 2026-12-02): the walk ends at the run's end, which for charged runs is their own end.
    for (const [lo, n] of memfdWithin ?? [[0, end] as const]) {
      const hi = Math.min(lo + n, end);
      for (let pos = lo; pos < hi;) {
        const data = this.backing.seekData(pos);
        if (data < 0 || data >= hi) break;
        let hole = this.backing.seekHole(data);
        if (hole < 0 || hole > hi) hole = hi;
        out.push([data, hole - data]);
        pos = hole;
      }
    }
    if (this.pageFile) {
      for (const [off, len, layer] of this.backedRanges()) this.pageFileData(off, len, layer, (a, n) => out.push([a, n]));
    }
    if (this.pageFile || memfdWithin) out.sort((a, b) => a[0] - b[0]);
    return out;
  }

  /**
   * The charged units as sorted [offset, length] byte runs, a copy taken now (one pass over the
   * charge map, no syscall): a bound on where the memfd can hold data at this moment, for
   * populatedRanges(runs) later.
   */
  chargedRuns(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const ch = this.charged;
    for (let u = ch.indexOf(1); u >= 0;) {
      let w = ch.indexOf(0, u);
      if (w < 0) w = ch.length;
      out.push([u * CHARGE_UNIT, (w - u) * CHARGE_UNIT]);
      u = w >= ch.length ? -1 : ch.indexOf(1, w);
    }
    return out;
  }

  /**
   * The data runs of page-file layer `layer` within [off, off+len): `fn(offset, length)` in order
   * (SEEK_DATA/SEEK_HOLE; its holes are zero pages, or a sparse file's unwritten gigabytes).
   */
  private pageFileData(off: number, len: number, layer: number, fn: (off: number, len: number) => void): void {
    // A layer filled on first use: a hole may be a piece not filled yet; the layer knows its data.
    const lazy = this.pageFile!.lazy[layer - 1];
    if (lazy) { lazy.dataRuns(off, len, fn); return; }
    const file = this.pageFile!.files[layer - 1], end = off + len;
    for (let pos = off; pos < end;) {
      const data = file.seekData(pos);
      if (data < 0 || data >= end) break;
      let hole = file.seekHole(data);
      if (hole < 0 || hole > end) hole = end;
      fn(data, hole - data);
      pos = hole;
    }
  }

  /** Unmap the kernel's windows and close the memfd. Views must not be used afterwards. */
  destroy(): void {
    this.windows.length = 0;
    this.backing.destroy();
    if (this.pageFile) {
      this.pageFile.windows.length = 0;
      for (const f of this.pageFile.files) f.destroy();
      for (const l of this.pageFile.lazy) l?.close();
      this.pageFile = undefined;
    }
  }
}

const ZERO_PAGE = new Uint8Array(PAGE_SIZE);
/** Whether the page at byte `at` of `buf` is all zeros (a native memcmp). */
/** Bytes `materialize` copies per pread/pwrite round (the most a write fault's window takes at once). */
const MATERIALIZE_CHUNK = 2 * 1024 * 1024;
let materializeBuffer: Uint8Array | undefined;

function isZero(buf: Uint8Array, at: number): boolean {
  return Buffer.compare(buf.subarray(at, at + PAGE_SIZE), ZERO_PAGE) === 0;
}

/** Persistence: the allocator's state is data; the pages are saved and refilled by the snapshot store. */
export const memoryFilePersist = persisted<MemoryFileState>({
  kind: 'memory-file',
  records: (g) => [['memoryFile', g.memoryFile]],
  rebuilds: 'a fresh, empty memfd is created and the page files of the checkpoint (its own, and those it inherits pages from) are mapped under it (Kernel.attachPageFiles): pages are read from it and copied into the memfd on their first write (store format 2, docs/snapshot-format.md)',
});
