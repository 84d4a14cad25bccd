/**
 * Time syscalls (man 2 clock_gettime, nanosleep, clock_nanosleep, gettimeofday, times,
 * getrusage). All guest time comes from the kernel's Clock (src/kernel/clock.ts).
 * Sleeps are Waiters with an absolute deadline on the guest's CLOCK_MONOTONIC, so a
 * task restored from a checkpoint wakes at the same remaining time.
 */
import { map, of } from 'rxjs';
import type { GraphOp } from '../kernel/events.js';
import { untilDeadline } from '../kernel/deadline.js';
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { NS_PER_SEC, nsToTimespec } from '../kernel/clock.js';
import { NO_USAGE, cpuTimeNs, groupUsage, taskUsage } from '../kernel/cputime.js';
import type { ResourceUsage } from '../kernel/state.js';
import { syscall } from './entry.js';
import { timerSlackOf } from '../kernel/sched.js';
import { CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM, CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE, CLOCK_MONOTONIC_RAW, CLOCK_PROCESS_CPUTIME_ID, CLOCK_REALTIME, CLOCK_REALTIME_ALARM, CLOCK_REALTIME_COARSE, CLOCK_TAI, CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD_ID, TIMER_ABSTIME } from '../abi/linux.js';

/** The guest's time on clock `clk` in ns; EINVAL for an unknown clock. */
export function clockNow(t: Task, clk: number): bigint {
  const c = t.kernel.clock;
  switch (clk) {
    case CLOCK_REALTIME: case CLOCK_REALTIME_COARSE: case CLOCK_REALTIME_ALARM: case CLOCK_TAI: return c.realtimeNs();
    case CLOCK_MONOTONIC: case CLOCK_MONOTONIC_RAW: case CLOCK_MONOTONIC_COARSE: case CLOCK_BOOTTIME: case CLOCK_BOOTTIME_ALARM: return c.monotonicNs();
    case CLOCK_PROCESS_CPUTIME_ID: return cpuTimeNs(t);
    case CLOCK_THREAD_CPUTIME_ID: return cpuTimeNs(t, true);
  }
  // Dynamic CPU clocks of a pid/tid (negative clockids): only our own.
  if (clk < 0) return cpuTimeNs(t);
  throw new SyscallError(E.EINVAL);
}

/** A guest `struct timespec` as ns; EINVAL for a negative or unnormalized one (EFAULT if unmapped). */
export function readTimespec(t: Task, addr: number): bigint {
  const b = t.mm.read(addr, 16);
  const v = new DataView(b.buffer, b.byteOffset, 16);
  const sec = v.getBigInt64(0, true), nsec = v.getBigInt64(8, true);
  if (sec < 0n || nsec < 0n || nsec >= NS_PER_SEC) throw new SyscallError(E.EINVAL);
  return sec * NS_PER_SEC + nsec;
}

/**
 * The calling thread's timer slack (ns): an hrtimer sleep may end anywhere in [deadline,
 * deadline + slack] (hrtimer_nanosleep arms its hard expiry at deadline + current->timer_slack_ns).
 * 50 µs unless PR_SET_TIMERSLACK changed it (or the creating thread had another); a SCHED_FIFO, RR
 * or DEADLINE thread has none (src/kernel/sched.ts).
 */
export function timerSlackNs(t: Task): bigint {
  return timerSlackOf(t.state, t.tg);
}

/**
 * Linux's time from arming a sleep's hrtimer to schedule() (ns): a timer whose hard expiry falls
 * within it fires first, and the sleep does not switch. Measured on this 6.18 VM (load 3-6), 1000
 * nanosleep(0) calls per PR_SET_TIMERSLACK value: 0-5 switches for slacks of 1 ns to 5 µs, 848 at
 * 10 µs, 993 at 20 µs, 1000 at 50 µs.
 */
const ARM_TO_SLEEP_NS = 5_000n;

