/**
 * The state graph: every kernel object as plain data with numeric ids. It holds no
 * closures, host fds, host pointers or timers, so it can be encoded with cbor-x at any
 * quiescent point and decoded into an identical graph (snapshots/). What cannot be
 * saved (stub processes, the memory file's host fd and views, host file handles,
 * subscriptions) lives in the runtime (src/kernel/runtime.ts), keyed by these ids and
 * rebuilt from the graph on restore.
 *
 * Names follow Linux and gVisor: task, thread group, fd table, open file description,
 * inode, mount, VMA, address space, waiter.
 */
import type { HostFile } from '../files/host.js';
import type { UpperFile } from '../files/upper.js';
import type { HostFdFile } from '../files/hostfd.js';
import type { HostInetFile } from '../files/hostinet.js';
import type { DevFile } from '../files/dev.js';
import type { SyntheticFile } from '../files/synthetic.js';
import type { DirFile } from '../files/dir.js';
import type { PipeFile } from '../files/pipe.js';
import type { EpollFile } from '../files/epoll.js';
import type { PidFdFile } from '../files/pidfd.js';
import type { EventFdFile } from '../files/eventfd.js';
import type { TimerFdFile } from '../files/timerfd.js';
import type { SignalFdFile } from '../files/signalfd.js';
import type { InotifyFile } from '../files/inotify.js';
import type { SocketFile } from '../files/socket.js';
import type { PtyFile } from '../files/pty.js';

/**
 * Format version of the graph; bump when a saved graph could be misread, and add the
 * migration from the previous version to src/kernel/graph-schema.ts.
 * 2: open files are a union by kind (src/files/).
 */
export const GRAPH_VERSION = 2;

export interface KernelState {
  readonly graphVersion: number;
  /** Next object id handed out for open files, inodes, address spaces, fd tables. */
  readonly nextId: number;
  /** Next guest pid/tid (virtual pid namespace: the first task is 1). */
  readonly nextPid: number;
  readonly clock: ClockState;
  readonly memoryFile: MemoryFileState;
  readonly tasks: Readonly<Record<number, TaskState>>;
  readonly threadGroups: Readonly<Record<number, ThreadGroupState>>;
  readonly addressSpaces: Readonly<Record<number, AddressSpaceState>>;
  readonly fdTables: Readonly<Record<number, FdTableState>>;
  readonly openFiles: Readonly<Record<number, OpenFileState>>;
  readonly pipes: Readonly<Record<number, PipeState>>;
  /** The sandbox's own loopback network (src/net/inet.ts). */
  readonly net?: NetState;
  /** Pseudo-terminals by id (src/ipc/pty.ts). */
  readonly ptys?: Readonly<Record<number, PtyState>>;
  readonly fs: FilesystemState;
  /** The sandbox's configuration, fixed at creation. */
  readonly config: SandboxConfig;
}

export interface SandboxConfig {
  /** Host directory shown read-only as the sandbox's `/`. */
  readonly rootfs: string;
  readonly hostname: string;
  /** run --disk: bytes the upper layer's file data may hold (ENOSPC past it); none when absent. */
  readonly diskLimit?: number;
  /**
   * run --memory: bytes the sandbox's memory may use (src/kernel/memory-limit.ts: charged memory-file
   * space plus the kernel's buffers); past it the OOM killer runs. None when absent (older graphs).
   */
  readonly memoryLimit?: number;
  /**
   * /proc/sys/kernel/random/boot_id (a UUID): made when first read, and anew by every
   * restore (each restored clone is a new sandbox).
   */
  readonly bootId?: string;
  /** /proc/snapvisor/generation: 0 for a sandbox never restored, +1 on every restore. */
  readonly generation?: number;
  /**
   * The generation this sandbox had when its guest last asked for a checkpoint
   * (/proc/snapvisor/checkpoint): a read there says "original" while the generation is still
   * this one, "restored" in a clone restored from that checkpoint (its generation is higher).
   */
  readonly checkpointGeneration?: number;
  /**
   * The CPU features the guest may have seen through `cpuid` (Linux /proc/cpuinfo flag names,
   * sorted; platforms/host/cpu-features.ts): the host's at creation, the restoring host's after a
   * restore (new processes see its features). A restore on a host lacking any of them is
   * refused. Absent in graphs from before it was recorded (then nothing is checked).
   */
  readonly cpuFeatures?: readonly string[];
  /**
   * run --publish: host ports forwarded to guest ports (HOSTPORT:GUESTPORT; the host side
   * listens or binds on `hostIp`; `protocol` 'udp' for a UDP port, absent for TCP), re-opened by
   * every restore. Absent: none.
   */
  readonly publish?: ReadonlyArray<{ readonly hostIp: string; readonly hostPort: number; readonly guestPort: number; readonly protocol?: 'udp' }>;
  /**
   * run --tcp-close-on-checkpoint: checkpoints go ahead with published connections and host-backed
   * sockets open; a restore closes the connections (src/net/publish.ts, src/net/hostinet.ts).
   */
  readonly tcpCloseOnCheckpoint?: boolean;
  /**
   * run --network=host: the guest's AF_INET/AF_INET6 TCP and UDP sockets are host sockets
   * (src/net/hostinet.ts). Absent: the sandbox's own loopback network (--network=sandbox).
   */
  readonly network?: 'host';
}

