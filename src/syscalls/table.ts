/**
 * The syscall table: for every x86-64 syscall number, its name, handler and how
 * complete it is (compare gVisor pkg/sentry/syscalls/linux/linux64.go). Numbers
 * without an entry return ENOSYS and are reported once. `docs/syscalls.md` is
 * generated from this table (`node dist/bundle/main.js syscalls --markdown`).
 * The composition root (src/sandbox/) hands it to the kernel, as gVisor's
 * RegisterSyscallTable does; nothing below this layer imports it.
 *
 * Where each family lives (one file per family; entries are declared with `syscall()` from entry.ts):
 *   file.ts    — open/read/write/stat/getdents/fcntl/ioctl/dup on open files
 *   fs.ts      — path operations: access, readlink, getcwd/chdir, mkdir, unlink, rename…
 *   mm.ts      — mmap, munmap, mprotect, brk, mremap, madvise
 *   process.ts — identity, exit, execve, uname, rlimits, arch_prctl, set_tid_address
 *   signal.ts  — rt_sigaction, rt_sigprocmask, sigaltstack
 *   time.ts    — clock_gettime, nanosleep, clock_nanosleep, gettimeofday, times
 *   poll.ts    — poll, ppoll, select, pselect6, epoll
 *   creds.ts   — uids, gids, groups
 *   sched.ts   — sched_*, nice
 *   eventfd.ts — eventfd, eventfd2
 *   timerfd.ts — timerfd_create, timerfd_settime, timerfd_gettime
 *   signalfd.ts — signalfd, signalfd4
 *   inotify.ts — inotify_init, inotify_init1, inotify_add_watch, inotify_rm_watch
 *   xattr.ts   — getxattr, setxattr, listxattr, removexattr and their l*, f* variants
 *   net.ts     — socket, socketpair, bind, listen, connect, accept, send*, recv*, *sockopt…
 *   misc.ts    — getrandom, futex, rseq, sysinfo, membarrier…
 */
import { SYS, SYSCALL_NAME } from '../abi/syscall-numbers.js';
import type { SyscallEntry } from './entry.js';
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
import { eventfdSyscalls } from './eventfd.js';
import { timerfdSyscalls } from './timerfd.js';
import { signalfdSyscalls } from './signalfd.js';
import { inotifySyscalls } from './inotify.js';
import { xattrSyscalls } from './xattr.js';
import { netSyscalls } from './net.js';
import { mempolicySyscalls } from './mempolicy.js';
import { lockSyscalls } from './locks.js';
import { mountSyscalls } from './mount.js';
import { spliceSyscalls } from './splice.js';

export type { Support, SyscallEntry, SyscallName } from './entry.js';
export { syscall } from './entry.js';

/** Indexed by syscall number. */
export const SYSCALL_TABLE: (SyscallEntry | undefined)[] = [];
const FAMILIES = { file: fileSyscalls, fs: fsSyscalls, mm: mmSyscalls, process: processSyscalls, signal: signalSyscalls, time: timeSyscalls, poll: pollSyscalls, creds: credSyscalls, sched: schedSyscalls, eventfd: eventfdSyscalls, timerfd: timerfdSyscalls, signalfd: signalfdSyscalls, inotify: inotifySyscalls, xattr: xattrSyscalls, net: netSyscalls, mempolicy: mempolicySyscalls, locks: lockSyscalls, mount: mountSyscalls, splice: spliceSyscalls, misc: miscSyscalls };
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

/**
 * The i386 syscalls served for `int 0x80` from 64-bit code (arch/x86/entry/syscalls/syscall_32.tbl):
 * i386 number -> the x86-64 number whose handler serves it with the i386 argument registers. Only
 * calls whose arguments and results have the same layout in both ABIs (no structs, no longs in
 * memory) are listed; every other i386 number gives ENOSYS rather than a wrong answer.
 */
export const SYSCALL_TABLE_I386: Array<number | undefined> = [];
const I386: Record<number, keyof typeof SYS> = {
  1: 'exit', 3: 'read', 4: 'write', 6: 'close', 20: 'getpid', 37: 'kill', 64: 'getppid',
  199: 'getuid', 200: 'getgid', 201: 'geteuid', 202: 'getegid', 224: 'gettid', 252: 'exit_group',
};
for (const [nr, name] of Object.entries(I386)) SYSCALL_TABLE_I386[Number(nr)] = SYS[name];
