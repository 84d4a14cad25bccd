/** 'pty' files: either side of a pseudo-terminal (the line discipline is src/ipc/pty.ts). */
import { E, SyscallError } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { FileOps, statByPath } from './file-ops.js';

/** Graph record: which pseudo-terminal (ptys[id]) and whether this is its master side. */
export interface PtyFile extends OpenFileBase {
  readonly kind: 'pty';
  readonly pty: { readonly id: number; readonly master: boolean };
}

export const ptyFileOps: FileOps<PtyFile> = {
  read: (t, f, buf, count) => t.kernel.ptys.read(t, f, buf, count),
  write: (t, f, buf, count) => t.kernel.ptys.write(t, f, buf, count),
  readiness: (t, f) => t.kernel.ptys.readiness(f),
  stat: (t, f) => statByPath(t, f),
  ioctl: (t, f, req, arg) => t.kernel.ptys.ioctl(t, f, req, arg),
  reopen(t, f, flags) {
    const p = t.kernel.state.ptys?.[f.pty.id];
    if (!p) throw new SyscallError(E.EIO);
    if (f.pty.master) throw new SyscallError(E.ENXIO);
    return t.kernel.ptys.openSlave(p, flags);
  },
  release: (k, f) => k.ptys.release(f),
  preadable: () => false,
  pwritable: () => false,
};
