/**
 * The kernel: the state graph plus the runtime that executes it.
 *
 * How a syscall flows: platform trap (PlatformTask.switch) → `runTask` sees a syscall
 * → `dispatch` looks the number up in the syscall table it was given (src/syscalls/table.ts,
 * handed over by the composition root, src/sandbox/) → the
 * handler reads guest memory through the task's AddressSpace (EFAULT on bad pointers),
 * changes the graph, and returns a value, an errno, or a Block (a Waiter record plus an
 * RxJS stream of the result) → the result goes into rax, pending signals are delivered
 * (src/kernel/signals.ts), and the task resumes.
 *
 * Checkpoints happen at a quiescent point: `quiesce` freezes every task at a syscall
 * boundary, in a waiter, or interrupted in user code; `capture` then copies registers
 * into the graph and the memory file's pages into a buffer, and the guest may go on.
 * While frozen, wake-ups do not touch the graph (`whenRunnable`).
 */
import fs from 'node:fs';
import { Observable, Subject, asapScheduler, firstValueFrom, race, filter, map, take, merge, observeOn, tap, timer } from 'rxjs';
import { E, ERRNO_NAME, SyscallError } from '../errno.js';
import type { Platform } from '../../platforms/platform.js';
import type { HostServices } from '../../platforms/host-services.js';
import { REG } from '../../platforms/platform.js';
import { AddressSpace } from '../mm/address-space.js';
import { MemoryFile, PageSourceError, type LazyPageLayer, type MovedPages } from '../mm/memory-file.js';
import { Vfs } from '../vfs/vfs.js';
import { inodeRelease } from '../vfs/inode-data.js';
import { releaseFileLocks, releasePosixOnClose } from '../vfs/locks.js';
import { fsnotifyClose, fsnotifyGone } from '../files/inotify.js';
import { procMount } from '../vfs/proc.js';
import { devMount, sysMount } from '../vfs/dev.js';
import { credsOf } from './creds.js';
import { softLimit } from './rlimits.js';
import { MemoryLimit } from './memory-limit.js';
import { MAP_SHARED, RLIMIT_AS, RLIMIT_DATA } from '../abi/linux.js';
import { SYSCALL_NAME } from '../abi/syscall-numbers.js';
import { Task, SyscallResult, SyscallTable, SyscallHook, NO_RETURN, ExitGroup, ExitThread, INTERRUPTED, KILLED, type ExitInfo } from './task.js';
import { GRAPH_VERSION, KernelState, TaskState, OpenFileState, ThreadGroupState, DirEntry } from './state.js';
import { Clock } from './clock.js';
import { groupCpuNs, groupUsage } from './cputime.js';
import { HostFiles } from '../vfs/host-files.js';
import { Signals } from './signals.js';
import { Processes } from './processes.js';
import { Pipes } from '../ipc/pipe.js';
import { Futexes } from '../ipc/futex.js';
import { Ptys } from '../ipc/pty.js';
import { fileOpsOf, filePersists } from '../files/registry.js';
import { PERSISTED_KINDS } from './persisted-kinds.js';
import type { FileOps } from '../files/file-ops.js';
import { DirtySet, EventLog, applyOps, ownOp, type GraphOp, type KernelEvent, type KernelEventBody, type Writable, type DeepWritable } from './events.js';

export { ExitGroup, ExitThread, INTERRUPTED, KILLED } from './task.js';
export type { ExitInfo } from './task.js';

export type { KernelEvent, KernelEventBody, GraphOp } from './events.js';

/**
 * What a kernel is built from (the composition root, src/sandbox/, assembles it): the
 * platform that executes guest code, the syscall table it dispatches through (as gVisor's
 * RegisterSyscallTable), and the host runtime services (stdio, host poll, memory backing).
 */
export interface KernelDeps {
  platform: Platform;
  syscalls: SyscallTable;
  /**
   * The i386 syscall numbers served for `int 0x80` (index: i386 number, value: the x86-64 number
   * whose entry serves it, with i386 argument registers); numbers absent give ENOSYS. Never the
   * x86-64 numbering through `int 0x80`.
   */
  syscalls32?: ReadonlyArray<number | undefined>;
  host: HostServices;
}

/** What newOpenFile needs for a new open file: its kind's record less the kernel's id and refs (offset defaults to 0). */
export type OpenFileInit = OpenFileState extends infer F ? (F extends OpenFileState ? Omit<F, 'id' | 'refs' | 'offset'> & { offset?: number } : never) : never;

export interface KernelOptions {
  strace?: boolean;
  /** Where --strace lines and kernel warnings go (host fd). */
  logFd?: number;
  /** Most tasks alive at once (fork/clone give EAGAIN past it). */
  maxTasks?: number;
  /** Called at every syscall entry before its handler (fault injection); see SyscallHook. */
  syscallHook?: SyscallHook;
  /**
   * Takes the checkpoint a guest asks for by writing /proc/snapvisor/checkpoint
   * (src/kernel/guest-checkpoint.ts): checkpoint this kernel, leaving it running, and resolve
   * once it is stored (with a line for the log, e.g. the checkpoint's id) or reject with an
   * Error saying why not (the write fails with EIO). Absent: such writes fail with EOPNOTSUPP.
   */
  checkpointRequest?: (kernel: Kernel) => Promise<string | undefined>;
}

/** Which argument of a syscall is a path, for --strace. */
const TRACE_PATH_ARGS: Record<string, number> = {
  open: 0, creat: 0, stat: 0, lstat: 0, access: 0, readlink: 0, chdir: 0, mkdir: 0, rmdir: 0, unlink: 0, execve: 0, chmod: 0, truncate: 0, statfs: 0,
  openat: 1, newfstatat: 1, statx: 1, faccessat: 1, faccessat2: 1, readlinkat: 1, mkdirat: 1, unlinkat: 1, execveat: 1, fchmodat: 1, utimensat: 1,
};

/** Whether a task has ended (read through a call: it changes while a task awaits). */
const isExited = (t: Task): boolean => t.state.runState === 'exited';

