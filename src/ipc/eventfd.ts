/**
 * eventfd (man 2 eventfd): a 64-bit counter in the graph. read takes the counter (or 1
 * with EFD_SEMAPHORE) and blocks at 0; write adds and blocks if it would pass 2^64-2.
 * Wake-ups share the pipes' change channel, keyed by the open file's id.
 */
import type { EventFdFile } from '../files/eventfd.js';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import { filter } from 'rxjs';
import { EFD_NONBLOCK, EFD_SEMAPHORE } from '../abi/linux.js';

const MAX = 0xfffffffffffffffen;

function changed(t: Task, f: EventFdFile) {
  return t.kernel.pipes.changed$.pipe(filter((id) => id === f.id));
}

export function eventfdRead(t: Task, f: EventFdFile, buf: number, count: number): SyscallResult {
  if (count < 8) return -E.EINVAL;
  t.mm.chunks(buf, 8, 2, () => undefined);
  const attempt = (): number | undefined => {
    const e = f.eventfd;
    if (e.count === 0n) return undefined;
    const v = e.semaphore ? 1n : e.count;
    t.kernel.emit({ type: 'eventfd.read', fileId: f.id, value: v }, [['set', ['openFiles', f.id, 'eventfd', 'count'], e.count - v]]);
    t.mm.writeU64(buf, v);
    t.kernel.pipes.changed$.next(f.id);
    return 8;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & EFD_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'eventfd-read', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed(t, f), attempt) };
}

export function eventfdWrite(t: Task, f: EventFdFile, buf: number, count: number): SyscallResult {
  if (count < 8) return -E.EINVAL;
  const v = t.mm.readU64(buf);
  if (v === 0xffffffffffffffffn) return -E.EINVAL;
  const attempt = (): number | undefined => {
    const e = f.eventfd;
    if (MAX - e.count < v) return undefined;
    t.kernel.emit({ type: 'eventfd.write', fileId: f.id, value: v }, [['set', ['openFiles', f.id, 'eventfd', 'count'], e.count + v]]);
    t.kernel.pipes.changed$.next(f.id);
    return 8;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & EFD_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'eventfd-write', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed(t, f), attempt) };
}

/** A new eventfd open file (refs 0 until installed) with counter `initval`; EFD_SEMAPHORE and EFD_NONBLOCK from `flags`. */
export function newEventfd(k: Kernel, initval: number, flags: number): EventFdFile {
  return k.newOpenFile({ kind: 'eventfd', path: 'anon_inode:[eventfd]', flags: 2 | (flags & EFD_NONBLOCK), eventfd: { count: BigInt(initval), semaphore: !!(flags & EFD_SEMAPHORE) } });
}
