/**
 * eventfd(2), eventfd2(2): the syscall entries of the eventfd family. The object itself
 * (a 64-bit counter in the graph, read/write semantics) is src/ipc/eventfd.ts.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { newEventfd } from '../ipc/eventfd.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, EFD_SEMAPHORE } from '../abi/linux.js';
import { syscall } from './entry.js';

/** eventfd2(2): EINVAL for unknown flags, EMFILE when the fd table is full. */
function eventfd2(t: Task, initval: number, flags: number): number {
  if (flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC)) return -E.EINVAL;
  const f = newEventfd(t.kernel, initval, flags);
  const fd = t.kernel.installFd(t, f.id, !!(flags & EFD_CLOEXEC));
  if (fd < 0) t.kernel.discardFile(f.id);
  return fd;
}

export const eventfdSyscalls = [
  syscall('eventfd', 1, (t) => eventfd2(t, t.argU32(0), 0)),
  syscall('eventfd2', 2, (t) => eventfd2(t, t.argU32(0), t.argInt(1))),
];
