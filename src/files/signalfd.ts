/**
 * 'signalfd' files (man 2 signalfd; Linux fs/signalfd.c): reading takes pending signals of the
 * file's mask — from the reading thread's pending set, then its process's — as struct
 * signalfd_siginfo records, instead of running their handlers. The record is the mask alone:
 * what is pending belongs to whoever reads or polls (after fork, the child reads its own).
 * A blocked reader waits for `Signals.queued$`; it restarts after a restore (a signal that
 * arrived meanwhile is in the checkpoint's pending sets).
 */
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileBase, SigInfo } from '../kernel/state.js';
import { sigbit, takePending } from '../kernel/signals.js';
import { POLLIN, SFD_NONBLOCK, SIGBUS, SIGCHLD, SIGFPE, SIGILL, SIGNALFD_SIGINFO_SIZE, SIGSEGV, SIGTRAP, SI_TIMER, SI_USER } from '../abi/linux.js';
import { FileOps, anonInodeStat } from './file-ops.js';

/** Graph record: the signals it reads (SIGKILL and SIGSTOP never among them). */
export interface SignalFdFile extends OpenFileBase {
  readonly kind: 'signalfd';
  readonly mask: bigint;
}

/** The lowest signal of `mask` pending for task `t` (its own, then its process's), or 0. */
function nextPending(t: Task, mask: bigint): number {
  const pending = (t.state.pendingSignals | t.tg.pendingSignals) & mask;
  if (!pending) return 0;
  let sig = 1;
  while (!(pending & sigbit(sig))) sig++;
  return sig;
}


/** struct signalfd_siginfo (128 bytes) for a siginfo, field by field as signalfd_copyinfo does. */
export function encodeSignalfdSiginfo(info: SigInfo): Uint8Array {
  const b = new Uint8Array(SIGNALFD_SIGINFO_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, info.signo, true);          // ssi_signo
  v.setInt32(8, info.code, true);            // ssi_code
  if (info.addr !== undefined && [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP].includes(info.signo)) {
    v.setBigUint64(72, BigInt(info.addr), true); // ssi_addr
  } else if (info.code === SI_TIMER) {
    v.setUint32(24, info.timerId ?? 0, true);  // ssi_tid
    v.setUint32(32, info.overrun ?? 0, true);  // ssi_overrun
    const value = info.value ?? 0n;
    v.setInt32(44, Number(BigInt.asIntN(32, value)), true); // ssi_int
    v.setBigUint64(48, value, true);           // ssi_ptr
  } else {
    v.setUint32(12, info.pid ?? 0, true);      // ssi_pid
    v.setUint32(16, info.uid ?? 0, true);      // ssi_uid
    if (info.signo === SIGCHLD) v.setInt32(40, info.status ?? 0, true); // ssi_status
  }
  return b;
}

/**
 * read(2) (signalfd_read): as many records as fit (at least one: EINVAL below 128 bytes); EAGAIN
 * when none is pending and the file is nonblocking, else block until one is.
 */
function signalfdRead(t: Task, f: SignalFdFile, buf: number, count: number): SyscallResult {
  const max = Math.floor(count / SIGNALFD_SIGINFO_SIZE);
  if (!max) return -E.EINVAL;
  const attempt = (): number | undefined => {
    let n = 0;
    for (; n < max; n++) {
      const sig = nextPending(t, f.mask);
      if (!sig) break;
      // Writable first, so a bad buffer loses no signal (Linux would lose it: it dequeues first).
      try { t.mm.chunks(buf + n * SIGNALFD_SIGINFO_SIZE, SIGNALFD_SIGINFO_SIZE, 2, () => undefined); } catch (e) { if (n) break; throw e; }
      t.mm.write(buf + n * SIGNALFD_SIGINFO_SIZE, encodeSignalfdSiginfo(takePending(t.kernel, t, sig) ?? { signo: sig, code: SI_USER }));
    }
    return n ? n * SIGNALFD_SIGINFO_SIZE : undefined;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & SFD_NONBLOCK) return -E.EAGAIN;
  return {
    waiter: { kind: 'signalfd-read', fileId: f.id, interruptible: true, restartable: true },
    result$: t.kernel.whenRunnable(t.kernel.signals.queued$, attempt),
  };
}

export const signalFdFileOps: FileOps<SignalFdFile> = {
  read: (t, f, buf, count) => signalfdRead(t, f, buf, count),
  write: () => -E.EINVAL,
  readiness: (t, f) => (nextPending(t, f.mask) ? POLLIN : 0),
  /** The shared anon inode: mode 0600, no file type, owned by root. */
  stat: () => anonInodeStat(),
  anonInode: true,
  seek: (t, f) => f.offset, // noop_llseek
  syncable: false,
};
