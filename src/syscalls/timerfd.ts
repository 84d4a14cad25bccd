/**
 * timerfd_create(2), timerfd_settime(2), timerfd_gettime(2) (Linux fs/timerfd.c): the syscall
 * entries of the timerfd family. The file itself (a timer as data in the graph, its read and
 * readiness) is src/files/timerfd.ts.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { TimerFdFile } from '../files/timerfd.js';
import { timerfdGet, timerfdSet } from '../files/timerfd.js';
import { capable, credsOf } from '../kernel/creds.js';
import { NS_PER_SEC } from '../kernel/clock.js';
import { CAP_WAKE_ALARM, CLOCK_BOOTTIME, CLOCK_BOOTTIME_ALARM, CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_REALTIME_ALARM, TFD_CLOEXEC, TFD_NONBLOCK, TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET } from '../abi/linux.js';
import { syscall } from './entry.js';

const TFD_CLOCKS = [CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM];

/**
 * timerfd_create(2): EINVAL for another clock or unknown flags, EPERM for the _ALARM clocks
 * without CAP_WAKE_ALARM, EMFILE when the fd table is full.
 */
function timerfdCreate(t: Task, clock: number, flags: number): number {
  if ((flags & ~(TFD_NONBLOCK | TFD_CLOEXEC)) || !TFD_CLOCKS.includes(clock)) return -E.EINVAL;
  if ((clock === CLOCK_REALTIME_ALARM || clock === CLOCK_BOOTTIME_ALARM) && !capable(credsOf(t.tg), CAP_WAKE_ALARM)) return -E.EPERM;
  const k = t.kernel;
  const f = k.newOpenFile({ kind: 'timerfd', path: 'anon_inode:[timerfd]', flags: 2 | (flags & TFD_NONBLOCK), timerfd: { clock, intervalNs: 0n, ticks: 0n } });
  const fd = k.installFd(t, f.id, !!(flags & TFD_CLOEXEC));
  if (fd < 0) k.discardFile(f.id);
  return fd;
}

/** The timerfd behind `fd`: EBADF when none is open, EINVAL for another kind of file (timerfd_fget). */
function timerfdOf(t: Task, fd: number): TimerFdFile | number {
  const f = t.kernel.file(t, fd);
  return f.kind === 'timerfd' ? f : -E.EINVAL;
}

/** A struct itimerspec (32 bytes: it_interval, it_value) of [interval, value] ns. */
function encodeItimerspec([intervalNs, valueNs]: [bigint, bigint]): Uint8Array {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, intervalNs / NS_PER_SEC, true); v.setBigInt64(8, intervalNs % NS_PER_SEC, true);
  v.setBigInt64(16, valueNs / NS_PER_SEC, true); v.setBigInt64(24, valueNs % NS_PER_SEC, true);
  return b;
}

/**
 * timerfd_settime(2): EFAULT for an unreadable new value, EINVAL for unknown flags or an
 * unnormalized or negative timespec, EBADF/EINVAL for the fd; the old value goes to `oldAddr`
 * when given. TFD_TIMER_CANCEL_ON_SET is accepted: the sandbox's realtime clock is never set
 * (clock_settime is EPERM), so such a timer is never cancelled.
 */
function timerfdSettime(t: Task, fd: number, flags: number, newAddr: number, oldAddr: number): number {
  const b = t.mm.read(newAddr, 32);
  const v = new DataView(b.buffer, b.byteOffset, 32);
  const [is, ins, vs, vns] = [0, 8, 16, 24].map((o) => v.getBigInt64(o, true));
  if (flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) return -E.EINVAL;
  if (is < 0n || vs < 0n || ins < 0n || vns < 0n || ins >= NS_PER_SEC || vns >= NS_PER_SEC) return -E.EINVAL;
  const f = timerfdOf(t, fd);
  if (typeof f === 'number') return f;
  const old = timerfdSet(t.kernel, f, vs * NS_PER_SEC + vns, is * NS_PER_SEC + ins, !!(flags & TFD_TIMER_ABSTIME));
  if (oldAddr) t.mm.write(oldAddr, encodeItimerspec(old));
  return 0;
}

/** timerfd_gettime(2): the interval and the time to the next expiry (0 0: disarmed); EBADF/EINVAL for the fd, EFAULT. */
function timerfdGettime(t: Task, fd: number, addr: number): number {
  const f = timerfdOf(t, fd);
  if (typeof f === 'number') return f;
  t.mm.write(addr, encodeItimerspec(timerfdGet(t.kernel, f)));
  return 0;
}

export const timerfdSyscalls = [
  syscall('timerfd_create', 2, (t) => timerfdCreate(t, t.argInt(0), t.argInt(1))),
  syscall('timerfd_settime', 4, (t) => timerfdSettime(t, t.argInt(0), t.argInt(1), t.arg(2), t.arg(3)), 'partial', 'TFD_TIMER_CANCEL_ON_SET is accepted and never cancels: the sandbox\'s realtime clock cannot be set'),
  syscall('timerfd_gettime', 2, (t) => timerfdGettime(t, t.argInt(0), t.arg(1))),
];
