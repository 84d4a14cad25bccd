/**
 * Everything else a single-process program needs at start-up: getrandom, futex (one
 * task), rseq, sysinfo, sched_* queries, membarrier, personality (man 2 of each).
 */
import crypto from 'node:crypto';
import os from 'node:os';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import { NS_PER_SEC } from '../kernel/clock.js';
import { syscall } from './entry.js';
import { readTimespec } from './time.js';
import { FUTEX_CLOCK_REALTIME, FUTEX_CMP_REQUEUE, FUTEX_PRIVATE_FLAG, FUTEX_REQUEUE, FUTEX_WAIT, FUTEX_WAIT_BITSET, FUTEX_WAKE, FUTEX_WAKE_BITSET, FUTEX_WAKE_OP, PROT_WRITE } from '../abi/linux.js';

function getrandom(t: Task): number {
  const buf = t.arg(0), len = Math.min(t.arg(1), 33554431), flags = t.argU32(2);
  if (flags & ~7) return -E.EINVAL;
  t.mm.chunks(buf, len, PROT_WRITE, (view) => crypto.randomFillSync(view));
  return len;
}

/** futex(2): wait queues in src/ipc/futex.ts. PI futexes are not supported (ENOSYS). */
function futex(t: Task): SyscallResult {
  const uaddr = t.arg(0), opFull = t.argInt(1), val = t.argU32(2), timeout = t.arg(3), uaddr2 = t.arg(4), val3 = t.argU32(5);
  const op = opFull & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
  const priv = !!(opFull & FUTEX_PRIVATE_FLAG);
  const fx = t.kernel.futexes;
  switch (op) {
    case FUTEX_WAIT: case FUTEX_WAIT_BITSET: {
      let deadline: bigint | undefined;
      if (timeout) {
        const ns = readTimespec(t, timeout);
        const mono = t.kernel.clock.monotonicNs();
        if (op === FUTEX_WAIT) deadline = mono + ns; // relative
        else deadline = opFull & FUTEX_CLOCK_REALTIME ? mono + (ns - t.kernel.clock.realtimeNs()) : ns; // absolute
      }
      return fx.wait(t, uaddr, val, op === FUTEX_WAIT ? 0xffffffff : val3, deadline, priv);
    }
    case FUTEX_WAKE: return fx.wake(t, uaddr, val, 0xffffffff, priv);
    case FUTEX_WAKE_BITSET: return fx.wake(t, uaddr, val, val3, priv);
    case FUTEX_REQUEUE: return fx.requeue(t, uaddr, val, uaddr2, timeout, undefined, priv);
    case FUTEX_CMP_REQUEUE: return fx.requeue(t, uaddr, val, uaddr2, timeout, val3, priv);
    case FUTEX_WAKE_OP: return fx.wakeOp(t, uaddr, val, uaddr2, timeout, val3, priv);
    default: return -E.ENOSYS;
  }
}

function sysinfo(t: Task): number {
  const b = new Uint8Array(112);
  const v = new DataView(b.buffer);
  v.setBigInt64(0, t.kernel.clock.monotonicNs() / NS_PER_SEC, true);
  // totalram/freeram: the sandbox's memory limit and what is left under it (the host's without one).
  const mem = t.kernel.memoryLimit?.guestView(os.totalmem(), os.freemem()) ?? { total: os.totalmem(), free: os.freemem() };
  v.setBigUint64(32, BigInt(mem.total), true);
  v.setBigUint64(40, BigInt(mem.free), true);
  v.setUint16(80, Object.keys(t.kernel.state.tasks).length, true);
  v.setUint32(104, 1, true); // mem_unit
  t.mm.write(t.arg(0), b);
  return 0;
}

export const miscSyscalls = [
  syscall('getrandom', 3, getrandom),
  syscall('futex', 6, futex, 'partial', 'no priority-inheritance (PI) operations'),
  syscall('rseq', 4, () => -E.ENOSYS, 'stub', 'glibc runs without restartable sequences when registration fails'),
  syscall('sysinfo', 1, sysinfo),
  syscall('getcpu', 3, (t) => { if (t.arg(0)) t.mm.writeU32(t.arg(0), 0); if (t.arg(1)) t.mm.writeU32(t.arg(1), 0); return 0; }, 'stub', 'always CPU 0, node 0'),
  syscall('membarrier', 3, (t) => (t.argInt(0) === 0 ? 0 : -E.EINVAL), 'partial', 'QUERY reports no commands'),
  syscall('personality', 1, (t) => (t.argU32(0) === 0xffffffff || t.argU32(0) === 0 ? 0 : -E.EINVAL), 'partial', 'only the query and PER_LINUX'),
];