/** The kernel's one clock. All guest-visible time is host time plus these offsets (ns). */
export interface ClockState {
  /** Added to the host CLOCK_MONOTONIC (ns) to get the guest's CLOCK_MONOTONIC/BOOTTIME. */
  readonly monotonicOffsetNs: bigint;
  /** Guest monotonic time (ns) at the last checkpoint; used to keep time continuous on restore. */
  readonly monotonicAtSaveNs: bigint;
}

/**
 * The memory file: one sparse file holding every guest page. VMAs refer to byte
 * ranges of it. This is the allocator's state; the host memfd is runtime.
 */
export interface MemoryFileState {
  /** Bytes handed out so far from the top (bump pointer), multiple of 4096. */
  readonly end: number;
  /** Freed ranges [offset, length] in bytes, reused first-fit. */
  readonly free: ReadonlyArray<[number, number]>;
  /**
   * Allocated blocks by offset: their length and how many VMAs of each address space
   * refer to them. Fork shares blocks copy-on-write; a block is freed when no VMA is left.
   */
  readonly blocks: Readonly<Record<number, MemoryBlock>>;
  /**
   * Page cache of host files: (path, size, mtime, offset, length) -> block holding those file
   * bytes, mapped copy-on-write by every private mapping of them (src/mm/page-cache.ts).
   */
  readonly pageCache?: Readonly<Record<string, number>>;
}

export interface MemoryBlock {
  readonly len: number;
  /** Address space id -> number of its VMAs referring to this block. */
  readonly users: Readonly<Record<number, number>>;
}

/** A virtual memory area: [start, end) guest addresses backed by memory-file bytes. */
export interface Vma {
  readonly start: number;
  readonly end: number;
  /** PROT_READ | PROT_WRITE | PROT_EXEC. */
  readonly prot: number;
  /** mmap flags as the guest asked (MAP_PRIVATE, MAP_SHARED, MAP_ANONYMOUS…). */
  readonly flags: number;
  /** Memory-file byte offset backing `start`. */
  readonly fileOffset: number;
  /** Offset of the memory-file block it lies in (MemoryFileState.blocks key). */
  readonly block: number;
  /** Private pages shared with another address space since fork: writes must copy first. */
  readonly cow: boolean;
  /** What the guest mapped, for /proc/self/maps: a guest path, "[heap]", "[stack]", or "". */
  readonly name: string;
  /** Offset in the mapped guest file (bytes), for /proc/self/maps. */
  readonly pgoff: number;
}

export interface AddressSpaceState {
  readonly id: number;
  /** Sorted by start, non-overlapping. */
  readonly vmas: readonly Vma[];
  /** Program break: heap start and current break (guest addresses). */
  readonly brkStart: number;
  readonly brk: number;
  /** Where the next mmap without a hint is placed (top-down allocation below this). */
  readonly mmapBase: number;
  /** Guest addresses of the argv and envp strings (for /proc/self/cmdline, environ). */
  readonly argStart: number; readonly argEnd: number; readonly envStart: number; readonly envEnd: number;
  /** The auxiliary vector the image started with (for /proc/self/auxv). */
  readonly auxv: ReadonlyArray<[number, number]>;
  /** Guest path of the executable (for /proc/self/exe). */
  readonly exe: string;
  /** The largest total size of the VMAs seen (bytes; /proc/PID/status VmPeak, sampled when the file is read). */
  readonly vmPeak?: number;
}

/** Run state of a task as the runtime must resume it. */
export type TaskRunState =
  /** Registers are a user-mode state: resume guest code. */
  | 'user'
  /** Registers hold a syscall at entry that has not completed: dispatch it (again). */
  | 'syscall'
  | 'exited';

/**
 * A blocked syscall, as data (compare Linux's restart_block and gVisor's kernel.Task blocking
 * state): a discriminated union by `kind`, each kind carrying everything the wait needs — what it
 * waits for, its deadline, the mask to put back, how far it got. The live wake-up stream is runtime
 * (src/kernel/task.ts Block); nothing of the wait lives in a closure or an in-flight host call.
 *
 * Saved and restored with the task (`TaskState.waiter`): a restored task re-enters its syscall
 * from the registers it trapped with, and the handler takes its waiter back (`Task.resumed(kind)`),
 * so each kind goes on exactly as Linux goes on after a signal without a handler:
 * - restart (ERESTARTSYS: as if never blocked): read, pipe-read, fifo-open, eventfd-*, timerfd-read, signalfd-read, inotify-read, pty-*,
 *   accept, recv, wait;
 * - continue with the saved state (ERESTART_RESTARTBLOCK / ERESTARTNOHAND): sleep and poll/select/
 *   epoll (same deadline), pipe-write (from `progress`, never writing a byte twice), vfork (same
 *   child), pause and sigsuspend (same masks), sigtimedwait (same set, deadline and saved mask);
 * - futex: returns 0 (a spurious wake-up, which every futex user must accept);
 * - checkpoint (a write to /proc/snapvisor/checkpoint): returns its count (the checkpoint exists).
 */
