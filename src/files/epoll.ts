/**
 * 'epoll' files: an epoll instance's interest list, in the graph (man 7 epoll). Readiness
 * of the watched files is asked of their own file operations through the kernel.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { OpenFileBase } from '../kernel/state.js';
import { EPOLLONESHOT, POLLERR, POLLHUP, POLLIN } from '../abi/linux.js';
import { FileOps, anonInodeStat } from './file-ops.js';

/** One watched file: the open file it named, the events asked for, the user data, and for EPOLLET what was last reported. */
export interface EpollInterest { readonly fileId: number; readonly events: number; readonly data: bigint; readonly edge?: boolean; readonly seen?: number }

/** Graph record: the interest list by guest fd. */
export interface EpollFile extends OpenFileBase {
  readonly kind: 'epoll';
  readonly epollInterest: Readonly<Record<number, EpollInterest>>;
}

/**
 * The ready entries of an epoll set as [events, data] pairs; with `consume` (epoll_wait),
 * edge-triggered entries remember what they reported and EPOLLONESHOT entries are disarmed.
 */
export function epollReady(t: Task, ep: EpollFile, consume: boolean): Array<[number, bigint]> {
  const out: Array<[number, bigint]> = [];
  for (const [fd, it] of Object.entries(ep.epollInterest)) {
    const at = ['openFiles', ep.id, 'epollInterest', Number(fd)];
    const f = t.kernel.state.openFiles[it.fileId];
    if (!f || !it.events) continue;
    const r = t.kernel.fileOps(f).readiness(t, f) & (it.events | POLLERR | POLLHUP);
    // Edge-triggered: report only when something became ready since the last report.
    if (it.edge) {
      const fresh = r & ~(it.seen ?? 0);
      if (consume && it.seen !== r) t.kernel.emit({ type: 'epoll.report', fileId: ep.id, fd: Number(fd) }, [['set', [...at, 'seen'], r]]);
      if (!fresh) continue;
    }
    if (r) {
      out.push([r, it.data]);
      if (consume && (it.events & EPOLLONESHOT)) t.kernel.emit({ type: 'epoll.report', fileId: ep.id, fd: Number(fd) }, [['set', [...at, 'events'], 0]]);
    }
  }
  return out;
}

export const epollFileOps: FileOps<EpollFile> = {
  read: () => -E.EINVAL,
  write: () => -E.EBADF,
  readiness: (t, f) => (epollReady(t, f, false).length ? POLLIN : 0),
  /** The shared anon inode (fstat used to look up its name as a path). */
  stat: () => anonInodeStat(),
  anonInode: true,
  seek: (t, f) => f.offset, // noop_llseek
  /** The earliest time a watched file's readiness changes by itself (a timerfd; one level, as hostReadiness). */
  readyAt(t, f) {
    let at: bigint | undefined;
    for (const i of Object.values(f.epollInterest)) {
      const g = t.kernel.state.openFiles[i.fileId];
      const a = g && g.kind !== 'epoll' && i.events ? t.kernel.fileOps(g).readyAt?.(t, g) : undefined;
      if (a !== undefined && (at === undefined || a < at)) at = a;
    }
    return at;
  },
  /** Watching a host stream makes the waiter poll the host (one level: an epoll inside an epoll is not followed). */
  hostReadiness(t, f) {
    return Object.values(f.epollInterest).some((i) => {
      const g = t.kernel.state.openFiles[i.fileId];
      return !!g && g.kind !== 'epoll' && !!t.kernel.fileOps(g).hostReadiness?.(t, g);
    });
  },
};