/**
 * Block until guest CLOCK_MONOTONIC reaches `deadline` (ns); the waiter is saved with
 * checkpoints. Interrupted by a handler it fails with EINTR (never restarted, man 7 signal)
 * and, when `remAddr` is given, stores the time left there (nanosleep's rem).
 *
 * A deadline already passed when the call is handled is Linux's do_nanosleep with an expired
 * timer (kernel/time/hrtimer.c): the hrtimer's hard expiry is deadline + timer slack. When that
 * too has passed, the timer interrupt (programmed with the minimum delta) fires before
 * do_nanosleep reaches schedule() and hrtimer_wakeup clears t->task, so the call returns 0
 * without a context switch: no voluntary switch is counted (getrusage ru_nvcsw,
 * voluntary_ctxt_switches). Measured on Linux 6.18: 0 per 1000 clock_nanosleep(TIMER_ABSTIME)
 * calls with deadlines 0, now - 1 s and now - 100 µs. While the slack has not run out (nanosleep
 * of 0, an absolute deadline of about now) the task does sleep until the hard expiry: one
 * voluntary switch per call (~1000 per 1000 measured; none with PR_SET_TIMERSLACK 1 or
 * SCHED_FIFO). Here such a call blocks and ends at once (the slack allows waking at the deadline),
 * so it counts its one switch and takes a pending signal's EINTR as Linux's does. `armedAtNs`:
 * the guest CLOCK_MONOTONIC reading (ns) the caller computed the deadline from, when the timer is
 * armed; whether the slack has run out is judged ARM_TO_SLEEP_NS after it (a second reading here
 * was late by over 50 µs now and then at load 8, when the host preempted the kernel's thread, and
 * a nanosleep of 0 returned without its switch).
 */
export function sleepUntil(t: Task, deadlineNs: bigint, remAddr = 0, armedAtNs?: bigint): SyscallResult {
  const resumed = t.resumed('sleep');
  const deadline = resumed?.deadlineNs ?? deadlineNs;
  // Judged as of the arming plus Linux's own way to schedule(), not by a second reading: a host
  // preemption of the kernel's thread between the two must not eat into the guest's slack.
  const now = resumed || armedAtNs === undefined ? t.kernel.clock.monotonicNs() : armedAtNs + ARM_TO_SLEEP_NS;
  const writeRem = (end: bigint) => () => {
    const left = end - t.kernel.clock.monotonicNs();
    try { t.mm.write(remAddr, nsToTimespec(left > 0n ? left : 0n)); } catch { /* EFAULT on rem is ignored, as Linux does */ }
  };
  if (deadline <= now) {
    // A restored sleep counted its switch before the checkpoint.
    const hardExpiry = deadline + timerSlackNs(t);
    if (resumed || hardExpiry <= now) return 0;
    return {
      waiter: { kind: 'sleep', deadlineNs: deadline, remAddr: remAddr || undefined, interruptible: true },
      result$: of(0),
      onInterrupt: remAddr ? writeRem(hardExpiry) : undefined,
    };
  }
  return {
    waiter: { kind: 'sleep', deadlineNs: deadline, remAddr: remAddr || undefined, interruptible: true },
    result$: untilDeadline(t, deadline).pipe(map(() => 0)),
    onInterrupt: remAddr ? writeRem(deadline) : undefined,
  };
}

function clockNanosleep(t: Task, clk: number, flags: number, req: number): SyscallResult {
  if (clk === CLOCK_THREAD_CPUTIME_ID) return -E.EINVAL;
  if (![CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_PROCESS_CPUTIME_ID].includes(clk)) return -E.EINVAL;
  const ns = readTimespec(t, req);
  const mono = t.kernel.clock.monotonicNs();
  if (flags & TIMER_ABSTIME) {
    const now = clockNow(t, clk);
    return sleepUntil(t, mono + (ns - now), 0, mono);
  }
  return sleepUntil(t, mono + ns, t.arg(3), mono);
}

/**
 * struct rusage (144 bytes): ru_utime and ru_stime as timevals, ru_maxrss (kB), ru_minflt,
 * ru_majflt, ru_nvcsw, ru_nivcsw; the fields Linux leaves at 0 stay 0.
 */
export function encodeRusage(u: ResourceUsage): Uint8Array {
  const b = new Uint8Array(144);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, u.utimeNs / NS_PER_SEC, true); v.setBigInt64(8, (u.utimeNs % NS_PER_SEC) / 1000n, true);
  v.setBigInt64(16, u.stimeNs / NS_PER_SEC, true); v.setBigInt64(24, (u.stimeNs % NS_PER_SEC) / 1000n, true);
  v.setBigInt64(32, BigInt(u.maxrssKb), true);
  v.setBigInt64(64, BigInt(u.minflt), true);
  v.setBigInt64(72, BigInt(u.majflt), true);
  v.setBigInt64(128, BigInt(u.nvcsw), true);
  v.setBigInt64(136, BigInt(u.nivcsw), true);
  return b;
}