export type Waiter =
  | SleepWaiter | PollWaiter | SigsuspendWaiter | PauseWaiter | SigtimedwaitWaiter | FutexWaiter
  | ChildWaiter | VforkWaiter | FileWaiter | PipeWriteWaiter | CheckpointWaiter | LockWaiter;

/** What every waiter says about signals (Linux: TASK_INTERRUPTIBLE and the restart code). */
export interface WaiterBase {
  /** Whether a signal ends the wait (with EINTR, or a restart under SA_RESTART when `restartable`). */
  readonly interruptible?: boolean;
  /** Restarted after a handler with SA_RESTART instead of failing with EINTR. */
  readonly restartable?: boolean;
}

/** nanosleep, clock_nanosleep: until `deadlineNs` on guest CLOCK_MONOTONIC; `remAddr` gets the time left on EINTR. */
export interface SleepWaiter extends WaiterBase { kind: 'sleep'; deadlineNs: bigint; remAddr?: number }

/** poll/ppoll ('poll'), select/pselect6 ('select'), epoll_wait/epoll_pwait ('epoll'): until ready or `deadlineNs`. */
export interface PollWaiter extends WaiterBase { kind: 'poll' | 'select' | 'epoll'; deadlineNs?: bigint }

/** rt_sigsuspend: waits with `mask` until a handler runs; TaskState.savedSigmask holds the caller's mask. */
export interface SigsuspendWaiter extends WaiterBase { kind: 'sigsuspend'; mask: bigint }

/** pause: waits until a handler runs. */
export interface PauseWaiter extends WaiterBase { kind: 'pause' }

/**
 * rt_sigtimedwait: waits for a signal of `set` (unblocked meanwhile, as Linux does), until
 * `deadlineNs` (none: forever); `savedMask` is the caller's mask, put back however the wait ends.
 */
export interface SigtimedwaitWaiter extends WaiterBase { kind: 'sigtimedwait'; set: bigint; savedMask: bigint; deadlineNs?: bigint }

/** FUTEX_WAIT/WAIT_BITSET on guest address `addr`, until woken or `deadlineNs`. */
export interface FutexWaiter extends WaiterBase { kind: 'futex'; addr?: number; deadlineNs?: bigint }

/** wait4/waitid: until a child matching the call's arguments changes state. */
export interface ChildWaiter extends WaiterBase { kind: 'wait' }

/** A vfork parent: until child `pid` execs or exits (a restored parent must not fork again). */
export interface VforkWaiter extends WaiterBase { kind: 'vfork'; pid: number }

/**
 * Waits on open file `fileId` until it is ready: 'read' (a host stream such as the caller's stdin:
 * readiness is polled and the bytes read only once there, so an interrupted read consumes nothing),
 * 'pipe-read', 'fifo-open' (until the other end opens), 'eventfd-read'/'eventfd-write',
 * 'timerfd-read' (until an expiration), 'signalfd-read' (until a signal of its mask is pending),
 * 'inotify-read' (until an event is queued),
 * 'pty-read'/'pty-write', 'accept', 'connect' (a unix listener's backlog is full), 'recv', 'send' (a unix
 * datagram or seqpacket receiver's queue is full).
 */
export interface FileWaiter extends WaiterBase {
  readonly kind: 'read' | 'pipe-read' | 'fifo-open' | 'eventfd-read' | 'eventfd-write' | 'timerfd-read' | 'signalfd-read' | 'inotify-read' | 'pty-read' | 'pty-write' | 'accept' | 'connect' | 'recv' | 'send';
  readonly fileId?: number;
}

/**
 * F_SETLKW, F_OFD_SETLKW or a blocking flock on open file `fileId`: until the lock can be taken. A
 * restored waiter re-runs the call (the lock request is in its registers) and waits again.
 */
export interface LockWaiter extends WaiterBase { kind: 'lock'; fileId: number }

/** A blocking pipe (or stream socket) write: `progress` bytes of it are in the pipe already. */
export interface PipeWriteWaiter extends WaiterBase { kind: 'pipe-write'; fileId: number; progress: number }

/**
 * A write to /proc/snapvisor/checkpoint (src/kernel/guest-checkpoint.ts): until the checkpoint
 * it asked for is stored. Captured in that very checkpoint: a restored clone re-enters the write,
 * which then returns its count at once (no second checkpoint).
 */
export interface CheckpointWaiter extends WaiterBase { kind: 'checkpoint' }

