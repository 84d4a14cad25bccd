/**
 * What a syscall table entry is, and `syscall()`, with which each family file declares
 * its entries. The table itself is assembled in table.ts and handed to the kernel by the
 * composition root (src/sandbox/): the kernel never imports this layer.
 */
import type { Task, SyscallResult, SyscallHandlerEntry } from '../kernel/task.js';
import { SYS } from '../abi/syscall-numbers.js';

/** How much of Linux's behaviour an entry implements. */
export type Support =
  /** Linux semantics for every flag and error the man page lists. */
  | 'full'
  /** Common cases exact; `note` says what is missing. */
  | 'partial'
  /** Accepted and answered plausibly without doing the work (note says why that is safe). */
  | 'stub';

/** One syscall: what the kernel dispatches (number, name, handler) plus its coverage for docs/syscalls.md. */
export interface SyscallEntry extends SyscallHandlerEntry {
  nr: number;
  support: Support;
  note?: string;
  /** The family file that implements it (file, fs, mm, process, signal, time, poll, creds, sched, eventfd, net, misc). */
  family?: string;
}

export type SyscallName = keyof typeof SYS;

/** Declare a table entry: `syscall('getpid', 0, (t) => t.tgid)`. */
export function syscall(name: SyscallName, nargs: number, handler: (t: Task) => SyscallResult, support: Support = 'full', note?: string): SyscallEntry {
  return { nr: SYS[name], name, nargs, handler, support, note };
}
