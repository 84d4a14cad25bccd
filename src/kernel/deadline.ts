/**
 * Waiting for a deadline on the guest's CLOCK_MONOTONIC (the kernel's one clock,
 * src/kernel/clock.ts), for blocked syscalls whose waiter records a deadline.
 */
import { Observable, defer, filter, map, repeat, take, timer } from 'rxjs';
import type { Task } from './task.js';
import type { Clock } from './clock.js';

/** Longest host timer Node arms (ms): longer ones would fire at once (TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A stream that emits once `clock`'s guest CLOCK_MONOTONIC has reached `deadline` (ns): never early,
 * as timers may round down, and never at once for a deadline years away (host timers are re-armed
 * in slices of at most MAX_TIMER_MS).
 */
export function untilMonotonic(clock: Clock, deadline: bigint): Observable<void> {
  return defer(() => timer(Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(Number(deadline - clock.monotonicNs()) / 1e6))))).pipe(
    repeat({ delay: () => timer(0) }),
    filter(() => clock.monotonicNs() >= deadline),
    take(1),
    map(() => undefined),
  );
}

/** untilMonotonic on the task's kernel clock. */
export function untilDeadline(t: Task, deadline: bigint): Observable<void> {
  return untilMonotonic(t.kernel.clock, deadline);
}