export interface TaskState {
  readonly tid: number;
  readonly tgid: number;
  readonly addressSpaceId: number;
  readonly fdTableId: number;
  /** 27 x u64 registers (struct user_regs_struct), little-endian bytes. */
  readonly regs: Uint8Array;
  /** XSAVE (or FXSAVE) image of the FP/SSE/AVX state. */
  readonly fpState: Uint8Array;
  readonly runState: TaskRunState;
  /** The pending syscall was made with `int 0x80` (numbers and arguments of the i386 ABI). */
  readonly syscallAbi?: 'i386';
  readonly waiter?: Waiter;
  /** Blocked signal mask (64 bits as bigint). */
  readonly sigmask: bigint;
  /** set_tid_address(2) pointer (guest address), 0 if none. */
  readonly clearChildTid: number;
  readonly robustList: number;
  readonly comm: string;
  /** Signals pending for this thread only (tgkill), bitmask of signal n at bit n-1. */
  readonly pendingSignals: bigint;
  /** Voluntary context switches of this thread: the times it blocked in a syscall (RUSAGE_THREAD). */
  readonly nvcsw?: number;
  /** siginfo of pending signals (one per standard signal), by number. */
  readonly pendingInfo: Readonly<Record<number, SigInfo>>;
  /** sigaltstack(2): alternate signal stack (guest address, bytes). */
  readonly altStack?: { readonly sp: number; readonly flags: number; readonly size: number };
  /** rt_sigsuspend/ppoll/pselect6/epoll_pwait: the caller's mask, put back once a handler has run (or the call returns). */
  readonly savedSigmask?: bigint;
  /** A vfork parent waits for this child to exec or exit (child's tid). */
  readonly vforkChild?: number;
  /**
   * This thread's scheduling policy and parameters (man 7 sched) as sched_setscheduler(2),
   * sched_setparam(2) and sched_setattr(2) set them; absent: the thread group's (graphs written
   * before these were per thread), else SCHED_OTHER. src/kernel/sched.ts.
   */
  readonly sched?: SchedAttrs;
  /** This thread's nice value (-20..19), as setpriority(2) and sched_setattr(2) set it; absent: the thread group's, else 0. */
  readonly nice?: number;
  /**
   * PR_SET_TIMERSLACK: the thread's timer slack (ns; current->timer_slack_ns), 0 while it is
   * SCHED_FIFO/RR/DEADLINE; absent: 50,000 (50 µs, init's), or 0 for a realtime thread.
   */
  readonly timerSlackNs?: bigint;
  /** The slack PR_SET_TIMERSLACK 0 goes back to (default_timer_slack_ns: the creating thread's slack at clone); absent: 50,000. */
  readonly defaultTimerSlackNs?: bigint;
}

/** A thread's scheduling policy and parameters (kernel/sched/syscalls.c; man 7 sched, man 2 sched_setattr). */
export interface SchedAttrs {
  /** SCHED_OTHER (0), SCHED_FIFO (1), SCHED_RR (2), SCHED_BATCH (3), SCHED_IDLE (5) or SCHED_DEADLINE (6). */
  readonly policy: number;
  /** rt_priority: 1..99 for SCHED_FIFO/SCHED_RR, 0 otherwise. */
  readonly priority: number;
  /** SCHED_RESET_ON_FORK: children start SCHED_OTHER (and at nice 0 if below), without the flag. */
  readonly resetOnFork?: boolean;
  /** A SCHED_OTHER/SCHED_BATCH thread's own time slice (sched_setattr's sched_runtime, ns, 0.1–100 ms); absent: the base slice. */
  readonly sliceNs?: number;
  /** SCHED_DEADLINE: runtime, deadline and period (ns) and its sched_flags (SCHED_FLAG_RECLAIM, SCHED_FLAG_DL_OVERRUN). */
  readonly dl?: { readonly runtimeNs: bigint; readonly deadlineNs: bigint; readonly periodNs: bigint; readonly flags: number };
}

/** The parts of a siginfo_t this kernel fills (man 2 sigaction). */
export interface SigInfo {
  readonly signo: number;
  readonly code: number;
  readonly pid?: number;
  readonly uid?: number;
  readonly status?: number;
  readonly addr?: number;
  /** SI_TIMER: timer id, overrun count and sigev_value. */
  readonly timerId?: number;
  readonly overrun?: number;
  readonly value?: bigint;
}

export interface SigAction {
  readonly handler: number;
  readonly flags: number;
  readonly restorer: number;
  readonly mask: bigint;
}

/** getrusage(2) counters: CPU time (ns), faults, context switches, peak resident set (kB). */
export interface ResourceUsage { readonly utimeNs: bigint; readonly stimeNs: bigint; readonly minflt: number; readonly majflt: number; readonly nvcsw: number; readonly nivcsw: number; readonly maxrssKb: number }

