/**
 * Signals: sending (kernel/signal.c send_signal, complete_signal), delivery to guest
 * handlers with an x86-64 rt_sigframe (arch/x86/kernel/signal.c setup_rt_frame,
 * signal_64.c), rt_sigreturn, default actions (man 7 signal), and ITIMER_REAL/alarm.
 *
 * Pending signals and dispositions are data in the graph; timers are re-armed from
 * their deadlines on restore.
 */
import { Subject, Subscription, interval } from 'rxjs';
import { untilMonotonic } from './deadline.js';
import type { GraphOp } from './events.js';
import { groupCpuNs } from './cputime.js';
import { SyscallError } from '../errno.js';
import { REG } from '../../platforms/platform.js';
import type { Kernel } from './kernel.js';
import { INTERRUPTED } from './task.js';
import type { Task } from './task.js';
import type { SigInfo, ThreadGroupState } from './state.js';
import { CLD_CONTINUED, CLD_STOPPED, SA_NOCLDSTOP, SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SIGABRT, SIGALRM, SIGBUS, SIGCHLD, SIGCONT, SIGFPE, SIGILL, SIGINFO_SIZE, SIGKILL, SIGQUIT, SIGSEGV, SIGSTOP, SIGSYS, SIGTRAP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH, SIG_IGN, SI_KERNEL, SI_TIMER, SI_USER, SS_DISABLE, SS_ONSTACK, UCONTEXT_SIZE, UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS } from '../abi/linux.js';

/** Default action "ignore" (man 7 signal). */
const DEFAULT_IGNORE = new Set([SIGCHLD, SIGCONT, SIGURG, SIGWINCH]);
/** Default action "stop": job control stops are not modelled yet, so they are ignored. */
const DEFAULT_STOP = new Set([SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]);
/** Default action "core": terminate with the core bit in the wait status. */
const DEFAULT_CORE = new Set([SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, 24, 25, SIGSYS]);
/** Synchronous (fault) signals are delivered before others (kernel/signal.c SYNCHRONOUS_MASK). */
const SYNCHRONOUS = [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS];

export const sigbit = (sig: number): bigint => 1n << BigInt(sig - 1);
const UNBLOCKABLE = sigbit(SIGKILL) | sigbit(SIGSTOP);

/** sigcontext register order (struct sigcontext_64) as user_regs_struct indices. */
const SIGCONTEXT_REGS = [REG.r8, REG.r9, REG.r10, REG.r11, REG.r12, REG.r13, REG.r14, REG.r15, REG.rdi, REG.rsi, REG.rbp, REG.rbx, REG.rdx, REG.rax, REG.rcx, REG.rsp, REG.rip, REG.eflags];

export class Signals {
  private readonly timers = new Map<number, Subscription>();

  constructor(private readonly k: Kernel) {}

  private action(tg: ThreadGroupState, sig: number) {
    return tg.sigactions[sig];
  }

  /** Would `sig` be dropped at once (ignored and not blocked)? (kernel/signal.c sig_ignored) */
  private ignored(tg: ThreadGroupState, sig: number, blocked: boolean): boolean {
    if (blocked) return false;
    const act = this.action(tg, sig);
    if (act?.handler === SIG_IGN) return true;
    return !act && DEFAULT_IGNORE.has(sig);
  }

