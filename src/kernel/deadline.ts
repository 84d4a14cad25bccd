/**
 * Waiting for a deadline on the guest's CLOCK_MONOTONIC (the kernel's one clock,
 * src/kernel/clock.ts), for blocked syscalls whose waiter records a deadline.
 */
import { Observable, defer, filter, map, repeat, take, timer } from 'rxjs';
import type { Task } from './task.js';

/** A stream that emits once guest CLOCK_MONOTONIC has reached `deadline` (ns): never early, as timers may round down. */
export function untilDeadline(t: Task, deadline: bigint): Observable<void> {
  const clock = t.kernel.clock;
  return defer(() => timer(Math.max(0, Math.ceil(Number(deadline - clock.monotonicNs()) / 1e6)))).pipe(
    repeat({ delay: () => timer(0) }),
    filter(() => clock.monotonicNs() >= deadline),
    take(1),
    map(() => undefined),
  );
}
