/**
 * The kernel: the state graph plus the runtime that executes it.
 *
 * How a syscall flows: platform trap (PlatformTask.switch) → `runTask` sees a syscall
 * → `dispatch` looks the number up in the syscall table (src/syscalls/table.ts) → the
 * handler reads guest memory through the task's AddressSpace (EFAULT on bad pointers),
 * changes the graph, and returns a value, an errno, or a Block (a Waiter record plus an
 * RxJS stream of the result) → the result goes into rax and the task resumes.
 *
 * Checkpoints happen at a quiescent point: `quiesce` freezes every task at a syscall
 * boundary, in a waiter, or interrupted in user code; `capture` then copies registers
 * into the graph and the memory file's pages into a buffer, and the guest may go on.
 */
import fs from 'node:fs';
import { Subject, firstValueFrom, race, filter, map, take } from 'rxjs';
import { E, ERRNO_NAME, SyscallError } from '../errno.js';
import type { Platform } from '../../platforms/platform.js';
import { REG } from '../../platforms/platform.js';
import { AddressSpace } from '../mm/address-space.js';
import { MemoryFile } from '../mm/memory-file.js';
import { Vfs } from '../vfs/vfs.js';
import { procMount } from '../vfs/proc.js';
import { devMount } from '../vfs/dev.js';
import { SYSCALL_TABLE } from '../syscalls/table.js';
import { SYSCALL_NAME } from '../syscalls/numbers.js';
import { Task, SyscallResult } from './task.js';
import { GRAPH_VERSION, KernelState, TaskState, OpenFileState } from './state.js';
import { Clock } from './clock.js';
import { HostFiles } from '../vfs/host-files.js';

/** How a sandbox ended: exit status, or the signal that killed it. */
export type ExitInfo = { code: number } | { signal: number; core: boolean };

/** Thrown by exit/exit_group handlers to end the thread group. */
export class ExitGroup {
  constructor(readonly info: ExitInfo) {}
}

/** Events emitted by structural mutations of the graph (the one door). */
export type KernelEvent =
  | { type: 'fd.installed'; tid: number; fd: number; fileId: number }
  | { type: 'fd.closed'; tid: number; fd: number }
  | { type: 'task.exec'; tid: number; path: string }
  | { type: 'task.exited'; tid: number; info: ExitInfo }
  | { type: 'checkpoint.captured' };

export interface KernelOptions {
  strace?: boolean;
  /** Where --strace lines and kernel warnings go (host fd). */
  logFd?: number;
}

export class Kernel {
  readonly tasks = new Map<number, Task>();
  readonly mf: MemoryFile;
  readonly vfs: Vfs;
  readonly clock: Clock;
  readonly hostFiles: HostFiles;
  readonly events$ = new Subject<KernelEvent>();
  /** Fires when a task must abandon a blocked syscall (kill, exit of the group). */
  readonly abort$ = new Subject<number>();
  private readonly parkChanged$ = new Subject<void>();
  private readonly thaw$ = new Subject<void>();
  private frozen = false;
  private readonly parked = new Set<number>();
  private readonly running = new Set<number>();
  private readonly reportedUnimplemented = new Set<number>();
  private exitResolve!: (e: ExitInfo) => void;
  readonly exited: Promise<ExitInfo>;
  exitInfo?: ExitInfo;
  strace: boolean;
  logFd: number;
  /** The FP state a fresh task starts with (captured from the first stub). */
  initialFpState?: Uint8Array;

  constructor(readonly state: KernelState, readonly platform: Platform, opts: KernelOptions = {}) {
    if (state.graphVersion !== GRAPH_VERSION) throw new Error(`state graph version ${state.graphVersion} is not supported (expected ${GRAPH_VERSION})`);
    this.strace = !!opts.strace;
    this.logFd = opts.logFd ?? 2;
    this.mf = new MemoryFile(state.memoryFile);
    this.clock = new Clock(state.clock);
    this.vfs = new Vfs(state.fs, state.config.rootfs, () => this.newId(), () => this.clock.realtimeNs());
    this.vfs.mounts.push(procMount(this), devMount());
    this.hostFiles = new HostFiles(this);
    this.exited = new Promise((res) => { this.exitResolve = res; });
  }

  /** A fresh, empty graph. */
  static emptyState(rootfs: string, hostname = 'snapvisor'): KernelState {
    return {
      graphVersion: GRAPH_VERSION, nextId: 1, nextPid: 1,
      clock: { monotonicOffsetNs: 0n, monotonicAtSaveNs: 0n },
      memoryFile: { end: 0, free: [] },
      tasks: {}, threadGroups: {}, addressSpaces: {}, fdTables: {}, openFiles: {},
      fs: { upper: {}, inodes: {} },
      config: { rootfs, hostname },
    };
  }

  newId(): number { return this.state.nextId++; }

  /** Create the runtime half of a task from its graph record (new platform context, mappings replayed). */
  attachTask(ts: TaskState, replay: boolean): Task {
    const pt = this.platform.createTask(this.mf.fd);
    if (!this.initialFpState) this.initialFpState = pt.getFpState();
    const mm = new AddressSpace(this.state.addressSpaces[ts.addressSpaceId], this.mf, pt);
    if (replay) mm.replay();
    const t = new Task(this, ts, pt, mm);
    this.tasks.set(ts.tid, t);
    return t;
  }

