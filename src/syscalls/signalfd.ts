/**
 * signalfd(2), signalfd4(2) (Linux fs/signalfd.c): the syscall entries of the signalfd
 * family. The file itself (its mask, read and readiness) is src/files/signalfd.ts.
 */
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { sigbit } from '../kernel/signals.js';
import { SFD_CLOEXEC, SFD_NONBLOCK, SIGKILL, SIGSTOP } from '../abi/linux.js';
import { syscall } from './entry.js';

/**
 * signalfd4(2): a new signalfd reading the signals of the mask at `maskAddr` (fd -1), or a new
 * mask for signalfd `fd`. EINVAL unless `sizemask` is 8, for unknown flags, or when `fd` is
 * not a signalfd; EFAULT, EBADF, EMFILE. SIGKILL and SIGSTOP are silently left out.
 */
function signalfd4(t: Task, fd: number, maskAddr: number, sizemask: number, flags: number): number {
  if (sizemask !== 8) return -E.EINVAL;
  const mask = t.mm.readU64(maskAddr) & ~(sigbit(SIGKILL) | sigbit(SIGSTOP));
  if (flags & ~(SFD_CLOEXEC | SFD_NONBLOCK)) return -E.EINVAL;
  const k = t.kernel;
  if (fd !== -1) {
    const f = k.file(t, fd);
    if (f.kind !== 'signalfd') return -E.EINVAL;
    k.emit({ type: 'file.update', fileId: f.id, what: 'mask' }, [['set', ['openFiles', f.id, 'mask'], mask]]);
    k.signals.queued$.next(t.tid); // readers and pollers re-check with the new mask
    return fd;
  }
  const f = k.newOpenFile({ kind: 'signalfd', path: 'anon_inode:[signalfd]', flags: 2 | (flags & SFD_NONBLOCK), mask });
  const nfd = k.installFd(t, f.id, !!(flags & SFD_CLOEXEC));
  if (nfd < 0) k.discardFile(f.id);
  return nfd;
}

export const signalfdSyscalls = [
  syscall('signalfd', 3, (t) => signalfd4(t, t.argInt(0), t.arg(1), t.arg(2), 0), 'partial', 'a real-time signal sent twice before it is read is read once (one pending instance per signal, as for delivery)'),
  syscall('signalfd4', 4, (t) => signalfd4(t, t.argInt(0), t.arg(1), t.arg(2), t.argInt(3)), 'partial', 'a real-time signal sent twice before it is read is read once (one pending instance per signal, as for delivery)'),
];
