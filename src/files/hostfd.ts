/**
 * 'hostfd' files: the caller's stdio (fds 0–2) and its terminal (/dev/tty), reached through
 * the kernel's host services (platforms/host-services.ts). On restore they are attached to
 * the restoring command's own stdio.
 */
import { Observable } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import { HostError } from '../../platforms/host-services.js';
import type { Task } from '../kernel/task.js';
import type { OpenFileBase } from '../kernel/state.js';
import {
  FIONREAD, O_NONBLOCK, PROT_READ, PROT_WRITE, SIGPIPE, TCGETS, TCSETS, TCSETSF, TCSETSW, TERMIOS_SIZE, TIOCGPGRP, TIOCGSID, TIOCGWINSZ,
  TIOCSPGRP, TIOCSWINSZ, WINSIZE_SIZE, POLLERR, POLLIN, POLLOUT,
} from '../abi/linux.js';
import { FileOps, copyToGuest, reopenFlags, seekBySize } from './file-ops.js';

/**
 * Graph record: which of the caller's stdio fds (0, 1, 2) it is attached to. Its flags' access mode is
 * the host fd's at the start (hostFdAccessMode), kept as it is across checkpoint/restore.
 */
export interface HostFdFile extends OpenFileBase {
  readonly kind: 'hostfd';
  readonly hostFd: number;
}

/**
 * The guest errno for a failed host read(2)/write(2) on a caller's fd: Node's fs errors carry libuv's
 * negative errno (-EBADF, -EIO…), which on Linux is the host's own; EIO when there is none. Errors that
 * are not the host's (a bug of ours) are rethrown.
 */
function hostErrno(e: unknown): number {
  if (e instanceof HostError) return e.errno;
  const n = (e as NodeJS.ErrnoException).errno;
  if (typeof n === 'number' && n < 0) return -n;
  if ((e as NodeJS.ErrnoException).code) return E.EIO;
  throw e;
}

/**
 * The access mode (O_RDONLY, O_WRONLY or O_RDWR) for the open file description of the caller's fd
 * `hostFd`: the host fd's own, fcntl(F_GETFL) & O_ACCMODE, as a child inheriting it gets it on
 * Linux. `fallback` when the host fd is not open. Saved in the graph as the file's flags.
 */
export function hostFdAccessMode(host: { accessMode(fd: number): number | undefined }, hostFd: number, fallback: number): number {
  return host.accessMode(hostFd) ?? fallback;
}

/** Write all of `view` to a host fd (EAGAIN retried after 1 ms); throws SyscallError with the host's errno (EPIPE, EBADF, EIO…). */
export function writeHostFd(t: Task, hfd: number, view: Uint8Array): number {
  let off = 0;
  while (off < view.length) {
    try {
      off += t.kernel.host.writeSync(hfd, view, off, view.length - off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); continue; }
      if (code === 'EPIPE') throw new SyscallError(E.EPIPE);
      throw new SyscallError(hostErrno(e));
    }
  }
  return off;
}

/** ioctl(2) request sizes passed through to the caller's terminal: [bytes, whether the guest supplies them]. */
const TTY_IOCTLS: Record<number, [number, boolean]> = {
  [TCGETS]: [TERMIOS_SIZE, false], [TCSETS]: [TERMIOS_SIZE, true], [TCSETSW]: [TERMIOS_SIZE, true], [TCSETSF]: [TERMIOS_SIZE, true],
  [TIOCGWINSZ]: [WINSIZE_SIZE, false], [TIOCSWINSZ]: [WINSIZE_SIZE, true], [TIOCGPGRP]: [4, false], [TIOCSPGRP]: [4, true], [TIOCGSID]: [4, false], [FIONREAD]: [4, false],
};