export class Kernel {
  readonly tasks = new Map<number, Task>();
  readonly addressSpaces = new Map<number, AddressSpace>();
  readonly mf: MemoryFile;
  readonly vfs: Vfs;
  readonly clock: Clock;
  readonly hostFiles: HostFiles;
  readonly signals: Signals;
  readonly processes: Processes;
  readonly pipes: Pipes;
  readonly futexes: Futexes;
  readonly ptys: Ptys;
  /** The event stream: every graph change, in order (src/kernel/events.ts). */
  readonly events = new EventLog();
  /** Graph objects changed since the last checkpoint, from the events' ops. */
  readonly dirty = new DirtySet();
  /** Ops of id/pid allocations, applied at once and carried by the next event. */
  private pendingOps: GraphOp[] = [];
  /** A blocked task must abandon its syscall: [tid, INTERRUPTED | KILLED]. */
  readonly interrupt$ = new Subject<[number, number]>();
  private readonly parkChanged$ = new Subject<void>();
  readonly thaw$ = new Subject<void>();
  /** Emits once when the kernel is destroyed (`destroy`): runtime parts kept outside it (host sockets) let go. */
  readonly destroyed$ = new Subject<void>();
  frozen = false;
  private readonly parked = new Set<number>();
  private readonly running = new Set<number>();
  private readonly reportedUnimplemented = new Set<number>();
  private exitResolve!: (e: ExitInfo) => void;
  readonly exited: Promise<ExitInfo>;
  exitInfo?: ExitInfo;
  strace: boolean;
  logFd: number;
  readonly maxTasks: number;
  private readonly syscallHook?: SyscallHook;
  /** KernelOptions.checkpointRequest. */
  readonly checkpointRequest?: (kernel: Kernel) => Promise<string | undefined>;
  /** The task whose syscall handler is running (for /proc/self); valid only during a handler. */
  current?: Task;
  /** The sandbox's memory limit (run --memory), if it has one. */
  memoryLimit?: MemoryLimit;
  /** The task whose page fault is being served (it asks the memory limit for the memory). */
  faulting?: Task;
  /** The FP state a fresh task starts with (captured from the first stub). */
  initialFpState?: Uint8Array;

  readonly platform: Platform;
  /** The syscall table, indexed by number (src/syscalls/table.ts, injected). */
  readonly syscalls: SyscallTable;
  /** i386 number -> x86-64 number served for `int 0x80` (KernelDeps.syscalls32). */
  readonly syscalls32: ReadonlyArray<number | undefined>;
  /** Host runtime services: the caller's stdio and terminal, host poll, memory backing. */
  readonly host: HostServices;

  constructor(readonly state: KernelState, deps: KernelDeps, opts: KernelOptions = {}) {
    if (state.graphVersion !== GRAPH_VERSION) throw new Error(`state graph version ${state.graphVersion} is not supported (expected ${GRAPH_VERSION})`);
    this.platform = deps.platform;
    this.syscalls = deps.syscalls;
    this.syscalls32 = deps.syscalls32 ?? [];
    this.host = deps.host;
    this.strace = !!opts.strace;
    this.logFd = opts.logFd ?? 2;
    this.maxTasks = opts.maxTasks ?? 512;
    this.syscallHook = opts.syscallHook;
    this.checkpointRequest = opts.checkpointRequest;
    // The rootfs first: a sandbox (or restore) whose rootfs is gone fails here, naming it.
    const lower = deps.host.openTree(state.config.rootfs);
    this.mf = new MemoryFile(state.memoryFile, (name, size) => deps.host.createMemoryBacking(name, size));
    // Pages moved out of a restored checkpoint's page file: every mapping of them now uses the memfd.
    this.mf.change = (ops) => this.stage(ops);
    this.mf.onMaterialized = (off, len) => { for (const as of this.addressSpaces.values()) as.remapFileRange(off, len); };
    if (state.config.memoryLimit) this.setMemoryLimit(state.config.memoryLimit);
    this.clock = new Clock(state.clock);
    this.vfs = new Vfs(state.fs, lower, () => this.newId(), () => this.clock.realtimeNs(), (b, ops) => this.emit(b, ops));
    this.vfs.mounts.push(procMount(this), devMount(this), sysMount());
    // Volumes of the mount table: each host tree opened again beneath a handle of its directory.
    for (const sb of Object.values(state.fs.superblocks ?? {})) {
      if (sb.type !== 'volume') continue;
      try { this.vfs.trees.set(sb.id, deps.host.openTree(sb.hostPath)); } catch {
        for (const t of this.vfs.trees.values()) t.close();
        lower.close();
        throw new Error(`volume ${sb.hostPath} is missing or not a directory`);
      }
    }
    this.vfs.creds = () => (this.current ? credsOf(this.current.tg) : undefined);
    this.vfs.data = this;
    this.hostFiles = new HostFiles(this);
    this.signals = new Signals(this);
    this.processes = new Processes(this);
    this.pipes = new Pipes(this);
    this.futexes = new Futexes();
    this.ptys = new Ptys(this);
    this.exited = new Promise((res) => { this.exitResolve = res; });
  }

  /** A fresh, empty graph. */
  static emptyState(rootfs: string, hostname = 'snapvisor'): KernelState {
    return {
      graphVersion: GRAPH_VERSION, nextId: 1, nextPid: 1,
      clock: { monotonicOffsetNs: 0n, monotonicAtSaveNs: 0n },
      memoryFile: { end: 0, free: [], blocks: {} },
      tasks: {}, threadGroups: {}, addressSpaces: {}, fdTables: {}, openFiles: {}, pipes: {},
      fs: { upper: {}, inodes: {} },
      config: { rootfs, hostname },
    };
  }

  /**
   * The one door for graph changes: apply `ops` to the graph (applyOps, the function a
   * replayer applies too), mark the objects they touch dirty, and append the event, stamped
   * with the next seq and guest CLOCK_MONOTONIC time (ns), to the event stream.
   */
  emit(body: KernelEventBody, ops: GraphOp[], owned = false): void {
    applyOps(this.state, ops, this.dirty.mark);
    // The event keeps its own copy of object values and bytes: the caller's may be live graph
    // data or guest memory (`owned`: the caller made them for this event and keeps no reference).
    if (!owned) for (let i = 0; i < ops.length; i++) ops[i] = ownOp(ops[i]);
    if (this.pendingOps.length) { ops = this.pendingOps.concat(ops); this.pendingOps = []; }
    const ev = body as KernelEvent;
    ev.seq = ++this.events.seq;
    ev.timeNs = this.clock.monotonicNs();
    ev.ops = ops;
    this.events.append(ev);
  }

  /**
   * Apply ops now, without an event of their own: the next event emitted carries them (before
   * its own ops). For changes made in steps inside one operation whose event comes at its end
   * (the mm family: VMA splits, memory-file blocks), so that a replayer applies them in the same order.
   */
  stage(ops: readonly GraphOp[]): void {
    applyOps(this.state, ops, this.dirty.mark);
    for (const op of ops) this.pendingOps.push(ownOp(op));
  }

  /** Emit the staged changes (Kernel.stage) as their own event, mm.change, naming the syscall (or 'fault') that made them. */
  flushStaged(tid = 0, cause = ''): void {
    if (this.pendingOps.length) this.emit({ type: 'mm.change', tid, cause }, []);
  }

  /** A new object id (nextId goes up through an op carried by the next event). */
  newId(): number {
    const id = this.state.nextId;
    const op: GraphOp = ['set', ['nextId'], id + 1];
    applyOps(this.state, [op], this.dirty.mark);
    this.pendingOps.push(op);
    return id;
  }