export interface ThreadGroupState {
  readonly tgid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly sid: number;
  readonly tids: readonly number[];
  /** rt_sigaction(2) dispositions by signal number (1–64); absent = SIG_DFL. */
  readonly sigactions: Readonly<Record<number, SigAction>>;
  /** Working directory (guest path) and umask (CLONE_FS state). */
  readonly cwd: string;
  readonly umask: number;
  /** setrlimit/prlimit64 values set by the guest: resource -> [soft, hard] (bigint, RLIM_INFINITY = 2^64-1). */
  readonly rlimits: Readonly<Record<number, [bigint, bigint]>>;
  readonly exitStatus?: number;
  /**
   * Process-wide (shared) pending signals (bitmask): a signal sent to the process while every
   * thread blocks it waits here (Linux's signal->shared_pending) for whichever thread unblocks it,
   * reads it from a signalfd or takes it with sigtimedwait. Signals that a thread can take are
   * queued on that thread.
   */
  readonly pendingSignals: bigint;
  /** The siginfo of each shared pending signal (absent for older graphs: SI_USER is reported). */
  readonly pendingInfo?: Readonly<Record<number, SigInfo>>;
  /** Guest-visible identity: real uid/gid (the rest of the credentials are in `cred`). */
  readonly uid: number; readonly gid: number;
  /** Full credentials (man 7 credentials), created on the first set*id call. */
  readonly cred?: Credentials;
  /** Nice value (-20..19) of graphs written before it was per thread (TaskState.nice, which wins when set). */
  readonly nice?: number;
  /** CPU mask as sched_setaffinity(2) set it. */
  readonly affinity?: Uint8Array;
  /** Scheduling policy and priority of graphs written before they were per thread (TaskState.sched, which wins when set). */
  readonly sched?: SchedAttrs;
  /** Checkpointed CPU time (ns) of earlier runs, added to the live counters. */
  readonly cpuTimeNs: bigint;
  /** Checkpointed resource use of earlier runs (getrusage), added to what the live contexts count. */
  readonly usageBase?: ResourceUsage;
  /** A forked child: the parent's resident set (kB) it started with, added to its own stubs' peak (their pages are new ones). */
  readonly forkRssKb?: number;
  /** Voluntary context switches: the times a thread of the process blocked in a syscall. */
  readonly nvcsw?: number;
  /** An exited process's resource use, kept for its parent's wait (RUSAGE_CHILDREN). */
  readonly exitUsage?: ResourceUsage;
  /** Resource use of the children this process waited for, and theirs (RUSAGE_CHILDREN). */
  readonly childUsage?: ResourceUsage;
  /** Exited and not yet reaped: the wait status (man 2 wait4 encoding) waits for the parent. */
  readonly zombie?: boolean;
  readonly waitStatus?: number;
  /** Signal sent to the parent on exit (clone's exit signal; SIGCHLD for fork). */
  readonly exitSignal: number;
  /** ITIMER_REAL / alarm(2): absolute deadline on guest CLOCK_MONOTONIC (ns) and interval (ns). */
  readonly itimerReal?: { readonly deadlineNs: bigint; readonly intervalNs: bigint };
  /** ITIMER_VIRTUAL (1) and ITIMER_PROF (2): deadline and interval in process CPU time (ns). */
  readonly itimerCpu?: Readonly<Record<number, { readonly deadlineNs: bigint; readonly intervalNs: bigint }>>;
  /** Job control: stopped by a stop signal (until SIGCONT), and what wait() has yet to report. */
  readonly stopped?: boolean;
  readonly stopSignal?: number;
  readonly stopReport?: 'stopped' | 'continued';
  /** timer_create(2) timers by id. */
  readonly posixTimers?: Readonly<Record<number, PosixTimer>>;
  /** PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented here instead of to init. */
  readonly childSubreaper?: boolean;
  /** PR_SET_PDEATHSIG: signal this process gets when its parent exits (0/absent: none). */
  readonly parentDeathSignal?: number;
  /** Has called execve(2) since fork (setpgid(2) on it by its parent is then EACCES). */
  readonly execed?: boolean;
}

/** A POSIX interval timer (man 2 timer_create); deadline on guest CLOCK_MONOTONIC (ns). */
export interface PosixTimer {
  readonly id: number;
  readonly clock: number;
  /** SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD_ID (4). */
  readonly notify: number;
  readonly signo: number;
  /** Target thread for SIGEV_THREAD_ID. */
  readonly tid?: number;
  /** sigev_value, delivered in si_value. */
  readonly value: bigint;
  /** Armed: next expiry; absent when disarmed. */
  readonly deadlineNs?: bigint;
  readonly intervalNs: bigint;
  /** Expirations missed while the signal was still pending. */
  readonly overrun: number;
}

/** Credentials of a thread group (man 7 credentials, man 7 capabilities; src/kernel/creds.ts). */
export interface Credentials {
  readonly ruid: number; readonly euid: number; readonly suid: number; readonly fsuid: number;
  readonly rgid: number; readonly egid: number; readonly sgid: number; readonly fsgid: number;
  /** Supplementary groups (setgroups(2)). */
  readonly groups: readonly number[];
  /** Capability sets: inheritable, permitted, effective, bounding, ambient (bit n = capability n). */
  readonly capInh: bigint; readonly capPrm: bigint; readonly capEff: bigint; readonly capBnd: bigint; readonly capAmb: bigint;
  /** prctl(PR_SET_NO_NEW_PRIVS): execve never raises ids or capabilities again. */
  readonly noNewPrivs?: boolean;
  /** prctl(PR_SET_KEEPCAPS): permitted capabilities survive dropping every root uid. */
  readonly keepCaps?: boolean;
}

