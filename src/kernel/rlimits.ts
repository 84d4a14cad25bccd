/**
 * Resource limits the kernel enforces (man 2 setrlimit): RLIMIT_FSIZE on file growth
 * (mm/filemap.c generic_write_check_limits, fs/attr.c inode_newsize_ok), RLIMIT_NPROC on
 * fork/clone (kernel/fork.c copy_process). RLIMIT_AS and RLIMIT_DATA are checked by the
 * address space (src/mm/address-space.ts, mm/mmap.c may_expand_vm). The limits themselves
 * are ThreadGroupState.rlimits (resource -> [soft, hard], set by setrlimit/prlimit64), so they
 * are checkpointed with the thread group.
 */
import { E, SyscallError } from '../errno.js';
import { CAP_SYS_ADMIN, CAP_SYS_RESOURCE, RLIMIT_FSIZE, RLIMIT_NPROC, RLIM_INFINITY, SIGXFSZ, SI_USER } from '../abi/linux.js';
import { capable, credsOf } from './creds.js';
import type { KernelState, ThreadGroupState } from './state.js';
import type { Task } from './task.js';

/**
 * The soft limit of resource `res` for a thread group, as a number (bytes or a count), or
 * Infinity when unlimited (RLIM_INFINITY, values past 2^53, or never set: every limit the
 * kernel enforces here defaults to unlimited except RLIMIT_NPROC, which the sandbox sets).
 */
export function softLimit(tg: ThreadGroupState, res: number): number {
  const l = tg.rlimits[res];
  if (!l || l[0] === RLIM_INFINITY || l[0] > BigInt(Number.MAX_SAFE_INTEGER)) return Infinity;
  return Number(l[0]);
}

/** SIGXFSZ to the calling thread (send_sig(SIGXFSZ, current, 0): si_code SI_USER). */
function sendXfsz(t: Task): void {
  t.kernel.signals.send(t.tgid, SIGXFSZ, { signo: SIGXFSZ, code: SI_USER, pid: 0, uid: 0 }, t.tid);
}

/**
 * generic_write_check_limits for a write of `count` bytes at byte `pos` of a regular file:
 * the number of bytes that may be written (count, or less up to RLIMIT_FSIZE). A write
 * starting at or past the limit raises SIGXFSZ and throws SyscallError(EFBIG). A zero-length
 * write is never refused (generic_write_checks returns before the limit).
 */
export function fileWriteLimit(t: Task, pos: number, count: number): number {
  if (count === 0) return 0;
  const limit = softLimit(t.tg, RLIMIT_FSIZE);
  if (limit === Infinity) return count;
  if (pos >= limit) {
    sendXfsz(t);
    throw new SyscallError(E.EFBIG);
  }
  return Math.min(count, limit - pos);
}

/**
 * inode_newsize_ok for growing a regular file from `oldSize` to `newSize` bytes (truncate,
 * ftruncate, fallocate without FALLOC_FL_KEEP_SIZE): past RLIMIT_FSIZE it raises SIGXFSZ and
 * throws SyscallError(EFBIG). Shrinking is always allowed.
 */
export function checkFileGrowth(t: Task, oldSize: number, newSize: number): void {
  if (newSize <= oldSize) return;
  if (newSize > softLimit(t.tg, RLIMIT_FSIZE)) {
    sendXfsz(t);
    throw new SyscallError(E.EFBIG);
  }
}

/**
 * Tasks (threads, as Linux counts them) whose real uid is `ruid`: every live thread, and one
 * for a zombie process not yet reaped (its leader is released only by wait).
 */
export function tasksOfUser(s: KernelState, ruid: number): number {
  let n = 0;
  for (const tg of Object.values(s.threadGroups)) {
    if (credsOf(tg).ruid !== ruid) continue;
    n += tg.zombie ? 1 : Math.max(1, tg.tids.length);
  }
  return n;
}

/**
 * copy_process's RLIMIT_NPROC check for a new task (process or thread) made by `parent`:
 * EAGAIN (thrown) when the parent's real uid already has that many tasks, unless the uid is
 * root or the parent holds CAP_SYS_RESOURCE or CAP_SYS_ADMIN.
 */
export function checkNproc(parent: Task): void {
  const limit = softLimit(parent.tg, RLIMIT_NPROC);
  if (limit === Infinity) return;
  const c = credsOf(parent.tg);
  if (c.ruid === 0 || capable(c, CAP_SYS_RESOURCE) || capable(c, CAP_SYS_ADMIN)) return;
  if (tasksOfUser(parent.kernel.state, c.ruid) >= limit) throw new SyscallError(E.EAGAIN);
}
