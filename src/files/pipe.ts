/** 'pipe' files: either end of a pipe or an open FIFO (the pipe itself is src/ipc/pipe.ts). */
import { E, SyscallError } from '../errno.js';
import type { OpenFileBase } from '../kernel/state.js';
import { FIONREAD, O_ACCMODE, O_RDWR, O_WRONLY, PIPE_BUF, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, S_IFIFO } from '../abi/linux.js';
import { FileOps, InodeAttrs, inodeStat, reopenFlags } from './file-ops.js';
import type { Task } from '../kernel/task.js';

/** Graph record: which pipe (pipes[pipeId]); which end is in `flags` (O_WRONLY: the write end). */
export interface PipeFile extends OpenFileBase {
  readonly kind: 'pipe';
  readonly pipeId: number;
  /** A FIFO opened by path: its inode in the upper layer (fstat, fchmod and fchown are the FIFO's); absent for an anonymous pipe, or in older graphs. */
  readonly inodeId?: number;
}

/** A pipe's pipefs inode: its creator's filesystem ids (the caller's in graphs that lack them) and mode 0600 until fchmod. */
function pipeAttrs(t: Task, f: PipeFile): InodeAttrs {
  const p = t.kernel.state.pipes[f.pipeId];
  const [uid, gid] = p?.owner ?? [t.tg.uid, t.tg.gid];
  return { uid, gid, mode: p?.mode ?? 0o600 };
}

export const pipeFileOps: FileOps<PipeFile> = {
  read: (t, f, buf, count) => t.kernel.pipes.read(t, f, buf, count),
  write: (t, f, buf, count) => t.kernel.pipes.write(t, f, buf, count),
  readiness(t, f) {
    const p = t.kernel.state.pipes[f.pipeId];
    if (!p) return POLLERR;
    if ((f.flags & 3) === 1) return p.readers === 0 ? POLLERR | POLLOUT : p.buf.length - p.len >= PIPE_BUF ? POLLOUT | POLLWRNORM : 0;
    return (p.len > 0 ? POLLIN | POLLRDNORM : 0) | (p.writers === 0 ? POLLHUP : 0);
  },
  stat(t, f) {
    const ino = f.inodeId !== undefined ? t.kernel.state.fs.inodes[f.inodeId] : undefined;
    if (ino) return t.kernel.vfs.stat({ kind: 'upper', path: f.path, inode: ino });
    return inodeStat(0xc, 0x10000 + f.pipeId, S_IFIFO, pipeAttrs(t, f));
  },
  inodeAttrs: (t, f) => (f.path.startsWith('pipe:[') ? pipeAttrs(t, f) : undefined),
  setInodeAttrs(t, f, a) {
    t.kernel.emit({ type: 'pipe.setattr', pipe: f.pipeId, ...a }, [['set', ['pipes', f.pipeId, 'owner'], [a.uid, a.gid]], ['set', ['pipes', f.pipeId, 'mode'], a.mode]]);
  },
  ioctl(t, f, req, arg) {
    if (req !== FIONREAD) return -E.ENOTTY;
    t.mm.writeU32(arg, t.kernel.pipes.available(f));
    return 0;
  },
  reopen(t, f, flags) {
    const p = t.kernel.state.pipes[f.pipeId];
    const acc = flags & O_ACCMODE;
    if (!p || acc === O_RDWR) throw new SyscallError(acc === O_RDWR ? E.EINVAL : E.ENOENT);
    t.kernel.pipes.ends(p, acc === O_WRONLY ? 0 : 1, acc === O_WRONLY ? 1 : 0);
    return t.kernel.newOpenFile({ kind: 'pipe', path: f.path, flags: reopenFlags(flags), pipeId: p.id });
  },
  release: (k, f) => k.pipes.release(f),
  preadable: () => false,
  pwritable: () => false,
  syncable: false,
};