  /** A new guest pid/tid (nextPid goes up through an op carried by the next event). */
  newPid(): number {
    const pid = this.state.nextPid;
    const op: GraphOp = ['set', ['nextPid'], pid + 1];
    applyOps(this.state, [op], this.dirty.mark);
    this.pendingOps.push(op);
    return pid;
  }

  /**
   * Set the sandbox's memory limit (bytes; kept in the graph). Lowered below what is in use, it
   * reclaims and then OOM-kills at once, as writing a memory cgroup's memory.max does.
   */
  setMemoryLimit(bytes: number): void {
    if (this.state.config.memoryLimit !== bytes) this.emit({ type: 'config.set', what: 'memoryLimit' }, [['set', ['config', 'memoryLimit'], bytes]]);
    if (this.memoryLimit) this.memoryLimit.limit = bytes;
    else {
      const limit = this.memoryLimit = new MemoryLimit(this, bytes);
      this.mf.admit = (n, soft) => limit.admit(n, this.faulting ?? this.current, soft);
    }
    if (this.memoryLimit.usage() > bytes) this.memoryLimit.admit(0, undefined);
  }

  /**
   * A shared file's memory-file block moved from `from` to `to` (DataStore.sharedBlockMoved):
   * the VMAs of every address space follow it, graph and host mappings alike.
   */
  sharedBlockMoved(from: number, to: number): void {
    for (const id of Object.keys(this.state.addressSpaces)) this.addressSpace(Number(id)).moveBlock(from, to);
  }

  /** The runtime address space for a graph id (created on first use). */
  addressSpace(id: number): AddressSpace {
    let as = this.addressSpaces.get(id);
    if (!as) {
      as = new AddressSpace(this.state.addressSpaces[id], this.mf, this.platform.addressRange);
      as.change = (ops) => this.stage(ops);
      this.addressSpaces.set(id, as);
    }
    return as;
  }

  /** Create the runtime half of a task: a new platform context in its address space (mappings replayed when `replay`). */
  attachTask(ts: TaskState, replay: boolean): Task {
    const pt = this.platform.createTask(this.mf.fd, this.mf.backingFds);
    if (!this.initialFpState) this.initialFpState = pt.getFpState();
    const mm = this.addressSpace(ts.addressSpaceId);
    mm.contexts.push(pt);
    if (replay) mm.replay(pt);
    const t = new Task(this, ts, pt, mm);
    this.tasks.set(ts.tid, t);
    if (mm.contexts.length === 1) this.limitsFrom(t);
    return t;
  }

  /** Move task `t`, whose context has left its old address space, into `mm` (exec_mmap of a CLONE_VM child). */
  bindAddressSpace(t: Task, mm: AddressSpace): void {
    mm.contexts.push(t.platform);
    t.rebindMm(mm);
    this.limitsFrom(t);
  }

  /**
   * An address space checks RLIMIT_AS/RLIMIT_DATA against the limits of one process using it:
   * `t`'s. Kept on the first attached (a CLONE_VM child shares its parent's address space until it
   * execs), moved on when that task leaves (detachTask).
   */
  private limitsFrom(t: Task): void {
    t.mm.limits = () => ({ as: softLimit(t.tg, RLIMIT_AS), data: softLimit(t.tg, RLIMIT_DATA), memory: this.memoryLimit?.limit ?? Infinity });
  }

  // ---- open files and fd tables (the door for fd mutations) ----

  /** Install an open file at the lowest free fd ≥ minFd. Returns the fd, or -EMFILE. */
  installFd(t: Task, fileId: number, cloexec: boolean, minFd = 0, type: 'fd.install' | 'fd.dup' = 'fd.install'): number {
    const fds = t.fdTable.fds;
    const limit = this.fdLimit(t);
    let fd = minFd;
    while (fds[fd] !== undefined) fd++;
    if (fd >= limit) return -E.EMFILE;
    this.installFdAt(t, fd, fileId, cloexec, type);
    return fd;
  }

  /** Install an open file at `fd` (an fd already there is closed): event fd.install, or fd.dup for dup/fcntl(F_DUPFD). */
  installFdAt(t: Task, fd: number, fileId: number, cloexec: boolean, type: 'fd.install' | 'fd.dup' = 'fd.install'): void {
    const old = t.fdTable.fds[fd];
    const table = t.state.fdTableId;
    this.emit({ type, tid: t.tid, fd, fileId, cloexec }, [
      ['set', ['openFiles', fileId, 'refs'], this.state.openFiles[fileId].refs + 1],
      ['set', ['fdTables', table, 'fds', fd], { fileId, cloexec }],
    ]);
    if (old) this.unrefFile(old.fileId);
  }

  /** fcntl(F_SETFD)/ioctl(FIOCLEX): set or clear an fd's close-on-exec flag (EBADF if not open). */
  setCloexec(t: Task, fd: number, cloexec: boolean): number {
    if (!t.fdTable.fds[fd]) return -E.EBADF;
    this.emit({ type: 'fd.cloexec', tid: t.tid, fd, cloexec }, [['set', ['fdTables', t.state.fdTableId, 'fds', fd, 'cloexec'], cloexec]]);
    return 0;
  }

  fdLimit(t: Task): number {
    const l = t.tg.rlimits[7 /* RLIMIT_NOFILE */];
    return l ? Number(l[0] > 1048576n ? 1048576n : l[0]) : 1024;
  }

  /** close(2) of one fd: EBADF if not open. */
  closeFd(t: Task, fd: number): number {
    const fds = t.fdTable.fds;
    const e = fds[fd];
    if (!e) return -E.EBADF;
    this.emit({ type: 'fd.close', tid: t.tid, fd, fileId: e.fileId }, [['del', ['fdTables', t.state.fdTableId, 'fds', fd]]]);
    const f = this.state.openFiles[e.fileId];
    if (f && this.state.fs.locks) releasePosixOnClose(this, t.tgid, f);
    this.unrefFile(e.fileId);
    return 0;
  }

  /** Drop one reference to an open file description; the last one releases it (pipe ends, host handles). */
  unrefFile(id: number): void {
    const f = this.state.openFiles[id];
    if (!f) return;
    if (f.refs > 1) {
      this.emit({ type: 'file.unref', fileId: id, refs: f.refs - 1 }, [['set', ['openFiles', id, 'refs'], f.refs - 1]]);
      return;
    }
    this.emit({ type: 'file.release', fileId: id }, [['del', ['openFiles', id]]]);
    if (this.state.fs.locks) releaseFileLocks(this, f);
    fsnotifyClose(this, f);
    this.fileOps(f).release?.(this, f);
  }

  /**
   * Free an upper-layer file's data once its last link and last open file are gone (Linux
   * frees the inode on the last iput). Safe to call for any inode id.
   */
  releaseInodeIfUnused(id: number | undefined): void {
    const ino = id ? this.state.fs.inodes[id] : undefined;
    if (!ino || ino.nlink > 0) return;
    for (const f of Object.values(this.state.openFiles)) if (f.kind === 'upper' && f.inodeId === id) return;
    fsnotifyGone(this, { path: '', inodeId: id, dir: false }); // evicted: IN_DELETE_SELF, then each watch's IN_IGNORED
    inodeRelease(this, ino);
  }

