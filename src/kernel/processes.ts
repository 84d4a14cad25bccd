/**
 * Process lifecycle: clone/fork/vfork (kernel/fork.c copy_process), exit
 * (kernel/exit.c do_exit, exit_notify, forget_original_parent), and wait4/waitid
 * (kernel/exit.c do_wait). Pids are virtual: the sandbox's first process is pid 1, and
 * when it exits the whole sandbox ends, as a pid namespace does.
 */
import { NO_USAGE, addUsage, groupRssKb, groupUsage } from './cputime.js';
import { Subject } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import { REG } from '../../platforms/platform.js';
import { copyCredentials, credsOf } from './creds.js';
import { checkNproc } from './rlimits.js';
import { inheritedSched, type InheritedSched } from './sched.js';
import { releaseProcessLocks } from '../vfs/locks.js';
import { AddressSpace } from '../mm/address-space.js';
import type { ExitInfo, Kernel } from './kernel.js';
import type { Task } from './task.js';
import type { ThreadGroupState, TaskState } from './state.js';
import type { GraphOp } from './events.js';
import { CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, CLONE_FILES, CLONE_PARENT, CLONE_PARENT_SETTID, CLONE_SETTLS, CLONE_SIGHAND, CLONE_THREAD, CLONE_VFORK, CLONE_VM, SA_NOCLDWAIT, SIGCHLD, SIG_IGN, SI_USER } from '../abi/linux.js';

/** wait status encoding (man 2 wait4: WIFEXITED/WIFSIGNALED/WCOREDUMP). */
export function waitStatus(info: ExitInfo): number {
  return 'code' in info ? (info.code & 0xff) << 8 : (info.signal & 0x7f) | (info.core ? 0x80 : 0);
}

export interface CloneArgs {
  flags: number;
  /** New stack pointer for the child (0 = same as the parent's). */
  stack: number;
  parentTid: number;
  childTid: number;
  tls: number;
  exitSignal: number;
}

export class Processes {
  /** Fires with the tgid of a parent whose child changed state (exit), and on vfork releases. */
  readonly childEvent$ = new Subject<number>();

  constructor(private readonly k: Kernel) {}

  /**
   * clone(2) of a new process (threads come with CLONE_THREAD support). The child gets a
   * copy-on-write copy of the address space, a copy (or with CLONE_FILES, the same) fd
   * table, the signal dispositions, and the parent's registers with rax = 0.
   * Errors: EAGAIN (task limit), EINVAL (unsupported flag combinations).
   */
  clone(parent: Task, a: CloneArgs): number {
    const k = this.k;
    const s = k.state;
    if ((a.flags & CLONE_THREAD) && !(a.flags & CLONE_SIGHAND)) throw new SyscallError(E.EINVAL);
    if ((a.flags & CLONE_SIGHAND) && !(a.flags & CLONE_VM)) throw new SyscallError(E.EINVAL);
    if (k.tasks.size >= k.maxTasks) throw new SyscallError(E.EAGAIN);
    checkNproc(parent); // RLIMIT_NPROC counts threads too, per real uid
    // sched_fork: policy, nice and timer slack carry over (reset-on-fork applied); a deadline task may not fork.
    const sched = inheritedSched(parent.state, parent.tg);
    if (!sched) throw new SyscallError(E.EAGAIN);
    if (a.flags & CLONE_THREAD) return this.cloneThread(parent, a, sched);

    const pid = k.newPid();
    const ptg = parent.tg;
    // Address space: with CLONE_VM (vfork, posix_spawn) the parent's own, shared as by threads
    // (the child's stub maps the same memory-file ranges; the child's stores are the parent's,
    // which posix_spawn's error report relies on); else a copy-on-write copy (dup_mm).
    const shareVm = (a.flags & CLONE_VM) !== 0;
    const asId = shareVm ? parent.state.addressSpaceId : k.newId();
    const ops: GraphOp[] = shareVm ? [] : [['set', ['addressSpaces', asId], AddressSpace.emptyState(asId)]];
    const fdTableId = this.fdTableFor(parent, a.flags, ops);
    const tgs: ThreadGroupState = {
      tgid: pid, ppid: (a.flags & CLONE_PARENT) ? ptg.ppid : ptg.tgid, pgid: ptg.pgid, sid: ptg.sid, tids: [pid],
      sigactions: structuredClone(ptg.sigactions), cwd: ptg.cwd, umask: ptg.umask, rlimits: structuredClone(ptg.rlimits),
      pendingSignals: 0n, uid: ptg.uid, gid: ptg.gid, cred: copyCredentials(credsOf(ptg)), cpuTimeNs: 0n, exitSignal: a.exitSignal,
      // The child's pages are the parent's until copied: its resident set starts at the parent's (dup_mm).
      forkRssKb: groupRssKb(k, ptg),
    };
    const ts: TaskState = {
      tid: pid, tgid: pid, addressSpaceId: asId, fdTableId, regs: new Uint8Array(216), fpState: new Uint8Array(0),
      runState: 'user', sigmask: parent.state.sigmask, clearChildTid: (a.flags & CLONE_CHILD_CLEARTID) ? a.childTid : 0,
      robustList: 0, comm: parent.state.comm, pendingSignals: 0n, pendingInfo: {}, altStack: parent.state.altStack ? { ...parent.state.altStack } : undefined,
      ...sched,
    };
    ops.push(['set', ['threadGroups', pid], tgs], ['set', ['tasks', pid], ts]);
    if (a.flags & CLONE_VFORK) ops.push(['set', ['tasks', parent.tid, 'vforkChild'], pid]);
    k.emit({ type: 'task.fork', tid: pid, parent: parent.tid }, ops);
    let child: Task;
    try {
      child = k.attachTask(s.tasks[pid], shareVm);
      if (!shareVm) parent.mm.forkInto(child.mm);
    } catch (e) {
      this.forget(pid);
      throw e;
    }
    this.startAsChild(parent, child, a);
    k.startTask(child);
    return pid;
  }

