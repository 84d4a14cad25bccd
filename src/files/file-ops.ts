/**
 * The file-operations interface: what every kind of open file description implements
 * (compare gVisor's vfs.FileDescriptionImpl, Linux's struct file_operations). Each kind
 * lives in its own module of src/files/ and is listed once in registry.ts; syscalls call
 * through `Kernel.fileOps(f)` instead of switching on `f.kind`.
 *
 * Conventions: `buf` and `arg` are guest addresses, counts and offsets are bytes, results
 * are ≥ 0 or -errno (or a Block for a syscall that waits). Bad guest pointers throw
 * SyscallError(EFAULT) from the AddressSpace, as everywhere in the kernel.
 */
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import type { OpenFileState } from '../kernel/state.js';
import type { Node } from '../vfs/vfs.js';
import type { Stat } from '../vfs/stat.js';
import { NEVER, Observable, defer, repeat, startWith, switchMap } from 'rxjs';
import { untilDeadline } from '../kernel/deadline.js';
import { MAX_RW, O_ACCMODE, O_CREAT, O_EXCL, O_PATH, O_RDONLY, O_TRUNC, O_WRONLY, POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM, PROT_WRITE, S_IFREG, SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET } from '../abi/linux.js';

export interface FileOps<F extends OpenFileState = OpenFileState> {
  /**
   * read(2)/pread(2) of `count` bytes (already ≤ MAX_RW; the access mode was checked) into
   * guest memory at `buf`, at `pos`, or at the file offset (advancing it) when `pos` is null.
   */
  read(t: Task, f: F, buf: number, count: number, pos: number | null): SyscallResult;
  /** write(2)/pwrite(2), as `read`. */
  write(t: Task, f: F, buf: number, count: number, pos: number | null): SyscallResult;
  /** poll(2) readiness now: POLL* bits (POLLIN, POLLOUT, POLLHUP, POLLERR…). */
  readiness(t: Task, f: F): number;
  /** fstat(2). Throws SyscallError (EBADF when the file has no attributes). */
  stat(t: Task, f: F): Stat;
  /**
   * lseek(2): the new offset or -errno. Absent: the file is a stream (ESPIPE). Most kinds use
   * `seekBySize` with their size.
   */
  seek?(t: Task, f: F, off: number, whence: number): number;
  /** ioctl(2) requests other than FIOCLEX, FIONCLEX, FIONBIO (handled for every kind). Absent: ENOTTY. */
  ioctl?(t: Task, f: F, req: number, arg: number): number;
  /**
   * Open it again through /proc/self/fd/N: a new open file description (refs 0) for the
   * guest's open `flags` (see reopenFlags). Absent: ENXIO.
   */
  reopen?(t: Task, f: F, flags: number): OpenFileState;
  /** The last reference is gone (close, exit; the record has left the graph): drop what it holds (pipe ends, host fds, bound names, an unlinked inode's data). */
  release?(k: Kernel, f: F): void;
  /**
   * mmap(2) of `len` bytes at file offset `off` (page-aligned; access mode and flags already
   * checked) with `addr` as hint or fixed address: the guest address mapped. Absent: ENODEV.
   */
  mmap?(t: Task, f: F, addr: number, len: number, prot: number, flags: number, off: number): number;
  /**
   * For kinds whose files differ (devices): whether this file has an mmap operation at all.
   * Absent: whether `mmap` is. Asked before RLIMIT_AS/RLIMIT_DATA are checked (ENODEV first, as do_mmap).
   */
  hasMmap?(f: F): boolean;
  /** Whether pread(2)/preadv(2) are allowed (default true; pipes and host streams: ESPIPE). */
  preadable?(t: Task, f: F): boolean;
  /** Whether pwrite(2)/pwritev(2) are allowed (default true; pipes and the caller's stdio: ESPIPE). */
  pwritable?(t: Task, f: F): boolean;
  /**
   * Whether fsync(2)/fdatasync(2) apply (default true: the upper layer lives in memory, nothing
   * to flush). Pipes, sockets and eventfds have no fsync operation: EINVAL (vfs_fsync_range).
   */
  syncable?: boolean;
  /** Whether it can be added to an epoll set (regular files and directories cannot: EPERM). Default true. */
  pollable?: boolean;
  /** Whether its readiness comes from the host (the caller's stdio): waiters must re-check it periodically. */
  hostReadiness?(t: Task, f: F): boolean;
  /**
   * For kinds whose readiness changes with time alone (timerfd): the guest CLOCK_MONOTONIC time,
   * ns, at which it next changes by itself (possibly past: the waiter then wakes at once); undefined when only an event can change it (a read, a
   * settime: those emit on `Kernel.pipes.changed$`). Waiters wake then (`whenTimersDue`). Absent: never.
   */
  readyAt?(t: Task, f: F): bigint | undefined;
  /**
   * The inode of a file that has no filesystem node but an inode of its own (pipefs for an
   * anonymous pipe, sockfs for a socket): its owner and permission bits, which fchmod(2),
   * fchown(2) and chmod of its /proc/PID/fd link change (the syscalls check ownership first,
   * as notify_change). Undefined for files of the kind that do have a node (a FIFO opened by path).
   */
  inodeAttrs?(t: Task, f: F): InodeAttrs | undefined;
  /** Change what `inodeAttrs` gives (`mode`: permission bits, 0o7777), through a graph event, so checkpoints keep it. */
  setInodeAttrs?(t: Task, f: F, a: InodeAttrs): void;
  /**
   * An anon_inodefs file (eventfd, epoll, timerfd, signalfd, inotify) or a pidfd: fchmod,
   * fchown and utimensat give EOPNOTSUPP (anon_inode_setattr, pidfs_setattr), for any caller.
   */
  anonInode?: boolean;
  /**
   * Save and restore. The open file's graph record (its type in src/kernel/state.ts) is
   * saved as is; `restore` rebuilds its runtime part after a restore (e.g. re-opens the host
   * file behind it) and returns why it cannot be, in one line, or undefined.
   */
  restore?(k: Kernel, f: F): string | undefined;
}