/** A socket address: AF_INET/AF_INET6 (ip text, port) or AF_UNIX (path; abstract names start with NUL). */
export interface SockAddr { readonly family: number; readonly ip?: string; readonly port?: number; readonly path?: string }

/** struct ucred: a process's identity as unix sockets pass it (SCM_CREDENTIALS, SO_PEERCRED): guest pid, uid, gid. */
export interface UCred { readonly pid: number; readonly uid: number; readonly gid: number }

/** A message queued on a datagram or seqpacket socket. */
export interface SocketMessage {
  /** The sender's address (unix: path '' when the sender is unnamed). */
  readonly from: SockAddr;
  readonly data: Uint8Array;
  /** unix: the sender's credentials (given to a receiver with SO_PASSCRED as SCM_CREDENTIALS). */
  readonly creds?: UCred;
  /**
   * unix: open-file ids passed with SCM_RIGHTS; the message holds one reference to each until it
   * is received (the files are installed in the receiver) or dropped (socket released).
   */
  readonly fileIds?: readonly number[];
  /** AF_INET6 datagrams: the hop limit and traffic class they were sent with (IPV6_HOPLIMIT, IPV6_TCLASS for receivers that ask). */
  readonly hopLimit?: number;
  readonly tclass?: number;
}

/**
 * A socket (src/net): a connected stream reads pipe `rx` and writes pipe `tx` (0 = none);
 * a listener queues accepted-to-be connections; a datagram or seqpacket socket queues messages.
 * Saved and restored as plain data with its open file (src/files/socket.ts); in-flight files
 * are references held by the graph's open files.
 */
export interface SocketState {
  readonly rx: number; readonly tx: number; readonly shutRd: boolean; readonly shutWr: boolean;
  readonly domain?: number;
  /** SOCK_STREAM (1), SOCK_DGRAM (2) or SOCK_SEQPACKET (5, AF_UNIX only). */
  readonly type?: number;
  /** IPPROTO_UDPLITE (136) for a UDP-Lite socket (a datagram socket with its own ports); absent for TCP, UDP and unix. */
  readonly protocol?: number;
  /**
   * AF_UNIX datagram and seqpacket sockets: the open-file id of the socket this one sends to
   * (unix_peer): the other end of a socketpair or of an accepted seqpacket connection, or the
   * target of a datagram connect(2). Ids are never reused: a peer whose open file is gone is closed.
   */
  readonly pairPeer?: number;
  readonly state?: 'unbound' | 'bound' | 'listening' | 'connected';
  readonly local?: SockAddr;
  readonly peer?: SockAddr;
  /** The key this socket holds in NetState.bound (absent in older graphs: computed from `local`). */
  readonly boundKey?: string;
  /**
   * SO_PEERCRED: the identity recorded when the connection was made (the connecting process for an
   * accepted socket, the listener's at listen(2) for a client, the creator for socketpair). Absent:
   * pid 0, uid and gid -1.
   */
  readonly peerCred?: UCred;
  /** Listening: open-file ids of connections waiting for accept(2), and the backlog. */
  readonly backlog?: readonly number[];
  readonly backlogMax?: number;
  /** Datagram and seqpacket: queued messages with their sender. */
  readonly dgrams?: readonly SocketMessage[];
  /** setsockopt values by "level:option". */
  readonly opts?: Readonly<Record<string, number>>;
  /** A connection was refused or reset: reported once by the next call (SO_ERROR). */
  readonly error?: number;
  /** TCP: a write found the peer closed and drew its reset: further writes fail EPIPE. */
  readonly reset?: boolean;
  /**
   * The kernel's end of a connection from outside through a published port (run --publish,
   * src/net/publish.ts): the host address and port it came through ("127.0.0.1:8080"). No
   * process holds it; its host connection is runtime only.
   */
  readonly published?: string;
  /** The creator's filesystem uid and gid (fstat's st_uid/st_gid: sock_alloc records current_fsuid/fsgid); absent in older graphs: the pipe's or the caller's. */
  readonly owner?: [number, number];
  /** The sockfs inode's permission bits (0o7777) after fchmod(2); absent: 0777. */
  readonly mode?: number;
}

/** Loopback network: which socket (open-file id) holds each bound address, and the next ephemeral port. */
export interface NetState {
  readonly bound: Readonly<Record<string, number>>;
  readonly nextPort: number;
}

