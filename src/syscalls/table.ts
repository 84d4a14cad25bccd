/**
 * The syscall table: for every x86-64 syscall number, its name, handler and how
 * complete it is (compare gVisor pkg/sentry/syscalls/linux/linux64.go). Numbers
 * without an entry return ENOSYS and are reported once. `docs/syscalls.md` is
 * generated from this table (`node dist/bundle/main.js syscalls --markdown`).
 *
 * Where each family lives:
 *   file.ts    — open/read/write/stat/getdents/fcntl/ioctl/dup on open files
 *   fs.ts      — path operations: access, readlink, getcwd/chdir, mkdir, unlink, rename…
 *   mm.ts      — mmap, munmap, mprotect, brk, mremap, madvise
 *   process.ts — identity, exit, execve, uname, rlimits, arch_prctl, set_tid_address
 *   signal.ts  — rt_sigaction, rt_sigprocmask, sigaltstack
 *   time.ts    — clock_gettime, nanosleep, clock_nanosleep, gettimeofday, times
 *   poll.ts    — poll, ppoll, select, pselect6, epoll
 *   creds.ts   — uids, gids, groups
 *   sched.ts   — sched_*, nice
 *   misc.ts    — getrandom, futex, rseq, sysinfo, membarrier…
 */
import type { Task, SyscallResult } from '../kernel/task.js';
import { SYS, SYSCALL_NAME } from './numbers.js';

/** How much of Linux's behaviour an entry implements. */
export type Support =
  /** Linux semantics for every flag and error the man page lists. */
  | 'full'
  /** Common cases exact; `note` says what is missing. */
  | 'partial'
  /** Accepted and answered plausibly without doing the work (note says why that is safe). */
  | 'stub';

export interface SyscallEntry {
  nr: number;
  name: string;
  /** Number of arguments (for --strace). */
  nargs: number;
  handler: (t: Task) => SyscallResult;
  support: Support;
  note?: string;
  /** The family file that implements it (file, fs, mm, process, signal, time, misc). */
  family?: string;
}

export type SyscallName = keyof typeof SYS;

/** Declare a table entry. */
export function syscall(name: SyscallName, nargs: number, handler: (t: Task) => SyscallResult, support: Support = 'full', note?: string): SyscallEntry {
  return { nr: SYS[name], name, nargs, handler, support, note };
}

import { fileSyscalls } from './file.js';
import { fsSyscalls } from './fs.js';
import { mmSyscalls } from './mm.js';
import { processSyscalls } from './process.js';
import { signalSyscalls } from './signal.js';
import { timeSyscalls } from './time.js';
import { miscSyscalls } from './misc.js';
import { pollSyscalls } from './poll.js';
import { credSyscalls } from './creds.js';
import { schedSyscalls } from './sched.js';
import { eventfdSyscalls } from '../ipc/eventfd.js';
import { socketSyscalls } from '../net/socket.js';

/** Indexed by syscall number. */
export const SYSCALL_TABLE: (SyscallEntry | undefined)[] = [];
const FAMILIES = { file: fileSyscalls, fs: fsSyscalls, mm: mmSyscalls, process: processSyscalls, signal: signalSyscalls, time: timeSyscalls, poll: pollSyscalls, creds: credSyscalls, sched: schedSyscalls, eventfd: eventfdSyscalls, socket: socketSyscalls, misc: miscSyscalls };
for (const [family, entries] of Object.entries(FAMILIES)) {
  for (const e of entries) {
    if (SYSCALL_TABLE[e.nr]) throw new Error(`syscall ${e.name} declared twice`);
    SYSCALL_TABLE[e.nr] = { ...e, family };
  }
}

/** Every syscall number with its entry (or none), for the coverage table. */
export function coverage(): Array<{ nr: number; name: string; entry?: SyscallEntry }> {
  return Object.entries(SYSCALL_NAME).map(([nr, name]) => ({ nr: Number(nr), name, entry: SYSCALL_TABLE[Number(nr)] }));
}
