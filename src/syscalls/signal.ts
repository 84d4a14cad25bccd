/**
 * Signal syscalls (man 2 rt_sigaction, rt_sigprocmask, rt_sigpending, rt_sigsuspend,
 * rt_sigtimedwait, rt_sigreturn, sigaltstack, kill, tgkill, tkill, rt_sigqueueinfo,
 * pause, alarm, setitimer, getitimer). Delivery, frames and defaults live in
 * src/kernel/signals.ts (compare Linux kernel/signal.c, arch/x86/kernel/signal.c).
 */
import { NEVER, map } from 'rxjs';
import type { GraphOp } from '../kernel/events.js';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { NO_RETURN } from '../kernel/task.js';
import { encodeSiginfo, flushPending, sigbit, takePending } from '../kernel/signals.js';
import type { SigInfo, ThreadGroupState } from '../kernel/state.js';
import { CAP_KILL, capable, credsOf } from '../kernel/creds.js';
import { NS_PER_SEC } from '../kernel/clock.js';
import { cpuTimeNs } from '../kernel/cputime.js';
import { syscall } from './entry.js';
import { readTimespec } from './time.js';
import { untilDeadline } from '../kernel/deadline.js';
import { ITIMER_PROF, ITIMER_REAL, ITIMER_VIRTUAL, SIGCONT, SIGKILL, SIGSTOP, SIG_DFL, SI_TKILL, SI_USER } from '../abi/linux.js';

const UNBLOCKABLE = sigbit(SIGKILL) | sigbit(SIGSTOP);

function rtSigaction(t: Task): number {
  const sig = t.argInt(0), act = t.arg(1), oact = t.arg(2);
  if (t.arg(3) !== 8) return -E.EINVAL;
  if (sig < 1 || sig > 64) return -E.EINVAL;
  if (act && (sig === SIGKILL || sig === SIGSTOP)) return -E.EINVAL;
  const tg = t.tg;
  let next;
  if (act) {
    const b = t.mm.read(act, 32);
    const v = new DataView(b.buffer, b.byteOffset, 32);
    next = { handler: Number(v.getBigUint64(0, true)), flags: Number(v.getBigUint64(8, true)), restorer: Number(v.getBigUint64(16, true)), mask: v.getBigUint64(24, true) & ~UNBLOCKABLE };
  }
  if (oact) {
    const cur = tg.sigactions[sig] ?? { handler: SIG_DFL, flags: 0, restorer: 0, mask: 0n };
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(cur.handler), true); v.setBigUint64(8, BigInt(cur.flags), true);
    v.setBigUint64(16, BigInt(cur.restorer), true); v.setBigUint64(24, cur.mask, true);
    t.mm.write(oact, b);
  }
  if (next) {
    t.kernel.emit({ type: 'signal.action', tgid: tg.tgid, sig, handler: next.handler }, [next.handler === SIG_DFL ? ['del', ['threadGroups', tg.tgid, 'sigactions', sig]] : ['set', ['threadGroups', tg.tgid, 'sigactions', sig], next]]);
    // Setting SIG_IGN discards a pending instance (kernel/signal.c do_sigaction).
    if (next.handler === 1) flushPending(t.kernel, tg, sig);
  }
  return 0;
}

function rtSigprocmask(t: Task): number {
  const how = t.argInt(0), set = t.arg(1), oset = t.arg(2);
  if (t.arg(3) !== 8) return -E.EINVAL;
  const old = t.state.sigmask;
  if (set) {
    if (how < 0 || how > 2) return -E.EINVAL;
    const s = t.mm.readU64(set);
    if (oset) t.mm.writeU64(oset, old);
    const m = how === 0 ? old | s : how === 1 ? old & ~s : s;
    t.kernel.setSigmask(t, m & ~UNBLOCKABLE);
    return 0;
  }
  if (oset) t.mm.writeU64(oset, old);
  return 0;
}

/**
 * May `t` signal thread group `g`? check_kill_permission (kernel/signal.c) for a signal a user
 * sends: always within the caller's own thread group; else kill_ok_by_cred — the sender's real
 * or effective uid equals the target's real or saved uid (the target's effective uid does not
 * count), or the sender holds CAP_KILL — or SIGCONT to a process of the caller's session. A
 * zombie is checked like a live process (its credentials and session stay until it is reaped).
 */