/**
 * getrusage(2): RUSAGE_SELF (0), RUSAGE_CHILDREN (-1: the children waited for, and theirs),
 * RUSAGE_THREAD (1); EINVAL otherwise. CPU time, faults, involuntary switches and the peak RSS are
 * the host's counts for the guest's stubs (src/kernel/cputime.ts); voluntary switches are the
 * times a thread blocked in the kernel. Earlier runs' use comes back after a restore.
 */
function getrusage(t: Task): number {
  const who = t.argInt(0);
  if (who !== 0 && who !== -1 && who !== 1) return -E.EINVAL;
  const u = who === 0 ? groupUsage(t.kernel, t.tg) : who === 1 ? taskUsage(t) : t.tg.childUsage ?? NO_USAGE;
  t.mm.write(t.arg(1), encodeRusage(u));
  return 0;
}

const TIMER_CLOCKS = [CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM, CLOCK_TAI];

/** timer_create(2): SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID (glibc's SIGEV_THREAD is built on it). */
function timerCreate(t: Task): number {
  const clk = t.argInt(0), sevp = t.arg(1), idAddr = t.arg(2);
  if (!TIMER_CLOCKS.includes(clk)) return -E.EINVAL;
  const tg = t.tg;
  let id = 0;
  while (tg.posixTimers?.[id]) id++;
  let notify = SIGEV_SIGNAL, signo = 14, value = BigInt(id), tid: number | undefined;
  if (sevp) {
    const b = t.mm.read(sevp, 64);
    const v = new DataView(b.buffer, b.byteOffset, 64);
    value = v.getBigUint64(0, true);
    signo = v.getInt32(8, true);
    notify = v.getInt32(12, true);
    tid = v.getInt32(16, true);
    if (notify !== SIGEV_NONE && (signo < 1 || signo > 64)) return -E.EINVAL;
    if (notify === SIGEV_THREAD_ID) { const ts = t.kernel.state.tasks[tid]; if (!ts || ts.tgid !== t.tgid) return -E.EINVAL; }
    else if (notify !== SIGEV_SIGNAL && notify !== SIGEV_NONE) return -E.EINVAL;
  }
  t.mm.writeU32(idAddr, id);
  t.kernel.emit({ type: 'timer.create', tgid: t.tgid, id }, [
    ...(tg.posixTimers ? [] : [['set', ['threadGroups', t.tgid, 'posixTimers'], {}] as GraphOp]),
    ['set', ['threadGroups', t.tgid, 'posixTimers', id], { id, clock: clk, notify, signo, tid, value, intervalNs: 0n, overrun: 0 }],
  ]);
  return 0;
}

function posixTimer(t: Task, id: number) {
  const pt = t.tg.posixTimers?.[id];
  if (!pt) throw new SyscallError(E.EINVAL);
  return pt;
}

function itimerspec(intervalNs: bigint, valueNs: bigint): Uint8Array {
  const b = new Uint8Array(32);
  b.set(nsToTimespec(intervalNs), 0);
  b.set(nsToTimespec(valueNs), 16);
  return b;
}

function timerRemaining(t: Task, id: number): Uint8Array {
  const pt = posixTimer(t, id);
  const left = pt.deadlineNs === undefined ? 0n : pt.deadlineNs - t.kernel.clock.monotonicNs();
  return itimerspec(pt.intervalNs, left > 0n ? left : pt.deadlineNs === undefined ? 0n : 1n);
}

function timerSettime(t: Task): number {
  const id = t.argInt(0), flags = t.argInt(1), newAddr = t.arg(2), oldAddr = t.arg(3);
  const pt = posixTimer(t, id);
  const interval = readTimespec(t, newAddr), value = readTimespec(t, newAddr + 16);
  if (oldAddr) t.mm.write(oldAddr, timerRemaining(t, id));
  const path = ['threadGroups', t.tgid, 'posixTimers', id];
  const deadlineNs = value === 0n ? undefined : flags & TIMER_ABSTIME ? t.kernel.clock.monotonicNs() + (value - clockNow(t, pt.clock)) : t.kernel.clock.monotonicNs() + value;
  t.kernel.emit({ type: 'timer.arm', tgid: t.tgid, timer: 'posix', id, valueNs: value, intervalNs: interval }, [
    ['set', [...path, 'intervalNs'], interval], ['set', [...path, 'overrun'], 0],
    deadlineNs === undefined ? ['del', [...path, 'deadlineNs']] : ['set', [...path, 'deadlineNs'], deadlineNs],
  ]);
  t.kernel.signals.armPosixTimer(t.tg, id);
  return 0;
}

