/**
 * Address spaces: VMA bookkeeping (mmap, munmap, mprotect, brk, mremap) over the
 * memory file, mirrored into the platform, and guest-memory access for syscall
 * handlers (compare Linux mm/mmap.c, mm/mprotect.c, mm/mremap.c; gVisor pkg/sentry/mm).
 *
 * Every guest access goes through `chunks`/`read`/`write`, which check the VMAs and
 * throw SyscallError(EFAULT) for an unmapped or wrongly protected address, so a guest
 * passing garbage pointers gets EFAULT and never crashes the kernel.
 */
import { byId, persisted } from '../kernel/persist.js';
import { Subject } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import type { GuestAddressRange, PlatformTask } from '../../platforms/platform.js';
import type { AddressSpaceState, KernelState, Vma } from '../kernel/state.js';
import { applyOps, type GraphOp } from '../kernel/events.js';
import { CHARGE_UNIT, MemoryFile, PieceKind, pageRoundDown, pageRoundUp } from './memory-file.js';
import { MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_READ, PROT_WRITE } from '../abi/linux.js';

/** Highest guest user address + 1 (47-bit user space, as Linux's TASK_SIZE less a guard page). */
export const TASK_SIZE = 0x7fff_ffff_f000;
/** Top of the initial stack, and its reserved size (bytes). */
export const STACK_TOP = 0x7fff_ffff_f000;
export const STACK_SIZE = 8 * 1024 * 1024;
/** Top of the mmap area (top-down allocation), below the stub's page. */
export const MMAP_BASE = 0x7fff_e000_0000;
/** Lowest address mmap hands out without a hint or accepts (vm.mmap_min_addr). */
export const MMAP_MIN_ADDR = 0x10000;

const NO_LIMITS = { as: Infinity, data: Infinity, memory: Infinity };

/**
 * Bytes charged and mapped at once on a first touch (from the touched unit up, within the VMA)
 * while the memory limit has room for them; one CHARGE_UNIT when it has not.
 */
const FAULT_AROUND = 1024 * 1024;

/** Pages copied at once when a copy-on-write page is first written (fewer faults for sequential writes). */
const COW_CHUNK = 16 * PAGE_SIZE;
/**
 * Most bytes one write fault on restored or clean pages handles when faults come in order (a
 * guest walking its heap, e.g. Python's reference counts touching every object): the window
 * doubles from COW_CHUNK while each fault lands just past the last one, as readahead does.
 * One fault per 64 KiB made a restored python3 walking 200 MB take ~3,200 ptrace round trips.
 */
const MAX_WRITE_AHEAD = 2 * 1024 * 1024;
/**
 * Most memory-file bytes a new heap block keeps free after the heap's end, so later brk growth
 * extends the same block and VMA (growHeapInPlace) although other mappings were allocated since.
 * Starts at the heap's size (geometric growth: few blocks for any heap), holes until used.
 */
const HEAP_SLACK_MAX = 64 * 1024 * 1024;

export class AddressSpace {
  /** Index of the VMA that satisfied the last lookup (accesses are local). */
  private hint = 0;
  /** Sequential write faults (handleWriteFault): where the last window ended (memory-file offset) and its size (bytes). */
  private writeAheadEnd = -1;
  private writeAheadSize = COW_CHUNK;
  /** Platform contexts running in this address space (one per stub); mapping changes go to each. */
  readonly contexts: PlatformTask[] = [];

  /** Lowest and highest+1 guest address a mapping may use (bytes): the platform's range within Linux's. */
  private readonly minAddr: number;
  private readonly maxAddr: number;
  /** Ranges [start, end) the platform keeps for itself (the ptrace stub's page): never mapped. */
  private readonly reserved: ReadonlyArray<readonly [number, number]>;

  /**
   * The RLIMIT_AS and RLIMIT_DATA soft limits (bytes; Infinity = none) of the thread group using
   * this address space, read at each check (set by the kernel when a task attaches).
   */
  limits: () => { as: number; data: number; memory: number } = () => NO_LIMITS;

  /** `range` is the platform's guest address range (Platform.addressRange). */
  constructor(readonly state: AddressSpaceState, readonly mf: MemoryFile, range: GuestAddressRange, platform?: PlatformTask) {
    this.minAddr = Math.max(MMAP_MIN_ADDR, range.min);
    this.maxAddr = Math.min(TASK_SIZE, range.max);
    this.reserved = range.reserved;
    if (platform) this.contexts.push(platform);
  }

  /** Whether [start, end) touches a platform-reserved range. */
  private inReserved(start: number, end: number): boolean {
    for (const [lo, hi] of this.reserved) if (start < hi && end > lo) return true;
    return false;
  }

  get id(): number { return this.state.id; }

  /**
   * The kernel's door for this address space's graph record (paths from the graph root,
   * ['addressSpaces', id, …]): Kernel.stage, so the syscall's or fault's event carries the
   * changes. Unset (an address space no kernel owns), the ops are applied to the record here.
   */
  change: (ops: readonly GraphOp[]) => void = (ops) => applyOps({ addressSpaces: { [this.id]: this.state } } as unknown as KernelState, ops);

  /** Set fields of VMA `v` (one of this.state.vmas) through `change`. */
  private setVma(v: Vma, fields: Partial<Vma>): void {
    const i = this.state.vmas.indexOf(v);
    this.change(Object.entries(fields).map(([k, val]): GraphOp => ['set', ['addressSpaces', this.id, 'vmas', i, k], val]));
  }

  /** Set fields of this address space's record (brk, the exec image's addresses…) through `change`. */
  setFields(fields: Partial<AddressSpaceState>): void {
    this.change(Object.entries(fields).map(([k, val]): GraphOp => ['set', ['addressSpaces', this.id, k], val]));
  }

  /** Mapping changes waiting for a context that was running guest code (threads of this address space). */
  private readonly deferred = new Map<PlatformTask, Array<(c: PlatformTask) => void>>();
  /** Fires when a context has caught up with deferred mapping changes. */
  readonly synced$ = new Subject<void>();