export function maySignal(t: Task, g: ThreadGroupState, sig: number): boolean {
  if (g.tgid === t.tgid) return true;
  const c = credsOf(t.tg), tc = credsOf(g);
  if (c.euid === tc.suid || c.euid === tc.ruid || c.ruid === tc.suid || c.ruid === tc.ruid || capable(c, CAP_KILL)) return true;
  return sig === SIGCONT && g.sid === t.tg.sid;
}

/** valid_signal: 0 (the null signal: a probe of existence and permission) to 64. */
const validSignal = (sig: number) => sig >= 0 && sig <= 64;

/**
 * group_send_sig_info (kernel/signal.c) from the user: 0, or -EINVAL for an invalid signal,
 * -EPERM when maySignal refuses. Checked before anything is sent, so signal 0 is a probe; a
 * zombie passes the checks and gets nothing (Linux's prepare_signal drops it). `deliver: false`
 * checks only (the caller sends later).
 */
export function groupSendSigInfo(t: Task, g: ThreadGroupState, sig: number, info: SigInfo, deliver = true): number {
  if (!validSignal(sig)) return -E.EINVAL;
  if (!maySignal(t, g, sig)) return -E.EPERM;
  if (deliver && sig !== 0 && !g.zombie) t.kernel.signals.send(g.tgid, sig, info);
  return 0;
}

/**
 * The process that `pid` names as pid_task(pid, PIDTYPE_PID) finds it: a thread's tid names its
 * thread group, and a zombie is found until it is reaped. undefined: no such pid (ESRCH).
 */
export function processOfPid(t: Task, pid: number): ThreadGroupState | undefined {
  const s = t.kernel.state;
  const ts = s.tasks[pid];
  return ts ? s.threadGroups[ts.tgid] : s.threadGroups[pid];
}

/**
 * kill(2), as kill_something_info (kernel/signal.c): pid > 0 the process that pid names (a
 * thread's tid names its process); 0 the caller's process group; -1 every process but init and
 * the caller's own; < -1 process group -pid. Zombies are targets too (checked, never signalled).
 * Errors: ESRCH no target; EINVAL invalid signal (only once a target is found); EPERM when no
 * target may be signalled — except for -1, which succeeds when any process was tried, whatever
 * their EPERMs (Linux ignores EPERM there).
 */
function kill(t: Task, pid: number, sig: number): number {
  const k = t.kernel;
  const info: SigInfo = { signo: sig, code: SI_USER, pid: t.tgid, uid: t.tg.uid };
  if (pid > 0) {
    const g = processOfPid(t, pid);
    return g ? groupSendSigInfo(t, g, sig, info) : -E.ESRCH;
  }
  if (pid === -0x8000_0000) return -E.ESRCH; // -INT_MIN does not exist (Linux excludes it the same way)
  const groups = Object.values(k.state.threadGroups);
  // The caller's own group last, so a fatal signal to itself doesn't stop the others being signalled.
  let self = false;
  const send = (g: ThreadGroupState): number => {
    const r = groupSendSigInfo(t, g, sig, info, g.tgid !== t.tgid);
    if (r === 0 && g.tgid === t.tgid && sig !== 0) self = true;
    return r;
  };
  let ret: number;
  if (pid === -1) {
    let count = 0;
    ret = 0;
    for (const g of groups) {
      if (g.tgid <= 1 || g.tgid === t.tgid) continue;
      const err = send(g);
      count++;
      if (err !== -E.EPERM) ret = err;
    }
    if (!count) ret = -E.ESRCH;
  } else {
    // __kill_pgrp_info: 0 once any member was signalled, else the last member's error.
    const pgid = pid === 0 ? t.tg.pgid : -pid;
    ret = -E.ESRCH;
    for (const g of groups) {
      if (g.pgid !== pgid) continue;
      const err = send(g);
      if (ret) ret = err;
    }
  }
  if (self) k.signals.send(t.tgid, sig, info);
  return ret;
}

/**
 * tgkill(2)/tkill(2) (`tgid` -1), as do_send_specific (kernel/signal.c): the thread `tid`, of
 * thread group `tgid`. EINVAL for tid <= 0 or tgid <= 0 (tgkill); ESRCH no such thread (a zombie
 * process's leader is still found, and gets nothing); then EINVAL/EPERM as groupSendSigInfo.
 */
