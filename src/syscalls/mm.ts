/**
 * Memory syscalls (man 2 mmap, munmap, mprotect, brk, mremap, madvise). Compare Linux
 * mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c. File mappings are private copies
 * made in the memory file at map time; MAP_SHARED file mappings are coherent only
 * within the mapping (no file is written back), which is noted in the table.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { pageRoundUp } from '../mm/memory-file.js';
import { TASK_SIZE } from '../mm/address-space.js';
import { syscall } from './entry.js';
import { MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MS_ASYNC, MS_INVALIDATE, MS_NOEXEC, MS_SYNC, O_ACCMODE, O_RDONLY, O_RDWR, O_WRONLY, PAGE_SIZE, PROT_GROWSDOWN, PROT_EXEC, PROT_GROWSUP, PROT_SEM, PROT_WRITE } from '../abi/linux.js';

const PROT_ALL = 7;
/** mmap_min_addr: fixed mappings below it need CAP_SYS_RAWIO. */
const MMAP_MIN_ADDR = 65536;

/** Whether argument i (an address or offset) is not page-aligned (exact on all 64 bits). */
const unaligned = (t: Task, i: number) => (t.argBig(i) & 0xfffn) !== 0n;

/** Kinds of open files whose pseudo-filesystem is mounted noexec (SB_I_NOEXEC): pipes, sockets, anonymous inodes, pidfds. */
const NOEXEC_KINDS = new Set(['pipe', 'socket', 'eventfd', 'epoll', 'timerfd', 'signalfd', 'inotify', 'pidfd']);

function mmap(t: Task): number {
  const addr = t.arg(0), len = t.arg(1), flags = t.argInt(3), fd = t.argInt(4), off = t.argI64(5);
  // Linux ignores protection bits it does not know (do_mmap does not check them).
  const prot = t.argInt(2) & PROT_ALL;
  // The order of Linux's checks: the offset's alignment (sys_mmap), the fd (ksys_mmap_pgoff), then do_mmap's.
  if (unaligned(t, 5)) return -E.EINVAL;
  const f = flags & MAP_ANONYMOUS ? undefined : t.kernel.file(t, fd);
  if (len === 0 || off < 0) return -E.EINVAL;
  const type = flags & 3;
  if (type !== MAP_SHARED && type !== MAP_PRIVATE && type !== MAP_SHARED_VALIDATE) return -E.EINVAL;
  if (pageRoundUp(len) > 0x7fff_ffff_f000) return -E.ENOMEM;
  // A fixed mapping below mmap_min_addr (64 KiB) needs CAP_SYS_RAWIO, which the sandbox never grants (security_mmap_addr).
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
    // A fixed address in the last 4095 bytes reads as an error value (__get_unmapped_area's
    // IS_ERR_VALUE of what the arch's get_unmapped_area returned unchanged): that errno.
    const a = t.argBig(0);
    if (a >= (1n << 64n) - 4095n) return -Number((1n << 64n) - a);
    if (unaligned(t, 0)) return -E.EINVAL;
    if (addr < MMAP_MIN_ADDR) return -E.EPERM;
  }
  const mm = t.mm;
  // RLIMIT_AS / RLIMIT_DATA (mmap_region's may_expand_vm, after do_mmap's own checks); a fixed mapping's old pages are discounted.
  const expand = () => mm.checkExpand(len, prot, flags, '', flags & MAP_FIXED ? mm.mappedBytes(addr, addr + pageRoundUp(len)) : 0);
  if (!f) { expand(); return mm.map(addr, len, prot, flags, '', 0); }
  // do_mmap's order for a file: a shared writable mapping needs FMODE_WRITE, any mapping FMODE_READ
  // (access mode 3 has neither), PROT_EXEC a filesystem without noexec, then the file an mmap operation.
  const acc = f.flags & O_ACCMODE;
  if (type !== MAP_PRIVATE && (prot & PROT_WRITE) && acc !== O_WRONLY && acc !== O_RDWR) return -E.EACCES;
  if (acc !== O_RDONLY && acc !== O_RDWR) return -E.EACCES;
  // pipefs, sockfs, anon_inodefs and pidfs are SB_I_NOEXEC: PROT_EXEC is EPERM (path_noexec) before ENODEV.
  if ((prot & PROT_EXEC) && NOEXEC_KINDS.has(f.kind)) return -E.EPERM;
  // A file on a noexec mount (path_noexec) likewise.
  if ((prot & PROT_EXEC) && (f.kind === 'upper' || f.kind === 'host') && ((t.kernel.vfs.locate(f.path).m?.flags ?? 0) & MS_NOEXEC)) return -E.EPERM;
  // Only files with an mmap operation can be mapped: directories, pipes, sockets, eventfds, epoll, the caller's stdio, devices but /dev/zero… give ENODEV.
  const ops = t.kernel.fileOps(f);
  if (f.kind === 'dir' || !ops.mmap || ops.hasMmap?.(f) === false) return -E.ENODEV;
  expand();
  return ops.mmap(t, f, addr, len, prot, flags, off);
}