  /**
   * Send `sig` to a thread group (kill) or one thread (tgkill). SIGKILL ends the group at
   * once; otherwise the signal is made pending on a thread that doesn't block it, and that
   * thread is woken (its blocking syscall interrupted, or its guest code interrupted).
   */
  send(tgid: number, sig: number, info: SigInfo, tid?: number): void {
    const k = this.k;
    const tg = k.state.threadGroups[tgid];
    if (!tg || tg.zombie || sig === 0) return;
    if (sig === SIGKILL) { k.processes.exitThreadGroup(tg, { signal: SIGKILL, core: false }); return; }
    // SIGCONT resumes a stopped group whatever its disposition, and cancels pending stops;
    // a stop signal cancels a pending SIGCONT (kernel/signal.c prepare_signal).
    if (sig === SIGCONT) {
      for (const s of DEFAULT_STOP) flushPending(k, tg, s);
      if (tg.stopped) this.continueGroup(tg);
    } else if (DEFAULT_STOP.has(sig)) {
      flushPending(k, tg, SIGCONT);
    }
    const tids = tid ? [tid] : tg.tids;
    const free = tids.map((t) => k.state.tasks[t]).find((ts) => ts && !(ts.sigmask & sigbit(sig)));
    if (!tid && !free) {
      // Sent to the process and blocked by every thread: shared pending (complete_signal finds no taker).
      if (this.ignored(tg, sig, true)) return;
      const ops: GraphOp[] = [['set', ['threadGroups', tgid, 'pendingSignals'], tg.pendingSignals | sigbit(sig)]];
      if (!tg.pendingInfo) ops.push(['set', ['threadGroups', tgid, 'pendingInfo'], {}]);
      if (!tg.pendingInfo?.[sig] || sig >= 32) ops.push(['set', ['threadGroups', tgid, 'pendingInfo', sig], info]);
      k.emit({ type: 'signal.send', tid: tg.tids[0], sig, shared: true }, ops);
      this.queued$.next(tg.tids[0]);
      return;
    }
    const target = free ?? k.state.tasks[tids[0]];
    if (!target) return;
    // A signal rt_sigtimedwait unblocked while it waits still counts as blocked here (Linux's real_blocked).
    const realBlocked = target.waiter?.kind === 'sigtimedwait' ? target.waiter.savedMask : 0n;
    if (this.ignored(tg, sig, !!((target.sigmask | realBlocked) & sigbit(sig)))) return;
    k.emit({ type: 'signal.send', tid: target.tid, sig }, [
      ['set', ['tasks', target.tid, 'pendingSignals'], target.pendingSignals | sigbit(sig)],
      ...(!target.pendingInfo[sig] || sig >= 32 ? [['set', ['tasks', target.tid, 'pendingInfo', sig], info] as GraphOp] : []),
    ]);
    this.queued$.next(target.tid);
    if (target.sigmask & sigbit(sig)) return;
    this.wake(target.tid);
  }

  /** Make a task notice a deliverable signal: interrupt its wait, or its guest code. */
  wake(tid: number): void {
    const ts = this.k.state.tasks[tid];
    const t = this.k.tasks.get(tid);
    if (!ts || !t) return;
    if (ts.waiter) {
      if (ts.waiter.interruptible) this.k.interrupt$.next([tid, INTERRUPTED]);
    } else t.platform.interrupt();
  }

  /** Whether a signal is pending (on the thread or shared by its process) and not blocked. */
  hasDeliverable(t: Task): boolean {
    return ((t.state.pendingSignals | t.tg.pendingSignals) & ~t.state.sigmask) !== 0n;
  }

  private nextDeliverable(t: Task): number {
    const ready = (t.state.pendingSignals | t.tg.pendingSignals) & ~t.state.sigmask;
    if (!ready) return 0;
    for (const s of SYNCHRONOUS) if (ready & sigbit(s)) return s;
    for (let s = 1; s <= 64; s++) if (ready & sigbit(s)) return s;
    return 0;
  }

  /** After an interrupted restartable syscall: restart it (SA_RESTART handler next) or fail with EINTR. */
  restartAfterHandler(t: Task): boolean {
    const sig = this.nextDeliverable(t);
    if (!sig) return true; // the signal went away (ignored meanwhile): just restart
    const act = this.action(t.tg, sig);
    return !!act && act.handler > SIG_IGN && !!(act.flags & SA_RESTART);
  }

  /**
   * Deliver pending signals before the task returns to guest code (arch/x86 handle_signal).
   * Returns true if the task no longer runs this image (killed).
   */
  deliverPending(t: Task): boolean {
    for (;;) {
      const sig = this.nextDeliverable(t);
      if (!sig) {
        if (t.state.savedSigmask !== undefined) this.k.setSigmask(t, t.state.savedSigmask, null);
        return false;
      }
      const info = takePending(this.k, t, sig, 'signal.deliver') ?? { signo: sig, code: SI_KERNEL };
      const tg = t.tg;
      const act = this.action(tg, sig);
      if (act?.handler === SIG_IGN) continue;
      if (!act) {
        if (DEFAULT_IGNORE.has(sig)) continue;
        if (DEFAULT_STOP.has(sig)) { this.stopGroup(tg, sig); return false; }
        this.k.processes.exitThreadGroup(tg, { signal: sig, core: DEFAULT_CORE.has(sig) });
        return true;
      }
      try {
        this.setupFrame(t, sig, info, act);
      } catch (e) {
        if (!(e instanceof SyscallError)) throw e;
        // The frame could not be written (bad stack): the task dies of SIGSEGV (force_sigsegv).
        this.k.processes.exitThreadGroup(tg, { signal: SIGSEGV, core: true });
        return true;
      }
      const mask = act.mask | (act.flags & SA_NODEFER ? 0n : sigbit(sig));
      this.k.emit({ type: 'signal.handle', tid: t.tid, sig, handler: act.handler }, [
        ...this.k.taskOps(t.tid, { sigmask: (t.state.sigmask | mask) & ~UNBLOCKABLE, savedSigmask: undefined }),
        ...(act.flags & SA_RESETHAND ? [['del', ['threadGroups', tg.tgid, 'sigactions', sig]] as GraphOp] : []),
      ]);
      return false;
    }
  }

