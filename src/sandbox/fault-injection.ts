/**
 * Fault injection for `snapvisor run --inject SPEC --seed N` (docs/cli.md): chosen syscalls
 * fail with EINTR, EAGAIN, ENOSPC, ENOMEM or EIO, or transfer fewer bytes than asked, with a
 * seeded probability — but only where Linux itself could give that result for that call on
 * that file (the rules below, from the ERRORS sections of man 2 read, write, open, mmap, fork,
 * …). The kernel receives the injector as a SyscallHook and knows nothing of it.
 *
 * Replay: each decision is a hash of (seed, thread id, syscall number, how many times that
 * thread has made that syscall), so a program whose own behaviour is deterministic meets the
 * same faults at the same calls in every run with the same seed, however the host schedules it.
 * The counters are runtime state: a restored checkpoint starts them from zero.
 */
import { E } from '../errno.js';
import type { Task, SyscallHook, SyscallHookDecision } from '../kernel/task.js';
import type { OpenFileState } from '../kernel/state.js';
import { SYS } from '../abi/syscall-numbers.js';
import { F_OFD_SETLKW, F_SETLKW, FUTEX_WAIT, FUTEX_WAIT_BITSET, MSG_DONTWAIT, O_ACCMODE, O_CREAT, O_NONBLOCK, O_RDONLY, O_WRONLY, SA_RESTART, SIG_DFL, SIG_IGN } from '../abi/linux.js';

/** The faults a rule can inject: an errno, or `short` (a read or write of fewer bytes). */
export type Fault = 'EINTR' | 'EAGAIN' | 'ENOSPC' | 'ENOMEM' | 'EIO' | 'short';
export interface InjectRule { syscall: string; nr: number; fault: Fault; probability: number }

/** A bad --inject SPEC (one line). */
export class InjectSpecError extends Error {}

const FUTEX_CMD_MASK = 0x7f; // without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME

/** Files whose reads and writes can wait (and so be interrupted, or return what is there). */
function canBlock(f: OpenFileState | undefined): boolean {
  return !!f && (f.kind === 'pipe' || f.kind === 'socket' || f.kind === 'pty' || f.kind === 'eventfd' || f.kind === 'hostfd');
}
const isFile = (f: OpenFileState | undefined) => !!f && (f.kind === 'upper' || f.kind === 'host');
function fileOf(t: Task, argIndex: number): OpenFileState | undefined {
  const e = t.fdTable.fds[t.argInt(argIndex)];
  return e ? t.kernel.state.openFiles[e.fileId] : undefined;
}
/** Whether some signal has a handler installed: Linux returns EINTR only after a handler ran. `restartOk`: also under SA_RESTART. */
function hasHandler(t: Task, restartOk: boolean): boolean {
  return Object.values(t.tg.sigactions).some((a) => a.handler !== SIG_DFL && a.handler !== SIG_IGN && (restartOk || !(a.flags & SA_RESTART)));
}

/** A condition on one call: may Linux give this fault here? */
type Legit = (t: Task) => boolean;
const always: Legit = () => true;
/** EINTR of a call the kernel restarts under SA_RESTART (read, write, wait4…): only with a handler that lacks it. */
const interruptible = (blocks: Legit): Legit => (t) => blocks(t) && hasHandler(t, false);
/** EINTR of a call never restarted (nanosleep, poll, select, epoll_wait, sigsuspend…): any handler. */
const alwaysInterrupted: Legit = (t) => hasHandler(t, true);
const fdBlocks = (i: number): Legit => (t) => canBlock(fileOf(t, i));
const fdNonblocking = (i: number): Legit => (t) => { const f = fileOf(t, i); return canBlock(f) && !!(f!.flags & O_NONBLOCK); };
const fdIsFile = (i: number): Legit => (t) => isFile(fileOf(t, i));
const fdWritableFile = (i: number): Legit => (t) => { const f = fileOf(t, i); return isFile(f) && (f!.flags & O_ACCMODE) !== O_RDONLY; };
const fdReadableFile = (i: number): Legit => (t) => { const f = fileOf(t, i); return (isFile(f) || f?.kind === 'pty' || f?.kind === 'hostfd') && (f!.flags & O_ACCMODE) !== O_WRONLY; };
const creating = (flagsArg: number): Legit => (t) => !!(t.argInt(flagsArg) & O_CREAT);
const either = (...ls: Legit[]): Legit => (t) => ls.some((l) => l(t));

