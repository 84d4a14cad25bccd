/**
 * eventfd (man 2 eventfd): a 64-bit counter in the graph. read takes the counter (or 1
 * with EFD_SEMAPHORE) and blocks at 0; write adds and blocks if it would pass 2^64-2.
 * Wake-ups share the pipes' change channel, keyed by the open file's id.
 */
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState } from '../kernel/state.js';
import { filter } from 'rxjs';
import { syscall } from '../syscalls/table.js';

const MAX = 0xfffffffffffffffen;
const EFD_SEMAPHORE = 1, EFD_NONBLOCK = 0o4000, EFD_CLOEXEC = 0o2000000;

function changed(t: Task, f: OpenFileState) {
  return t.kernel.pipes.changed$.pipe(filter((id) => id === f.id));
}

export function eventfdRead(t: Task, f: OpenFileState, buf: number, count: number): SyscallResult {
  if (count < 8) return -E.EINVAL;
  t.mm.chunks(buf, 8, 2, () => undefined);
  const attempt = (): number | undefined => {
    const e = f.eventfd!;
    if (e.count === 0n) return undefined;
    const v = e.semaphore ? 1n : e.count;
    e.count -= v;
    t.mm.writeU64(buf, v);
    t.kernel.pipes.changed$.next(f.id);
    return 8;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & EFD_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'eventfd-read', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed(t, f), attempt) };
}

export function eventfdWrite(t: Task, f: OpenFileState, buf: number, count: number): SyscallResult {
  if (count < 8) return -E.EINVAL;
  const v = t.mm.readU64(buf);
  if (v === 0xffffffffffffffffn) return -E.EINVAL;
  const attempt = (): number | undefined => {
    const e = f.eventfd!;
    if (MAX - e.count < v) return undefined;
    e.count += v;
    t.kernel.pipes.changed$.next(f.id);
    return 8;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & EFD_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'eventfd-write', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed(t, f), attempt) };
}

function eventfd2(t: Task, initval: number, flags: number): number {
  if (flags & ~(EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC)) return -E.EINVAL;
  const f = t.kernel.newOpenFile({ kind: 'eventfd', path: 'anon_inode:[eventfd]', flags: 2 | (flags & EFD_NONBLOCK), eventfd: { count: BigInt(initval), semaphore: !!(flags & EFD_SEMAPHORE) } });
  const fd = t.kernel.installFd(t, f.id, !!(flags & EFD_CLOEXEC));
  if (fd < 0) delete t.kernel.state.openFiles[f.id];
  return fd;
}

export const eventfdSyscalls = [
  syscall('eventfd', 1, (t) => eventfd2(t, t.argU32(0), 0)),
  syscall('eventfd2', 2, (t) => eventfd2(t, t.argU32(0), t.argInt(1))),
];