  // ---- open files and fd tables (the door for fd mutations) ----

  /** Install an open file at the lowest free fd ≥ minFd. Returns the fd, or -EMFILE. */
  installFd(t: Task, fileId: number, cloexec: boolean, minFd = 0): number {
    const fds = t.fdTable.fds;
    const limit = this.fdLimit(t);
    let fd = minFd;
    while (fds[fd] !== undefined) fd++;
    if (fd >= limit) return -E.EMFILE;
    this.installFdAt(t, fd, fileId, cloexec);
    return fd;
  }

  installFdAt(t: Task, fd: number, fileId: number, cloexec: boolean): void {
    const fds = t.fdTable.fds;
    if (fds[fd] !== undefined) this.closeFd(t, fd);
    fds[fd] = { fileId, cloexec };
    this.state.openFiles[fileId].refs++;
    if (this.events$.observed) this.events$.next({ type: 'fd.installed', tid: t.tid, fd, fileId });
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
    delete fds[fd];
    const f = this.state.openFiles[e.fileId];
    if (f && --f.refs <= 0) this.releaseFile(f);
    if (this.events$.observed) this.events$.next({ type: 'fd.closed', tid: t.tid, fd });
    return 0;
  }

  private releaseFile(f: OpenFileState): void {
    this.hostFiles.close(f.id);
    delete this.state.openFiles[f.id];
  }

  /** A new open file description (refs 0 until installed). */
  newOpenFile(init: Omit<OpenFileState, 'id' | 'refs' | 'offset'> & { offset?: number }): OpenFileState {
    const f: OpenFileState = { id: this.newId(), refs: 0, offset: 0, ...init };
    this.state.openFiles[f.id] = f;
    return f;
  }

  /** The open file behind fd, or SyscallError(EBADF). */
  file(t: Task, fd: number): OpenFileState {
    const e = t.fdTable.fds[fd];
    if (!e) throw new SyscallError(E.EBADF);
    return this.state.openFiles[e.fileId];
  }

  // ---- running ----

  /** Run every task until the sandbox exits. */
  run(): Promise<ExitInfo> {
    for (const t of this.tasks.values()) if (t.state.runState !== 'exited') void this.runTask(t);
    return this.exited;
  }

  private async gate(t: Task): Promise<void> {
    if (!this.frozen) return;
    this.parked.add(t.tid);
    this.parkChanged$.next();
    await firstValueFrom(this.thaw$);
    this.parked.delete(t.tid);
  }

  private async runTask(t: Task): Promise<void> {
    try {
      for (;;) {
        if (this.exitInfo) return;
        await this.gate(t);
        if (this.exitInfo) return;
        if (t.state.runState === 'syscall') {
          await this.dispatch(t);
          continue;
        }
        this.running.add(t.tid);
        const trap = await t.platform.switch();
        this.running.delete(t.tid);
        if (this.exitInfo) return;
        if (trap.kind === 'syscall') t.state.runState = 'syscall';
        else if (trap.kind === 'interrupted') continue;
        else if (trap.kind === 'fault' || trap.kind === 'signal') {
          // Signal delivery to guest handlers comes with the signals issue; the default action is death.
          const core = [3, 4, 5, 6, 7, 8, 11, 24, 25, 31].includes(trap.signo);
          this.exitGroup(t, { signal: trap.signo, core });
          return;
        } else if (trap.kind === 'died') {
          this.exitGroup(t, { signal: 9, core: false });
          return;
        }
      }
    } catch (e) {
      this.log(`snapvisor: internal error in task ${t.tid}: ${(e as Error).stack ?? e}`);
      this.exitGroup(t, { signal: 9, core: false });
    }
  }

  private async dispatch(t: Task): Promise<void> {
    const nr = t.sysno;
    const entry = SYSCALL_TABLE[nr];
    let r: SyscallResult;
    try {
      if (entry?.handler) r = entry.handler(t);
      else r = this.unimplemented(t, nr);
    } catch (e) {
      if (e instanceof SyscallError) r = -e.errno;
      else if (e instanceof ExitGroup) { this.traceExit(t, nr); this.exitGroup(t, e.info); return; }
      else {
        this.log(`snapvisor: internal error in ${SYSCALL_NAME[nr] ?? nr}: ${(e as Error).stack ?? e}`);
        r = -E.EIO;
      }
    }
    if (typeof r !== 'number') {
      t.state.waiter = r.waiter;
      this.parked.add(t.tid);
      this.parkChanged$.next();
      let v: number | undefined;
      try {
        v = await firstValueFrom(race(r.result$, this.abort$.pipe(filter((tid) => tid === t.tid || tid === 0), map(() => undefined), take(1))));
      } catch (e) {
        v = e instanceof SyscallError ? -e.errno : -E.EIO;
      }
      this.parked.delete(t.tid);
      if (v === undefined || this.exitInfo) return;
      await this.gate(t);
      t.state.waiter = undefined;
      t.restoredWaiter = undefined;
      r = v;
    }
    if (this.strace) this.traceLine(t, nr, r);
    t.setReturn(r);
    if (t.state.runState === 'syscall') t.state.runState = 'user';
  }