  /**
   * A new thread in the caller's thread group: same address space (a new stub maps the
   * same memory-file ranges, so memory is truly shared), same fd table and dispositions,
   * its own registers, TLS, signal mask and pending set.
   */
  private cloneThread(parent: Task, a: CloneArgs, sched: InheritedSched): number {
    const k = this.k;
    const s = k.state;
    const tid = k.newPid();
    const ops: GraphOp[] = [];
    const fdTableId = this.fdTableFor(parent, a.flags, ops);
    const ts: TaskState = {
      tid, tgid: parent.tgid, addressSpaceId: parent.state.addressSpaceId, fdTableId, regs: new Uint8Array(216), fpState: new Uint8Array(0),
      runState: 'user', sigmask: parent.state.sigmask, clearChildTid: (a.flags & CLONE_CHILD_CLEARTID) ? a.childTid : 0,
      robustList: 0, comm: parent.state.comm, pendingSignals: 0n, pendingInfo: {},
      ...sched,
    };
    ops.push(['set', ['tasks', tid], ts], ['set', ['threadGroups', parent.tgid, 'tids'], [...parent.tg.tids, tid]]);
    k.emit({ type: 'task.clone', tid, parent: parent.tid }, ops);
    let child: Task;
    try {
      child = k.attachTask(s.tasks[tid], true);
    } catch (e) {
      this.forget(tid);
      throw e;
    }
    this.startAsChild(parent, child, a);
    k.startTask(child);
    return tid;
  }

  /** exit(2) of one thread; the last thread's exit ends the group with that status. */
  exitThread(t: Task, code: number): void {
    const tg = t.tg;
    if (tg.tids.length <= 1) { this.exitThreadGroup(tg, { code }); return; }
    const k = this.k;
    k.futexes.exitCleanup(t);
    k.detachTask(t, { code });
    k.emit({ type: 'task.update', tid: t.tid, what: 'leaves its thread group' }, [['set', ['threadGroups', tg.tgid, 'tids'], tg.tids.filter((x) => x !== t.tid)]]);
    this.releaseTaskResources(t.state);
    k.emit({ type: 'task.release', tid: t.tid }, [['del', ['tasks', t.tid]]]);
  }

