/**
 * Advisory locks from the guest's side (man 2 fcntl "Advisory record locking" and "Open file
 * description locks", man 2 flock): decoding struct flock, the errno order of fs/locks.c
 * (fcntl_getlk, fcntl_setlk, flock_to_posix_lock, SYSCALL_DEFINE2(flock)), and blocking waits.
 * The locks themselves are src/vfs/locks.ts.
 */
import { finalize, filter } from 'rxjs';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState } from '../kernel/state.js';
import { F_RDLCK, F_UNLCK, F_WRLCK, OFFSET_MAX, findConflict, lockKey, lockRuntime, tryLock, type LockRequest } from '../vfs/locks.js';
import { F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_SETLK, F_SETLKW, O_ACCMODE, O_PATH, O_RDONLY, O_RDWR, O_WRONLY } from '../abi/linux.js';
import { syscall } from './entry.js';

/** sizeof(struct flock) on x86-64: l_type s16, l_whence s16, (pad), l_start s64, l_len s64, l_pid s32, (pad). */
const FLOCK_SIZE = 32;
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;

const isOfd = (cmd: number) => cmd === F_OFD_GETLK || cmd === F_OFD_SETLK || cmd === F_OFD_SETLKW;

/**
 * Decode the struct flock at guest address `addr` into a request on `f` (flock_to_posix_lock):
 * the request, or -errno: EFAULT (bad pointer, thrown), EINVAL (unknown type; F_UNLCK asked of
 * F_GETLK, not of F_OFD_GETLK; an OFD command with l_pid set; unknown whence; a start before 0), EOVERFLOW (past
 * 2^63-1), EBADF (setting a read lock on a file not open for reading, or a write lock on one not
 * open for writing). `size` gives the file's size for SEEK_END.
 */
function decodeFlock(t: Task, f: OpenFileState, addr: number, cmd: number, setting: boolean, size: () => bigint): LockRequest | number {
  const fl = t.mm.read(addr, FLOCK_SIZE);
  const v = new DataView(fl.buffer, fl.byteOffset, fl.byteLength);
  const type = v.getInt16(0, true), whence = v.getInt16(2, true), lStart = v.getBigInt64(8, true), lLen = v.getBigInt64(16, true), pid = v.getInt32(24, true);
  if (type !== F_RDLCK && type !== F_WRLCK && type !== F_UNLCK) return -E.EINVAL;
  if (isOfd(cmd) && pid !== 0) return -E.EINVAL;
  // F_GETLK asks about a lock it would take; F_OFD_GETLK of F_UNLCK asks for the description's own lock in the range (Linux 6.7+).
  if (!setting && type === F_UNLCK && !isOfd(cmd)) return -E.EINVAL;
  let base: bigint;
  if (whence === 0) base = 0n;
  else if (whence === 1) base = BigInt(f.offset);
  else if (whence === 2) base = size();
  else return -E.EINVAL;
  if (lStart > OFFSET_MAX - base) return -E.EOVERFLOW;
  let start = base + lStart, end: bigint;
  if (start < 0n) return -E.EINVAL;
  if (lLen > 0n) {
    if (lLen - 1n > OFFSET_MAX - start) return -E.EOVERFLOW;
    end = start + lLen - 1n;
  } else if (lLen < 0n) {
    end = start - 1n;
    start += lLen;
    if (start < 0n) return -E.EINVAL;
  } else end = OFFSET_MAX;
  if (setting) {
    const acc = f.flags & O_ACCMODE;
    // FMODE_READ / FMODE_WRITE: access mode 3 has neither (do_lock_file_wait's callers: EBADF).
    if (type === F_RDLCK && acc !== O_RDONLY && acc !== O_RDWR) return -E.EBADF;
    if (type === F_WRLCK && acc !== O_WRONLY && acc !== O_RDWR) return -E.EBADF;
  }
  return isOfd(cmd)
    ? { kind: 'ofd', type, start, end, owner: f.id, pid: -1 }
    : { kind: 'posix', type, start, end, owner: t.tgid, pid: t.tgid };
}

/** Block until `req` on `key` can be applied (a 'lock' waiter, restarted after a SA_RESTART handler as Linux's -ERESTARTSYS). */
function waitForLock(t: Task, f: OpenFileState, key: string, req: LockRequest): SyscallResult {
  const k = t.kernel;
  const rt = lockRuntime(k);
  if (req.kind === 'posix') rt.waiting.set(req.owner, { key, req });
  const attempt = (): number | undefined => {
    const r = tryLock(k, key, req, false);
    return r === -E.EAGAIN ? undefined : r;
  };
  return {
    waiter: { kind: 'lock', fileId: f.id, interruptible: true, restartable: true },
    result$: k.whenRunnable(rt.changed$.pipe(filter((changed) => changed === key)), attempt).pipe(
      finalize(() => { if (req.kind === 'posix' && rt.waiting.get(req.owner)?.req === req) rt.waiting.delete(req.owner); }),
    ),
  };
}

