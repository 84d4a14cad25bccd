/**
 * The directory a *at() path is relative to (man 2 openat: "If pathname is relative and
 * dirfd is AT_FDCWD, it is interpreted relative to the current working directory").
 */
import { E, SyscallError } from '../errno.js';
import { AT_FDCWD } from '../abi/linux.js';
import type { Task } from './task.js';

/** Guest path of the base directory: cwd for absolute paths and AT_FDCWD, else the dir fd's path (EBADF, ENOTDIR). */
export function baseDir(t: Task, dirfd: number, path: string): string {
  if (path.startsWith('/') || dirfd === AT_FDCWD) return t.tg.cwd;
  const f = t.kernel.file(t, dirfd);
  if (f.kind !== 'dir') throw new SyscallError(E.ENOTDIR);
  return f.path;
}
