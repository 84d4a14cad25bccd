/**
 * CPU time of guest tasks, as their platform contexts report it (each guest thread has its
 * own stub process on the ptrace platform), plus what earlier runs used before a checkpoint.
 */
import type { Task } from './task.js';
import type { Kernel } from './kernel.js';
import type { ThreadGroupState } from './state.js';

/** CPU time (ns) of a whole thread group. */
export function groupCpuNs(k: Kernel, tg: ThreadGroupState): bigint {
  let sum = tg.cpuTimeNs;
  for (const tid of tg.tids) { const x = k.tasks.get(tid); if (x) sum += x.platform.cpuTimeNs(); }
  return sum;
}

/** CPU time (ns) of the calling thread, or of its whole thread group. */
export function cpuTimeNs(t: Task, threadOnly = false): bigint {
  return threadOnly ? t.platform.cpuTimeNs() : groupCpuNs(t.kernel, t.tg);
}