/**
 * A guest-supplied range [start, start + PAGE_ALIGN(len)) computed on 64-bit unsigned values, as
 * Linux does: `wraps` when the end passes 2^64, `beyond` when it passes TASK_SIZE (no VMA lies
 * there, so that part is a hole); `start`/`end` are clamped to TASK_SIZE. Guest addresses, bytes.
 */
function guestRange(startArg: bigint, lenArg: bigint): { start: number; end: number; empty: boolean; wraps: boolean; beyond: boolean } {
  const len = BigInt.asUintN(64, (lenArg + 4095n) & ~4095n);
  const endBig = startArg + len;
  const limit = BigInt(TASK_SIZE);
  return {
    start: Number(startArg > limit ? limit : startArg), end: Number(endBig > limit ? limit : endBig),
    empty: len === 0n, wraps: endBig >= 1n << 64n, beyond: endBig > limit,
  };
}
/** Whether every page of a guestRange lies in a VMA. */
const allMapped = (t: Task, r: ReturnType<typeof guestRange>): boolean => !r.beyond && t.mm.covers(r.start, r.end);

/** Advice values madvise(2) knows (include/uapi/asm-generic/mman-common.h): 0–4 and 8–25. */
const madviceValid = (a: number): boolean => (a >= 0 && a <= 4) || (a >= 8 && a <= 25);
/**
 * madvise(2) (mm/madvise.c do_madvise): EINVAL for unknown advice, an unaligned start, a length
 * that wraps; advice applies to the mapped parts and any hole gives ENOMEM. Walks VMAs, not pages.
 */
function madvise(t: Task): number {
  const advice = t.argInt(2);
  if (!madviceValid(advice)) return -E.EINVAL;
  if (unaligned(t, 0)) return -E.EINVAL;
  const lenArg = t.argBig(1);
  const r = guestRange(t.argBig(0), lenArg);
  if (r.empty && lenArg !== 0n) return -E.EINVAL; // a small negative length rounded up to zero
  if (r.wraps) return -E.EINVAL;
  if (r.empty) return 0;
  const discard = advice === MADV_DONTNEED || advice === MADV_FREE || advice === MADV_REMOVE;
  if (discard) for (const [a, e] of t.mm.mappedPieces(r.start, r.end)) t.mm.discard(a, e - a);
  return allMapped(t, r) ? 0 : -E.ENOMEM;
}

/**
 * mincore(2) (mm/mincore.c): EINVAL for an unaligned start, ENOMEM when the range passes
 * TASK_SIZE or reaches a hole (the vector is filled up to it), EFAULT for a bad vector. Every
 * mapped page is reported resident (guest memory is never paged out by this kernel).
 */