export const hostFdFileOps: FileOps<HostFdFile> = {
  read(t, f, buf, count) {
    const hfd = f.hostFd;
    if (count === 0) return 0;
    t.mm.chunks(buf, Math.min(count, 1), PROT_WRITE, () => undefined); // EFAULT before blocking
    const host = t.kernel.host;
    if (!host.isStream(hfd)) {
      let total = 0, short = false;
      t.mm.chunks(buf, count, PROT_WRITE, (view) => {
        if (short) return;
        let n: number;
        try { n = host.readSync(hfd, view, null); } catch (e) {
          // The host's error is the guest's (man 2 read), after any bytes already taken.
          if (total > 0) { short = true; return; }
          throw new SyscallError(hostErrno(e));
        }
        total += n;
        if (n < view.length) short = true;
      });
      return total;
    }
    // A pipe, terminal or socket: take what is there without blocking; else wait for readiness
    // (no host read in flight, so a signal that interrupts the wait loses no bytes).
    const tmp = Buffer.alloc(Math.min(count, 65536));
    const attempt = (): number | undefined => {
      let n: number | undefined;
      try { n = host.readNow(hfd, tmp); } catch (e) { throw new SyscallError(hostErrno(e)); }
      return n === undefined ? undefined : copyToGuest(t, buf, tmp.subarray(0, n));
    };
    const now = attempt();
    if (now !== undefined) return now;
    if (f.flags & O_NONBLOCK) return -E.EAGAIN;
    return {
      waiter: { kind: 'read', fileId: f.id, interruptible: true, restartable: true },
      result$: t.kernel.whenRunnable(new Observable<void>((sub) => host.onReadable(hfd, () => sub.next())), attempt),
    };
  },
  write(t, f, buf, count) {
    let total = 0;
    t.mm.chunks(buf, count, PROT_READ, () => undefined); // EFAULT before any byte leaves
    try {
      t.mm.chunks(buf, count, PROT_READ, (view) => { total += writeHostFd(t, f.hostFd, view); });
    } catch (e) {
      if (e instanceof SyscallError && e.errno === E.EPIPE) {
        t.kernel.signals.send(t.tgid, SIGPIPE, { signo: SIGPIPE, code: 0, pid: t.tgid }, t.tid);
        if (total === 0) return -E.EPIPE;
        return total;
      }
      throw e;
    }
    return total;
  },
  readiness(t, f) {
    const r = t.kernel.host.pollOnce(f.hostFd, POLLIN | POLLOUT);
    return r < 0 ? POLLERR : r;
  },
  stat: (t, f) => t.kernel.host.fstat(f.hostFd),
  seek(t, f, off, whence) {
    if (t.kernel.host.isStream(f.hostFd)) return -E.ESPIPE;
    return seekBySize(t, f, off, whence, () => t.kernel.host.fstat(f.hostFd).size);
  },
  ioctl(t, f, req, arg) {
    const hfd = f.hostFd;
    if (req === TIOCGPGRP || req === TIOCSPGRP || req === TIOCGSID) {
      // The controlling terminal's foreground process group is the sandbox's own (pids are virtual).
      if (!t.kernel.host.isTerminal(hfd)) return -E.ENOTTY;
      const cfg = t.kernel.state.config as typeof t.kernel.state.config & { ttyForegroundPgid?: number };
      if (req === TIOCSPGRP) {
        const pgid = t.mm.readU32(arg) | 0;
        if (pgid <= 0) return -E.EINVAL;
        if (!Object.values(t.kernel.state.threadGroups).some((g) => g.pgid === pgid && !g.zombie)) return -E.EPERM;
        cfg.ttyForegroundPgid = pgid;
        return 0;
      }
      t.mm.writeU32(arg, req === TIOCGSID ? t.tg.sid : cfg.ttyForegroundPgid ?? 1);
      return 0;
    }
    const spec = TTY_IOCTLS[req];
    if (!spec) return -E.ENOTTY;
    const [size, input] = spec;
    const b = new Uint8Array(size);
    if (input) b.set(t.mm.read(arg, size));
    const r = t.kernel.host.ioctl(hfd, req, b);
    if (r < 0) return r;
    if (!input) t.mm.write(arg, b);
    return r;
  },
  reopen: (t, f, flags) => t.kernel.newOpenFile({ kind: 'hostfd', path: f.path, flags: reopenFlags(flags), hostFd: f.hostFd }),
  hostReadiness: () => true,
  preadable: (t, f) => !t.kernel.host.isStream(f.hostFd),
  pwritable: () => false,
};