export const timeSyscalls = [
  syscall('clock_settime', 2, (t) => {
    const clk = t.argInt(0);
    readTimespec(t, t.arg(1));
    if (clk === CLOCK_REALTIME || clk === CLOCK_TAI) return -E.EPERM; // no CAP_SYS_TIME in a sandbox
    clockNow(t, clk);
    return -E.EINVAL;
  }),
  syscall('settimeofday', 2, () => -E.EPERM),
  syscall('adjtimex', 1, (t) => { const b = new Uint8Array(t.mm.read(t.arg(0), 208)); if (new DataView(b.buffer).getUint32(0, true)) return -E.EPERM; t.mm.write(t.arg(0), b); return 0; }, 'partial', 'reads only (TIME_OK); setting gives EPERM'),
  syscall('timer_create', 3, timerCreate, 'partial', 'CPU-time clocks count wall time'),
  syscall('timer_settime', 4, timerSettime),
  syscall('timer_gettime', 2, (t) => { t.mm.write(t.arg(1), timerRemaining(t, t.argInt(0))); return 0; }),
  syscall('timer_getoverrun', 1, (t) => posixTimer(t, t.argInt(0)).overrun),
  syscall('timer_delete', 1, (t) => {
    posixTimer(t, t.argInt(0));
    t.kernel.emit({ type: 'timer.delete', tgid: t.tgid, id: t.argInt(0) }, [['del', ['threadGroups', t.tgid, 'posixTimers', t.argInt(0)]]]);
    t.kernel.signals.armPosixTimer(t.tg, t.argInt(0)); // disarms: the timer is gone
    return 0;
  }),
  syscall('clock_gettime', 2, (t) => { t.mm.write(t.arg(1), nsToTimespec(clockNow(t, t.argInt(0)))); return 0; }),
  syscall('clock_getres', 2, (t) => {
    const clk = t.argInt(0);
    clockNow(t, clk);
    if (t.arg(1)) t.mm.write(t.arg(1), nsToTimespec(clk === CLOCK_REALTIME_COARSE || clk === CLOCK_MONOTONIC_COARSE ? 4_000_000n : 1n));
    return 0;
  }),
  syscall('gettimeofday', 2, (t) => {
    if (t.arg(0)) {
      const ns = t.kernel.clock.realtimeNs();
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setBigInt64(0, ns / NS_PER_SEC, true);
      v.setBigInt64(8, (ns % NS_PER_SEC) / 1000n, true);
      t.mm.write(t.arg(0), b);
    }
    if (t.arg(1)) t.mm.write(t.arg(1), new Uint8Array(8));
    return 0;
  }),
  syscall('time', 1, (t) => {
    const s = Number(t.kernel.clock.realtimeNs() / NS_PER_SEC);
    if (t.arg(0)) t.mm.writeU64(t.arg(0), s);
    return s;
  }),
  syscall('nanosleep', 2, (t) => { const req = readTimespec(t, t.arg(0)), mono = t.kernel.clock.monotonicNs(); return sleepUntil(t, mono + req, t.arg(1), mono); }),
  syscall('clock_nanosleep', 4, (t) => clockNanosleep(t, t.argInt(0), t.argInt(1), t.arg(2)), 'partial', 'CPU-time clocks sleep in wall time'),
  syscall('times', 1, (t) => {
    const cpu = cpuTimeNs(t) / 10_000_000n;
    if (t.arg(0)) {
      const b = new Uint8Array(32);
      new DataView(b.buffer).setBigInt64(0, cpu, true);
      t.mm.write(t.arg(0), b);
    }
    return Number(t.kernel.clock.monotonicNs() / 10_000_000n);
  }, 'partial', 'CPU time is reported as user time; children\'s times are 0'),
  syscall('getrusage', 2, getrusage, 'partial', 'ru_utime/ru_stime, ru_maxrss, ru_minflt, ru_majflt, ru_nivcsw from the host\'s counts for the guest\'s stub processes; ru_nvcsw counts blocking syscalls; a thread that exited before its process takes its counts with it'),
];