/**
 * fcntl(2) F_GETLK, F_SETLK, F_SETLKW and their F_OFD_ forms on open file `f`. `size` gives the
 * file's size (SEEK_END). F_GETLK writes the first conflicting lock (l_pid -1 for an OFD lock) or
 * just l_type = F_UNLCK; F_OFD_GETLK of F_UNLCK writes the description's own overlapping lock. F_SETLK: EAGAIN when another owner's lock is in the way; F_SETLKW waits
 * (EINTR, or restart with SA_RESTART), EDEADLK when waiting would deadlock (POSIX locks).
 */
export function fcntlLock(t: Task, f: OpenFileState, cmd: number, addr: number, size: () => bigint): SyscallResult {
  const setting = cmd === F_SETLK || cmd === F_SETLKW || cmd === F_OFD_SETLK || cmd === F_OFD_SETLKW;
  const req = decodeFlock(t, f, addr, cmd, setting, size);
  if (typeof req === 'number') return req;
  const key = lockKey(f);
  if (!setting) {
    // F_UNLCK (F_OFD_GETLK only): an overlapping lock of this open file description (posix_test_locks_conflict).
    const c = req.type === F_UNLCK
      ? t.kernel.state.fs.locks?.[key]?.find((l) => l.kind === 'ofd' && l.owner === req.owner && l.start <= req.end && req.start <= l.end)
      : findConflict(t.kernel, key, req);
    const out = new Uint8Array(t.mm.read(addr, FLOCK_SIZE));
    const v = new DataView(out.buffer);
    if (!c) v.setInt16(0, F_UNLCK, true);
    else {
      v.setInt16(0, c.type, true); v.setInt16(2, 0, true);
      v.setBigInt64(8, c.start, true);
      v.setBigInt64(16, c.end === OFFSET_MAX ? 0n : c.end - c.start + 1n, true);
      v.setInt32(24, c.pid, true);
    }
    t.mm.write(addr, out);
    return 0;
  }
  const blocking = cmd === F_SETLKW || cmd === F_OFD_SETLKW;
  const r = tryLock(t.kernel, key, req, blocking);
  if (r !== -E.EAGAIN || !blocking) return r;
  return waitForLock(t, f, key, req);
}

/**
 * flock(2): LOCK_SH, LOCK_EX or LOCK_UN, with LOCK_NB. The operation is checked before the fd
 * (EINVAL); EBADF for a bad fd, an O_PATH one, or (but to unlock) one open with access mode 3; EWOULDBLOCK with LOCK_NB when another open file
 * description holds a conflicting lock; otherwise waits (EINTR, or restart with SA_RESTART).
 * Converting a lock drops the old one first, as Linux does (flock_lock_inode), so a failed
 * LOCK_NB conversion leaves none.
 */
function flock(t: Task): SyscallResult {
  const op = t.argInt(1) & ~LOCK_NB;
  if (op !== LOCK_SH && op !== LOCK_EX && op !== LOCK_UN) return -E.EINVAL;
  const f = t.kernel.file(t, t.argInt(0));
  // A description open for neither reading nor writing (O_PATH, access mode 3) can only unlock (sys_flock: EBADF).
  if ((f.flags & O_PATH) || ((f.flags & O_ACCMODE) === 3 && op !== LOCK_UN)) return -E.EBADF;
  const key = lockKey(f);
  const type = op === LOCK_SH ? F_RDLCK : op === LOCK_EX ? F_WRLCK : F_UNLCK;
  const req: LockRequest = { kind: 'flock', type, start: 0n, end: OFFSET_MAX, owner: f.id, pid: t.tgid };
  const mine = t.kernel.state.fs.locks?.[key]?.find((l) => l.kind === 'flock' && l.owner === f.id);
  if (mine && mine.type === type) return 0;
  if (mine && type !== F_UNLCK) tryLock(t.kernel, key, { ...req, type: F_UNLCK }, false);
  const r = tryLock(t.kernel, key, req, false);
  if (r !== -E.EAGAIN || (t.argInt(1) & LOCK_NB)) return r;
  return waitForLock(t, f, key, req);
}

export const lockSyscalls = [
  syscall('flock', 2, flock),
];