  private unimplemented(t: Task, nr: number): number {
    if (!this.reportedUnimplemented.has(nr)) {
      this.reportedUnimplemented.add(nr);
      this.log(`snapvisor: unimplemented syscall ${nr} (${SYSCALL_NAME[nr] ?? '?'}) returns ENOSYS`);
    }
    void t;
    return -E.ENOSYS;
  }

  private traceLine(t: Task, nr: number, r: number): void {
    const name = SYSCALL_NAME[nr] ?? `syscall_${nr}`;
    const args = [0, 1, 2, 3, 4, 5].slice(0, SYSCALL_TABLE[nr]?.nargs ?? 3).map((i) => {
      const v = t.argI64(i);
      return Math.abs(v) < 4096 ? String(v) : '0x' + t.arg(i).toString(16);
    });
    const res = r < 0 && r > -4096 ? `-1 ${ERRNO_NAME[-r] ?? -r}` : r > 65535 ? '0x' + r.toString(16) : String(r);
    this.log(`[${t.tid}] ${name}(${args.join(', ')}) = ${res}`);
  }
  private traceExit(t: Task, nr: number): void {
    if (this.strace) this.log(`[${t.tid}] ${SYSCALL_NAME[nr]}(${t.argInt(0)}) = ?`);
  }

  log(msg: string): void {
    try { fs.writeSync(this.logFd, msg + '\n'); } catch { /* the log fd is gone: nothing to do */ }
  }

  /** End the sandbox (single thread group for now): all tasks die, the run promise resolves. */
  exitGroup(t: Task, info: ExitInfo): void {
    if (this.exitInfo) return;
    this.exitInfo = info;
    const tg = t.tg;
    tg.exitStatus = 'code' in info ? info.code : 128 + info.signal;
    for (const task of this.tasks.values()) {
      task.state.runState = 'exited';
      task.platform.destroy();
      if (this.events$.observed) this.events$.next({ type: 'task.exited', tid: task.tid, info });
    }
    this.abort$.next(0);
    this.thaw$.next();
    this.exitResolve(info);
  }

  /** Stop every task at a consistent point (syscall boundary, waiter, or interrupted user code). */
  async quiesce(): Promise<void> {
    this.frozen = true;
    for (const tid of this.running) this.tasks.get(tid)?.platform.interrupt();
    const allParked = () => [...this.tasks.values()].every((t) => t.state.runState === 'exited' || this.parked.has(t.tid));
    while (!allParked() && !this.exitInfo) await firstValueFrom(this.parkChanged$);
  }

  /** Let frozen tasks run again. */
  thaw(): void {
    this.frozen = false;
    this.thaw$.next();
  }

  /**
   * Copy live state into the graph (registers, FP state, clock) and return a deep copy
   * of it plus a copy of the memory file's populated ranges. Call between quiesce and thaw.
   */
  capture(): { graph: KernelState; memory: { sizeBytes: number; populated: Array<[number, number]>; read(off: number, len: number): Uint8Array } } {
    for (const t of this.tasks.values()) {
      if (t.state.runState === 'exited') continue;
      t.state.regs = new Uint8Array(t.platform.regs.buffer.slice(0));
      t.state.fpState = t.platform.getFpState();
    }
    this.clock.save();
    const graph = structuredClone(this.state);
    const populated = this.mf.populatedRanges();
    const copies = new Map<number, Uint8Array>();
    for (const [off, len] of populated) copies.set(off, new Uint8Array(this.mf.read(off, len)));
    if (this.events$.observed) this.events$.next({ type: 'checkpoint.captured' });
    return {
      graph,
      memory: {
        sizeBytes: this.state.memoryFile.end,
        populated,
        read(off: number, len: number): Uint8Array {
          for (const [o, buf] of copies) if (off >= o && off + len <= o + buf.length) return buf.subarray(off - o, off - o + len);
          return new Uint8Array(len);
        },
      },
    };
  }

  /** Rebuild tasks from a restored graph whose memory file has been filled. */
  resumeRestored(): void {
    this.clock.restore();
    for (const ts of Object.values(this.state.tasks)) {
      if (ts.runState === 'exited') continue;
      const t = this.attachTask(ts, true);
      t.platform.regs.set(new BigUint64Array(new Uint8Array(ts.regs).buffer));
      if (ts.fpState.length) t.platform.setFpState(ts.fpState);
      if (ts.waiter) t.restoredWaiter = ts.waiter;
    }
  }

  /** Kill the sandbox now (SIGKILL semantics). */
  kill(): void {
    const t = this.tasks.values().next().value;
    if (t) this.exitGroup(t, { signal: 9, core: false });
  }

  destroy(): void {
    for (const t of this.tasks.values()) t.platform.destroy();
    this.hostFiles.closeAll();
    this.mf.destroy();
  }

  /** The registers of a task as a typed view (for the loader). */
  static regsOf(t: Task) { return t.platform.regs; }
}

export { REG };