/**
 * Where each fault is legitimate: syscall name → condition, and for `short` the argument
 * holding the byte count. A syscall missing from a fault's table is refused when the SPEC is parsed.
 */
const LEGIT: Record<Exclude<Fault, 'short'>, Partial<Record<keyof typeof SYS, Legit>>> = {
  EINTR: {
    read: interruptible(fdBlocks(0)), readv: interruptible(fdBlocks(0)), write: interruptible(fdBlocks(0)), writev: interruptible(fdBlocks(0)),
    recvfrom: interruptible(fdBlocks(0)), recvmsg: interruptible(fdBlocks(0)), sendto: interruptible(fdBlocks(0)), sendmsg: interruptible(fdBlocks(0)),
    accept: interruptible(always), accept4: interruptible(always), connect: interruptible(always),
    wait4: interruptible(always), waitid: interruptible(always), flock: interruptible((t) => !(t.argInt(1) & 4 /* LOCK_NB */)),
    fcntl: interruptible((t) => t.argInt(1) === F_SETLKW || t.argInt(1) === F_OFD_SETLKW),
    futex: interruptible((t) => [FUTEX_WAIT, FUTEX_WAIT_BITSET].includes(t.argInt(1) & FUTEX_CMD_MASK)),
    nanosleep: alwaysInterrupted, clock_nanosleep: alwaysInterrupted, poll: alwaysInterrupted, ppoll: alwaysInterrupted,
    select: alwaysInterrupted, pselect6: alwaysInterrupted, epoll_wait: alwaysInterrupted, epoll_pwait: alwaysInterrupted,
    rt_sigtimedwait: alwaysInterrupted,
  },
  EAGAIN: {
    read: fdNonblocking(0), readv: fdNonblocking(0), write: fdNonblocking(0), writev: fdNonblocking(0),
    recvfrom: either(fdNonblocking(0), (t) => !!(t.argInt(3) & MSG_DONTWAIT)), sendto: either(fdNonblocking(0), (t) => !!(t.argInt(3) & MSG_DONTWAIT)),
    recvmsg: either(fdNonblocking(0), (t) => !!(t.argInt(2) & MSG_DONTWAIT)), sendmsg: either(fdNonblocking(0), (t) => !!(t.argInt(2) & MSG_DONTWAIT)),
    accept: fdNonblocking(0), accept4: fdNonblocking(0),
    fork: always, vfork: always, clone: always, clone3: always, // RLIMIT_NPROC, pid limits
  },
  ENOSPC: {
    write: fdWritableFile(0), writev: fdWritableFile(0), pwrite64: fdWritableFile(0), pwritev: fdWritableFile(0), fallocate: fdWritableFile(0),
    open: creating(1), openat: creating(2), creat: always, mkdir: always, mkdirat: always, mknod: always, mknodat: always,
    symlink: always, symlinkat: always, link: always, linkat: always, rename: always, renameat: always, renameat2: always,
  },
  ENOMEM: {
    mmap: always, mprotect: always, munmap: always, mremap: always, fork: always, vfork: always, clone: always, clone3: always, execve: always,
    open: always, openat: always, stat: always, lstat: always, fstat: always, newfstatat: always, statx: always,
    poll: always, ppoll: always, select: always, pselect6: always, socket: always, socketpair: always, pipe: always, pipe2: always,
    epoll_create1: always, readlink: always, getcwd: always,
  },
  EIO: {
    read: fdReadableFile(0), readv: fdReadableFile(0), pread64: fdIsFile(0), preadv: fdIsFile(0),
    write: either(fdWritableFile(0), (t) => ['pty', 'hostfd'].includes(fileOf(t, 0)?.kind ?? '')), writev: fdWritableFile(0),
    pwrite64: fdWritableFile(0), pwritev: fdWritableFile(0), fsync: fdIsFile(0), fdatasync: fdIsFile(0), close: fdIsFile(0),
    ftruncate: fdIsFile(0), truncate: always, readlink: always, getdents64: always,
  },
};
/** Short transfers: the argument holding the count, and when Linux may return less than asked. */
const SHORT: Partial<Record<keyof typeof SYS, { arg: number; legit: Legit }>> = {
  read: { arg: 2, legit: fdBlocks(0) }, // pipes, sockets, terminals return what is there; regular files read fully but at EOF
  recvfrom: { arg: 2, legit: always },
  write: { arg: 2, legit: always }, // a full disk, RLIMIT_FSIZE, or a signal during a pipe/socket write
  pwrite64: { arg: 2, legit: fdWritableFile(0) },
  sendto: { arg: 2, legit: always },
  readv: { arg: 2, legit: fdBlocks(0) }, // fewer vectors: fewer bytes
  writev: { arg: 2, legit: always },
};

