/**
 * Time syscalls (man 2 clock_gettime, nanosleep, clock_nanosleep, gettimeofday, times,
 * getrusage). All guest time comes from the kernel's Clock (src/kernel/clock.ts).
 * Sleeps are Waiters with an absolute deadline on the guest's CLOCK_MONOTONIC, so a
 * task restored from a checkpoint wakes at the same remaining time.
 */
import { timer, map } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import * as libc from '../../platforms/host/libc.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { NS_PER_SEC, nsToTimespec } from '../kernel/clock.js';
import { syscall } from './table.js';

const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1, CLOCK_PROCESS_CPUTIME_ID = 2, CLOCK_THREAD_CPUTIME_ID = 3, CLOCK_MONOTONIC_RAW = 4;
const CLOCK_REALTIME_COARSE = 5, CLOCK_MONOTONIC_COARSE = 6, CLOCK_BOOTTIME = 7, CLOCK_REALTIME_ALARM = 8, CLOCK_BOOTTIME_ALARM = 9, CLOCK_TAI = 11;
const TIMER_ABSTIME = 1;

/** CPU time (ns) the task's host stub has used, plus what earlier runs used before a checkpoint. */
function cpuTimeNs(t: Task): bigint {
  const pid = (t.platform as unknown as { pid?: number }).pid;
  let live = 0n;
  if (pid) {
    const ts = new BigInt64Array(2);
    // CPUCLOCK_SCHED of another process: clockid = (~pid << 3) | 2 (include/linux/posix-timers.h).
    if (libc.clockGettime((~pid << 3) | 2, ts) === 0) live = ts[0] * NS_PER_SEC + ts[1];
  }
  return t.tg.cpuTimeNs + live;
}

/** The guest's time on clock `clk` in ns; EINVAL for an unknown clock. */
export function clockNow(t: Task, clk: number): bigint {
  const c = t.kernel.clock;
  switch (clk) {
    case CLOCK_REALTIME: case CLOCK_REALTIME_COARSE: case CLOCK_REALTIME_ALARM: case CLOCK_TAI: return c.realtimeNs();
    case CLOCK_MONOTONIC: case CLOCK_MONOTONIC_RAW: case CLOCK_MONOTONIC_COARSE: case CLOCK_BOOTTIME: case CLOCK_BOOTTIME_ALARM: return c.monotonicNs();
    case CLOCK_PROCESS_CPUTIME_ID: case CLOCK_THREAD_CPUTIME_ID: return cpuTimeNs(t);
  }
  // Dynamic CPU clocks of a pid/tid (negative clockids): only our own.
  if (clk < 0) return cpuTimeNs(t);
  throw new SyscallError(E.EINVAL);
}

function readTimespec(t: Task, addr: number): bigint {
  const b = t.mm.read(addr, 16);
  const v = new DataView(b.buffer, b.byteOffset, 16);
  const sec = v.getBigInt64(0, true), nsec = v.getBigInt64(8, true);
  if (sec < 0n || nsec < 0n || nsec >= NS_PER_SEC) throw new SyscallError(E.EINVAL);
  return sec * NS_PER_SEC + nsec;
}

/** Block until guest CLOCK_MONOTONIC reaches `deadline` (ns); the waiter is saved with checkpoints. */
export function sleepUntil(t: Task, deadlineNs: bigint): SyscallResult {
  const deadline = t.restoredWaiter?.kind === 'sleep' && t.restoredWaiter.deadlineNs !== undefined ? t.restoredWaiter.deadlineNs : deadlineNs;
  const remainingMs = Number(deadline - t.kernel.clock.monotonicNs()) / 1e6;
  if (remainingMs <= 0) return 0;
  return { waiter: { kind: 'sleep', deadlineNs: deadline, interruptible: true }, result$: timer(remainingMs).pipe(map(() => 0)) };
}

function clockNanosleep(t: Task, clk: number, flags: number, req: number): SyscallResult {
  if (clk === CLOCK_THREAD_CPUTIME_ID) return -E.EINVAL;
  if (![CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_PROCESS_CPUTIME_ID].includes(clk)) return -E.EINVAL;
  const ns = readTimespec(t, req);
  const mono = t.kernel.clock.monotonicNs();
  if (flags & TIMER_ABSTIME) {
    const now = clockNow(t, clk);
    return sleepUntil(t, mono + (ns - now));
  }
  return sleepUntil(t, mono + ns);
}

function getrusage(t: Task): number {
  const who = t.argInt(0);
  if (who !== 0 && who !== -1 && who !== 1) return -E.EINVAL;
  const b = new Uint8Array(144);
  if (who !== -1) {
    const cpu = cpuTimeNs(t);
    const v = new DataView(b.buffer);
    v.setBigInt64(0, cpu / NS_PER_SEC, true);
    v.setBigInt64(8, (cpu % NS_PER_SEC) / 1000n, true);
  }
  t.mm.write(t.arg(1), b);
  return 0;
}

export const timeSyscalls = [
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
  syscall('nanosleep', 2, (t) => sleepUntil(t, t.kernel.clock.monotonicNs() + readTimespec(t, t.arg(0))), 'partial', 'not interrupted by signals until signal delivery exists'),
  syscall('clock_nanosleep', 4, (t) => clockNanosleep(t, t.argInt(0), t.argInt(1), t.arg(2)), 'partial', 'not interrupted by signals until signal delivery exists'),
  syscall('times', 1, (t) => {
    const cpu = cpuTimeNs(t) / 10_000_000n;
    if (t.arg(0)) {
      const b = new Uint8Array(32);
      new DataView(b.buffer).setBigInt64(0, cpu, true);
      t.mm.write(t.arg(0), b);
    }
    return Number(t.kernel.clock.monotonicNs() / 10_000_000n);
  }, 'partial', 'CPU time is reported as user time; children\'s times are 0'),
  syscall('getrusage', 2, getrusage, 'partial', 'CPU time is the total (user + system) reported as user time'),
];