  /** Move an open file's position (bytes): event file.seek. */
  seek(f: OpenFileState, offset: number): void {
    if (f.offset === offset) return;
    this.emit({ type: 'file.seek', fileId: f.id, offset }, [['set', ['openFiles', f.id, 'offset'], offset]]);
  }

  /** Set an open file's status flags (fcntl F_SETFL, FIONBIO): event file.setfl. */
  setFileFlags(f: OpenFileState, flags: number): void {
    this.emit({ type: 'file.setfl', fileId: f.id, flags }, [['set', ['openFiles', f.id, 'flags'], flags]]);
  }

  /** A directory's entries as getdents reads them (captured at the first call, forgotten on rewind): event file.dirents. */
  setDirEntries(f: OpenFileState, entries: DirEntry[] | undefined): void {
    this.emit({ type: 'file.dirents', fileId: f.id, count: entries?.length ?? 0 }, [entries ? ['set', ['openFiles', f.id, 'entries'], entries] : ['del', ['openFiles', f.id, 'entries']]]);
  }

  /** Ops setting fields of a task record; an undefined value deletes the field. */
  taskOps(tid: number, fields: Partial<TaskState>): GraphOp[] {
    return Object.entries(fields).map(([k, v]): GraphOp => (v === undefined ? ['del', ['tasks', tid, k]] : ['set', ['tasks', tid, k], v]));
  }

  /** Ops setting fields of a thread group record; an undefined value deletes the field. */
  tgOps(tgid: number, fields: Partial<ThreadGroupState>): GraphOp[] {
    return Object.entries(fields).map(([k, v]): GraphOp => (v === undefined ? ['del', ['threadGroups', tgid, k]] : ['set', ['threadGroups', tgid, k], v]));
  }

  /** Ops that drop signal `sig` from a task's pending set and its siginfo. */
  unpendOps(ts: TaskState, sig: number): GraphOp[] {
    return [['set', ['tasks', ts.tid, 'pendingSignals'], ts.pendingSignals & ~(1n << BigInt(sig - 1))], ['del', ['tasks', ts.tid, 'pendingInfo', sig]]];
  }

  /** Set a task's signal mask (and the mask to restore after a handler, when given): event signal.mask. */
  setSigmask(t: Task, mask: bigint, saved?: bigint | null): void {
    const fields: Partial<TaskState> = { sigmask: mask };
    if (saved !== undefined) (fields as Writable<TaskState>).savedSigmask = saved ?? undefined;
    this.emit({ type: 'signal.mask', tid: t.tid, mask }, this.taskOps(t.tid, fields));
  }

  /** chdir/fchdir: the thread group's working directory (a guest path): event proc.cwd. */
  setCwd(t: Task, path: string): void {
    this.emit({ type: 'proc.cwd', tgid: t.tgid, cwd: path }, [['set', ['threadGroups', t.tgid, 'cwd'], path]]);
  }

  /** Forget an open file that was never installed (its open failed half-way): event file.release. */
  discardFile(id: number): void {
    if (this.state.openFiles[id]) this.emit({ type: 'file.release', fileId: id }, [['del', ['openFiles', id]]]);
  }

  /** A new open file description of kind K (refs 0 until installed; `id` and `refs` are the kernel's to set): event file.open. Returns the graph's record. */
  newOpenFile<I extends OpenFileInit>(init: I): Extract<OpenFileState, { kind: I['kind'] }> {
    const id = this.newId();
    this.emit({ type: 'file.open', fileId: id, kind: init.kind, path: (init as { path?: string }).path ?? '' }, [['set', ['openFiles', id], { offset: 0, ...init, id, refs: 0 }]]);
    return this.state.openFiles[id] as Extract<OpenFileState, { kind: I['kind'] }>;
  }

  /** The file operations of an open file's kind (src/files/registry.ts). */
  fileOps(f: OpenFileState): FileOps {
    return fileOpsOf(f);
  }

  /** The open file behind fd, or SyscallError(EBADF). */
  file(t: Task, fd: number): OpenFileState {
    const e = t.fdTable.fds[fd];
    if (!e) throw new SyscallError(E.EBADF);
    return this.state.openFiles[e.fileId];
  }

  // ---- running ----

  /** Run every task until the sandbox ends (its init process exits). */
  run(): Promise<ExitInfo> {
    this.signals.rearmTimers();
    // Guests blocked forever (pause, a deadlock) must keep the sandbox alive as Linux would,
    // not let Node's event loop drain and exit.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    void this.exited.then(() => clearInterval(keepAlive));
    for (const t of this.tasks.values()) this.startTask(t);
    return this.exited;
  }

  /** Start the run loop of a (new or restored) task. */
  startTask(t: Task): void {
    if (t.state.runState !== 'exited') void this.runTask(t);
  }

  private async gate(t: Task): Promise<void> {
    if (!this.frozen) return;
    this.parked.add(t.tid);
    this.parkChanged$.next();
    while (this.frozen && !this.exitInfo) await firstValueFrom(this.thaw$);
    this.parked.delete(t.tid);
  }

  /**
   * A wake-up stream for blocked syscalls: on each trigger (and on thaw), while the kernel
   * is not frozen, try `attempt`; emit its first defined result. Attempts may change the graph.
   */
  whenRunnable(trigger$: Observable<unknown>, attempt: () => number | undefined): Observable<number> {
    let done = false;
    // Triggers arrive as microtasks: an attempt never runs inside another task's attempt
    // (a reader draining a pipe must not re-enter itself through the writer it wakes).
    return merge(trigger$, this.thaw$).pipe(
      observeOn(asapScheduler),
      filter(() => !done && !this.frozen && !this.exitInfo),
      map(() => attempt()),
      filter((v): v is number => v !== undefined),
      tap(() => { done = true; }),
      take(1),
    );
  }

  /** A task of a stopped thread group waits for SIGCONT (or death); it counts as parked for checkpoints. */
  private async waitWhileStopped(t: Task): Promise<void> {
    this.parked.add(t.tid);
    this.parkChanged$.next();
    while (t.tg.stopped && !this.exitInfo && !isExited(t)) {
      await firstValueFrom(merge(this.signals.continued$, this.interrupt$.pipe(filter(([tid]) => tid === t.tid))));
    }
    this.parked.delete(t.tid);
  }

