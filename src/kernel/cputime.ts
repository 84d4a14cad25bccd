/**
 * CPU time of guest tasks, as their platform contexts report it (each guest thread has its
 * own stub process on the ptrace platform), plus what earlier runs used before a checkpoint.
 */
import type { Task } from './task.js';
import type { Kernel } from './kernel.js';
import type { ResourceUsage, ThreadGroupState } from './state.js';

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

/** No resource use. */
export const NO_USAGE: ResourceUsage = { utimeNs: 0n, stimeNs: 0n, minflt: 0, majflt: 0, nvcsw: 0, nivcsw: 0, maxrssKb: 0 };

/** Two resource uses together (sums; the larger peak RSS, as Linux's ru_maxrss of children). */
export function addUsage(a: ResourceUsage, b: ResourceUsage): ResourceUsage {
  return {
    utimeNs: a.utimeNs + b.utimeNs, stimeNs: a.stimeNs + b.stimeNs, minflt: a.minflt + b.minflt, majflt: a.majflt + b.majflt,
    nvcsw: a.nvcsw + b.nvcsw, nivcsw: a.nivcsw + b.nivcsw, maxrssKb: Math.max(a.maxrssKb, b.maxrssKb),
  };
}

/**
 * Resource use of live contexts (the whole thread group, or one task): the host's counts for
 * their stubs, with the CPU time split into user and system time in the host's proportion of
 * the precise total; the peak RSS is the largest stub's. Voluntary switches are not the host's
 * (every trapped syscall stops a stub) but the times a task blocked in the kernel.
 */
function liveUsage(k: Kernel, tids: readonly number[], timesOnly = false): ResourceUsage {
  let u = NO_USAGE;
  for (const tid of tids) {
    const x = k.tasks.get(tid);
    if (!x) continue;
    const h = x.platform.usage(timesOnly);
    const cpu = x.platform.cpuTimeNs(), ticks = h.utimeNs + h.stimeNs;
    const utimeNs = ticks > 0n ? (cpu * h.utimeNs) / ticks : cpu;
    u = addUsage(u, { utimeNs, stimeNs: cpu - utimeNs, minflt: h.minflt, majflt: h.majflt, nvcsw: 0, nivcsw: h.nivcsw, maxrssKb: h.maxrssKb });
  }
  return u;
}

/**
 * getrusage(RUSAGE_SELF) of a thread group: its earlier runs (checkpointed) and its live threads.
 * With `timesOnly` (/proc/PID/stat), the live threads' peak RSS and preemptions are not asked of the host (0).
 */
export function groupUsage(k: Kernel, tg: ThreadGroupState, timesOnly = false): ResourceUsage {
  if (tg.exitUsage) return tg.exitUsage;
  let live = liveUsage(k, tg.tids, timesOnly);
  if (live.maxrssKb) live = { ...live, maxrssKb: live.maxrssKb + (tg.forkRssKb ?? 0) };
  const u = addUsage(tg.usageBase ?? NO_USAGE, live);
  return { ...u, nvcsw: u.nvcsw + (tg.nvcsw ?? 0) };
}

/** getrusage(RUSAGE_THREAD) of the calling thread (its live context only). */
export function taskUsage(t: Task): ResourceUsage {
  return { ...liveUsage(t.kernel, [t.tid]), nvcsw: t.state.nvcsw ?? 0 };
}

/** The resident set (kB) of a process's live threads now (they share one address space: the largest stub's). */
export function groupRssKb(k: Kernel, tg: ThreadGroupState): number {
  let rss = 0;
  for (const tid of tg.tids) { const x = k.tasks.get(tid); if (x) rss = Math.max(rss, x.platform.usage().rssKb); }
  return rss;
}