/**
 * Copy bytes into guest memory at buf. Returns the bytes copied: short when the buffer
 * becomes unmapped part-way (as Linux's copy_to_user), EFAULT only when nothing fits.
 */
export function copyToGuest(t: Task, buf: number, src: Uint8Array): number {
  let done = 0;
  try {
    t.mm.chunks(buf, src.length, PROT_WRITE, (view, ro) => { view.set(src.subarray(ro, ro + view.length)); done = ro + view.length; });
  } catch (e) {
    if (e instanceof SyscallError && e.errno === E.EFAULT && done > 0) return done;
    throw e;
  }
  return src.length;
}

/** lseek(2) over a file of `size` bytes (SEEK_SET/CUR/END; SEEK_DATA/HOLE see no holes): the new offset or -EINVAL/-ENXIO. */
export function seekBySize(t: Task, f: OpenFileState, off: number, whence: number, size: () => number): number {
  let base: number;
  switch (whence) {
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = f.offset; break;
    case SEEK_END: base = size(); break;
    case SEEK_DATA: case SEEK_HOLE: {
      const s = size();
      if (off < 0 || off >= s) return -E.ENXIO; // an unsigned comparison (generic_file_llseek_size, iomap_seek_data)
      t.kernel.seek(f, whence === SEEK_DATA ? off : s);
      return f.offset;
    }
    default: return -E.EINVAL;
  }
  const n = base + off;
  if (n < 0) return -E.EINVAL;
  t.kernel.seek(f, n);
  return n;
}

/** The filesystem node an open file was opened from (by its path), if the namespace still has one. */
export function nodeByPath(t: Task, f: OpenFileState): Node | undefined {
  return t.kernel.vfs.lookup(f.path);
}

/**
 * fstat of a file through the node of its path (/proc/self/fd symlinks are followed to the
 * file they name): EBADF when there is none.
 */
export function statByPath(t: Task, f: OpenFileState, n: Node | undefined = nodeByPath(t, f)): Stat {
  if (!n) throw new SyscallError(E.EBADF);
  if (n.kind === 'synthetic' && n.node.magicFileId !== undefined) {
    const target = t.kernel.state.openFiles[n.node.magicFileId];
    if (target) return t.kernel.fileOps(target).stat(t, target);
  }
  return t.kernel.vfs.stat(n);
}

/** A private mapping filled with a copy of `bytes` (the file's contents from the mapped offset). */
export function mapCopy(t: Task, f: OpenFileState, addr: number, len: number, prot: number, flags: number, off: number, bytes: Uint8Array): number {
  const at = t.mm.map(addr, len, prot, flags, f.path, off);
  if (bytes.length) t.mm.writeForce(at, bytes);
  return at;
}

/** The flags of a file opened again through /proc/self/fd/N: the guest's open flags less O_CREAT, O_EXCL, O_TRUNC. */
export const reopenFlags = (flags: number): number => flags & ~(O_CREAT | O_EXCL | O_TRUNC);

/**
 * Attributes of an anonymous file (pipe, socket): mode bits, a device number and an inode
 * number of its own, owned by whoever created pipe `pipeId` when given (pipefs/sockfs inodes
 * keep their creator's ids, whoever asks later), else by the caller.
 */