function tgkill(t: Task, tgid: number, tid: number, sig: number): number {
  if (tid <= 0 || (tgid !== -1 && tgid <= 0)) return -E.EINVAL;
  const s = t.kernel.state;
  const ts = s.tasks[tid];
  // A leader that has exited stays findable by its tid while its thread group is there (a zombie,
  // or other threads still running): it is signalled nothing.
  const groupId = ts ? ts.tgid : s.threadGroups[tid] ? tid : undefined;
  if (groupId === undefined || (tgid !== -1 && groupId !== tgid)) return -E.ESRCH;
  const g = s.threadGroups[groupId];
  const r = groupSendSigInfo(t, g, sig, { signo: sig, code: SI_TKILL, pid: t.tgid, uid: t.tg.uid }, false);
  if (r === 0 && sig !== 0 && ts && !g.zombie) t.kernel.signals.send(groupId, sig, { signo: sig, code: SI_TKILL, pid: t.tgid, uid: t.tg.uid }, tid);
  return r;
}

/**
 * rt_sigqueueinfo(2), as do_rt_sigqueueinfo (kernel/signal.c): the siginfo is read first
 * (EFAULT); a si_code of 0 or more (the kernel's) or SI_TKILL may only be sent by a thread to
 * its own tid's process (EPERM); then as kill(pid, sig) of one process.
 */
function rtSigqueueinfo(t: Task): number {
  const pid = t.argInt(0), sig = t.argInt(1);
  const b = t.mm.read(t.arg(2), 128);
  const code = new DataView(b.buffer, b.byteOffset, 128).getInt32(8, true);
  if ((code >= 0 || code === SI_TKILL) && pid !== t.tid) return -E.EPERM;
  const g = processOfPid(t, pid);
  return g ? groupSendSigInfo(t, g, sig, { signo: sig, code, pid: t.tgid, uid: t.tg.uid }) : -E.ESRCH;
}

function sigaltstack(t: Task): number {
  const ss = t.arg(0), old = t.arg(1);
  const st = t.state;
  if (old) {
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    const cur = st.altStack ?? { sp: 0, flags: 2 /* SS_DISABLE */, size: 0 };
    const sp = Number(t.platform.regs[19 /* rsp */]);
    const on = cur.flags !== 2 && sp > cur.sp && sp <= cur.sp + cur.size;
    v.setBigUint64(0, BigInt(cur.sp), true); v.setInt32(8, on ? 1 : cur.flags, true); v.setBigUint64(16, BigInt(cur.size), true);
    t.mm.write(old, b);
  }
  if (ss) {
    const b = t.mm.read(ss, 24);
    const v = new DataView(b.buffer, b.byteOffset, 24);
    const flags = v.getInt32(8, true);
    if (flags & ~(2 | 0x80000000)) return -E.EINVAL;
    const size = Number(v.getBigUint64(16, true));
    const cur = st.altStack;
    const sp = Number(t.platform.regs[19]);
    if (cur && cur.flags !== 2 && sp > cur.sp && sp <= cur.sp + cur.size) return -E.EPERM; // on the alternate stack now
    if (!(flags & 2) && size < 2048) return -E.ENOMEM;
    t.kernel.emit({ type: 'signal.altstack', tid: t.tid }, [['set', ['tasks', t.tid, 'altStack'], { sp: Number(v.getBigUint64(0, true)), flags: flags & 2, size }]]);
  }
  return 0;
}

/** pause(2): block until a handler has run; always ends with EINTR (ERESTARTNOHAND: a restore waits on). */
function pause(): SyscallResult {
  return { waiter: { kind: 'pause', interruptible: true }, result$: NEVER };
}

/**
 * rt_sigsuspend(2): wait with the given mask until a handler runs, then EINTR; the caller's mask
 * comes back when the handler returns (TaskState.savedSigmask). A restored task waits on with the
 * mask its waiter saved.
 */
function rtSigsuspend(t: Task): SyscallResult {
  if (t.arg(1) !== 8) return -E.EINVAL;
  const mask = t.resumed('sigsuspend')?.mask ?? (t.mm.readU64(t.arg(0)) & ~UNBLOCKABLE);
  t.kernel.setSigmask(t, mask, t.state.savedSigmask ?? t.state.sigmask);
  return { waiter: { kind: 'sigsuspend', mask, interruptible: true }, result$: NEVER };
}