/** A pseudo-terminal pair with its line discipline's queues (src/ipc/pty.ts). */
export interface PtyState {
  readonly id: number;
  /** N in /dev/pts/N. */
  readonly index: number;
  /** struct termios (36 bytes) and struct winsize (8 bytes). */
  readonly termios: Uint8Array;
  readonly winsize: Uint8Array;
  /** Bytes the slave can read; the canonical line being edited; bytes the master can read. */
  readonly input: Uint8Array;
  readonly line: Uint8Array;
  readonly output: Uint8Array;
  /** End-of-file marks (VEOF on an empty line) the slave has yet to read. */
  readonly eofPending?: number;
  readonly masterOpen: boolean;
  readonly slaveOpens: number;
  readonly everOpened?: boolean;
  /** unlockpt(3) state. */
  readonly locked: boolean;
  /** The session it is the controlling terminal of, and its foreground process group. */
  readonly sid: number;
  readonly fgPgid: number;
}

/** A pipe (fs/pipe.c): a 64 KiB buffer between read and write open files. */
export interface PipeState {
  readonly id: number;
  /** Buffered bytes (the first `len` bytes of `buf` are unread data). */
  readonly buf: Uint8Array;
  readonly len: number;
  /** Open file descriptions of each end. */
  readonly readers: number;
  readonly writers: number;
  /** The creator's filesystem uid and gid (fstat's st_uid/st_gid, as pipefs records them); absent in older graphs: the caller's. */
  readonly owner?: [number, number];
  /** An anonymous pipe's pipefs inode permission bits (0o7777) after fchmod(2); absent: 0600. */
  readonly mode?: number;
  /** Bytes ever written and read (positions for fds in flight). */
  readonly written?: number;
  readonly readTotal?: number;
  /** SCM_RIGHTS in flight on a unix stream: open files (holding a reference) that arrive with the byte at `at`. */
  readonly rights?: ReadonlyArray<{ readonly at: number; readonly fileIds: number[] }>;
  /**
   * A unix stream's writers: the bytes from `at` on (up to the next entry) were written with
   * `cred` (SCM_CREDENTIALS for a reader with SO_PASSCRED; src/net/socket.ts). Entries the
   * reader has passed are pruned; plain data, saved with the pipe.
   */
  readonly creds?: ReadonlyArray<{ readonly at: number; readonly cred: UCred }>;
}

export interface FdEntry {
  readonly fileId: number;
  readonly cloexec: boolean;
}

export interface FdTableState {
  readonly id: number;
  /** Guest fd number -> entry. */
  readonly fds: Readonly<Record<number, FdEntry>>;
}

/**
 * What every open file description (Linux `struct file`) has, whatever its kind: shared by
 * dup'd fds and across fork.
 */
export interface OpenFileBase {
  readonly id: number;
  /** Guest path it was opened by (for /proc/self/fd, re-opening host files on restore). */
  readonly path: string;
  /** open(2) flags (O_ACCMODE, O_APPEND, O_NONBLOCK…). */
  readonly flags: number;
  /** File position in bytes. */
  readonly offset: number;
  /** Number of fd-table entries (and in-flight SCM_RIGHTS messages) referring to it. */
  readonly refs: number;
}

/**
 * An open file description, by kind. Each kind's record is declared beside its file
 * operations in src/files/<kind>.ts and registered in src/files/registry.ts.
 */
export type OpenFileState =
  | HostFile | UpperFile | HostFdFile | DevFile | SyntheticFile | DirFile
  | PipeFile | EpollFile | PidFdFile | EventFdFile | SocketFile | HostInetFile | PtyFile | TimerFdFile | SignalFdFile | InotifyFile;

/** The kinds of open file (the `kind` of an OpenFileState). */
export type OpenFileKind = OpenFileState['kind'];

export interface DirEntry { name: string; ino: number; type: number }

/** An inode of the writable upper layer (tmpfs-like; contents live in the graph). */
export interface InodeState {
  readonly id: number;
  /** S_IFREG, S_IFDIR, S_IFLNK bits plus permissions. */
  readonly mode: number;
  readonly uid: number; readonly gid: number;
  readonly nlink: number;
  /** Regular file contents: memory-file offsets of 64 KiB blocks by chunk index (missing blocks are holes: zeros). */
  readonly blocks?: Readonly<Record<number, number>>;
  /** Contents as written by older graphs (bytes in the graph); moved into `blocks` on first use. */
  readonly chunks?: Readonly<Record<number, Uint8Array>>;
  /**
   * Contents moved to a memory-file block because the file is mapped MAP_SHARED (then `chunks`
   * is unset): the block's offset and capacity (bytes), and the bytes counted in
   * FilesystemState.diskBytes for it (unset in older graphs: the capacity).
   */
  readonly shared?: { readonly offset: number; readonly capacity: number; readonly counted?: number };
  /** Extended attributes by full name (user.*, trusted.*, security.*), as tmpfs keeps them (src/syscalls/xattr.ts). */
  readonly xattrs?: Readonly<Record<string, Uint8Array>>;
  readonly size: number;
  /** Symlink target. */
  readonly target?: string;
  /**
   * Directory: opaque (created in the upper layer, not copied up): nothing of the lower
   * layer at or below its path shows through (overlayfs's trusted.overlay.opaque).
   */
  readonly opaque?: boolean;
  /** FIFO: the pipe its open ends share while any is open. */
  readonly fifoPipeId?: number;
  /**
   * An O_TMPFILE file opened without O_EXCL and not linked yet: linkat may give it a name although
   * it has no link (Linux's I_LINKABLE; cleared by the first link). Absent: an unlinked file stays so.
   */
  readonly linkable?: boolean;
  /** The tmpfs superblock (FilesystemState.superblocks) the inode belongs to; absent: the root's upper layer. */
  readonly sb?: number;
  readonly atimeNs: bigint; readonly mtimeNs: bigint; readonly ctimeNs: bigint;
}