export function anonStat(t: Task, dev: number, ino: number, mode: number, pipeId?: number): Stat {
  const [uid, gid] = (pipeId === undefined ? undefined : t.kernel.state.pipes[pipeId]?.owner) ?? [t.tg.uid, t.tg.gid];
  return { dev, ino, nlink: 1, mode, uid, gid, rdev: 0, size: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
}

/** Owner and permission bits (0o7777, no file type) of an inode without a filesystem node (FileOps.inodeAttrs). */
export interface InodeAttrs {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/** fstat of a pipefs or sockfs inode: file type `type` (S_IFIFO, S_IFSOCK) and its owner and permission bits. */
export function inodeStat(dev: number, ino: number, type: number, a: InodeAttrs): Stat {
  return { dev, ino, nlink: 1, mode: type | a.mode, uid: a.uid, gid: a.gid, rdev: 0, size: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
}

/** The one inode of anon_inodefs that every eventfd, epoll, timerfd, signalfd and inotify file shares (anon_inode_inode): made at boot by root, mode 0600. */
export const ANON_INODE_INO = 1;

/** fstat of an anon_inodefs file: the shared inode, whoever created the file and asks (fs/anon_inodes.c). */
export function anonInodeStat(): Stat {
  return { dev: 0xe, ino: ANON_INODE_INO, nlink: 1, mode: 0o600, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
}

/** Readiness of a file that never blocks (regular files, devices, directories). */
export const ALWAYS_READY = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;

/** A synthetic file's stat when its node is gone (a /proc file of an exited process). */
export const GONE_SYNTHETIC_STAT: Stat = { dev: 0x2c, ino: 1, nlink: 1, mode: S_IFREG | 0o444, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };

/**
 * read(2) through a file's operations: EBADF unless opened for reading (access mode 3 opens a
 * file for neither reading nor writing, as Linux's FMODE bits); at most MAX_RW bytes (as vfs_read).
 */
export function fileRead(t: Task, f: OpenFileState, buf: number, count: number, pos: number | null): SyscallResult {
  const acc = f.flags & O_ACCMODE;
  if (acc === O_WRONLY || acc === O_ACCMODE || (f.flags & O_PATH)) return -E.EBADF;
  return t.kernel.fileOps(f).read(t, f, buf, Math.min(count, MAX_RW), pos);
}

/** write(2) through a file's operations: EBADF unless opened for writing (not access mode 3); at most MAX_RW bytes (as vfs_write). */
export function fileWrite(t: Task, f: OpenFileState, buf: number, count: number, pos: number | null): SyscallResult {
  const acc = f.flags & O_ACCMODE;
  if (acc === O_RDONLY || acc === O_ACCMODE || (f.flags & O_PATH)) return -E.EBADF;
  return t.kernel.fileOps(f).write(t, f, buf, Math.min(count, MAX_RW), pos);
}

/** lseek(2): EINVAL for an unknown whence before anything else (ksys_lseek), then ESPIPE for streams. */
export function fileSeek(t: Task, f: OpenFileState, off: number, whence: number): number {
  if (whence < SEEK_SET || whence > SEEK_HOLE) return -E.EINVAL;
  const ops = t.kernel.fileOps(f);
  return ops.seek ? ops.seek(t, f, off, whence) : -E.ESPIPE;
}

/** ioctl(2) requests of the file's kind: ENOTTY when it has none. */
export function fileIoctl(t: Task, f: OpenFileState, req: number, arg: number): number {
  const ops = t.kernel.fileOps(f);
  return ops.ioctl ? ops.ioctl(t, f, req, arg) : -E.ENOTTY;
}

/** Open a file again (/proc/self/fd/N): ENXIO for kinds that cannot be. */
export function fileReopen(t: Task, f: OpenFileState, flags: number): OpenFileState {
  const ops = t.kernel.fileOps(f);
  if (!ops.reopen) throw new SyscallError(E.ENXIO);
  return ops.reopen(t, f, flags);
}

/**
 * A stream that emits when the readiness of some of `files()` changes with time alone (a
 * timerfd expiring): at the earliest `readyAt` of them, recomputed after each event of
 * `changes$` (a read or settime may move it) and after each emission. No host timer is kept
 * in the graph: the waiter holding this stream re-subscribes after a restore.
 */
export function whenTimersDue(t: Task, files: () => Iterable<OpenFileState | undefined>, changes$: Observable<unknown>): Observable<void> {
  const next = (): bigint | undefined => {
    let at: bigint | undefined;
    for (const f of files()) {
      const a = f && t.kernel.fileOps(f).readyAt?.(t, f);
      if (a !== undefined && (at === undefined || a < at)) at = a;
    }
    return at;
  };
  return changes$.pipe(
    startWith(undefined),
    switchMap(() => defer(() => { const at = next(); return at === undefined ? NEVER : untilDeadline(t, at); }).pipe(repeat())),
  );
}