/**
 * rt_sigtimedwait(2) (kernel/signal.c do_sigtimedwait): take a pending signal of `set` without
 * running its handler. While waiting, the signals of `set` are unblocked so they wake the task;
 * however the wait ends, the caller's mask is put back and a signal of `set` that arrived is taken;
 * otherwise a handled signal ends it with EINTR (never restarted) and the timeout with EAGAIN.
 * The set, the caller's mask and the deadline live in the waiter, so a restored task waits on
 * with the same ones and returns with its own mask.
 */
function rtSigtimedwait(t: Task): SyscallResult {
  const infoAddr = t.arg(1), timeout = t.arg(2);
  if (t.arg(3) !== 8) return -E.EINVAL;
  const k = t.kernel;
  const w = t.resumed('sigtimedwait');
  const restored = w?.set !== undefined ? w : undefined; // a graph of before this field: start over
  // A restored wait puts the caller's mask back first: it is blocked there with `set` unblocked.
  if (restored) k.setSigmask(t, restored.savedMask);
  const set = restored ? restored.set : t.mm.readU64(t.arg(0)) & ~UNBLOCKABLE;
  const take = (): number | undefined => {
    const ts = t.state;
    const pending = (ts.pendingSignals | t.tg.pendingSignals) & set;
    if (!pending) return undefined;
    let sig = 1;
    while (!(pending & sigbit(sig))) sig++;
    const info = takePending(t.kernel, t, sig) ?? { signo: sig, code: SI_USER };
    if (infoAddr) t.mm.write(infoAddr, encodeSiginfo(info));
    return sig;
  };
  const now = take();
  if (now !== undefined) return now;
  let deadlineNs = restored?.deadlineNs;
  if (!restored && timeout) {
    const ns = readTimespec(t, timeout);
    if (ns === 0n) return -E.EAGAIN;
    deadlineNs = k.clock.monotonicNs() + ns;
  }
  const savedMask = t.state.sigmask;
  k.setSigmask(t, savedMask & ~set);
  return {
    waiter: { kind: 'sigtimedwait', set, savedMask, deadlineNs, interruptible: true },
    result$: deadlineNs === undefined ? NEVER : untilDeadline(t, deadlineNs).pipe(map(() => -E.EAGAIN)),
    settle: (v) => {
      k.setSigmask(t, savedMask);
      return take() ?? v;
    },
  };
}

function itimerval(intervalNs: bigint, valueNs: bigint): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, intervalNs / NS_PER_SEC, true); v.setBigInt64(8, (intervalNs % NS_PER_SEC) / 1000n, true);
  v.setBigInt64(16, valueNs / NS_PER_SEC, true); v.setBigInt64(24, (valueNs % NS_PER_SEC) / 1000n, true);
  return b;
}
function currentItimer(t: Task): [bigint, bigint] {
  const it = t.tg.itimerReal;
  if (!it) return [0n, 0n];
  const left = it.deadlineNs - t.kernel.clock.monotonicNs();
  return [it.intervalNs, left > 0n ? left : 1000n];
}
/** Arm ITIMER_REAL: `valueNs` from now (0 disarms), then every `intervalNs`. */
function setItimerReal(t: Task, valueNs: bigint, intervalNs: bigint): void {
  const path = ['threadGroups', t.tgid, 'itimerReal'];
  t.kernel.emit({ type: 'timer.arm', tgid: t.tgid, timer: 'real', valueNs, intervalNs }, [valueNs > 0n ? ['set', path, { deadlineNs: t.kernel.clock.monotonicNs() + valueNs, intervalNs }] : ['del', path]]);
  t.kernel.signals.armItimer(t.tg);
}

/**
 * The scheduler tick's length, ns (TICK_NSEC for CONFIG_HZ=250, Debian's and most distributions'
 * kernels): Linux adds it to an ITIMER_VIRTUAL/PROF value when arming it and reports it as the
 * value left of one that is due (kernel/time/itimer.c set_cpu_itimer, get_cpu_itimer).
 */
const TICK_NSEC = 4_000_000n;

