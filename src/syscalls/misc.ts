/**
 * Everything else a single-process program needs at start-up: getrandom, futex (one
 * task), rseq, sysinfo, sched_* queries, membarrier, personality (man 2 of each).
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { NEVER, map, timer } from 'rxjs';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { PROT_WRITE } from '../mm/address-space.js';
import { NS_PER_SEC } from '../kernel/clock.js';
import { syscall } from './table.js';

function getrandom(t: Task): number {
  const buf = t.arg(0), len = Math.min(t.arg(1), 33554431), flags = t.argU32(2);
  if (flags & ~7) return -E.EINVAL;
  t.mm.chunks(buf, len, PROT_WRITE, (view) => crypto.randomFillSync(view));
  return len;
}

const FUTEX_WAIT = 0, FUTEX_WAKE = 1, FUTEX_REQUEUE = 3, FUTEX_CMP_REQUEUE = 4, FUTEX_WAKE_OP = 5, FUTEX_WAIT_BITSET = 9, FUTEX_WAKE_BITSET = 10;
const FUTEX_CMD_MASK = ~(128 | 256);
/** futex(2) for one task: there is nobody else to wake or be woken by. */
function futex(t: Task): SyscallResult {
  const uaddr = t.arg(0), op = t.argInt(1) & FUTEX_CMD_MASK, val = t.argU32(2), timeout = t.arg(3);
  if (uaddr % 4) return -E.EINVAL;
  switch (op) {
    case FUTEX_WAIT: case FUTEX_WAIT_BITSET: {
      if (op === FUTEX_WAIT_BITSET && t.argU32(5) === 0) return -E.EINVAL;
      if (t.mm.readU32(uaddr) !== val) return -E.EAGAIN;
      if (!timeout) return { waiter: { kind: 'futex', interruptible: true, restartable: true }, result$: NEVER };
      const b = t.mm.read(timeout, 16);
      const v = new DataView(b.buffer, b.byteOffset, 16);
      let ns = v.getBigInt64(0, true) * NS_PER_SEC + v.getBigInt64(8, true);
      if (op === FUTEX_WAIT_BITSET) ns -= t.kernel.clock.monotonicNs(); // absolute deadline
      const ms = Math.max(0, Number(ns) / 1e6);
      return { waiter: { kind: 'futex', interruptible: true, deadlineNs: t.kernel.clock.monotonicNs() + BigInt(Math.round(ms * 1e6)) }, result$: timer(ms).pipe(map(() => -E.ETIMEDOUT)) };
    }
    case FUTEX_WAKE: case FUTEX_WAKE_BITSET: case FUTEX_REQUEUE: case FUTEX_CMP_REQUEUE: case FUTEX_WAKE_OP:
      t.mm.readU32(uaddr);
      return 0;
    default: return -E.ENOSYS;
  }
}

function sysinfo(t: Task): number {
  const b = new Uint8Array(112);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, t.kernel.clock.monotonicNs() / NS_PER_SEC, true);
  v.setBigUint64(32, BigInt(os.totalmem()), true);
  v.setBigUint64(40, BigInt(os.freemem()), true);
  v.setUint16(80, Object.keys(t.kernel.state.tasks).length, true);
  v.setUint32(104, 1, true); // mem_unit
  t.mm.write(t.arg(0), b);
  return 0;
}

function schedGetaffinity(t: Task): number {
  const len = t.arg(1);
  const ncpu = os.cpus().length;
  const bytes = Math.ceil(ncpu / 64) * 8;
  if (len < bytes || len % 8) return -E.EINVAL;
  const b = new Uint8Array(bytes);
  for (let i = 0; i < ncpu; i++) b[i >> 3] |= 1 << (i & 7);
  t.mm.write(t.arg(2), b);
  return bytes;
}

export const miscSyscalls = [
  syscall('getrandom', 3, getrandom),
  syscall('futex', 6, futex, 'partial', 'one task per sandbox: waits only time out; wakes find no waiter'),
  syscall('rseq', 4, () => -E.ENOSYS, 'stub', 'glibc runs without restartable sequences when registration fails'),
  syscall('sysinfo', 1, sysinfo),
  syscall('sched_getaffinity', 3, schedGetaffinity),
  syscall('sched_setaffinity', 3, (t) => { t.mm.read(t.arg(2), Math.min(t.arg(1), 128)); return 0; }, 'stub', 'placement is the host\'s'),
  syscall('sched_yield', 0, () => 0),
  syscall('sched_getscheduler', 1, () => 0),
  syscall('sched_getparam', 2, (t) => { t.mm.writeU32(t.arg(1), 0); return 0; }),
  syscall('sched_get_priority_max', 1, (t) => (t.argInt(0) === 1 || t.argInt(0) === 2 ? 99 : 0)),
  syscall('sched_get_priority_min', 1, (t) => (t.argInt(0) === 1 || t.argInt(0) === 2 ? 1 : 0)),
  syscall('getcpu', 3, (t) => { if (t.arg(0)) t.mm.writeU32(t.arg(0), 0); if (t.arg(1)) t.mm.writeU32(t.arg(1), 0); return 0; }),
  syscall('membarrier', 3, (t) => (t.argInt(0) === 0 ? 0 : -E.EINVAL), 'partial', 'QUERY reports no commands'),
  syscall('personality', 1, (t) => (t.argU32(0) === 0xffffffff || t.argU32(0) === 0 ? 0 : -E.EINVAL)),
  syscall('socket', 3, () => -E.EAFNOSUPPORT, 'stub', 'networking comes with the network issue'),
];
