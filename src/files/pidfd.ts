/** 'pidfd' files: a process handle (man 2 pidfd_open); readable once the process has exited. */
import { E } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { POLLHUP, POLLIN } from '../abi/linux.js';
import { FileOps } from './file-ops.js';

/** Graph record: the process (thread group id) it refers to. */
export interface PidFdFile extends OpenFileBase {
  readonly kind: 'pidfd';
  readonly pidfdTgid: number;
}

export const pidFdFileOps: FileOps<PidFdFile> = {
  read: () => -E.EINVAL,
  write: () => -E.EBADF,
  readiness(t, f) {
    const g = t.kernel.state.threadGroups[f.pidfdTgid];
    return !g || g.zombie ? POLLIN | POLLHUP : 0;
  },
  /** A pidfs inode per process (Linux 6.9 and later): mode 0700 with no file type, owned by root (fstat used to look up its name as a path). */
  stat: (t, f) => ({ dev: 0x5, ino: 0x30000 + f.pidfdTgid, nlink: 1, mode: 0o700, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n }),
  anonInode: true,
  // No seek: ESPIPE, as on Linux 6.18's pidfs.
};