/** ITIMER_VIRTUAL/PROF: [interval, value left] in CPU ns (TICK_NSEC when due: get_cpu_itimer). */
function currentCpuItimer(t: Task, which: number): [bigint, bigint] {
  const it = t.tg.itimerCpu?.[which];
  if (!it) return [0n, 0n];
  const left = it.deadlineNs - cpuTimeNs(t);
  return [it.intervalNs, left > 0n ? left : TICK_NSEC];
}

function setitimer(t: Task): number {
  const which = t.argInt(0), newAddr = t.arg(1), oldAddr = t.arg(2);
  if (which !== ITIMER_REAL && which !== ITIMER_VIRTUAL && which !== ITIMER_PROF) return -E.EINVAL;
  const [oi, ov] = which === ITIMER_REAL ? currentItimer(t) : currentCpuItimer(t, which);
  if (newAddr) {
    const b = t.mm.read(newAddr, 32);
    const v = new DataView(b.buffer, b.byteOffset, 32);
    const us = (i: number) => v.getBigInt64(i * 8, true);
    if (us(1) < 0n || us(1) >= 1_000_000n || us(3) < 0n || us(3) >= 1_000_000n || us(0) < 0n || us(2) < 0n) return -E.EINVAL;
    if (oldAddr) t.mm.write(oldAddr, itimerval(oi, ov));
    const value = us(2) * NS_PER_SEC + us(3) * 1000n, every = us(0) * NS_PER_SEC + us(1) * 1000n;
    if (which === ITIMER_REAL) setItimerReal(t, value, every);
    else {
      const path = ['threadGroups', t.tgid, 'itimerCpu'];
      t.kernel.emit({ type: 'timer.arm', tgid: t.tgid, timer: which === ITIMER_VIRTUAL ? 'virtual' : 'prof', valueNs: value, intervalNs: every }, [
        ...(t.tg.itimerCpu ? [] : [['set', path, {}] as GraphOp]),
        // set_cpu_itimer arms a value one tick late (a timer set now never fires before the next tick).
        value > 0n ? ['set', [...path, which], { deadlineNs: cpuTimeNs(t) + value + TICK_NSEC, intervalNs: every }] : ['del', [...path, which]],
      ]);
      t.kernel.signals.armCpuTimers(t.tg);
    }
  } else if (oldAddr) t.mm.write(oldAddr, itimerval(oi, ov));
  return 0;
}

export const signalSyscalls = [
  syscall('rt_sigaction', 4, rtSigaction),
  syscall('rt_sigprocmask', 4, rtSigprocmask),
  syscall('rt_sigpending', 2, (t) => { if (t.arg(1) > 8) return -E.EINVAL; t.mm.writeU64(t.arg(0), (t.state.pendingSignals | t.tg.pendingSignals) & t.state.sigmask); return 0; }),
  syscall('rt_sigreturn', 0, (t) => { t.kernel.signals.sigreturn(t); return NO_RETURN; }),
  syscall('rt_sigsuspend', 2, rtSigsuspend),
  syscall('rt_sigtimedwait', 4, rtSigtimedwait),
  syscall('rt_sigqueueinfo', 3, rtSigqueueinfo, 'partial', 'the sigval payload is not carried'),
  syscall('sigaltstack', 2, sigaltstack),
  syscall('kill', 2, (t) => kill(t, t.argInt(0), t.argInt(1))),
  syscall('tgkill', 3, (t) => tgkill(t, t.argInt(0), t.argInt(1), t.argInt(2))),
  syscall('tkill', 2, (t) => tgkill(t, -1, t.argInt(0), t.argInt(1))),
  syscall('pause', 0, pause),
  syscall('alarm', 1, (t) => {
    const [, left] = currentItimer(t);
    setItimerReal(t, BigInt(t.argU32(0)) * NS_PER_SEC, 0n);
    return Number((left + NS_PER_SEC / 2n) / NS_PER_SEC) || (left > 0n ? 1 : 0);
  }),
  syscall('setitimer', 3, setitimer, 'partial', 'VIRTUAL and PROF both count user+system CPU time, sampled every 10 ms'),
  syscall('getitimer', 2, (t) => {
    const which = t.argInt(0);
    if (which < 0 || which > 2) return -E.EINVAL;
    const [i, v] = which === ITIMER_REAL ? currentItimer(t) : currentCpuItimer(t, which);
    t.mm.write(t.arg(1), itimerval(i, v));
    return 0;
  }),
];