  /**
   * execve in a multi-threaded process (fs/exec.c de_thread): every other thread dies, and
   * the caller takes over the group leader's tid.
   */
  deThread(t: Task): void {
    const k = this.k;
    const s = k.state;
    const tg = t.tg;
    for (const tid of [...tg.tids]) {
      if (tid === t.tid) continue;
      const o = k.tasks.get(tid);
      if (o) k.detachTask(o);
      if (s.tasks[tid]) {
        if (s.tasks[tid].runState !== 'exited') k.emit({ type: 'task.exit', tid, signal: 9 }, [['set', ['tasks', tid, 'runState'], 'exited']]);
        this.releaseTaskResources(s.tasks[tid]);
        k.emit({ type: 'task.release', tid }, [['del', ['tasks', tid]]]);
      }
    }
    k.emit({ type: 'task.update', tid: t.tid, what: 'de_thread' }, [['set', ['threadGroups', tg.tgid, 'tids'], [t.tid]]]);
    if (t.tid !== tg.tgid) {
      // The caller takes over the leader's tid: its record moves (the runtime Task keeps its object).
      const old = t.tid;
      k.emit({ type: 'task.update', tid: tg.tgid, what: `takes over tid ${old}` }, [
        ['set', ['tasks', tg.tgid], { ...t.state, tid: tg.tgid }], ['del', ['tasks', old]], ['set', ['threadGroups', tg.tgid, 'tids'], [tg.tgid]],
      ]);
      k.tasks.delete(old);
      t.rebind(s.tasks[tg.tgid]);
      k.tasks.set(tg.tgid, t);
    }
  }

  /**
   * exec_mmap's side for a task whose address space another process shares (a CLONE_VM child:
   * vfork, posix_spawn): the task moves to a new, empty address space and the old one stays with
   * the others, whose memory the exec must not touch. Its stub drops the old image's host
   * mappings (here only). Nothing to do when no other live task of another process shares it
   * (the caller's own other threads are gone by now: de_thread runs first).
   */
  unshareAddressSpace(t: Task): void {
    const k = this.k;
    const oldId = t.state.addressSpaceId;
    if (!Object.values(k.state.tasks).some((o) => o.tid !== t.tid && o.runState !== 'exited' && o.addressSpaceId === oldId)) return;
    const old = t.mm;
    const asId = k.newId();
    k.emit({ type: 'mm.change', tid: t.tid, cause: 'exec leaves a shared address space' }, [
      ['set', ['addressSpaces', asId], AddressSpace.emptyState(asId)],
      ['set', ['tasks', t.tid, 'addressSpaceId'], asId],
    ]);
    for (const v of old.state.vmas) t.platform.unmap(v.start, v.end - v.start);
    old.detach(t.platform);
    k.bindAddressSpace(t, k.addressSpace(asId));
  }

  /**
   * The new task resumes where the parent made the clone call, with rax = 0, the stack and
   * TLS the caller gave, the parent's FP state, and the tid stored where clone was asked to.
   */
  private startAsChild(parent: Task, child: Task, a: CloneArgs): void {
    const regs = child.platform.regs;
    regs.set(parent.platform.regs);
    regs[REG.rax] = 0n;
    regs[REG.orig_rax] = 0xffffffffffffffffn;
    if (a.stack) regs[REG.rsp] = BigInt(a.stack);
    if (a.flags & CLONE_SETTLS) regs[REG.fs_base] = BigInt(a.tls);
    child.platform.setFpState(parent.platform.getFpState());
    if (a.flags & CLONE_PARENT_SETTID) parent.mm.writeU32(a.parentTid, child.tid);
    if (a.flags & CLONE_CHILD_SETTID) child.mm.writeU32(a.childTid, child.tid);
  }

  /** The fd table for a new task: the parent's own with CLONE_FILES, else a copy sharing its open files. */
  private fdTableFor(parent: Task, flags: number, ops: GraphOp[]): number {
    if (flags & CLONE_FILES) return parent.state.fdTableId;
    const k = this.k;
    const id = k.newId();
    const fds = parent.fdTable.fds;
    const refs = new Map<number, number>();
    for (const e of Object.values(fds)) refs.set(e.fileId, (refs.get(e.fileId) ?? k.state.openFiles[e.fileId].refs) + 1);
    for (const [fileId, n] of refs) ops.push(['set', ['openFiles', fileId, 'refs'], n]);
    ops.push(['set', ['fdTables', id], { id, fds }]);
    return id;
  }