  /** Fires with a tid when a signal has been made pending on that thread (signalfd readers and pollers re-check). */
  readonly queued$ = new Subject<number>();

  /** Fires with a tgid when a stopped thread group is continued. */
  readonly continued$ = new Subject<number>();

  /** Default action "stop" (job control): every thread of the group stops; the parent hears of it. */
  stopGroup(tg: ThreadGroupState, sig: number): void {
    const k = this.k;
    k.emit({ type: 'task.stop', tid: tg.tgid, sig }, k.tgOps(tg.tgid, { stopped: true, stopSignal: sig, stopReport: 'stopped' }));
    for (const tid of tg.tids) k.tasks.get(tid)?.platform.interrupt();
    this.notifyParent(tg, CLD_STOPPED, sig);
  }

  /** SIGCONT on a stopped group. */
  continueGroup(tg: ThreadGroupState): void {
    this.k.emit({ type: 'task.continue', tid: tg.tgid }, this.k.tgOps(tg.tgid, { stopped: false, stopReport: 'continued' }));
    this.continued$.next(tg.tgid);
    this.notifyParent(tg, CLD_CONTINUED, SIGCONT);
  }

  private notifyParent(tg: ThreadGroupState, code: number, status: number): void {
    const parent = this.k.state.threadGroups[tg.ppid];
    if (!parent || parent.zombie) return;
    const act = parent.sigactions[SIGCHLD];
    if (!(act && act.flags & SA_NOCLDSTOP)) this.send(parent.tgid, SIGCHLD, { signo: SIGCHLD, code, pid: tg.tgid, uid: tg.uid, status });
    this.k.processes.childEvent$.next(parent.tgid);
  }

  /** A synchronous fault in guest code: deliver it to a handler, or kill with the default action. */
  forceFault(t: Task, sig: number, code: number, addr: number): void {
    const act = this.action(t.tg, sig);
    const blocked = !!(t.state.sigmask & sigbit(sig));
    if (!act || act.handler === SIG_IGN || blocked) {
      // force_sig_info: an ignored or blocked fault signal still kills.
      this.k.processes.exitThreadGroup(t.tg, { signal: sig, core: DEFAULT_CORE.has(sig) });
      return;
    }
    this.k.emit({ type: 'signal.send', tid: t.tid, sig }, [
      ['set', ['tasks', t.tid, 'pendingSignals'], t.state.pendingSignals | sigbit(sig)],
      ['set', ['tasks', t.tid, 'pendingInfo', sig], { signo: sig, code, addr }],
    ]);
  }