const FAULTS: Fault[] = ['EINTR', 'EAGAIN', 'ENOSPC', 'ENOMEM', 'EIO', 'short'];

/**
 * Parse a SPEC: comma-separated `SYSCALL:FAULT:PROBABILITY` rules, e.g.
 * `read:EINTR:0.1,write:short:0.2`. Throws InjectSpecError (one line) for an unknown syscall
 * or fault, a probability outside 0–1, or a fault Linux never gives for that syscall.
 */
export function parseInjectSpec(spec: string): InjectRule[] {
  const rules: InjectRule[] = [];
  for (const part of spec.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name, fault, prob, extra] = part.split(':');
    if (extra !== undefined || prob === undefined) throw new InjectSpecError(`--inject: '${part}' is not SYSCALL:FAULT:PROBABILITY`);
    if (!(name in SYS)) throw new InjectSpecError(`--inject: unknown syscall '${name}'`);
    if (!FAULTS.includes(fault as Fault)) throw new InjectSpecError(`--inject: unknown fault '${fault}' (one of ${FAULTS.join(', ')})`);
    const p = Number(prob);
    if (!/^\d*\.?\d+$/.test(prob) || !(p >= 0 && p <= 1)) throw new InjectSpecError(`--inject: probability '${prob}' is not a number from 0 to 1`);
    const known = fault === 'short' ? SHORT[name as keyof typeof SYS] : LEGIT[fault as Exclude<Fault, 'short'>][name as keyof typeof SYS];
    if (!known) throw new InjectSpecError(`--inject: Linux never returns ${fault === 'short' ? 'a short count' : fault} from ${name}`);
    rules.push({ syscall: name, nr: SYS[name as keyof typeof SYS], fault: fault as Fault, probability: p });
  }
  if (!rules.length) throw new InjectSpecError('--inject: no rules given');
  return rules;
}

/** 32-bit mix (murmur3's finalizer) of a running hash with one more word. */
function mix(h: number, v: number): number {
  h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The injector: rules, a seed, and per-(thread, syscall) call counters. */
export class FaultInjector {
  private readonly byNr = new Map<number, InjectRule[]>();
  private readonly counts = new Map<string, number>();
  /** Faults injected so far. */
  injected = 0;

  /** `seed`: any integer from 0 to 2^32-1. `onInject` is told of each injection (for --strace). */
  constructor(readonly rules: InjectRule[], readonly seed: number, private readonly onInject?: (t: Task, rule: InjectRule, d: SyscallHookDecision) => void) {
    for (const r of rules) this.byNr.set(r.nr, [...(this.byNr.get(r.nr) ?? []), r]);
  }

  /** A uniform number in [0, 1) from (seed, tid, nr, n, which). */
  private draw(tid: number, nr: number, n: number, which: number): number {
    let h = mix(mix(mix(mix(mix(0x9e3779b9, this.seed), tid), nr), n), which);
    h = mix(h, n >>> 16);
    return h / 4294967296;
  }

  /** The SyscallHook to give the kernel. */
  readonly hook: SyscallHook = (t, nr) => {
    const rules = this.byNr.get(nr);
    if (!rules) return undefined;
    const key = `${t.tid}:${nr}`;
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i];
      if (this.draw(t.tid, nr, n, i * 2) >= rule.probability) continue;
      let d: SyscallHookDecision | undefined;
      if (rule.fault === 'short') {
        const s = SHORT[rule.syscall as keyof typeof SYS]!;
        const count = t.arg(s.arg);
        if (count < 2 || !s.legit(t)) continue;
        d = { arg: s.arg, value: 1 + Math.floor(this.draw(t.tid, nr, n, i * 2 + 1) * (count - 1)) };
      } else {
        if (!LEGIT[rule.fault][rule.syscall as keyof typeof SYS]!(t)) continue;
        d = { result: -E[rule.fault] };
      }
      this.injected++;
      this.onInject?.(t, rule, d);
      return d;
    }
    return undefined;
  };
}