  /** Undo a half-made child (its stub failed to start). */
  private forget(pid: number): void {
    const s = this.k.state;
    const ts = s.tasks[pid];
    if (!ts) return;
    const t = this.k.tasks.get(pid);
    if (t) this.k.detachTask(t);
    const tg = s.threadGroups[ts.tgid];
    this.releaseTaskResources(ts);
    this.k.emit({ type: 'task.release', tid: pid }, [
      ['del', ['tasks', pid]],
      ...(ts.tgid === pid ? [['del', ['threadGroups', pid]] as GraphOp] : tg ? [['set', ['threadGroups', tg.tgid, 'tids'], tg.tids.filter((x) => x !== pid)] as GraphOp] : []),
    ]);
  }

  /** The vfork parent may go on once its child has exec'd or exited. */
  releaseVforkParent(child: Task): void {
    const ptg = this.k.state.threadGroups[child.tg.ppid];
    for (const tid of ptg?.tids ?? []) {
      const ts = this.k.state.tasks[tid];
      if (ts?.vforkChild === child.tid) {
        this.k.emit({ type: 'task.update', tid, what: 'vfork child released' }, [['del', ['tasks', tid, 'vforkChild']]]);
        this.childEvent$.next(ptg.tgid);
      }
    }
  }

  /**
   * The thread group ends (exit_group, a fatal signal, SIGKILL): its tasks stop, its
   * memory and files are released, children go to init, and the parent is notified
   * (SIGCHLD + wait). When init (pid 1) ends, the sandbox ends.
   */
  exitThreadGroup(tg: ThreadGroupState, info: ExitInfo): void {
    const k = this.k;
    const s = k.state;
    if (tg.zombie || k.exitInfo) return;
    k.emit({ type: 'proc.update', tgid: tg.tgid, what: 'exitUsage' }, [['set', ['threadGroups', tg.tgid, 'exitUsage'], groupUsage(k, tg)]]); // before the stubs go: the parent's wait collects it
    for (const tid of [...tg.tids]) {
      const t = k.tasks.get(tid);
      if (t) {
        this.releaseVforkParent(t);
        k.detachTask(t, info);
      }
      const ts = s.tasks[tid];
      if (ts) {
        if (ts.runState !== 'exited') k.emit({ type: 'task.exit', tid, ...info }, [['set', ['tasks', tid, 'runState'], 'exited']]);
        this.releaseTaskResources(ts);
        k.emit({ type: 'task.release', tid }, [['del', ['tasks', tid]]]);
      }
    }
    k.signals.disarm(tg.tgid);
    k.emit({ type: 'task.zombie', tid: tg.tgid, waitStatus: waitStatus(info), ...info }, [
      ['set', ['threadGroups', tg.tgid, 'tids'], []],
      ['del', ['threadGroups', tg.tgid, 'itimerReal']],
      ['set', ['threadGroups', tg.tgid, 'zombie'], true],
      ['set', ['threadGroups', tg.tgid, 'waitStatus'], waitStatus(info)],
    ]);
    releaseProcessLocks(k, tg.tgid);
    if (tg.tgid === 1) { k.endSandbox(info); return; }
    // Orphans are adopted by the nearest live child subreaper among the ancestors, else by init
    // (kernel/exit.c forget_original_parent, find_new_reaper); a PR_SET_PDEATHSIG child gets its signal.
    const reaper = this.newReaper(tg);
    for (const c of Object.values(s.threadGroups)) {
      if (c.ppid === tg.tgid) {
        k.emit({ type: 'task.reparent', tid: c.tgid, parent: reaper }, [['set', ['threadGroups', c.tgid, 'ppid'], reaper]]);
        if (c.parentDeathSignal && !c.zombie) k.signals.send(c.tgid, c.parentDeathSignal, { signo: c.parentDeathSignal, code: SI_USER, pid: tg.tgid, uid: tg.uid });
        if (c.zombie) this.childEvent$.next(reaper);
      }
    }
    const parent = s.threadGroups[tg.ppid];
    if (!parent || parent.zombie) { k.emit({ type: 'task.reap', tid: tg.tgid, by: 0 }, [['del', ['threadGroups', tg.tgid]]]); return; }
    const act = parent.sigactions[SIGCHLD];
    if (tg.exitSignal === SIGCHLD && (act?.handler === SIG_IGN || (act && act.flags & SA_NOCLDWAIT))) {
      k.emit({ type: 'task.reap', tid: tg.tgid, by: 0 }, [['del', ['threadGroups', tg.tgid]]]); // auto-reaped
    } else if (tg.exitSignal > 0) {
      const code = 'code' in info ? CLD_EXITED : info.core ? CLD_DUMPED : CLD_KILLED;
      k.signals.send(parent.tgid, tg.exitSignal, { signo: tg.exitSignal, code, pid: tg.tgid, uid: tg.uid, status: 'code' in info ? info.code : info.signal });
    }
    this.childEvent$.next(parent.tgid);
  }