/**
 * The sandbox filesystem: the host rootfs as a read-only lower layer, overlaid by an
 * upper layer in the graph. `upper` maps an absolute guest path to an inode id, or to
 * 0 for a whiteout (deleted from the lower layer).
 */
export interface FilesystemState {
  readonly upper: Readonly<Record<string, number>>;
  readonly inodes: Readonly<Record<number, InodeState>>;
  /** Bytes of memory-file blocks held by upper-layer files (counted against SandboxConfig.diskLimit). */
  readonly diskBytes?: number;
  /** Held advisory locks (fcntl record locks, OFD locks, flock) by lock key (src/vfs/locks.ts lockKey). */
  readonly locks?: Readonly<Record<string, FileLock[]>>;
  /** Filesystems mounted besides the root overlay (tmpfs instances, host volumes), by id (src/vfs/mounts.ts). */
  readonly superblocks?: Readonly<Record<number, SuperblockState>>;
  /** The mount table besides the root and its synthetic mounts (/proc, /dev, /sys), by mount id (src/vfs/mounts.ts). */
  readonly mounts?: Readonly<Record<number, MountState>>;
  /** The root mount (/) is read-only (OCI `root.readonly`): writes to paths on it give EROFS; /dev, /dev/shm and other mounts are apart. */
  readonly rootReadonly?: boolean;
}

/**
 * A filesystem instance the mount table refers to (Linux's super_block). Id 0 (never stored)
 * is the root overlay: the synthetic /proc, /dev, /sys trees, the upper layer and the rootfs.
 * - 'tmpfs': contents are upper-layer inodes (InodeState.sb = id) named in FilesystemState.upper
 *   under the key "\0ID" (its root) and "\0ID/a/b"; `usedBytes` of file data (64 KiB blocks)
 *   may not pass `sizeLimit` (ENOSPC).
 * - 'volume': a host directory (or the directory holding a bound host file), reached only
 *   beneath a handle of it as the rootfs is; keys are its tree paths ('/', '/a/b').
 */
export type SuperblockState =
  | { readonly id: number; readonly type: 'tmpfs'; readonly sizeLimit?: number; readonly usedBytes: number }
  | {
    readonly id: number; readonly type: 'volume';
    /** The host directory the tree is opened on (absolute, symlinks resolved when it was mounted). */
    readonly hostPath: string;
    /** The volume was given read-only (`:ro`): no mount of it is ever writable. */
    readonly readonly: boolean;
    /** The identity of the host tree at the last checkpoint (docs/snapshot-format.md, "Volumes"). */
    readonly identity?: string;
  };

/** One mount (Linux's struct mount): what is mounted where, with which flags. */
export interface MountState {
  /** Mount id (mountinfo's first field); ids below 30 are the root and its synthetic mounts. */
  readonly id: number;
  /** The mount it is mounted on (mountinfo's parent id). */
  readonly parent: number;
  /** Canonical guest path of the mount point. */
  readonly mountpoint: string;
  /** Superblock id (0: the root overlay). */
  readonly sb: number;
  /** Key of the mount's root inside its superblock ('/' or '/a' for the root overlay and volumes, "\0ID" for a tmpfs). */
  readonly root: string;
  /** Filesystem type shown in /proc/mounts (tmpfs, proc, the source's type for a bind). */
  readonly fstype: string;
  /** Source shown in /proc/mounts (the host path of a volume, "tmpfs", …). */
  readonly source: string;
  /** MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME… (mount(2) flag bits). */
  readonly flags: number;
  /** Superblock options shown in /proc/mounts after the flags ("size=65536k,mode=1777"). */
  readonly options?: string;
}

/**
 * One held advisory lock (src/vfs/locks.ts). `start`/`end`: inclusive byte offsets (end 2^63-1: to
 * the end of the file). `owner`: the thread group id for 'posix', the open file description's id
 * for 'ofd' and 'flock'. `pid`: what F_GETLK reports as l_pid (the tgid; -1 for OFD locks).
 */
export interface FileLock {
  readonly kind: 'posix' | 'ofd' | 'flock';
  /** F_RDLCK (0) or F_WRLCK (1); a flock LOCK_SH is a read lock, LOCK_EX a write lock. */
  readonly type: 0 | 1;
  readonly start: bigint;
  readonly end: bigint;
  readonly owner: number;
  readonly pid: number;
}
