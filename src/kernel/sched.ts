/**
 * A thread's scheduling attributes as graph data (man 7 sched): policy and parameters, nice
 * value, the reset-on-fork flag and its timer slack, and what a new thread inherits of them
 * (kernel/sched/core.c sched_fork, kernel/fork.c copy_process). The host schedules the stubs;
 * these are what the guest set and sees. The syscalls that change them are
 * src/syscalls/sched.ts and prctl's PR_SET_TIMERSLACK.
 */
import { SCHED_DEADLINE, SCHED_FIFO, SCHED_OTHER, SCHED_RR } from '../abi/linux.js';
import type { SchedAttrs, TaskState, ThreadGroupState } from './state.js';

/** init's timer slack (ns), which every thread inherits unless changed: 50 µs (include/linux/init_task.h). */
export const DEFAULT_TIMER_SLACK_NS = 50_000n;

const NORMAL: SchedAttrs = { policy: SCHED_OTHER, priority: 0 };

/** rt_or_dl_task_policy: SCHED_FIFO, SCHED_RR or SCHED_DEADLINE. */
export const realtimeOrDeadline = (policy: number): boolean => policy === SCHED_FIFO || policy === SCHED_RR || policy === SCHED_DEADLINE;

/** A thread's policy and parameters: its own, else its thread group's (older graphs), else SCHED_OTHER. */
export function schedOf(ts: TaskState, tg: ThreadGroupState | undefined): SchedAttrs {
  return ts.sched ?? tg?.sched ?? NORMAL;
}

/** A thread's nice value (-20..19): its own, else its thread group's (older graphs), else 0. */
export function niceOf(ts: TaskState, tg: ThreadGroupState | undefined): number {
  return ts.nice ?? tg?.nice ?? 0;
}

/** A thread's timer slack (ns; PR_GET_TIMERSLACK): 0 for a realtime or deadline thread, else its own or 50 µs. */
export function timerSlackOf(ts: TaskState, tg: ThreadGroupState | undefined): bigint {
  return ts.timerSlackNs ?? (realtimeOrDeadline(schedOf(ts, tg).policy) ? 0n : DEFAULT_TIMER_SLACK_NS);
}

/** The scheduling fields of a new thread's record (only those set). */
export type InheritedSched = Pick<TaskState, 'sched' | 'nice' | 'timerSlackNs' | 'defaultTimerSlackNs'>;

/**
 * What a new thread or process takes of its creator's scheduling attributes (sched_fork,
 * copy_process): policy, priority and nice are copied, except that with the reset-on-fork flag a
 * realtime or deadline creator's child is SCHED_OTHER at nice 0, a negative nice becomes 0, a
 * custom time slice goes back to the base one, and the child never has the flag. Both of the child's timer slacks are the creator's current slack.
 * A SCHED_DEADLINE creator without the flag cannot fork (the caller returns EAGAIN): `undefined`.
 */
export function inheritedSched(parent: TaskState, tg: ThreadGroupState | undefined): InheritedSched | undefined {
  let sched = schedOf(parent, tg);
  let nice = niceOf(parent, tg);
  if (sched.resetOnFork) {
    if (realtimeOrDeadline(sched.policy)) { sched = NORMAL; nice = 0; } else {
      sched = { policy: sched.policy, priority: 0 }; // the flag and a custom slice go
      if (nice < 0) nice = 0;
    }
  } else if (sched.policy === SCHED_DEADLINE) return undefined;
  const out: { -readonly [K in keyof InheritedSched]: InheritedSched[K] } = {};
  // Explicit when the group has older graphs' attributes, which would otherwise stand in.
  if (sched.policy !== SCHED_OTHER || sched.sliceNs || tg?.sched) out.sched = structuredClone(sched);
  if (nice || tg?.nice !== undefined) out.nice = nice;
  const slack = timerSlackOf(parent, tg);
  if (slack !== DEFAULT_TIMER_SLACK_NS) { out.timerSlackNs = slack; out.defaultTimerSlackNs = slack; }
  return out;
}
