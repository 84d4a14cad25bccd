/**
 * inotify_init(2), inotify_init1(2), inotify_add_watch(2), inotify_rm_watch(2) (Linux
 * fs/notify/inotify/inotify_user.c): the syscall entries of the inotify family. The file itself
 * (its watches, its event queue, read and readiness) and the hooks that make events are
 * src/files/inotify.ts.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { IN_DONT_FOLLOW, IN_MASK_ADD, IN_MASK_CREATE, IN_ONLYDIR, IN_VALID_BITS, type InotifyFile, addWatch, dropInotify, fsObjectOf, newInotify, rmWatch } from '../files/inotify.js';
import { baseDir } from '../kernel/dirfd.js';
import { MAY_READ } from '../kernel/creds.js';
import { isDir } from '../vfs/stat.js';
import { modeOf } from '../vfs/vfs.js';
import { O_CLOEXEC, O_NONBLOCK } from '../abi/linux.js';
import { syscall } from './entry.js';

/** inotify_init1(2): EINVAL for flags other than IN_NONBLOCK | IN_CLOEXEC; EMFILE past 128 instances or a full fd table. */
function inotifyInit1(t: Task, flags: number): number {
  if (flags & ~(O_NONBLOCK | O_CLOEXEC)) return -E.EINVAL;
  const k = t.kernel;
  const f = newInotify(k, flags);
  if (typeof f === 'number') return f;
  const fd = k.installFd(t, f.id, !!(flags & O_CLOEXEC));
  if (fd < 0) dropInotify(k, f);
  return fd;
}

/** The inotify instance behind `fd`: EBADF when none is open, EINVAL for another kind of file. */
function inotifyOf(t: Task, fd: number): InotifyFile | number {
  const e = t.fdTable.fds[fd];
  const f = e ? t.kernel.state.openFiles[e.fileId] : undefined;
  if (!f) return -E.EBADF;
  return f.kind === 'inotify' ? f : -E.EINVAL;
}

/**
 * inotify_add_watch(2), in Linux's order of checks: EINVAL for IN_MASK_ADD with IN_MASK_CREATE or
 * a mask without a valid bit; EBADF/EINVAL for the fd; the path walk (ENOENT, ENOTDIR — also for a
 * non-directory with IN_ONLYDIR —, ELOOP, EACCES for search), EACCES without read permission on
 * the object; EEXIST with IN_MASK_CREATE on a watched object. Returns the watch descriptor.
 */
function inotifyAddWatch(t: Task, fd: number, pathAddr: number, mask: number): number {
  if ((mask & IN_MASK_ADD) && (mask & IN_MASK_CREATE)) return -E.EINVAL;
  if (!(mask & IN_VALID_BITS)) return -E.EINVAL;
  const f = inotifyOf(t, fd);
  if (typeof f === 'number') return f;
  const path = t.mm.readCString(pathAddr);
  if (path === '') return -E.ENOENT;
  const k = t.kernel;
  const n = k.vfs.resolve(path, baseDir(t, -100, path), !(mask & IN_DONT_FOLLOW));
  if ((mask & IN_ONLYDIR) && !isDir(modeOf(n))) return -E.ENOTDIR;
  k.vfs.checkAccess(n, MAY_READ);
  return addWatch(t.kernel, f, fsObjectOf(n), mask >>> 0);
}

/** inotify_rm_watch(2): EBADF/EINVAL for the fd, EINVAL for an unknown wd; queues IN_IGNORED. */
function inotifyRmWatch(t: Task, fd: number, wd: number): number {
  const f = inotifyOf(t, fd);
  if (typeof f === 'number') return f;
  return rmWatch(t.kernel, f, wd);
}

export const inotifySyscalls = [
  syscall('inotify_init', 0, (t) => inotifyInit1(t, 0)),
  syscall('inotify_init1', 1, (t) => inotifyInit1(t, t.argInt(0))),
  syscall('inotify_add_watch', 3, (t) => inotifyAddWatch(t, t.argInt(0), t.arg(1), t.argU32(2)), 'partial',
    'events come from the sandbox\'s own changes (the host\'s are not seen); IN_CLOSE_NOWRITE of an executable comes at exec, not at exit; no events for unix socket binds'),
  syscall('inotify_rm_watch', 2, (t) => inotifyRmWatch(t, t.argInt(0), t.argInt(1))),
];
