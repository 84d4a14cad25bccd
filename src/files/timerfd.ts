/**
 * 'timerfd' files (man 2 timerfd_create; Linux fs/timerfd.c): a timer whose expirations are
 * read as a u64 count. The timer is plain data in the graph — the clock, the next expiry on
 * that clock, the interval and the expirations not read yet — and expirations are counted
 * lazily from the clock when asked (read, poll, gettime), so nothing of it runs on the host:
 * a blocked reader or poller wakes through `readyAt` (see `whenTimersDue`), which its waiter
 * recomputes after a restore. CLOCK_MONOTONIC/BOOTTIME timers keep their remaining time across
 * checkpoint/restore (guest monotonic time continues); CLOCK_REALTIME ones keep their wall-clock
 * expiry (the time spent saved counts, as for any realtime timer).
 */
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import type { OpenFileBase } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import { filter, merge } from 'rxjs';
import { CLOCK_REALTIME, CLOCK_REALTIME_ALARM, POLLIN, TFD_IOC_SET_TICKS, TFD_NONBLOCK } from '../abi/linux.js';
import { FileOps, anonInodeStat, whenTimersDue } from './file-ops.js';

/**
 * Graph record. `deadlineNs` is the next expiry on the timer's own clock (ns since the epoch for
 * the REALTIME clocks, guest monotonic ns otherwise; absent: disarmed), `intervalNs` the period
 * (0: one-shot), `ticks` the expirations counted and not read yet.
 */
export interface TimerFdFile extends OpenFileBase {
  readonly kind: 'timerfd';
  readonly timerfd: { readonly clock: number; readonly deadlineNs?: bigint; readonly intervalNs: bigint; readonly ticks: bigint };
}

/** Whether a timerfd clock counts wall-clock time (CLOCK_REALTIME, CLOCK_REALTIME_ALARM). */
const isRealtime = (clock: number): boolean => clock === CLOCK_REALTIME || clock === CLOCK_REALTIME_ALARM;

/** Now on a timerfd's clock, ns (BOOTTIME equals MONOTONIC in the sandbox: it never suspends). */
export function timerfdNow(k: Kernel, clock: number): bigint {
  return isRealtime(clock) ? k.clock.realtimeNs() : k.clock.monotonicNs();
}

/**
 * Count the expirations up to now into `ticks` and move `deadlineNs` past now (an interval timer)
 * or disarm it (a one-shot), as hrtimer_forward_now does when Linux's timer fires.
 */
/** Set (undefined: delete) fields of a timerfd's record through the kernel's door: event timer.fire (expirations counted) or timer.arm. */
function setTimerfd(k: Kernel, f: TimerFdFile, type: 'timer.fire' | 'timer.arm', fields: Partial<TimerFdFile['timerfd']>): void {
  k.emit({ type, tgid: k.current?.tgid ?? 0, timer: 'timerfd', id: f.id }, Object.entries(fields).map(([key, v]): GraphOp => (v === undefined ? ['del', ['openFiles', f.id, 'timerfd', key]] : ['set', ['openFiles', f.id, 'timerfd', key], v])));
}

export function timerfdAdvance(k: Kernel, f: TimerFdFile): void {
  const tf = f.timerfd;
  if (tf.deadlineNs === undefined) return;
  const now = timerfdNow(k, tf.clock);
  if (now < tf.deadlineNs) return;
  if (tf.intervalNs > 0n) {
    const n = (now - tf.deadlineNs) / tf.intervalNs + 1n;
    setTimerfd(k, f, 'timer.fire', { ticks: tf.ticks + n, deadlineNs: tf.deadlineNs + n * tf.intervalNs });
  } else {
    setTimerfd(k, f, 'timer.fire', { ticks: tf.ticks + 1n, deadlineNs: undefined });
  }
}

/**
 * timerfd_settime(2) on the record: arm at `valueNs` (absolute on the timer's clock with
 * `absolute`, else from now; 0 disarms) with period `intervalNs`; expirations not read are
 * dropped. Returns the previous setting as [interval, time left] ns (timerfd_gettime's answer).
 */
export function timerfdSet(k: Kernel, f: TimerFdFile, valueNs: bigint, intervalNs: bigint, absolute: boolean): [bigint, bigint] {
  const old = timerfdGet(k, f);
  const tf = f.timerfd;
  setTimerfd(k, f, 'timer.arm', { ticks: 0n, intervalNs, deadlineNs: valueNs === 0n ? undefined : absolute ? valueNs : timerfdNow(k, tf.clock) + valueNs });
  k.pipes.changed$.next(f.id); // pollers recompute when it is due
  return old;
}

/** timerfd_gettime(2): [interval, time until the next expiry (0: disarmed)] in ns. */
export function timerfdGet(k: Kernel, f: TimerFdFile): [bigint, bigint] {
  timerfdAdvance(k, f);
  const tf = f.timerfd;
  if (tf.deadlineNs === undefined) return [tf.intervalNs, 0n];
  const left = tf.deadlineNs - timerfdNow(k, tf.clock);
  return [tf.intervalNs, left > 0n ? left : 1n];
}

/** read(2) (timerfd_read): the u64 expiration count; EINVAL below 8 bytes, EAGAIN when none and nonblocking, else block. */
function timerfdRead(t: Task, f: TimerFdFile, buf: number, count: number): SyscallResult {
  if (count < 8) return -E.EINVAL;
  const k = t.kernel;
  const attempt = (): number | undefined => {
    timerfdAdvance(k, f);
    if (f.timerfd.ticks === 0n) return undefined;
    t.mm.writeU64(buf, f.timerfd.ticks); // EFAULT before the count is taken: nothing lost
    setTimerfd(k, f, 'timer.fire', { ticks: 0n });
    k.pipes.changed$.next(f.id);
    return 8;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & TFD_NONBLOCK) return -E.EAGAIN;
  const mine$ = k.pipes.changed$.pipe(filter((id) => id === f.id));
  return {
    waiter: { kind: 'timerfd-read', fileId: f.id, interruptible: true, restartable: true },
    result$: k.whenRunnable(merge(mine$, whenTimersDue(t, () => [f], mine$)), attempt),
  };
}

export const timerFdFileOps: FileOps<TimerFdFile> = {
  read: (t, f, buf, count) => timerfdRead(t, f, buf, count),
  write: () => -E.EINVAL,
  readiness(t, f) {
    timerfdAdvance(t.kernel, f);
    return f.timerfd.ticks > 0n ? POLLIN : 0;
  },
  /** The next expiry while none is counted (possibly past: not advanced here, so a waiter subscribing late still wakes at once). */
  readyAt(t, f) {
    const tf = f.timerfd;
    if (tf.ticks > 0n || tf.deadlineNs === undefined) return undefined;
    return isRealtime(tf.clock) ? t.kernel.clock.monotonicNs() + (tf.deadlineNs - t.kernel.clock.realtimeNs()) : tf.deadlineNs;
  },
  /** The shared anon inode: mode 0600, no file type, owned by root. */
  stat: () => anonInodeStat(),
  anonInode: true,
  seek: (t, f) => f.offset, // noop_llseek
  /** TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE): set the expiration count; EINVAL for 0. */
  ioctl(t, f, req, arg) {
    if (req !== TFD_IOC_SET_TICKS) return -E.ENOTTY;
    const v = t.mm.readU64(arg);
    if (v === 0n) return -E.EINVAL;
    timerfdAdvance(t.kernel, f);
    setTimerfd(t.kernel, f, 'timer.arm', { ticks: v });
    t.kernel.pipes.changed$.next(f.id);
    return 0;
  },
  syncable: false,
};