  /** Build the rt_sigframe on the guest stack and point the registers at the handler. */
  private setupFrame(t: Task, sig: number, info: SigInfo, act: { handler: number; flags: number; restorer: number; mask: bigint }): void {
    const regs = t.platform.regs;
    const mm = t.mm;
    const fp = t.platform.getFpState();
    const rsp = Number(regs[REG.rsp]);
    const alt = t.state.altStack;
    const onAlt = !!alt && alt.flags !== SS_DISABLE && rsp > alt.sp && rsp <= alt.sp + alt.size;
    let sp = (act.flags & SA_ONSTACK) && alt && alt.flags !== SS_DISABLE && !onAlt ? alt.sp + alt.size : rsp - 128; // skip the red zone
    sp = Math.floor((sp - fp.length) / 64) * 64; // fpstate, 64-byte aligned for XRSTOR
    const fpAddr = sp;
    let frame = sp - (8 + UCONTEXT_SIZE + SIGINFO_SIZE);
    frame = Math.floor(frame / 16) * 16 - 8; // as if called: (frame + 8) % 16 == 0
    const buf = new Uint8Array(8 + UCONTEXT_SIZE + SIGINFO_SIZE);
    const v = new DataView(buf.buffer);
    v.setBigUint64(0, BigInt(act.restorer), true);          // pretcode
    const uc = 8;
    v.setBigUint64(uc, BigInt(UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS), true);
    v.setBigUint64(uc + 8, 0n, true);                        // uc_link
    v.setBigUint64(uc + 16, BigInt(alt?.sp ?? 0), true);     // uc_stack
    v.setInt32(uc + 24, alt ? (onAlt ? SS_ONSTACK : alt.flags) : SS_DISABLE, true);
    v.setBigUint64(uc + 32, BigInt(alt?.size ?? 0), true);
    const mc = uc + 40;                                      // uc_mcontext (struct sigcontext)
    SIGCONTEXT_REGS.forEach((r, i) => v.setBigUint64(mc + i * 8, regs[r], true));
    v.setUint16(mc + 144, Number(regs[REG.cs]), true);
    v.setUint16(mc + 150, Number(regs[REG.ss]), true);
    v.setBigUint64(mc + 160, BigInt(info.signo === SIGSEGV ? 4 : 0), true);  // err
    v.setBigUint64(mc + 168, BigInt(info.signo === SIGSEGV ? 14 : 0), true); // trapno (#PF)
    v.setBigUint64(mc + 176, t.state.sigmask & 0xffffffffn, true);           // oldmask
    v.setBigUint64(mc + 184, BigInt(info.addr ?? 0), true);                   // cr2
    v.setBigUint64(mc + 192, BigInt(fpAddr), true);                           // fpstate
    v.setBigUint64(uc + 296, t.state.savedSigmask ?? t.state.sigmask, true); // uc_sigmask
    buf.set(encodeSiginfo(info), 8 + UCONTEXT_SIZE);
    mm.write(fpAddr, fp);
    mm.write(frame, buf);
    regs[REG.rsp] = BigInt(frame);
    regs[REG.rip] = BigInt(act.handler);
    regs[REG.rdi] = BigInt(sig);
    regs[REG.rsi] = BigInt(frame + 8 + UCONTEXT_SIZE);
    regs[REG.rdx] = BigInt(frame + 8);
    regs[REG.rax] = 0n;
    regs[REG.eflags] &= ~0x40500n; // clear DF, TF, AC as the kernel does
    regs[REG.orig_rax] = 0xffffffffffffffffn;
  }

  /** rt_sigreturn(2): restore registers, FP state, mask and altstack from the frame at rsp. */
  sigreturn(t: Task): void {
    const regs = t.platform.regs;
    const uc = Number(regs[REG.rsp]);
    const b = t.mm.read(uc, UCONTEXT_SIZE);
    const v = new DataView(b.buffer, b.byteOffset, UCONTEXT_SIZE);
    const mc = 40;
    SIGCONTEXT_REGS.forEach((r, i) => { regs[r] = v.getBigUint64(mc + i * 8, true); });
    regs[REG.eflags] = (regs[REG.eflags] & 0x2ffdd5n) | 0x202n; // user-settable flags only (FIX_EFLAGS), IF on
    const fpAddr = Number(v.getBigUint64(mc + 192, true));
    if (fpAddr) {
      const size = t.platform.getFpState().length;
      t.platform.setFpState(new Uint8Array(t.mm.read(fpAddr, size)));
    }
    this.k.emit({ type: 'signal.return', tid: t.tid }, this.k.taskOps(t.tid, { sigmask: v.getBigUint64(296, true) & ~UNBLOCKABLE }));
    regs[REG.orig_rax] = 0xffffffffffffffffn; // no syscall restart on the way out
  }

  // ---- ITIMER_REAL / alarm ----

  /** (Re)arm the real-time interval timer of a thread group from its graph record. */
  armItimer(tg: ThreadGroupState): void {
    this.timers.get(tg.tgid)?.unsubscribe();
    this.timers.delete(tg.tgid);
    const it = tg.itimerReal;
    if (!it) return;
    const sub = untilMonotonic(this.k.clock, it.deadlineNs).subscribe(() => this.fireItimer(tg.tgid));
    this.timers.set(tg.tgid, sub);
  }

