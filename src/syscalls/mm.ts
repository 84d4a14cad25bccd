/**
 * Memory syscalls (man 2 mmap, munmap, mprotect, brk, mremap, madvise). Compare Linux
 * mm/mmap.c, mm/mprotect.c, mm/mremap.c, mm/madvise.c. File mappings are private copies
 * made in the memory file at map time; MAP_SHARED file mappings are coherent only
 * within the mapping (no file is written back), which is noted in the table.
 */
import fs from 'node:fs';
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { pageRoundUp } from '../mm/memory-file.js';
import { inodeRead, inodeShare } from '../vfs/inode-data.js';
import { pageCacheBlock } from '../mm/page-cache.js';
import { syscall } from './entry.js';
import { MADV_DONTNEED, MADV_FREE, MADV_REMOVE, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, O_ACCMODE, O_RDONLY, O_WRONLY, PAGE_SIZE, PROT_GROWSDOWN, PROT_GROWSUP, PROT_SEM, PROT_WRITE } from '../abi/linux.js';

const PROT_ALL = 7;
/** mmap_min_addr: fixed mappings below it need CAP_SYS_RAWIO. */
const MMAP_MIN_ADDR = 65536;

/** Whether argument i (an address or offset) is not page-aligned (exact on all 64 bits). */
const unaligned = (t: Task, i: number) => (t.argBig(i) & 0xfffn) !== 0n;

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
    if (unaligned(t, 0)) return -E.EINVAL;
    if (addr < MMAP_MIN_ADDR) return -E.EPERM;
  }
  const mm = t.mm;
  if (!f) return mm.map(addr, len, prot, flags, '', 0);
  if (f.kind === 'dir') return -E.ENODEV;
  if ((f.flags & O_ACCMODE) === O_WRONLY) return -E.EACCES;
  if (type !== MAP_PRIVATE && (prot & PROT_WRITE) && (f.flags & O_ACCMODE) === O_RDONLY) return -E.EACCES;
  if (f.kind === 'dev' && f.dev === 'zero') return mm.map(addr, len, prot, flags | MAP_ANONYMOUS, '/dev/zero (deleted)', 0);
  if (f.kind === 'hostfd' || f.kind === 'dev') return -E.ENODEV;
  if (f.kind === 'upper' && type !== MAP_PRIVATE) {
    // Shared file mapping: the file's bytes move into the memory file and are mapped, not copied.
    const ino = t.kernel.state.fs.inodes[f.inodeId!];
    const block = inodeShare(t.kernel, ino, off + pageRoundUp(len));
    return mm.mapBlock(addr, len, prot, flags, f.path, off, block.offset, off);
  }
  if (f.kind === 'host') {
    // Host files: pages come from the page cache, shared copy-on-write by every mapping of them.
    const k = t.kernel;
    const hfd = k.hostFiles.fd(f);
    const id = f.hostIdentity!;
    const mapLen = pageRoundUp(len);
    const block = pageCacheBlock(k, f.path, id.size, id.mtimeMs, off, mapLen, (b) => {
      let short = false, done = 0;
      k.mf.forEachChunk(b, mapLen, (view) => {
        if (short) return;
        const n = fs.readSync(hfd, view, 0, view.length, off + done);
        done += n;
        if (n < view.length) short = true; // the rest stays zero, like the tail of a file's last page
      }, true);
    });
    return mm.mapBlock(addr, len, prot, flags, f.path, off, block, 0, true);
  }
  const at = mm.map(addr, len, prot, flags, f.path, off);
  {
    const src = f.kind === 'upper' ? inodeRead(t.kernel, t.kernel.state.fs.inodes[f.inodeId!], off, off + len) : f.content!.subarray(off, off + len);
    if (src.length) mm.writeForce(at, src);
  }
  return at;
}

/** Advice values Linux knows (madvise_behavior_valid): NORMAL..DONTNEED, FREE..COLLAPSE. */
const validAdvice = (a: number) => (a >= 0 && a <= 4) || (a >= 8 && a <= 25);
function madvise(t: Task): number {
  const addr = t.arg(0), len = pageRoundUp(t.arg(1)), advice = t.argInt(2);
  // mm/madvise.c order: the advice, the alignment, then an empty range succeeds.
  if (!validAdvice(advice)) return -E.EINVAL;
  if (unaligned(t, 0)) return -E.EINVAL;
  if (len === 0) return t.arg(1) === 0 ? 0 : -E.EINVAL;
  const discard = advice === MADV_DONTNEED || advice === MADV_FREE || advice === MADV_REMOVE;
  // Like Linux, advice applies to the mapped parts; an unmapped page anywhere gives ENOMEM.
  let gap = false;
  for (let a = addr; a < addr + len; a += PAGE_SIZE) {
    const v = t.mm.find(a);
    if (!v) { gap = true; continue; }
    const end = Math.min(v.end, addr + len);
    if (discard) t.mm.discard(a, end - a);
    a = end - PAGE_SIZE;
  }
  return gap ? -E.ENOMEM : 0;
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
  syscall('msync', 3, (t) => (t.arg(0) % PAGE_SIZE ? -E.EINVAL : 0), 'stub', 'shared mappings and the file share pages: nothing to write back'),
  syscall('mlock', 2, () => 0, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('munlock', 2, () => 0, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('mlockall', 1, () => 0, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('munlockall', 0, () => 0, 'stub', 'guest memory is never swapped by this kernel'),
  syscall('mincore', 3, (t) => {
    const addr = t.arg(0), len = pageRoundUp(t.arg(1));
    if (addr % PAGE_SIZE) return -E.EINVAL;
    for (let a = addr; a < addr + len; a += PAGE_SIZE) if (!t.mm.find(a)) return -E.ENOMEM;
    t.mm.write(t.arg(2), new Uint8Array(len / PAGE_SIZE).fill(1));
    return 0;
  }),
];
