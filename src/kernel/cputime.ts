/**
 * CPU time of guest tasks, read from their host stubs' CPU clocks (each guest thread has
 * its own stub process), plus what earlier runs used before a checkpoint.
 */
import * as libc from '../../platforms/host/libc.js';
import { NS_PER_SEC } from './clock.js';
import type { Task } from './task.js';
import type { Kernel } from './kernel.js';
import type { ThreadGroupState } from './state.js';

/** CPU time (ns) of one stub process. */
function stubCpuNs(pid: number | undefined): bigint {
  if (!pid) return 0n;
  const ts = new BigInt64Array(2);
  // CPUCLOCK_SCHED of another process: clockid = (~pid << 3) | 2 (include/linux/posix-timers.h).
  return libc.clockGettime((~pid << 3) | 2, ts) === 0 ? ts[0] * NS_PER_SEC + ts[1] : 0n;
}

const pidOf = (x: Task) => (x.platform as unknown as { pid?: number }).pid;

/** CPU time (ns) of a whole thread group. */
export function groupCpuNs(k: Kernel, tg: ThreadGroupState): bigint {
  let sum = tg.cpuTimeNs;
  for (const tid of tg.tids) { const x = k.tasks.get(tid); if (x) sum += stubCpuNs(pidOf(x)); }
  return sum;
}

/** CPU time (ns) of the calling thread, or of its whole thread group. */
export function cpuTimeNs(t: Task, threadOnly = false): bigint {
  return threadOnly ? stubCpuNs(pidOf(t)) : groupCpuNs(t.kernel, t.tg);
}