  private fireItimer(tgid: number): void {
    const tg = this.k.state.threadGroups[tgid];
    if (!tg?.itimerReal || tg.zombie) return;
    if (this.k.frozen) { // don't touch the graph while a checkpoint is being taken
      const sub = this.k.thaw$.subscribe(() => { sub.unsubscribe(); this.fireItimer(tgid); });
      return;
    }
    const it = tg.itimerReal;
    if (it.intervalNs > 0n) {
      this.k.emit({ type: 'timer.fire', tgid, timer: 'real' }, [['set', ['threadGroups', tgid, 'itimerReal', 'deadlineNs'], it.deadlineNs + it.intervalNs]]);
      this.armItimer(tg);
    } else {
      this.k.emit({ type: 'timer.fire', tgid, timer: 'real' }, [['del', ['threadGroups', tgid, 'itimerReal']]]);
      this.timers.delete(tgid);
    }
    this.send(tgid, SIGALRM, { signo: SIGALRM, code: SI_KERNEL });
  }

  /**
   * ITIMER_VIRTUAL/ITIMER_PROF: the host has no timer on another process's CPU clock that
   * we can wait on, so armed groups' CPU time is sampled every 10 ms (their resolution here).
   */
  armCpuTimers(tg: ThreadGroupState): void {
    const key = -(tg.tgid * 100000 + 99999);
    this.timers.get(key)?.unsubscribe();
    this.timers.delete(key);
    if (!tg.itimerCpu || !Object.keys(tg.itimerCpu).length) return;
    this.timers.set(key, interval(10).subscribe(() => {
      if (this.k.frozen || tg.zombie || !tg.itimerCpu) return;
      const cpu = groupCpuNs(this.k, tg);
      for (const [which, it] of Object.entries(tg.itimerCpu)) {
        if (cpu < it.deadlineNs) continue;
        const path = ['threadGroups', tg.tgid, 'itimerCpu', Number(which)];
        this.k.emit({ type: 'timer.fire', tgid: tg.tgid, timer: Number(which) === 1 ? 'virtual' : 'prof' }, [it.intervalNs > 0n ? ['set', [...path, 'deadlineNs'], cpu + it.intervalNs] : ['del', path]]);
        this.send(tg.tgid, Number(which) === 1 ? 26 /* SIGVTALRM */ : 27 /* SIGPROF */, { signo: Number(which) === 1 ? 26 : 27, code: SI_KERNEL });
      }
      if (!Object.keys(tg.itimerCpu).length) this.armCpuTimers(tg);
    }));
  }

  rearmTimers(): void {
    for (const tg of Object.values(this.k.state.threadGroups)) {
      if (tg.itimerReal) this.armItimer(tg);
      if (tg.itimerCpu) this.armCpuTimers(tg);
      for (const pt of Object.values(tg.posixTimers ?? {})) this.armPosixTimer(tg, pt.id);
    }
  }

  /** (Re)arm a timer_create timer from its graph record. */
  armPosixTimer(tg: ThreadGroupState, id: number): void {
    const key = -(tg.tgid * 100000 + id + 1); // runtime key, apart from the ITIMER_REAL keys (tgid)
    this.timers.get(key)?.unsubscribe();
    this.timers.delete(key);
    const pt = tg.posixTimers?.[id];
    if (!pt || pt.deadlineNs === undefined) return;
    this.timers.set(key, untilMonotonic(this.k.clock, pt.deadlineNs).subscribe(() => this.firePosixTimer(tg.tgid, id)));
  }

  private firePosixTimer(tgid: number, id: number): void {
    const tg = this.k.state.threadGroups[tgid];
    const pt = tg?.posixTimers?.[id];
    if (!pt || pt.deadlineNs === undefined || tg.zombie) return;
    if (this.k.frozen) {
      const sub = this.k.thaw$.subscribe(() => { sub.unsubscribe(); this.firePosixTimer(tgid, id); });
      return;
    }
    const target = pt.notify === 4 ? this.k.state.tasks[pt.tid!] : this.k.state.tasks[tg.tids[0]];
    const path = ['threadGroups', tgid, 'posixTimers', id];
    const ops: GraphOp[] = [pt.intervalNs > 0n ? ['set', [...path, 'deadlineNs'], pt.deadlineNs + pt.intervalNs] : ['del', [...path, 'deadlineNs']]];
    if (pt.notify !== 1 && target) {
      if ((target.pendingSignals | (pt.notify === 4 ? 0n : tg.pendingSignals)) & sigbit(pt.signo)) ops.push(['set', [...path, 'overrun'], pt.overrun + 1]);
      else {
        this.send(tgid, pt.signo, { signo: pt.signo, code: SI_TIMER, timerId: id, overrun: pt.overrun, value: pt.value }, pt.notify === 4 ? pt.tid : undefined);
        ops.push(['set', [...path, 'overrun'], 0]);
      }
    }
    this.k.emit({ type: 'timer.fire', tgid, timer: 'posix', id }, ops);
    this.armPosixTimer(tg, id);
  }