  /**
   * Apply a host mapping change to every context: at once where the stub is stopped, and
   * for one running guest code, when it next stops (it is interrupted now; callers wait on
   * `hasDeferred`/`synced$`, like a TLB shootdown).
   */
  private hostOp(op: (c: PlatformTask) => void): void {
    for (const c of this.contexts) {
      if (c.isRunning()) {
        let q = this.deferred.get(c);
        if (!q) this.deferred.set(c, q = []);
        q.push(op);
        c.interrupt();
      } else op(c);
    }
  }
  /** Run the changes deferred for `c` (now stopped). */
  flush(c: PlatformTask): void {
    const q = this.deferred.get(c);
    if (!q) return;
    this.deferred.delete(c);
    for (const op of q) op(c);
    this.synced$.next();
  }
  /** Whether some context still has mapping changes to apply. */
  hasDeferred(): boolean { return this.deferred.size > 0; }
  /** Forget a context that left (its task exited). */
  detach(c: PlatformTask): void {
    const i = this.contexts.indexOf(c);
    if (i >= 0) this.contexts.splice(i, 1);
    if (this.deferred.delete(c)) this.synced$.next();
  }

  /**
   * Map guest [addr, addr+len) to memory-file offset `off` in one context: pages still in one
   * of a restored checkpoint's page files are mapped from it read-only (a write faults and
   * materializes them, see handleWriteFault), the rest from the memfd.
   */
  private mapInto(c: PlatformTask, addr: number, len: number, prot: number, off: number): void {
    // Never-charged space is left unmapped: the guest's first access traps (handleMissing) and charges it.
    // So are pieces of a page file filled on first use that are not filled yet (handleMissing fills them).
    this.mf.pieces(off, len, (o, n, kind, layer) => {
      if (kind === PieceKind.None) return;
      if (kind === PieceKind.Backed) this.mf.readyRuns(o, n, layer, (ro, rn) => c.map(addr + (ro - off), rn, prot & ~PROT_WRITE, ro, layer));
      else c.map(addr + (o - off), n, kind === PieceKind.Clean ? prot & ~PROT_WRITE : prot, o, layer);
    });
  }
  private hostMap(addr: number, len: number, prot: number, off: number): void { this.hostOp((c) => this.mapInto(c, addr, len, prot, off)); }
  private hostUnmap(addr: number, len: number): void { this.hostOp((c) => c.unmap(addr, len)); }
  /** mprotect of guest [addr, addr+len) mapped at memory-file offset `off` (backed pages never become writable). */
  private hostProtect(addr: number, len: number, prot: number, off: number): void {
    // Mapped again rather than mprotect'ed: a context may not have faulted in every charged unit yet.
    this.hostOp((c) => this.mapInto(c, addr, len, prot, off));
  }

  /**
   * A fault at `addr` where context `c` has no host mapping: if a VMA allows some access there,
   * charge the memory-file unit under the page (the memory limit may refuse, after its OOM
   * killer ran: 'refused') and map that unit's part of the VMA into `c` (other contexts of this
   * address space map it on their own first access). Returns true when the access should be
   * retried, false when the fault is the guest's (no VMA, or PROT_NONE).
   */
  handleMissing(addr: number, c: PlatformTask): boolean | 'refused' {
    const v = this.find(addr);
    if (!v || v.prot === 0) return false;
    const off = v.fileOffset + (pageRoundDown(addr) - v.start);
    const vEnd = v.fileOffset + (v.end - v.start);
    // Fault-around: FAULT_AROUND bytes from the faulting unit on (accesses mostly go up) when they
    // fit under the limit as things are, else the one unit.
    const unit0 = Math.floor(off / CHARGE_UNIT) * CHARGE_UNIT;
    let lo = Math.max(v.fileOffset, unit0), hi = Math.min(vEnd, unit0 + FAULT_AROUND);
    // A page of a page file filled on first use: its whole piece is filled at once, so map all of it.
    const piece = this.mf.lazyPieceBytes(off);
    if (piece) {
      const p0 = Math.floor(off / piece) * piece;
      lo = Math.max(v.fileOffset, p0);
      hi = Math.min(vEnd, p0 + piece);
    }
    if (!this.mf.isBacked(off) && !this.mf.charge(lo, hi - lo, true)) {
      hi = Math.min(vEnd, unit0 + CHARGE_UNIT);
      if (!this.mf.charge(lo, hi - lo)) return 'refused';
    }
    // Pages of a page file filled on first use are filled before they are mapped (PageSourceError if they cannot be).
    this.mf.ensureReady(lo, hi - lo);
    this.mapInto(c, v.start + (lo - v.fileOffset), hi - lo, AddressSpace.hostProt(v), lo);
    return true;
  }

  /**
   * The pages of this address space's VMAs that its contexts' host processes have in their page
   * tables (PlatformTask.residentPages): after a restore, the pages the guest touched since, read
   * or written. [guest address, pages] runs in address order; empty where the platform cannot tell.
   */
  residentRuns(): Array<[number, number]> {
    const ranges = this.state.vmas.map((v) => [v.start, v.end - v.start] as const);
    const pages = new Set<number>();
    for (const c of this.contexts) {
      for (const [a, n] of c.residentPages?.(ranges) ?? []) for (let i = 0; i < n; i++) pages.add(a + i * PAGE_SIZE);
    }
    const out: Array<[number, number]> = [];
    for (const p of [...pages].sort((x, y) => x - y)) {
      const last = out[out.length - 1];
      if (last && last[0] + last[1] * PAGE_SIZE === p) last[1]++;
      else out.push([p, 1]);
    }
    return out;
  }