function mincore(t: Task): number {
  const start = t.arg(0), lenArg = t.argBig(1), vecArg = t.argBig(2);
  if (start % PAGE_SIZE) return -E.EINVAL;
  if (BigInt(start) + lenArg > BigInt(TASK_SIZE)) return -E.ENOMEM;
  const pages = Number((lenArg + 4095n) / 4096n);
  if (vecArg + BigInt(pages) > BigInt(TASK_SIZE)) return -E.EFAULT;
  let vec = Number(vecArg), left = pages, a = start;
  while (left > 0) {
    const v = t.mm.find(a);
    if (!v) return -E.ENOMEM;
    const n = Math.min(left, (v.end - a) / PAGE_SIZE, PAGE_SIZE); // a page of vector at a time, as Linux
    t.mm.write(vec, new Uint8Array(n).fill(1));
    vec += n; left -= n; a += n * PAGE_SIZE;
  }
  return 0;
}

/** msync(2) (mm/msync.c): flags and alignment checked, ENOMEM for a wrapping range or any hole. */
function msync(t: Task): number {
  const flags = t.argInt(2);
  if (flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC) || t.arg(0) % PAGE_SIZE || ((flags & MS_ASYNC) && (flags & MS_SYNC))) return -E.EINVAL;
  const r = guestRange(t.argBig(0), t.argBig(1));
  if (r.wraps) return -E.ENOMEM;
  if (r.empty) return 0;
  return allMapped(t, r) ? 0 : -E.ENOMEM;
}

/**
 * mlock(2)/munlock(2) (mm/mlock.c do_mlock, apply_vma_lock_flags): the range is widened to whole
 * pages; EINVAL if it wraps, ENOMEM for any hole. Nothing else to do: guest memory is never swapped.
 */
function mlockRange(t: Task): number {
  const startArg = t.argBig(0);
  const off = startArg & 4095n;
  const r = guestRange(startArg - off, BigInt.asUintN(64, t.argBig(1) + off));
  if (r.wraps) return -E.EINVAL;
  if (r.empty) return 0;
  return allMapped(t, r) ? 0 : -E.ENOMEM;
}

export const mmSyscalls = [
  syscall('mmap', 6, mmap, 'partial', 'MAP_SHARED is coherent for files the sandbox wrote; host files are mapped as copies'),
  syscall('munmap', 2, (t) => { t.mm.unmap(t.arg(0), t.arg(1)); return 0; }),
  syscall('mprotect', 3, (t) => {
    const prot = t.argInt(2);
    // mm/mprotect.c order: both GROWS bits, the alignment, an empty range (succeeds), then unknown bits (PROT_SEM is allowed).
    if ((prot & PROT_GROWSDOWN) && (prot & PROT_GROWSUP)) return -E.EINVAL;
    if (unaligned(t, 0)) return -E.EINVAL;
    if (t.arg(1) === 0) return 0;
    if (prot & ~(PROT_ALL | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)) return -E.EINVAL;
    t.mm.protect(t.arg(0), t.arg(1), prot & PROT_ALL);
    return 0;
  }),
  syscall('brk', 1, (t) => (t.arg(0) === 0 ? t.mm.state.brk : t.mm.setBrk(t.arg(0)))),
  syscall('mremap', 5, (t) => {
    const flags = t.argInt(3);
    if (flags & ~1) return -E.EINVAL; // MREMAP_FIXED / MREMAP_DONTUNMAP not yet
    return t.mm.remap(t.arg(0), t.arg(1), t.arg(2), !!(flags & 1));
  }, 'partial', 'MREMAP_FIXED and MREMAP_DONTUNMAP give EINVAL'),
  syscall('madvise', 3, madvise, 'partial', 'DONTNEED/FREE/REMOVE drop private pages; other advice is accepted and ignored'),
  syscall('msync', 3, msync, 'stub', 'shared mappings and the file share pages: nothing to write back'),
  syscall('mlock', 2, mlockRange, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('munlock', 2, mlockRange, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('mlockall', 1, (t) => {
    const flags = t.argInt(0);
    return !flags || (flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)) || flags === MCL_ONFAULT ? -E.EINVAL : 0;
  }, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('munlockall', 0, () => 0, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('mincore', 3, mincore),
];
