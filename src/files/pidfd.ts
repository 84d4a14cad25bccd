/** 'pidfd' files: a process handle (man 2 pidfd_open); readable once the process has exited. */
import { E } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { POLLHUP, POLLIN } from '../abi/linux.js';
import { FileOps, seekBySize, statByPath } from './file-ops.js';

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
  stat: (t, f) => statByPath(t, f),
  seek: (t, f, off, whence) => seekBySize(t, f, off, whence, () => statByPath(t, f).size),
};