  /**
   * Faults the kernel resolves itself: a first access to memory never charged (charge and map it,
   * see AddressSpace.handleMissing), a write to a copy-on-write or restored page. true: run the
   * instruction again; 'exited': the task was killed (the OOM killer chose it); false: the
   * guest's own fault. A charge the memory limit refuses without killing the task is SIGBUS.
   */
  private serveFault(t: Task, signo: number, code: number, addr: number): boolean | 'exited' {
    if (signo !== 11) return false;
    this.faulting = t;
    try {
      let r: boolean | 'refused' = false;
      if (code === 1 /* SEGV_MAPERR */) {
        // The same address missing again right after it was mapped is the guest's fault (bounded retries).
        if (t.lastMissing === addr && t.missingRetries++ >= 3) return false;
        if (t.lastMissing !== addr) { t.lastMissing = addr; t.missingRetries = 0; }
        r = t.mm.handleMissing(addr, t.platform);
      } else if (code === 2 /* SEGV_ACCERR */) {
        try {
          r = t.mm.handleWriteFault(addr);
        } catch (e) {
          if (!(e instanceof SyscallError) || e.errno !== E.ENOMEM) throw e;
          r = 'refused';
        }
      }
      if (r !== 'refused') return r;
      if (isExited(t) || this.exitInfo) return 'exited';
      this.signals.forceFault(t, 7 /* SIGBUS */, 2 /* BUS_ADRERR */, addr);
      return true;
    } finally {
      this.faulting = undefined;
    }
  }

  private async runTask(t: Task): Promise<void> {
    let sinceYield = 0;
    try {
      for (;;) {
        // A task whose traps all complete synchronously would keep the event loop to itself
        // (await on a settled promise is only a microtask): let I/O, timers, other tasks'
        // waitpid completions and control requests in every few dozen traps.
        if (++sinceYield >= 32) { sinceYield = 0; await new Promise<void>((r) => setImmediate(r)); }
        if (this.exitInfo || isExited(t)) return;
        await this.gate(t);
        if (this.exitInfo || isExited(t)) return;
        if (t.state.runState === 'syscall') {
          await this.dispatch(t);
          continue;
        }
        if (t.tg.stopped) { await this.waitWhileStopped(t); continue; }
        if (this.signals.deliverPending(t)) continue;
        if (t.tg.stopped || t.state.runState !== 'user') continue;
        this.running.add(t.tid);
        const trap = await t.platform.switch();
        this.running.delete(t.tid);
        if (this.exitInfo || isExited(t)) return;
        t.mm.flush(t.platform);
        if (trap.kind === 'syscall') { t.cpu.runState = 'syscall'; t.cpu.syscallAbi = trap.abi; t.faultRetries = 0; t.lastMissing = -1; }
        else if (trap.kind === 'interrupted') continue;
        else if (trap.kind === 'fault') {
          const served = this.serveFault(t, trap.signo, trap.code, trap.addr);
          if (this.pendingOps.length) this.flushStaged(t.tid, 'fault');
          if (served === 'exited') return;
          if (served) continue;
          // A fault on memory the VMAs allow: the host mapping was stale (another thread's change had
          // not reached this stub yet); it has been applied now, so run the instruction again.
          if (trap.signo === 11 && t.mm.allows(trap.addr, 1) && t.faultRetries++ < 3) continue;
          this.signals.forceFault(t, trap.signo, trap.code, trap.addr);
        } else if (trap.kind === 'signal') {
          this.signals.forceFault(t, trap.signo, 0x80 /* SI_KERNEL */, 0);
        } else if (trap.kind === 'died') {
          this.processes.exitThreadGroup(t.tg, { signal: 9, core: false });
          return;
        }
      }
    } catch (e) {
      if (e instanceof ExitGroup) { this.processes.exitThreadGroup(t.tg, e.info); return; }
      if (e instanceof ExitThread) { this.processes.exitThread(t, e.code); return; }
      if (e instanceof PageSourceError) { this.pageSourceFailed(e); return; }
      this.log(`snapvisor: internal error in task ${t.tid}: ${(e as Error).stack ?? e}`);
      this.processes.exitThreadGroup(t.tg, { signal: 9, core: false });
    }
  }

  /** One syscall: the hook's decision (if a hook was given), then the handler. */
  private async dispatch(t: Task): Promise<void> {
    const decision = this.syscallHook?.(t, t.sysno);
    if (!decision) return this.dispatchSyscall(t);
    if ('result' in decision) return this.dispatchSyscall(t, decision.result);
    const old = t.swapArg(decision.arg, BigInt(decision.value));
    try {
      await this.dispatchSyscall(t);
    } finally {
      if (!isExited(t)) t.swapArg(decision.arg, old); // Linux leaves argument registers as they were
    }
  }

  private dispatchSyscall(t: Task, forced?: number): Promise<void> {
    return t.state.syscallAbi === 'i386' ? this.dispatch32(t, forced) : this.dispatchAs(t, t.sysno, t.sysno, forced);
  }

  /** An `int 0x80` call (the platform said so at the trap): i386 numbers and argument registers. */
  private async dispatch32(t: Task, forced?: number): Promise<void> {
    t.i386 = true;
    try {
      await this.dispatchAs(t, this.syscalls32[t.sysno] ?? -1, t.sysno, forced);
    } finally {
      t.i386 = false;
      if (t.state.runState !== 'syscall') t.cpu.syscallAbi = undefined;
    }
  }