  disarm(tgid: number): void {
    this.timers.get(tgid)?.unsubscribe();
    this.timers.delete(tgid);
    const cpuKey = -(tgid * 100000 + 99999);
    this.timers.get(cpuKey)?.unsubscribe();
    this.timers.delete(cpuKey);
    const tg = this.k.state.threadGroups[tgid];
    for (const id of Object.keys(tg?.posixTimers ?? {})) {
      const key = -(tgid * 100000 + Number(id) + 1);
      this.timers.get(key)?.unsubscribe();
      this.timers.delete(key);
    }
  }

  disarmAll(): void {
    for (const s of this.timers.values()) s.unsubscribe();
    this.timers.clear();
  }
}

/**
 * Take pending signal `sig` for task `t`: from the thread's own pending set first, else from its
 * process's shared set (dequeue_signal). Returns its siginfo (SI_USER when a shared one has none
 * recorded), or undefined when neither held it.
 */
export function takePending(k: Kernel, t: Task, sig: number, type: 'signal.deliver' | 'signal.dequeue' = 'signal.dequeue'): SigInfo | undefined {
  const ts = t.state, tg = t.tg, bit = sigbit(sig);
  if (ts.pendingSignals & bit) {
    const info = ts.pendingInfo[sig];
    k.emit({ type, tid: t.tid, sig }, [['set', ['tasks', t.tid, 'pendingSignals'], ts.pendingSignals & ~bit], ['del', ['tasks', t.tid, 'pendingInfo', sig]]]);
    return info ?? { signo: sig, code: SI_USER };
  }
  if (tg.pendingSignals & bit) {
    const info = tg.pendingInfo?.[sig];
    const ops: GraphOp[] = [['set', ['threadGroups', tg.tgid, 'pendingSignals'], tg.pendingSignals & ~bit]];
    if (tg.pendingInfo) ops.push(['del', ['threadGroups', tg.tgid, 'pendingInfo', sig]]);
    k.emit({ type, tid: t.tid, sig, shared: true }, ops);
    return info ?? { signo: sig, code: SI_USER };
  }
  return undefined;
}

/** Forget pending `sig` everywhere in thread group `tg` (its threads' and its shared set): SIG_IGN, SIGCONT vs stop signals. */
export function flushPending(k: Kernel, tg: ThreadGroupState, sig: number): void {
  const bit = sigbit(sig);
  for (const tid of tg.tids) {
    const ts = k.state.tasks[tid];
    if (ts && (ts.pendingSignals & bit || ts.pendingInfo[sig])) k.emit({ type: 'signal.discard', tid, sig }, k.unpendOps(ts, sig));
  }
  if (tg.pendingSignals & bit || tg.pendingInfo?.[sig]) {
    const ops: GraphOp[] = [['set', ['threadGroups', tg.tgid, 'pendingSignals'], tg.pendingSignals & ~bit]];
    if (tg.pendingInfo) ops.push(['del', ['threadGroups', tg.tgid, 'pendingInfo', sig]]);
    k.emit({ type: 'signal.discard', tid: tg.tgid, sig, shared: true }, ops);
  }
}

/** Encode a siginfo_t (128 bytes, x86-64 layout). */
export function encodeSiginfo(info: SigInfo): Uint8Array {
  const b = new Uint8Array(SIGINFO_SIZE);
  const v = new DataView(b.buffer);
  v.setInt32(0, info.signo, true);
  v.setInt32(8, info.code, true);
  if (info.addr !== undefined && [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP].includes(info.signo)) {
    v.setBigUint64(16, BigInt(info.addr), true);
  } else if (info.code === SI_TIMER) {
    v.setInt32(16, info.timerId ?? 0, true);
    v.setInt32(20, info.overrun ?? 0, true);
    v.setBigUint64(24, info.value ?? 0n, true);
  } else {
    v.setInt32(16, info.pid ?? 0, true);
    v.setUint32(20, info.uid ?? 0, true);
    if (info.signo === SIGCHLD) v.setInt32(24, info.status ?? 0, true);
  }
  return b;
}