  /**
   * Fill the host page tables of every context for the pages of `runs` ([guest address, pages]:
   * a warm pool's record of what a clone's guest touched right after it resumed), while they are
   * stopped: a page never charged is charged and mapped as the guest's first access would
   * (handleMissing), then the platform touches each page in the context's own user mode
   * (PlatformTask.touchPages), so the guest's first access costs no host fault; the kernel's
   * own views of them are readied too (MemoryFile.warm). Pages outside
   * the VMAs or in PROT_NONE ones are skipped, as are those the memory limit refuses. Returns
   * the pages touched per context summed (0 where the platform cannot, or a context runs).
   */
  prefault(runs: ReadonlyArray<readonly [number, number]>): number {
    if (!this.contexts.length || this.isRunning() || !this.contexts.every((c) => c.touchPages)) return 0;
    const touch: Array<[number, number]> = [];
    for (const [addr, pages] of runs) {
      if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(pages) || pages <= 0 || addr % PAGE_SIZE) continue;
      const end = Math.min(this.maxAddr, addr + pages * PAGE_SIZE);
      for (let a = addr; a < end;) {
        const v = this.find(a);
        if (!v) { a += PAGE_SIZE; continue; }
        const hi = Math.min(end, v.end);
        if (v.prot !== 0) {
          // Pieces of a page file filled on first use: filled and mapped now, as the guest's first access would.
          if (this.mf.hasLazyLayers) {
            const off = v.fileOffset + (a - v.start);
            this.mf.ensureReady(off, hi - a);
            for (const c of this.contexts) this.mapInto(c, a, hi - a, AddressSpace.hostProt(v), off);
          }
          // Never-charged pieces first get what the guest's first access would (charge, map).
          let ok = true;
          this.mf.pieces(v.fileOffset + (a - v.start), hi - a, (o, n, kind) => {
            if (kind !== PieceKind.None || !ok) return;
            for (let p = o; p < o + n; p += PAGE_SIZE) {
              if (this.mf.isCharged(p)) continue;
              for (const c of this.contexts) if (this.handleMissing(v.start + (p - v.fileOffset), c) !== true) ok = false;
              if (!ok) return;
            }
          });
          if (ok) {
            touch.push([a, (hi - a) / PAGE_SIZE]);
            this.mf.warm(v.fileOffset + (a - v.start), hi - a);
          }
        }
        a = hi;
      }
    }
    let n = 0;
    const total = touch.reduce((s, [, p]) => s + p, 0);
    for (const c of this.contexts) if (c.touchPages!(touch)) n += total;
    return n;
  }

  /**
   * Call fn(i) for each memory-file run runs[i] (sorted, non-overlapping [offset, length]) that
   * some VMA of this address space maps. O(VMAs · log runs).
   */
  private eachMappedRun(runs: ReadonlyArray<readonly [number, number]>, fn: (i: number, addr: number, len: number) => void): void {
    for (const v of this.state.vmas) {
      const vs = v.fileOffset, ve = v.fileOffset + (v.end - v.start);
      let lo = 0, hi = runs.length;
      while (lo < hi) { const m = (lo + hi) >> 1; if (runs[m][0] + runs[m][1] <= vs) lo = m + 1; else hi = m; }
      for (let i = lo; i < runs.length && runs[i][0] < ve; i++) {
        const a = Math.max(vs, runs[i][0]), b = Math.min(ve, runs[i][0] + runs[i][1]);
        if (a < b) fn(i, v.start + (a - vs), b - a);
      }
    }
  }

  /** Whether some context of this address space is running guest code now. */
  isRunning(): boolean { return this.contexts.some((c) => c.isRunning()); }

  /** Indexes of the runs (see eachMappedRun) some VMA of this address space maps. */
  mappedRuns(runs: ReadonlyArray<readonly [number, number]>): Set<number> {
    const out = new Set<number>();
    this.eachMappedRun(runs, (i) => out.add(i));
    return out;
  }

  /**
   * Remove every host mapping of the memory-file runs (sorted [offset, length]) from this address
   * space's contexts, which must all be stopped; the memory limit then uncharges them, and a later
   * access traps and charges again.
   */
  unmapFileRuns(runs: ReadonlyArray<readonly [number, number]>): void {
    this.eachMappedRun(runs, (_i, addr, len) => this.hostUnmap(addr, len));
  }

  /**
   * A shared file's memory-file block moved from `from` to `to` (it outgrew its capacity):
   * every VMA of the old block now maps the same file bytes in the new one (its reference
   * moves with it) and is mapped again into each context. The caller drops its own reference
   * to the old block afterwards.
   */
  moveBlock(from: number, to: number): void {
    for (const v of this.state.vmas) {
      if (v.block !== from) continue;
      this.mf.ref(to, this.id, 1);
      this.mf.ref(from, this.id, -1);
      this.setVma(v, { block: to, fileOffset: v.fileOffset + (to - from) });
      this.hostMap(v.start, v.end - v.start, AddressSpace.hostProt(v), v.fileOffset);
    }
  }

  /**
   * Pages of memory-file range [off, off+len) moved from the backing page file into the
   * memfd: point every guest mapping of them at the memfd, with the VMA's own protection.
   */
  remapFileRange(off: number, len: number): void {
    const end = off + len;
    for (const v of this.state.vmas) {
      const vEnd = v.fileOffset + (v.end - v.start);
      const lo = Math.max(off, v.fileOffset), hi = Math.min(end, vEnd);
      if (lo >= hi) continue;
      this.hostMap(v.start + (lo - v.fileOffset), hi - lo, AddressSpace.hostProt(v), lo);
    }
  }

  /** Whether an access of kind `prot` at addr is allowed by the VMAs (a fault there was a stale host mapping). */
  allows(addr: number, prot: number): boolean {
    const v = this.find(addr);
    return !!v && (v.prot & prot) === prot && !(v.cow && (prot & PROT_WRITE));
  }
  /** Protection the host mapping gets: copy-on-write pages are mapped read-only until copied. */
  private static hostProt(v: Vma): number { return v.cow ? v.prot & ~PROT_WRITE : v.prot; }

  static emptyState(id: number): AddressSpaceState {
    return { id, vmas: [], brkStart: 0, brk: 0, mmapBase: MMAP_BASE, argStart: 0, argEnd: 0, envStart: 0, envEnd: 0, auxv: [], exe: '' };
  }

  /**
   * Re-create every VMA in a fresh platform address space (restore, fork, exec). Neighbouring
   * VMAs that continue each other in the memory file with the same host protection become
   * one host mapping (a python heap grown by brk is hundreds of VMAs but one range).
   */
  replay(ctx: PlatformTask = this.contexts[0]): void {
    let start = 0, end = 0, off = 0, prot = -1;
    for (const v of this.state.vmas) {
      const hp = AddressSpace.hostProt(v);
      if (prot === hp && end === v.start && off + (end - start) === v.fileOffset) { end = v.end; continue; }
      if (prot >= 0) this.mapInto(ctx, start, end - start, prot, off);
      start = v.start; end = v.end; off = v.fileOffset; prot = hp;
    }
    if (prot >= 0) this.mapInto(ctx, start, end - start, prot, off);
  }

  /** The VMA containing `addr`, or undefined. */
  find(addr: number): Vma | undefined {
    const vmas = this.state.vmas;
    const h = vmas[this.hint];
    if (h && addr >= h.start && addr < h.end) return h;
    let lo = 0, hi = vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = vmas[mid];
      if (addr < v.start) hi = mid - 1;
      else if (addr >= v.end) lo = mid + 1;
      else { this.hint = mid; return v; }
    }
    return undefined;
  }

  /**
   * Zero-copy views of guest memory [addr, addr+len), split at VMA and window
   * boundaries. Throws SyscallError(EFAULT) if any byte is unmapped or lacks `prot`.
   */
  chunks(addr: number, len: number, prot: number, fn: (view: Uint8Array, rangeOffset: number) => void, forceWrite = false): void {
    if (len === 0) return;
    if (!(addr >= 0) || addr + len > this.maxAddr || !Number.isSafeInteger(addr)) throw new SyscallError(E.EFAULT);
    let done = 0;
    while (done < len) {
      const a = addr + done;
      let v = this.find(a);
      if (!v || (v.prot & prot) !== prot) throw new SyscallError(E.EFAULT);
      if (v.cow && (prot & PROT_WRITE)) {
        this.breakCow(a, Math.min(len - done, v.end - a));
        v = this.find(a)!;
      }
      const n = Math.min(len - done, v.end - a);
      const base = done;
      this.mf.forEachChunk(v.fileOffset + (a - v.start), n, (view, ro) => fn(view, base + ro), forceWrite || (prot & PROT_WRITE) !== 0);
      done += n;
    }
  }

  /** Copy guest bytes out (the result is the kernel's own copy when it spans pieces, else a live view). */
  read(addr: number, len: number): Uint8Array {
    const v = this.find(addr);
    if (v && addr + len <= v.end && (v.prot & PROT_READ)) {
      return this.mf.read(v.fileOffset + (addr - v.start), len);
    }
    const out = new Uint8Array(len);
    this.chunks(addr, len, PROT_READ, (view, ro) => out.set(view, ro));
    return out;
  }

  /** Copy bytes into guest memory; EFAULT unless the whole range is mapped writable. */
  write(addr: number, data: Uint8Array): void {
    const v = this.find(addr);
    if (v && data.length > 0 && addr + data.length <= v.end && (v.prot & PROT_WRITE) && !v.cow) {
      // Inside one VMA: the memory file writes a syscall's few bytes without mapping a 256 MiB
      // window (MemoryFile.write), as `read` reads them.
      this.mf.write(v.fileOffset + (addr - v.start), data);
      return;
    }
    this.chunks(addr, data.length, PROT_WRITE, (view, ro) => view.set(data.subarray(ro, ro + view.length)));
  }

  /** Write into guest memory ignoring protection (the loader filling read-only segments). */
  writeForce(addr: number, data: Uint8Array): void {
    this.breakCow(addr, data.length); // never write into pages another address space (or the page cache) shares
    this.chunks(addr, data.length, 0, (view, ro) => view.set(data.subarray(ro, ro + view.length)), true);
  }

  /**
   * A NUL-terminated guest string of at most `max` bytes (ENAMETOOLONG past that, EFAULT if
   * unmapped), as a latin1 string: one char per byte, so any byte sequence round-trips
   * (Linux paths are bytes, not UTF-8).
   */
  readCString(addr: number, max = 4096): string {
    const bytes = this.readCStringBytes(addr, max);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  }

  readCStringBytes(addr: number, max = 4096): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    let a = addr;
    for (;;) {
      const v = this.find(a);
      if (!v || !(v.prot & PROT_READ)) throw new SyscallError(E.EFAULT);
      const n = Math.min(v.end - a, 4096);
      const view = this.mf.read(v.fileOffset + (a - v.start), n);
      const z = view.indexOf(0);
      if (z >= 0) {
        parts.push(view.subarray(0, z)); total += z;
        if (total > max) throw new SyscallError(E.ENAMETOOLONG);
        break;
      }
      parts.push(view); total += n; a += n;
      if (total > max) throw new SyscallError(E.ENAMETOOLONG);
    }
    if (parts.length === 1) return new Uint8Array(parts[0]);
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }

  readU64(addr: number): bigint {
    const b = this.read(addr, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  readU32(addr: number): number {
    const b = this.read(addr, 4);
    return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
  }
  writeU64(addr: number, v: bigint | number): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
    this.write(addr, b);
  }
  writeU32(addr: number, v: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.write(addr, b);
  }
  /** Read a NULL-terminated array of string pointers (argv/envp of execve). */
  readStringArray(addr: number, maxEntries = 65536): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (addr === 0) return out;
    for (let i = 0; ; i++) {
      if (i >= maxEntries) throw new SyscallError(E.E2BIG);
      const p = Number(this.readU64(addr + i * 8));
      if (p === 0) break;
      out.push(this.readCStringBytes(p, 128 * 1024));
    }
    return out;
  }

  /**
   * may_expand_vm (mm/mmap.c): may the address space grow by `len` bytes of a mapping with
   * `prot`/`flags` (`name` '[stack]' marks the stack, never a data mapping), where `replaced`
   * bytes of existing mappings go away (a MAP_FIXED mapping over them)? Throws
   * SyscallError(ENOMEM) when the total mapped size would pass RLIMIT_AS, or, for a data
   * mapping (private, writable, not the stack), the data size would pass RLIMIT_DATA.
   * Walks the VMAs only when a limit is set.
   */
  checkExpand(len: number, prot: number, flags: number, name = '', replaced = 0): void {
    const lim = this.limits();
    // Overcommit as Linux's heuristic mode (__vm_enough_memory, OVERCOMMIT_GUESS) with the sandbox's
    // memory limit as its RAM: one accountable mapping (private writable, or shared anonymous;
    // not MAP_NORESERVE) larger than all of it is refused; smaller ones succeed and are charged
    // when touched.
    const accountable = !(flags & MAP_NORESERVE) && ((prot & PROT_WRITE && !(flags & MAP_SHARED)) || ((flags & MAP_SHARED) && (flags & MAP_ANONYMOUS)));
    if (accountable && pageRoundUp(len) > lim.memory) throw new SyscallError(E.ENOMEM);
    if (lim.as === Infinity && lim.data === Infinity) return;
    const grow = pageRoundUp(len) - replaced;
    let total = 0, data = 0;
    for (const v of this.state.vmas) {
      total += v.end - v.start;
      if (AddressSpace.isData(v.prot, v.flags, v.name)) data += v.end - v.start;
    }
    if (total + grow > lim.as) throw new SyscallError(E.ENOMEM);
    if (AddressSpace.isData(prot, flags, name) && data + grow > lim.data) throw new SyscallError(E.ENOMEM);
  }

  /** is_data_mapping: private and writable, not the stack (VM_WRITE without VM_SHARED or VM_STACK). */
  private static isData(prot: number, flags: number, name: string): boolean {
    return (prot & PROT_WRITE) !== 0 && !(flags & MAP_SHARED) && !(flags & MAP_GROWSDOWN) && name !== '[stack]';
  }

  /** Bytes of [start, end) covered by VMAs (count_vma_pages_range, in bytes). */
  mappedBytes(start: number, end: number): number {
    let n = 0;
    for (const [a, b] of this.mappedPieces(start, end)) n += b - a;
    return n;
  }

  private isFree(start: number, end: number): boolean {
    if (start < this.minAddr || end > this.maxAddr) return false;
    if (this.inReserved(start, end)) return false;
    for (const v of this.state.vmas) if (v.start < end && v.end > start) return false;
    return true;
  }

  /** Top-down search for a free gap of `len` bytes below `below` (compare mm/mmap.c unmapped_area_topdown). */
  findGap(len: number, below = this.state.mmapBase): number {
    let top = below;
    const vmas = this.state.vmas;
    for (let i = vmas.length - 1; i >= -1; i--) {
      const v = vmas[i];
      if (v && v.start >= top) continue;
      const floor = v ? v.end : this.minAddr;
      if (top - floor >= len) {
        const start = top - len;
        if (this.isFree(start, top)) return start;
      }
      if (v) top = Math.min(top, v.start);
    }
    throw new SyscallError(E.ENOMEM);
  }

  /**
   * Map a new VMA (mmap(2) semantics for placement). `contents`, if given, is copied to
   * the start of the new memory (private file mappings); the rest reads as zeros.
   * Returns the guest address. Errors: ENOMEM (no room), EEXIST (MAP_FIXED_NOREPLACE), EINVAL.
   */
  map(hint: number, len: number, prot: number, flags: number, name: string, pgoff: number, contents?: Uint8Array): number {
    len = pageRoundUp(len);
    if (len === 0 || len > this.maxAddr) throw new SyscallError(E.ENOMEM);
    let addr: number;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
      if (hint % PAGE_SIZE) throw new SyscallError(E.EINVAL);
      if (hint < this.minAddr || hint + len > this.maxAddr) throw new SyscallError(flags & MAP_FIXED ? E.EPERM : E.ENOMEM);
      if (this.inReserved(hint, hint + len)) throw new SyscallError(E.ENOMEM);
      if (flags & MAP_FIXED_NOREPLACE) {
        if (!this.isFree(hint, hint + len)) throw new SyscallError(E.EEXIST);
      } else this.unmap(hint, len);
      addr = hint;
    } else if (hint && hint % PAGE_SIZE === 0 && this.isFree(hint, hint + len)) {
      addr = hint;
    } else {
      addr = this.findGap(len);
    }
    const fileOffset = this.mf.newBlock(len, this.id);
    if (contents && contents.length) this.mf.write(fileOffset, contents.subarray(0, Math.min(contents.length, len)));
    const vma: Vma = { start: addr, end: addr + len, prot, flags, fileOffset, block: fileOffset, cow: false, name, pgoff };
    this.insert(vma);
    this.hostMap(addr, len, prot, fileOffset);
    return addr;
  }

  /**
   * Map an existing memory-file block: a MAP_SHARED file mapping (every mapper and the file
   * see the same pages), or with `cow` a private mapping of page-cache pages that are copied
   * on the first write. `blockOffset` is where the mapping starts inside the block.
   */
  mapBlock(hint: number, len: number, prot: number, flags: number, name: string, pgoff: number, block: number, blockOffset: number, cow = false): number {
    len = pageRoundUp(len);
    let addr: number;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
      if (hint % PAGE_SIZE || hint < this.minAddr || hint + len > this.maxAddr) throw new SyscallError(E.EINVAL);
      if (this.inReserved(hint, hint + len)) throw new SyscallError(E.ENOMEM);
      if (flags & MAP_FIXED_NOREPLACE) { if (!this.isFree(hint, hint + len)) throw new SyscallError(E.EEXIST); } else this.unmap(hint, len);
      addr = hint;
    } else addr = hint && hint % PAGE_SIZE === 0 && this.isFree(hint, hint + len) ? hint : this.findGap(len);
    this.mf.ref(block, this.id, 1);
    const fileOffset = block + blockOffset;
    const vma: Vma = { start: addr, end: addr + len, prot, flags, fileOffset, block, cow, name, pgoff };
    this.insert(vma);
    this.hostMap(addr, len, AddressSpace.hostProt(vma), fileOffset);
    return addr;
  }

  private insert(vma: Vma): void {
    const vmas = this.state.vmas;
    let i = vmas.length;
    while (i > 0 && vmas[i - 1].start > vma.start) i--;
    this.change([['splice', ['addressSpaces', this.id, 'vmas'], i, 0, vma]]);
  }

  /** Split VMAs so that `addr` is a boundary. */
  private splitAt(addr: number): void {
    const v = this.find(addr);
    if (!v || v.start === addr) return;
    const right: Vma = { ...v, start: addr, fileOffset: v.fileOffset + (addr - v.start), pgoff: v.pgoff + (addr - v.start) };
    this.setVma(v, { end: addr });
    this.insert(right);
    this.mf.ref(v.block, this.id, 1);
  }

  /**
   * munmap(2): remove [addr, addr+len); the freed memory-file pages are released. EINVAL on
   * misalignment, past TASK_SIZE, or over the platform's reserved range (the stub's own pages,
   * which the guest can never map: treated as Linux treats addresses above TASK_SIZE).
   */
  unmap(addr: number, len: number): void {
    if (addr % PAGE_SIZE || len <= 0) throw new SyscallError(E.EINVAL);
    len = pageRoundUp(len);
    const end = addr + len;
    if (end > this.maxAddr) throw new SyscallError(E.EINVAL);
    if (this.inReserved(addr, end)) throw new SyscallError(E.EINVAL);
    this.splitAt(addr);
    this.splitAt(end);
    // After the splits, the VMAs inside [addr, end) are consecutive in the (sorted) list.
    const vmas = this.state.vmas;
    let first = -1, count = 0;
    for (let i = 0; i < vmas.length; i++) {
      const v = vmas[i];
      if (v.start >= addr && v.end <= end) { if (first < 0) first = i; count++; this.dropVma(v); }
    }
    const removed = count > 0;
    if (removed) this.change([['splice', ['addressSpaces', this.id, 'vmas'], first, count]]);
    this.hint = 0;
    if (removed) this.hostUnmap(addr, len);
  }

  /** Give up one VMA's reference to its block; its pages go at once when nobody else can see them. */
  private dropVma(v: Vma): void {
    if (this.mf.exclusive(v.block, this.id)) this.mf.punch(v.fileOffset, v.end - v.start);
    this.mf.ref(v.block, this.id, -1);
  }

  /**
   * Whether every page of [addr, end) (guest addresses, page-aligned) lies in some VMA. Walks the
   * VMAs, never the pages, so a guest-supplied range of any size costs O(VMAs).
   */
  covers(addr: number, end: number): boolean {
    for (let a = addr; a < end;) {
      const v = this.find(a);
      if (!v) return false;
      a = v.end;
    }
    return true;
  }

  /**
   * The mapped pieces of [addr, end) (guest addresses), VMA by VMA, in order: [start, end) pairs.
   * O(VMAs) whatever the range's size.
   */
  mappedPieces(addr: number, end: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const v of this.state.vmas) {
      if (v.end <= addr) continue;
      if (v.start >= end) break;
      out.push([Math.max(v.start, addr), Math.min(v.end, end)]);
    }
    return out;
  }

  /** mprotect(2): ENOMEM if any page of the range is unmapped, EINVAL on misalignment. */
  protect(addr: number, len: number, prot: number): void {
    if (addr % PAGE_SIZE) throw new SyscallError(E.EINVAL);
    len = pageRoundUp(len);
    const end = addr + len;
    if (!this.covers(addr, end)) throw new SyscallError(E.ENOMEM);
    // mprotect_fixup: pages turning into data must fit RLIMIT_DATA (checked here for the whole range).
    // (The RLIMIT_AS part of may_expand_vm cancels out there: the total does not change.)
    const dataLimit = this.limits().data;
    if (dataLimit !== Infinity) {
      let becoming = 0, data = 0;
      for (const v of this.state.vmas) {
        if (AddressSpace.isData(v.prot, v.flags, v.name)) data += v.end - v.start;
        else if (v.end > addr && v.start < end && AddressSpace.isData(prot, v.flags, v.name)) becoming += Math.min(v.end, end) - Math.max(v.start, addr);
      }
      if (becoming && data + becoming > dataLimit) throw new SyscallError(E.ENOMEM);
    }
    this.splitAt(addr);
    this.splitAt(end);
    for (const v of this.state.vmas) {
      if (v.start >= addr && v.end <= end) {
        this.setVma(v, { prot });
        this.hostProtect(v.start, v.end - v.start, AddressSpace.hostProt(v), v.fileOffset);
      }
    }
    this.hint = 0;
  }

  /**
   * brk(2): move the program break; returns the new break, or the old one on failure
   * (Linux returns the unchanged break rather than an errno).
   */
  setBrk(newBrk: number): number {
    const s = this.state;
    if (newBrk < s.brkStart) return s.brk;
    // check_data_rlimit: the heap (the data segment is not counted here) against RLIMIT_DATA, before shrinking too.
    if (newBrk - s.brkStart > this.limits().data) return s.brk;
    const oldTop = pageRoundUp(s.brk), newTop = pageRoundUp(newBrk);
    if (newTop > oldTop) {
      if (!this.isFree(oldTop, newTop)) return s.brk;
      try {
        this.checkExpand(newTop - oldTop, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, '[heap]');
      } catch (e) {
        if (e instanceof SyscallError) return s.brk;
        throw e;
      }
      if (!this.growHeapInPlace(oldTop, newTop)) {
        // A new heap block, with room to grow in place (holes until used: the memory file is sparse).
        const len = newTop - oldTop;
        const slack = Math.min(HEAP_SLACK_MAX, Math.max(len, oldTop - pageRoundUp(s.brkStart)));
        const fileOffset = this.mf.newBlock(len + slack, this.id);
        this.insert({ start: oldTop, end: newTop, prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, fileOffset, block: fileOffset, cow: false, name: '[heap]', pgoff: 0 });
        this.hostMap(oldTop, len, PROT_READ | PROT_WRITE, fileOffset);
        this.mergeAdjacent();
      }
    } else if (newTop < oldTop) {
      this.unmap(newTop, oldTop - newTop);
    }
    this.setFields({ brk: newBrk });
    return newBrk;
  }

  /**
   * brk growth from `oldTop` to `newTop` (page-aligned guest addresses) by extending the heap VMA
   * that ends at `oldTop` and its memory-file block, when this address space alone uses the block
   * and the memory file has room right after it (MemoryFile.growBlock). False: nothing changed,
   * the caller maps a new VMA instead.
   */
  private growHeapInPlace(oldTop: number, newTop: number): boolean {
    const v = this.find(oldTop - 1);
    if (!v || v.end !== oldTop || v.name !== '[heap]' || v.cow || (v.flags & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS)) !== (MAP_PRIVATE | MAP_ANONYMOUS) || v.prot !== (PROT_READ | PROT_WRITE)) return false;
    if (!this.mf.exclusive(v.block, this.id)) return false;
    const off = v.fileOffset + (v.end - v.start), len = newTop - oldTop;
    // Another VMA of this address space may still use the block past this one (a heap split by mprotect, then shrunk).
    for (const w of this.state.vmas) if (w !== v && w.block === v.block && w.fileOffset < off + len && w.fileOffset + (w.end - w.start) > off) return false;
    if (!this.mf.growBlock(v.block, off, len)) return false;
    this.setVma(v, { end: newTop });
    this.hostMap(oldTop, len, v.prot, off);
    return true;
  }

  /** Merge neighbouring VMAs that continue each other in the memory file (keeps the VMA list short). */
  private mergeAdjacent(): void {
    const vmas = this.state.vmas;
    for (let i = vmas.length - 1; i > 0; i--) {
      const a = vmas[i - 1], b = vmas[i];
      if (a.end === b.start && a.prot === b.prot && a.flags === b.flags && a.name === b.name && a.block === b.block && a.cow === b.cow && a.fileOffset + (a.end - a.start) === b.fileOffset) {
        this.setVma(a, { end: b.end });
        this.change([['splice', ['addressSpaces', this.id, 'vmas'], i, 1]]);
        this.mf.ref(a.block, this.id, -1);
      }
    }
    this.hint = 0;
  }

  /**
   * mremap(2) without MREMAP_FIXED: shrink in place, grow in place when the pages after
   * are free, else move when MREMAP_MAYMOVE (contents copied in the memory file).
   * Errors: EFAULT (old range not one VMA), ENOMEM (cannot grow), EINVAL.
   */
  remap(oldAddr: number, oldLen: number, newLen: number, mayMove: boolean): number {
    if (oldAddr % PAGE_SIZE) throw new SyscallError(E.EINVAL);
    oldLen = pageRoundUp(oldLen); newLen = pageRoundUp(newLen);
    if (newLen === 0) throw new SyscallError(E.EINVAL);
    const v = this.find(oldAddr);
    if (!v || oldAddr + oldLen > v.end) throw new SyscallError(E.EFAULT);
    if (newLen <= oldLen) {
      if (newLen < oldLen) this.unmap(oldAddr + newLen, oldLen - newLen);
      return oldAddr;
    }
    this.checkExpand(newLen - oldLen, v.prot, v.flags, v.name); // vma_to_resize: only the growth counts
    if (oldAddr + oldLen === v.end && this.isFree(v.end, oldAddr + newLen)) {
      this.splitAt(oldAddr);
      const cur = this.find(oldAddr)!;
      this.map(cur.end, newLen - oldLen, cur.prot, (cur.flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, cur.name, cur.pgoff + (cur.end - cur.start));
      return oldAddr;
    }
    if (!mayMove) throw new SyscallError(E.ENOMEM);
    const newAddr = this.findGap(newLen);
    const src = this.find(oldAddr)!;
    const srcOff = src.fileOffset + (oldAddr - src.start);
    const contents = new Uint8Array(this.mf.read(srcOff, oldLen));
    this.map(newAddr, newLen, src.prot, (src.flags & ~(MAP_FIXED | MAP_FIXED_NOREPLACE)) | MAP_FIXED, src.name, src.pgoff + (oldAddr - src.start), contents);
    this.unmap(oldAddr, oldLen);
    return newAddr;
  }

  /** Remove every VMA (execve). */
  clear(): void {
    for (const v of [...this.state.vmas]) this.unmap(v.start, v.end - v.start);
  }

  /** Drop every VMA's memory without touching host mappings (the last task of the address space exited). */
  release(): void {
    for (const v of this.state.vmas) this.dropVma(v);
    this.change([['set', ['addressSpaces', this.id, 'vmas'], []]]);
    this.hint = 0;
  }

  /**
   * fork(2)'s copy of this address space into `child` (an empty state): private VMAs are
   * shared copy-on-write (both sides map them read-only until a write copies the page),
   * MAP_SHARED ones stay shared. Nothing is copied up front (compare mm/memory.c copy_page_range).
   */
  forkInto(child: AddressSpace): void {
    const cs = child.state;
    const { id: _id, vmas: _vmas, ...rest } = this.state;
    child.setFields({ ...rest, auxv: [...this.state.auxv] });
    const copies: Vma[] = [];
    for (const v of this.state.vmas) {
      const priv = !(v.flags & MAP_SHARED);
      if (priv && !v.cow) {
        this.setVma(v, { cow: true });
        if (v.prot & PROT_WRITE) this.hostProtect(v.start, v.end - v.start, AddressSpace.hostProt(v), v.fileOffset);
      }
      copies.push({ ...v });
      this.mf.ref(v.block, cs.id, 1);
    }
    child.change([['set', ['addressSpaces', cs.id, 'vmas'], copies]]);
    for (const ctx of child.contexts) child.replay(ctx);
  }

  /**
   * Give this address space its own copy of the copy-on-write pages in [addr, addr+len)
   * (whole COW_CHUNK-aligned chunks within the VMA), or just make them writable when no
   * other address space still shares the block.
   */
  breakCow(addr: number, len: number): void {
    const end = addr + len;
    for (let a = addr; a < end;) {
      const v = this.find(a);
      if (!v) return;
      const next = v.end;
      if (v.cow) {
        if (this.mf.exclusive(v.block, this.id)) {
          // Last one holding the block: every VMA of ours on it may write in place.
          for (const w of this.state.vmas) {
            if (w.block === v.block && w.cow) { this.setVma(w, { cow: false }); this.hostProtect(w.start, w.end - w.start, w.prot, w.fileOffset); }
          }
        } else {
          const lo = Math.max(v.start, Math.floor(a / COW_CHUNK) * COW_CHUNK);
          const hi = Math.min(v.end, Math.ceil(Math.min(end, v.end) / COW_CHUNK) * COW_CHUNK);
          this.splitAt(lo);
          this.splitAt(hi);
          const mid = this.find(lo)!;
          const copy = this.mf.newBlock(hi - lo, this.id);
          this.mf.copy(copy, mid.fileOffset, hi - lo);
          this.mf.ref(mid.block, this.id, -1);
          this.setVma(mid, { block: copy, fileOffset: copy, cow: false });
          this.hostMap(lo, hi - lo, mid.prot, copy);
          this.hint = 0;
          a = hi;
          continue;
        }
      }
      a = next;
    }
  }

  /**
   * Prepare a copy-on-write snapshot (a checkpoint the guest runs on through): every private
   * page becomes copy-on-write and every block is held under `user`, so the blocks keep the
   * bytes they have now however the guest goes on. Returns the blocks held, and the byte
   * ranges of MAP_SHARED mappings, which stay writable and must be copied now.
   */
  holdForSnapshot(user: number, held: Set<number>): Array<[number, number]> {
    const shared: Array<[number, number]> = [];
    for (const v of this.state.vmas) {
      if (v.flags & MAP_SHARED) { shared.push([v.fileOffset, v.end - v.start]); continue; }
      if (!v.cow) {
        this.setVma(v, { cow: true });
        if (v.prot & PROT_WRITE) this.hostProtect(v.start, v.end - v.start, AddressSpace.hostProt(v), v.fileOffset);
      }
      if (!held.has(v.block)) { held.add(v.block); this.mf.ref(v.block, user, 1); }
    }
    return shared;
  }

  /**
   * madvise(MADV_DONTNEED/FREE/REMOVE) of private pages: anonymous ones read back as zeros.
   * Pages shared copy-on-write (with a fork's other side, a snapshot, or the page cache) are
   * never touched: an anonymous range gets fresh zero pages, a file-backed one still holds
   * the file's bytes, which is what it would read back anyway. MAP_SHARED ranges are left.
   */
  discard(addr: number, len: number): void {
    for (let a = addr; a < addr + len;) {
      const v = this.find(a);
      if (!v) return;
      const end = Math.min(v.end, addr + len);
      if (!(v.flags & MAP_SHARED)) {
        if (!v.cow && this.mf.exclusive(v.block, this.id)) {
          const off = v.fileOffset + (a - v.start);
          // Pages that were still in a restored page file: the mapping must now show the memfd's zeros.
          if (this.mf.punch(off, end - a)) this.remapFileRange(off, end - a);
        }
        else if (v.flags & MAP_ANONYMOUS) this.map(a, end - a, v.prot, (v.flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, v.name, 0);
      }
      a = end;
    }
  }

  /** A write fault at `addr`: true if it was a copy-on-write page and is now writable. */
  handleWriteFault(addr: number): boolean {
    let v = this.find(addr);
    if (!v || !(v.prot & PROT_WRITE)) return false;
    const page = pageRoundDown(addr);
    const wasCow = v.cow;
    if (wasCow) {
      this.breakCow(page, PAGE_SIZE);
      v = this.find(addr)!;
    }
    const off = v.fileOffset + (page - v.start);
    const backed = this.mf.isBacked(off);
    if (backed || this.mf.isClean(off)) {
      // A page still in a restored checkpoint's page file (copied into the memfd), or one a
      // checkpoint stored and mapped read-only to see this first write (dirty from now on): its
      // chunk — a growing window while the faults come in order — and the memory file repoints
      // every mapping of it (remapFileRange), writable where allowed.
      // In order: the fault lands in the window after the last one. The window then runs on in
      // the memory file past this mapping's end (a heap grown by brk is many VMAs one after
      // another in the memory file); pages of other mappings it covers are only copied early.
      const inOrder = off >= this.writeAheadEnd && off < this.writeAheadEnd + this.writeAheadSize;
      const size = inOrder ? Math.min(MAX_WRITE_AHEAD, this.writeAheadSize * 2) : COW_CHUNK;
      const chunk = Math.floor(off / COW_CHUNK) * COW_CHUNK;
      const lo = inOrder ? this.writeAheadEnd : Math.max(v.fileOffset, chunk);
      const hi = inOrder ? Math.min(this.mf.state.end, lo + size) : Math.min(v.fileOffset + (v.end - v.start), chunk + size);
      this.writeAheadEnd = hi;
      this.writeAheadSize = size;
      if (backed) this.mf.materialize(lo, hi - lo);
      // A window may hold both kinds: the clean part turns dirty too.
      this.mf.unclean(lo, hi - lo);
      return true;
    }
    return wasCow;
  }
}

/** Persistence: VMAs, brk and layout are data; the host mappings are replayed into each task's new platform context. */
export const addressSpacePersist = persisted<AddressSpaceState>({
  kind: 'address-space',
  records: (g) => byId(g.addressSpaces),
  rebuilds: 'the runtime AddressSpace is made on first use and its VMAs are mapped into every restored task (task restore)',
});