  private async dispatchAs(t: Task, nr: number, callerNr: number, forced?: number): Promise<void> {
    const entry = this.syscalls[nr];
    let r: SyscallResult;
    this.current = t;
    const traced = this.strace ? this.traceArgs(t, nr) : '';
    try {
      if (forced !== undefined) r = forced;
      else if (entry?.handler) r = entry.handler(t);
      else r = nr === -1 ? this.unimplemented32(callerNr) : this.unimplemented(nr);
    } catch (e) {
      t.restoredWaiter = undefined;
      if (e instanceof SyscallError) r = -e.errno;
      else if (e instanceof ExitGroup || e instanceof ExitThread) { this.traceExit(t, nr); throw e; }
      else if (e instanceof PageSourceError) { this.pageSourceFailed(e); r = -E.EIO; }
      else {
        this.log(`snapvisor: internal error in ${SYSCALL_NAME[nr] ?? nr}: ${(e as Error).stack ?? e}`);
        r = -E.EIO;
      }
    }
    // A restored waiter (deadline, progress) applies to the first re-entry of its syscall only.
    t.restoredWaiter = undefined;
    // Changes the handler made in steps (mm: VMAs, memory-file blocks) are this syscall's event.
    if (this.pendingOps.length) this.flushStaged(t.tid, SYSCALL_NAME[nr] ?? String(nr));
    if (typeof r !== 'number') {
      const waiter = r.waiter;
      // A voluntary context switch (getrusage ru_nvcsw), counted with the block.
      this.emit({ type: 'task.block', tid: t.tid, kind: waiter.kind }, [
        ['set', ['tasks', t.tid, 'waiter'], waiter],
        ['set', ['threadGroups', t.tgid, 'nvcsw'], (t.tg.nvcsw ?? 0) + 1],
        ['set', ['tasks', t.tid, 'nvcsw'], (t.state.nvcsw ?? 0) + 1],
      ]);
      this.parked.add(t.tid);
      this.parkChanged$.next();
      let v: number;
      try {
        // A signal may already be waiting: then don't block at all.
        if (waiter.interruptible && this.signals.hasDeliverable(t)) v = INTERRUPTED;
        else v = await firstValueFrom(race(r.result$, this.interrupt$.pipe(filter(([tid]) => tid === t.tid), map(([, why]) => why), take(1))));
      } catch (e) {
        v = e instanceof SyscallError ? -e.errno : -E.EIO;
      }
      this.parked.delete(t.tid);
      if (v === KILLED || this.exitInfo || isExited(t)) return;
      // While a checkpoint is taken the graph must not change: the outcome applies after the gate
      // (a checkpoint taken meanwhile still shows the task in its waiter, and a restore re-enters it).
      await this.gate(t);
      if (this.exitInfo || isExited(t)) return;
      this.current = t; // settle runs as the caller (its credentials, its memory charges)
      if (r.settle) {
        try { v = r.settle(v); } catch (e) { v = e instanceof SyscallError ? -e.errno : -E.EIO; }
      }
      this.emit({ type: 'task.wake', tid: t.tid }, [['del', ['tasks', t.tid, 'waiter']]]);
      t.restoredWaiter = undefined;
      if (v === INTERRUPTED && waiter.kind === 'pipe-write' && waiter.progress) v = waiter.progress; // a partly done write returns its count
      if (v === INTERRUPTED) {
        if (waiter.restartable && this.signals.restartAfterHandler(t)) {
          // Re-execute the syscall instruction once the handler returns (ERESTARTSYS).
          const regs = t.platform.regs;
          regs[REG.rip] -= 2n;
          regs[REG.rax] = regs[REG.orig_rax];
          t.cpu.runState = 'user';
          if (this.strace) this.log(`[${t.tid}] ${SYSCALL_NAME[nr]}(…) = ? ERESTARTSYS`);
          return;
        }
        v = -E.EINTR;
        r.onInterrupt?.();
      }
      r = v;
    }
    if (t.mm.hasDeferred()) {
      // Other threads of this address space must see a mapping change before the caller goes on.
      await firstValueFrom(merge(t.mm.synced$, this.thaw$).pipe(filter(() => !t.mm.hasDeferred() || !!this.exitInfo)), { defaultValue: undefined });
    }
    if (isExited(t)) return;
    if (this.strace) this.traceLine(t, nr, r, traced);
    if (r !== NO_RETURN) t.setReturn(r);
    if (t.state.runState === 'syscall') t.cpu.runState = 'user';
  }

  private unimplemented32(nr: number): number {
    if (!this.reportedUnimplemented.has(-1 - nr)) {
      this.reportedUnimplemented.add(-1 - nr);
      this.log(`snapvisor: i386 syscall ${nr} (int 0x80) is not served: ENOSYS`);
    }
    return -E.ENOSYS;
  }

  private unimplemented(nr: number): number {
    if (!this.reportedUnimplemented.has(nr)) {
      this.reportedUnimplemented.add(nr);
      this.log(`snapvisor: unimplemented syscall ${nr} (${SYSCALL_NAME[nr] ?? '?'}) returns ENOSYS`);
    }
    return -E.ENOSYS;
  }

  /** --strace arguments, read at syscall entry (execve replaces the registers): paths as strings, AT_FDCWD by name. */
  private traceArgs(t: Task, nr: number): string {
    const pathArg = TRACE_PATH_ARGS[SYSCALL_NAME[nr]];
    return [0, 1, 2, 3, 4, 5].slice(0, this.syscalls[nr]?.nargs ?? 3).map((i) => {
      if (i === pathArg && t.arg(i)) {
        try { return JSON.stringify(t.mm.readCString(t.arg(i), 4096)); } catch { /* a bad pointer: print it as a number */ }
      }
      if (pathArg !== undefined && i === pathArg - 1 && t.argInt(i) === -100) return 'AT_FDCWD';
      const v = t.argI64(i);
      return Math.abs(v) < 4096 ? String(v) : '0x' + t.arg(i).toString(16);
    }).join(', ');
  }

  private traceLine(t: Task, nr: number, r: number, args: string): void {
    const name = SYSCALL_NAME[nr] ?? `syscall_${nr}`;
    const res = r === NO_RETURN ? '?' : r < 0 && r > -4096 ? `-1 ${ERRNO_NAME[-r] ?? -r}` : r > 65535 ? '0x' + r.toString(16) : String(r);
    this.log(`[${t.tid}] ${name}(${args}) = ${res}`);
  }
  private traceExit(t: Task, nr: number): void {
    if (this.strace) this.log(`[${t.tid}] ${SYSCALL_NAME[nr]}(${t.argInt(0)}) = ?`);
  }

  log(msg: string): void {
    try { fs.writeSync(this.logFd, msg + '\n'); } catch { /* the log fd is gone: nothing to do */ }
  }

  /**
   * Why a page-file layer filled on first use could not give a page (PageSourceError's line),
   * once that stopped the sandbox; undefined otherwise. The sandbox's runner reports it as its
   * own failure (restore: exit status 125).
   */
  pageSourceFailure?: string;

  /** A page the guest or the kernel needs cannot be had: say so once, and end the sandbox (SIGKILL). */
  private pageSourceFailed(e: PageSourceError): void {
    if (this.pageSourceFailure === undefined) {
      this.pageSourceFailure = e.message;
      this.log(`snapvisor: ${e.message}; stopping the sandbox`);
    }
    this.kill();
  }

  /** Stop the task's host context and forget its runtime (the graph keeps what the caller leaves). */
  detachTask(t: Task, info: ExitInfo = { signal: 9, core: false }): void {
    if (t.state.runState !== 'exited' && this.state.tasks[t.tid] === t.state) {
      this.emit({ type: 'task.exit', tid: t.tid, ...info }, [['set', ['tasks', t.tid, 'runState'], 'exited']]);
    }
    this.running.delete(t.tid);
    this.parked.delete(t.tid);
    t.platform.destroy();
    t.mm.detach(t.platform);
    this.tasks.delete(t.tid);
    if (t.mm.contexts.length) {
      // Another task still runs in this address space: the limits are its process's now.
      for (const o of this.tasks.values()) if (o.mm === t.mm) { this.limitsFrom(o); break; }
    }
    this.interrupt$.next([t.tid, KILLED]);
    this.parkChanged$.next();
  }

  /** The sandbox ends (its init exited or it was killed): every task dies, `run` resolves. */
  endSandbox(info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    for (const t of [...this.tasks.values()]) this.detachTask(t, info);
    this.signals.disarmAll();
    this.flushStaged(0, 'exit');
    this.thaw$.next();
    this.exitResolve(info);
  }