  /** The process that adopts an exiting process's children: the nearest live ancestor marked PR_SET_CHILD_SUBREAPER, else init (1). */
  private newReaper(tg: ThreadGroupState): number {
    const s = this.k.state;
    for (let a = s.threadGroups[tg.ppid], hops = 0; a && hops < 100_000; a = s.threadGroups[a.ppid], hops++) {
      if (a.childSubreaper && !a.zombie) return a.tgid;
      if (a.tgid === 1 || a.ppid === a.tgid) break;
    }
    return 1;
  }

  /** Address space and fd table of an exiting task, when no other task uses them. */
  private releaseTaskResources(ts: TaskState): void {
    const k = this.k;
    const s = k.state;
    const others = Object.values(s.tasks).filter((o) => o.tid !== ts.tid && o.runState !== 'exited');
    if (!others.some((o) => o.addressSpaceId === ts.addressSpaceId)) {
      const as = k.addressSpaces.get(ts.addressSpaceId);
      if (as) as.release();
      k.addressSpaces.delete(ts.addressSpaceId);
      if (s.addressSpaces[ts.addressSpaceId]) k.emit({ type: 'mm.release', addressSpace: ts.addressSpaceId }, [['del', ['addressSpaces', ts.addressSpaceId]]]);
    }
    if (!others.some((o) => o.fdTableId === ts.fdTableId)) {
      const table = s.fdTables[ts.fdTableId];
      if (table) {
        for (const [fd, e] of Object.entries(table.fds)) {
          k.emit({ type: 'fd.close', tid: ts.tid, fd: Number(fd), fileId: e.fileId }, [['del', ['fdTables', ts.fdTableId, 'fds', fd]]]);
          k.unrefFile(e.fileId);
        }
        k.emit({ type: 'fd.table.release', fdTable: ts.fdTableId }, [['del', ['fdTables', ts.fdTableId]]]);
      }
    }
  }

  /**
   * One attempt of wait4/waitid for `caller`: the pid of a reaped (or, with WNOWAIT, seen)
   * zombie child matching `match`, 0 if children exist but none has exited, -ECHILD if none match.
   */
  tryWait(caller: Task, match: (c: ThreadGroupState) => boolean, noWait: boolean, report: (c: ThreadGroupState, status: number) => void, opts: { exited?: boolean; stopped?: boolean; continued?: boolean } = { exited: true }): number {
    const s = this.k.state;
    let any = false;
    for (const c of Object.values(s.threadGroups)) {
      if (c.ppid !== caller.tgid || !match(c)) continue;
      any = true;
      if (c.zombie && opts.exited !== false) {
        report(c, c.waitStatus ?? 0);
        if (!noWait) {
          // RUSAGE_CHILDREN: the child's own use and that of the children it waited for.
          const ptg = s.threadGroups[caller.tgid];
          this.k.emit({ type: 'task.reap', tid: c.tgid, by: caller.tid }, [
            ['set', ['threadGroups', ptg.tgid, 'childUsage'], addUsage(ptg.childUsage ?? NO_USAGE, addUsage(c.exitUsage ?? NO_USAGE, c.childUsage ?? NO_USAGE))],
            ['del', ['threadGroups', c.tgid]],
          ]);
        }
        return c.tgid;
      }
      if (!c.zombie && opts.stopped && c.stopReport === 'stopped' && c.stopped) {
        report(c, ((c.stopSignal ?? 19) << 8) | 0x7f);
        if (!noWait) this.k.emit({ type: 'task.update', tid: c.tgid, what: 'stop reported' }, [['del', ['threadGroups', c.tgid, 'stopReport']]]);
        return c.tgid;
      }
      if (!c.zombie && opts.continued && c.stopReport === 'continued') {
        report(c, 0xffff);
        if (!noWait) this.k.emit({ type: 'task.update', tid: c.tgid, what: 'continue reported' }, [['del', ['threadGroups', c.tgid, 'stopReport']]]);
        return c.tgid;
      }
    }
    return any ? 0 : -E.ECHILD;
  }
}