  /**
   * Stop every task at a consistent point (syscall boundary, waiter, or interrupted user code).
   * Gives up after `deadlineMs` (the tasks run on, unfrozen) and throws an Error saying so: a
   * checkpoint request is answered in time whatever the guest does.
   */
  async quiesce(deadlineMs = 15_000): Promise<void> {
    this.frozen = true;
    const allParked = () => [...this.tasks.values()].every((t) => isExited(t) || this.parked.has(t.tid));
    const end = Date.now() + deadlineMs;
    while (!allParked() && !this.exitInfo) {
      for (const tid of this.running) this.tasks.get(tid)?.platform.interrupt();
      const expired = timer(Math.max(0, end - Date.now())).pipe(map(() => 'expired' as const));
      if (await firstValueFrom(race(this.parkChanged$, expired)) === 'expired') {
        const stuck = [...this.tasks.values()].filter((t) => !isExited(t) && !this.parked.has(t.tid)).map((t) => t.tid);
        this.thaw();
        throw new Error(`tasks ${stuck.join(', ')} did not stop within ${deadlineMs / 1000} s`);
      }
    }
  }

  /** Let frozen tasks run again. */
  thaw(): void {
    this.frozen = false;
    this.thaw$.next();
  }

  /**
   * Copy live state into the graph (registers, FP state, clock) and return a deep copy of it
   * plus a view of the memory file's populated ranges. Call between quiesce and thaw.
   * `memory.populated(known)`: the byte ranges that may hold data, sorted, may overlap; spans of
   * `known` (sorted [offset, length], pages whose contents the caller has elsewhere: an
   * incremental checkpoint's inherited pages) are reported as they are where the memfd is
   * charged, without SEEK_DATA/SEEK_HOLE walking their pages.
   * - `runOn` false (a checkpoint that ends the sandbox): pages are read from the live memory
   *   file while the write runs; the guest must stay frozen until then.
   * - `runOn` true (--leave-running): nothing is copied up front but what other processes can
   *   still write (MAP_SHARED mappings, shared files); private pages become copy-on-write and
   *   their blocks are held until `release()`, so the guest can run on at once.
   */
  capture(runOn: boolean): { graph: KernelState; memory: { sizeBytes: number; populated(known?: ReadonlyArray<readonly [number, number]>): Array<[number, number]>; read(off: number, len: number): Uint8Array; readInto(off: number, buf: Uint8Array): void; fd?: number }; held: Array<[number, number]>; release(): void } {
    for (const t of this.tasks.values()) {
      if (t.state.runState === 'exited') continue;
      t.cpu.regs = new Uint8Array(t.platform.regs.buffer.slice(0));
      t.cpu.fpState = t.platform.getFpState();
    }
    // Event checkpoint.taken records the guest's monotonic time in the graph; the dirty set
    // restarts here (the checkpoint holds everything changed so far).
    this.emit({ type: 'checkpoint.taken' }, [['set', ['clock', 'monotonicAtSaveNs'], this.clock.saveValue()]]);
    this.dirty.clear();
    const mf = this.mf;
    const held = new Set<number>();
    const user = -(0x7ff0_0000 + (Kernel.snapshots++ % 0xffff));
    const copies: Array<[number, Uint8Array]> = [];
    /** Private VMAs ([address space id, index]) made copy-on-write only for this snapshot's hold. */
    const heldOnly: Array<[number, number]> = [];
    if (runOn) {
      // MAP_SHARED mappings and shared file blocks stay writable by the running guest: their
      // data runs are copied now (a sparse 6 GiB file mapped MAP_SHARED costs only its
      // populated pages).
      const writable: Array<[number, number]> = [];
      for (const as of this.addressSpaces.values()) {
        as.state.vmas.forEach((v, i) => { if (!(v.flags & MAP_SHARED) && !v.cow) heldOnly.push([as.id, i]); });
        writable.push(...as.holdForSnapshot(user, held));
      }
      for (const ino of Object.values(this.state.fs.inodes)) if (ino.shared) writable.push([ino.shared.offset, ino.shared.capacity]);
      // The page cache's blocks no guest maps now (files mapped and unmapped, an exec's segments
      // of an ended process): host-file bytes, never written in place, held like the mapped ones
      // so that none is freed and reused while the write reads it, and so that a write tracking
      // checkpoint counts them clean (the next one inherits them instead of reading them again).
      for (const b of Object.values(this.state.memoryFile.pageCache ?? {})) {
        if (!held.has(b) && this.state.memoryFile.blocks[b]) { held.add(b); mf.ref(b, user, 1); }
      }
      writable.sort((a, b) => a[0] - b[0]);
      const data = mf.populatedRanges(writable);
      let copiedTo = 0;
      for (const [lo, n] of writable) {
        for (const [off, len] of data) {
          const a = Math.max(lo, off, copiedTo), e = Math.min(lo + n, off + len);
          if (a < e) { copies.push([a, new Uint8Array(mf.read(a, e - a))]); copiedTo = e; }
        }
      }
    }
    copies.sort((a, b) => a[0] - b[0]);
    const graph = structuredClone(this.state) as unknown as DeepWritable<KernelState>; // a copy: prepared directly
    // The hold belongs to the running sandbox, not to the one captured: a restore of this graph
    // owns those blocks alone (no phantom user keeping them alive, no copy on its first writes).
    for (const [id, i] of heldOnly) graph.addressSpaces[id].vmas[i].cow = false;
    for (const b of held) delete graph.memoryFile.blocks[b]?.users[user];
    // CPU time used so far goes with the checkpoint: the restored stubs start from zero.
    for (const tg of Object.values(this.state.threadGroups)) {
      graph.threadGroups[tg.tgid].cpuTimeNs = groupCpuNs(this, tg);
      if (!tg.zombie) {
        const u = groupUsage(this, tg), g = graph.threadGroups[tg.tgid];
        g.usageBase = { ...u, nvcsw: 0 };
        g.forkRssKb = undefined; // the restored stubs start empty: the peak so far is in usageBase
      }
    }
    // Where the memfd may hold data now: its charged units (only those hold data). Searched for
    // the data itself when the writer asks, after the guest runs on (runOn): the held blocks
    // stay as they are until release(), and the rest is read live anyway. A frozen guest's
    // charged units are taken whole when the memfd holds nearly all of them (populatedRanges).
    const charged = mf.chargedRuns();
    let populated: Array<[number, number]> | undefined;
    return {
      graph: graph as unknown as KernelState,
      memory: {
        sizeBytes: this.state.memoryFile.end,
        populated: (known) => {
          if (!known?.length) return populated ??= mf.populatedRanges(charged, !runOn);
          // The charged runs split into spans to search and spans known (reported whole).
          const search: Array<[number, number]> = [], whole: Array<[number, number]> = [];
          let j = 0;
          for (const [lo, n] of charged) {
            for (let a = lo, e = lo + n; a < e;) {
              while (j < known.length && known[j][0] + known[j][1] <= a) j++;
              if (j >= known.length || known[j][0] >= e) { search.push([a, e - a]); break; }
              if (known[j][0] > a) { search.push([a, known[j][0] - a]); a = known[j][0]; }
              const b = Math.min(e, known[j][0] + known[j][1]);
              whole.push([a, b - a]);
              a = b;
            }
          }
          const out = mf.populatedRanges(search);
          out.push(...whole);
          return out.sort((x, y) => x[0] - y[0]);
        },
        read(off: number, len: number): Uint8Array {
          // The live bytes, with every copy taken at capture laid over them.
          let out: Uint8Array | undefined;
          for (const [o, buf] of copies) {
            if (o >= off + len) break;
            if (o + buf.length <= off) continue;
            if (off >= o && off + len <= o + buf.length) return buf.subarray(off - o, off - o + len);
            out ??= new Uint8Array(mf.read(off, len));
            const a = Math.max(o, off), e = Math.min(o + buf.length, off + len);
            out.set(buf.subarray(a - o, e - o), a - off);
          }
          return out ?? mf.read(off, len);
        },
        // Ending the sandbox, with no page file under the memfd: the memfd itself is what
        // readInto reads (the guest stays frozen and the memfd open until the write is done).
        fd: !runOn && mf.backingFds.length === 0 ? mf.fd : undefined,
        readInto(off: number, buf: Uint8Array): void {
          mf.pread(off, buf);
          const end = off + buf.length;
          for (const [o, c] of copies) {
            if (o >= end) break;
            if (o + c.length <= off) continue;
            const a = Math.max(o, off), e = Math.min(o + c.length, end);
            buf.set(c.subarray(a - o, e - o), a - off);
          }
        },
      },
      // Memory-file ranges [offset, length] of the held blocks: unchanged until release().
      held: [...held].map((b) => [b, this.state.memoryFile.blocks[b]?.len ?? 0] as [number, number]).filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]),
      release: () => { for (const b of held) mf.ref(b, user, -1); held.clear(); },
    };
  }
  private static snapshots = 0;

  /**
   * Serve this (restored) kernel's memory from a checkpoint's page files, host fds `fds`
   * (read-only, laid out like the memory file; ownership passes to the memory file): `fds[0]`
   * is the checkpoint's own, the others those it inherits the pages of `inherited` from (runs
   * [offset, length, layer] in bytes, layer k from fds[k - 1]; see MemoryFile.attachPageFiles).
   * Pages are mapped from them and copied into the memory file on first write. Before
   * resumeRestored.
   */
  attachPageFiles(fds: number[], inherited: ReadonlyArray<readonly [number, number, number]> = [], lazy: ReadonlyArray<LazyPageLayer | undefined> = []): void {
    this.mf.attachPageFiles(fds.map((fd) => this.host.mapReadOnlyFile(fd)), inherited, lazy);
  }

  /**
   * Which page-file layer (k ≥ 1, see attachPageFiles) each memory-file page still lives in,
   * 0 for pages in the memfd or nowhere: a copy taken now, for an incremental checkpoint
   * (undefined for a kernel without page files). Call between quiesce and thaw.
   */
  backedLayers(): Uint8Array | undefined { return this.mf.backedLayers(); }

  /**
   * For pages written since they last matched a layer (tracking is by 64 KiB chunk): that layer,
   * per page (0: none), so a checkpoint can compare and still inherit the unchanged ones. A copy.
   */
  formerLayers(): Uint8Array | undefined { return this.mf.formerLayers(); }

  /**
   * The memory-file pages copied since the last call (copy-on-write chunks, see MovedPages),
   * undefined if none. A hint for an incremental checkpoint, which compares each page with its
   * source. Call between quiesce and thaw.
   */
  takeMoves(): MovedPages | undefined { return this.mf.takeMoves(); }

  /**
   * Write tracking for the next incremental checkpoint: the memory-file ranges [offset, length]
   * (page aligned) hold what checkpoint layer `layer` (1–255, the caller's numbering, as
   * backedLayers reports it) stored. They are mapped read-only in every address space until
   * first written (a write fault or a kernel write makes their 64 KiB chunk dirty again).
   * Pages marked in `except` (one byte per page) keep what they are (see MemoryFile.markClean).
   * `remap` false: the caller knows every mapping of them is read-only already (a capture's
   * copy-on-write hold). Call between quiesce and thaw, while the bytes are still the stored ones.
   */
  markClean(ranges: ReadonlyArray<readonly [number, number]>, layer: number, except?: Uint8Array, remap = true): void {
    for (const [off, len] of ranges) {
      this.mf.markClean(off, len, layer, except);
      if (remap) for (const as of this.addressSpaces.values()) as.remapFileRange(off, len);
    }
  }

  /** Pages of memory-file range [off, off+len) clean with layer `from` are clean with layer `to` (see MemoryFile.relabelClean). */
  relabelClean(off: number, len: number, from: number, to: number): void { this.mf.relabelClean(off, len, from, to); }

  /** Stop write tracking (markClean): every page counts as written again. */
  forgetClean(): void { this.mf.forgetClean(); }

  /**
   * At restore, before any task runs: rebuild the runtime part of every open file (its
   * kind's `restore`, e.g. re-open a held host file). Throws Error with one line naming the
   * first that cannot be.
   */
  restoreFiles(): void {
    for (const kind of filePersists) {
      const why = kind.restore?.(this);
      if (why) throw new Error(`cannot restore: ${why}`);
    }
  }

  /** Rebuild tasks from a restored graph whose memory file has been filled. */
  resumeRestored(): void {
    // Each kind of object rebuilds its runtime part, in PERSISTED_KINDS order (tasks last).
    for (const kind of PERSISTED_KINDS) {
      const why = kind.restore?.(this);
      if (why) throw new Error(`cannot restore: ${why}`);
    }
  }

  /**
   * Send `sig` to the foreground process group of the sandbox's terminal (what a terminal
   * driver does for ^C, ^\, ^Z): the group set with TIOCSPGRP, else init's.
   */
  signalForegroundGroup(sig: number): void {
    if (this.exitInfo) return;
    const fg = (this.state.config as { ttyForegroundPgid?: number }).ttyForegroundPgid ?? this.state.threadGroups[1]?.pgid ?? 1;
    for (const tg of Object.values(this.state.threadGroups)) {
      if (tg.pgid === fg && !tg.zombie) this.signals.send(tg.tgid, sig, { signo: sig, code: 0x80 /* SI_KERNEL */ });
    }
  }

  /** Kill the sandbox now (SIGKILL semantics). */
  kill(): void {
    this.endSandbox({ signal: 9, core: false });
  }

  destroy(): void {
    this.destroyed$.next();
    for (const t of this.tasks.values()) t.platform.destroy();
    this.signals.disarmAll();
    this.hostFiles.closeAll();
    this.vfs.lower.close();
    for (const t of this.vfs.trees.values()) t.close();
    this.vfs.trees.clear();
    this.mf.destroy();
  }
}

export { REG };
