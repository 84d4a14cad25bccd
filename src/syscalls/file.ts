/**
 * File syscalls: open files and what is done through an fd (man 2 open, read, write,
 * stat, getdents64, lseek, fcntl, ioctl, dup). Compare Linux fs/open.c, fs/read_write.c,
 * fs/stat.c, fs/readdir.c, fs/fcntl.c.
 */
import fs from 'node:fs';
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState, InodeState } from '../kernel/state.js';
import { Node, modeOf, upperIno } from '../vfs/vfs.js';
import { checkFileGrowth, fileWriteLimit } from '../kernel/rlimits.js';
import { MAX_UPPER_FILE, inodeRead, inodeWrite, inodeZero } from '../vfs/inode-data.js';
import { Stat, encodeStat, encodeStatx, isDir, isLnk, isReg } from '../vfs/stat.js';
import { syscall } from './entry.js';
import { fileIoctl, fileRead, fileReopen, fileSeek, fileWrite } from '../files/file-ops.js';
import { truncateUpper, type UpperFile } from '../files/upper.js';
import { writeHostFd } from '../files/hostfd.js';
import { baseDir } from '../kernel/dirfd.js';
import { fcntlLock } from './locks.js';
import { isMessageSocket, socketReadv, socketWritev } from '../net/socket.js';
import { hostInetRecv, hostInetSend, hostInetSendBytes } from '../net/hostinet.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, FD_CLOEXEC, FIOCLEX, FIONBIO, FIONCLEX, F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_GETFL, F_GETLK, F_GETOWN, F_GETPIPE_SZ, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW, F_SETFD, F_SETFL, F_SETLK, F_SETLKW, F_SETOWN, F_SETPIPE_SZ, O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, O_RDWR, O_TMPFILE, O_TRUNC, O_WRONLY, PROT_WRITE, SIGPIPE, S_IFDIR, S_IFIFO, S_IFMT, S_IFREG } from '../abi/linux.js';
import { MAY_READ, MAY_WRITE, permits } from '../kernel/creds.js';
import { cred } from './creds.js';
import { IN_ACCESS, IN_CREATE, IN_MODIFY, IN_OPEN, fsnotifyDirent, fsnotifyFile } from '../files/inotify.js';

/** A read (IN_ACCESS) or write (IN_MODIFY) that moved bytes: the event on the file (fsnotify_access/modify in vfs_read/vfs_write). */
function notified(t: Task, f: OpenFileState, r: SyscallResult, mask: number): SyscallResult {
  if (typeof r === 'number' && r > 0) fsnotifyFile(t.kernel, f, mask);
  return r;
}

/** The filesystem node behind an open file, for chmod/chown/utimensat through an fd (none for the caller's stdio). */
export function nodeOfFile(t: Task, f: OpenFileState): Node | undefined {
  if (f.kind === 'upper') return { kind: 'upper', path: f.path, inode: t.kernel.state.fs.inodes[f.inodeId] };
  if (f.kind === 'pipe' && f.inodeId !== undefined && t.kernel.state.fs.inodes[f.inodeId]) return { kind: 'upper', path: f.path, inode: t.kernel.state.fs.inodes[f.inodeId] };
  if (f.kind === 'hostfd') return undefined;
  return t.kernel.vfs.lookup(f.path);
}

/** stat of an open file (fstat): its kind's `stat`. */
export function statOfFile(t: Task, f: OpenFileState): Stat {
  return t.kernel.fileOps(f).stat(t, f);
}

/**
 * Open a node as a new open file description (the body of openat after the walk). Unless
 * the file was just created, the caller needs read and/or write permission as the access
 * mode and O_TRUNC ask (may_open: EACCES).
 */
export function openNode(t: Task, n: Node, flags: number, created = false): OpenFileState {
  const k = t.kernel;
  const acc = flags & O_ACCMODE;
  const writing = acc !== O_RDONLY; // 3 (O_ACCMODE) asks for read and write permission, as Linux's ACC_MODE
  const mode = modeOf(n);
  // /proc/<pid>/… of a process the caller may not trace: EACCES (a magic link even with O_PATH, as following it is checked).
  const refused = n.kind === 'synthetic' && !!n.node.mayAccess && !n.node.mayAccess();
  if (refused && n.node.magicFileId !== undefined) throw new SyscallError(E.EACCES);
  if (n.kind === 'synthetic' && n.node.magicFileId !== undefined) return reopen(t, n.node.magicFileId, flags);
  if (refused && !(flags & O_PATH)) throw new SyscallError(E.EACCES);
  if ((flags & O_DIRECTORY) && !isDir(mode)) throw new SyscallError(E.ENOTDIR); // before may_open (do_open)
  if (flags & O_PATH) return isDir(mode) ? k.newOpenFile({ kind: 'dir', path: n.path, flags }) : k.newOpenFile({ kind: 'synthetic', path: n.path, flags, content: new Uint8Array(0) });
  // A directory asked for writing (or O_TRUNC, O_CREAT) is EISDIR before the permission check (may_open).
  if (isDir(mode) && (writing || (flags & (O_CREAT | O_TRUNC)))) throw new SyscallError(E.EISDIR);
  if (!created) k.vfs.checkAccess(n, (acc === O_WRONLY ? 0 : MAY_READ) | (writing || (flags & O_TRUNC) ? MAY_WRITE : 0));
  if ((mode & S_IFMT) === S_IFIFO) throw new SyscallError(E.ENXIO); // named pipes: not yet
  if (isDir(mode)) return k.newOpenFile({ kind: 'dir', path: n.path, flags });
  if (n.kind === 'synthetic') {
    if (n.node.dev === 'tty') {
      // The controlling terminal is the caller's terminal, if its stdio is one.
      const ttyFd = [0, 1, 2].find((fd) => k.host.isTerminal(fd));
      if (ttyFd === undefined) throw new SyscallError(E.ENXIO);
      return k.newOpenFile({ kind: 'hostfd', path: '/dev/tty', flags, hostFd: ttyFd });
    }
    if (n.node.dev === 'ptmx') return k.ptys.openMaster(flags);
    if (n.node.dev?.startsWith('pts:')) {
      const p = k.ptys.byIndex(Number(n.node.dev.slice(4)));
      if (!p) throw new SyscallError(E.EIO);
      return k.ptys.openSlave(p, flags);
    }
    if (n.node.dev) return k.newOpenFile({ kind: 'dev', path: n.path, flags, dev: n.node.dev });
    if (writing) throw new SyscallError(E.EACCES);
    return k.newOpenFile({ kind: 'synthetic', path: n.path, flags, content: n.node.content?.() ?? new Uint8Array(0) });
  }
  if (writing && k.vfs.isVolumeNode(n)) {
    // A read-write volume's file is written in place, through an fd opened beneath the volume's handle.
    if (!isReg(n.st.mode)) throw new SyscallError(E.EACCES);
    const f = k.newOpenFile({ kind: 'host', path: n.path, flags });
    try {
      k.hostFiles.open(f, !!(flags & O_TRUNC));
    } catch (e) {
      k.discardFile(f.id);
      throw e;
    }
    return f;
  }
  if (writing || (flags & O_TRUNC)) {
    if (n.kind === 'host' && !isReg(n.st.mode) && !isDir(n.st.mode) && !isLnk(n.st.mode)) throw new SyscallError(E.EACCES); // host devices, fifos: not writable from the sandbox
    const inode = k.vfs.copyUp(n);
    if ((flags & O_TRUNC) && isReg(inode.mode) && writing) truncateInode(t, inode, 0);
    return k.newOpenFile({ kind: 'upper', path: n.path, flags, inodeId: inode.id });
  }
  if (n.kind === 'upper') return k.newOpenFile({ kind: 'upper', path: n.path, flags, inodeId: n.inode.id });
  if (!isReg(n.st.mode)) throw new SyscallError(E.ENXIO); // host fifos/sockets/devices are not reachable from the sandbox
  // Held by fd from now on: a host-side rename or swap of the path cannot redirect it.
  const f = k.newOpenFile({ kind: 'host', path: n.path, flags });
  try {
    k.hostFiles.open(f);
  } catch (e) {
    k.discardFile(f.id);
    throw e;
  }
  return f;
}

/**
 * Open /proc/self/fd/N again: a new open file description of the same object (offset 0), as its
 * kind's `reopen` says. A pipe's or socket's own inode is checked first like any inode (may_open:
 * EACCES for the access mode its owner and mode bits refuse; a socket then gives ENXIO).
 */
function reopen(t: Task, fileId: number, flags: number): OpenFileState {
  const target = t.kernel.state.openFiles[fileId];
  if (!target) throw new SyscallError(E.ENOENT);
  const a = t.kernel.fileOps(target).inodeAttrs?.(t, target);
  const acc = flags & O_ACCMODE;
  const mask = (acc === O_WRONLY ? 0 : MAY_READ) | (acc !== O_RDONLY ? MAY_WRITE : 0); // O_TRUNC is dropped for pipes and sockets
  if (a && !(flags & O_PATH) && !permits(cred(t), a.mode, a.uid, a.gid, mask, false)) throw new SyscallError(E.EACCES);
  return fileReopen(t, target, flags);
}

/** Set an upper-layer regular file's size (bytes; mtime and ctime updated); growing past RLIMIT_FSIZE is EFBIG + SIGXFSZ (thrown). */
export function truncateInode(t: Task, inode: InodeState, size: number): void {
  checkFileGrowth(t, inode.size, size);
  truncateUpper(t.kernel, inode, size);
}

/**
 * open(2) with O_TMPFILE (do_tmpfile): an unnamed regular file in directory `path`, with no link
 * until linkat gives it one (never, with O_EXCL). EINVAL without O_DIRECTORY, with O_CREAT, or
 * read-only (build_open_flags); ENOENT/ENOTDIR for the directory; EACCES without write and search
 * permission on it; EOPNOTSUPP in /proc, /sys, /dev. /proc/self/fd/N reads "DIR/#INO (deleted)".
 */
function openTmpfile(t: Task, dirfd: number, path: string, flags: number, mode: number): number {
  if ((flags & (O_TMPFILE | O_DIRECTORY | O_CREAT)) !== (O_TMPFILE | O_DIRECTORY) || (flags & O_ACCMODE) === O_RDONLY) return -E.EINVAL;
  const k = t.kernel;
  const dir = k.vfs.resolve(path, baseDir(t, dirfd, path), true);
  if (!isDir(modeOf(dir))) return -E.ENOTDIR;
  const inode = k.vfs.createTmpfile(dir, S_IFREG | (mode & 0o7777 & ~t.tg.umask), !(flags & O_EXCL));
  const name = `${dir.path === '/' ? '' : dir.path}/#${upperIno(inode.id)} (deleted)`;
  const f = k.newOpenFile({ kind: 'upper', path: name, flags: flags & ~(O_CLOEXEC | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC), inodeId: inode.id });
  const fd = k.installFd(t, f.id, !!(flags & O_CLOEXEC));
  if (fd < 0) { k.discardFile(f.id); k.releaseInodeIfUnused(inode.id); }
  return fd;
}

/** O_LARGEFILE (x86-64: 0o100000). */
const O_LARGEFILE = 0o100000;

function doOpen(t: Task, dirfd: number, pathAddr: number, flags: number, mode: number): SyscallResult {
  const path = t.mm.readCString(pathAddr);
  // A 64-bit kernel opens every file large (force_o_largefile): F_GETFL shows it, but not on O_PATH descriptors (O_PATH_FLAGS).
  if (!(flags & O_PATH)) flags |= O_LARGEFILE;
  const k = t.kernel;
  if (flags & O_TMPFILE) return openTmpfile(t, dirfd, path, flags, mode);
  if ((flags & O_CREAT) && (flags & O_DIRECTORY)) return -E.EINVAL; // build_open_flags (Linux 6.4+)
  const base = baseDir(t, dirfd, path);
  const excl = (flags & (O_CREAT | O_EXCL)) === (O_CREAT | O_EXCL);
  const r = k.vfs.walk(path, base, !(flags & O_NOFOLLOW) && !excl);
  let n = r.node;
  let created = false;
  if (n && excl) return -E.EEXIST;
  if (!n) {
    if (!(flags & O_CREAT)) return -E.ENOENT;
    if (path.endsWith('/')) return -E.EISDIR;
    n = k.vfs.createNode(r.path, S_IFREG | (mode & 0o7777 & ~t.tg.umask));
    created = true;
    fsnotifyDirent(k, r.path.slice(0, r.path.lastIndexOf('/')) || '/', IN_CREATE, r.path.slice(r.path.lastIndexOf('/') + 1), false);
  } else if (isLnk(modeOf(n)) && !(n.kind === 'synthetic' && n.node.magicFileId !== undefined)) {
    // An unfollowed symlink (O_NOFOLLOW): O_DIRECTORY asks for a directory first (ENOTDIR), then ELOOP unless O_PATH.
    if (flags & O_DIRECTORY) return -E.ENOTDIR;
    if (!(flags & O_PATH)) return -E.ELOOP;
  }
  // O_DIRECTORY on anything but a directory is ENOTDIR before the permission checks, with O_PATH
  // too (do_open, path_lookupat); a magic link is checked against what it reopens.
  if ((flags & O_DIRECTORY) && !isDir(modeOf(n)) && !(n.kind === 'synthetic' && n.node.magicFileId !== undefined)) return -E.ENOTDIR;
  if (n.kind === 'upper' && (n.inode.mode & S_IFMT) === S_IFIFO && !(flags & O_PATH)) {
    const acc = flags & O_ACCMODE;
    if (!created) k.vfs.checkAccess(n, (acc === O_WRONLY ? 0 : MAY_READ) | (acc !== O_RDONLY ? MAY_WRITE : 0));
    return k.pipes.openFifo(t, n.inode, n.path, flags);
  }
  const f = openNode(t, n, flags, created);
  const fd = k.installFd(t, f.id, !!(flags & O_CLOEXEC));
  if (fd < 0) { k.discardFile(f.id); return fd; }
  // IN_OPEN, then the truncation's IN_MODIFY (do_open: vfs_open, then handle_truncate).
  fsnotifyFile(k, f, IN_OPEN);
  if ((flags & O_TRUNC) && f.kind === 'upper' && (flags & O_ACCMODE) !== O_RDONLY && isReg(k.state.fs.inodes[f.inodeId].mode)) fsnotifyFile(k, f, IN_MODIFY);
  return fd;
}

/** Gather an iovec array (man 2 readv): [base, len] pairs, EINVAL past IOV_MAX or a negative total. */
function readIovec(t: Task, iov: number, cnt: number): Array<[number, number]> {
  if (cnt < 0 || cnt > 1024) throw new SyscallError(E.EINVAL);
  const raw = t.mm.read(iov, cnt * 16);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const out: Array<[number, number]> = [];
  let total = 0;
  for (let i = 0; i < cnt; i++) {
    const base = Number(v.getBigUint64(i * 16, true)), len = Number(v.getBigUint64(i * 16 + 8, true));
    if (len > 0x7fffffffffff) throw new SyscallError(E.EINVAL);
    total += len;
    out.push([base, len]);
  }
  if (total > 0x7fffffffffff) throw new SyscallError(E.EINVAL);
  return out;
}

function readv(t: Task, fd: number, iov: number, cnt: number, pos: number | null): SyscallResult {
  const f = t.kernel.file(t, fd);
  const vecs = readIovec(t, iov, cnt);
  if (f.kind === 'socket' && pos === null) return socketReadv(t, f, vecs); // one receive: a datagram is not split across messages
  if (f.kind === 'hostinet' && pos === null) return hostInetRecv(t, f, vecs, 0);
  let total = 0;
  for (const [base, len] of vecs) {
    if (len === 0) continue;
    const r = fileRead(t, f, base, len, pos === null ? null : pos + total);
    if (typeof r !== 'number') return total > 0 ? notified(t, f, total, IN_ACCESS) : r;
    if (r < 0) return total > 0 ? total : r;
    total += r;
    if (r < len) break;
  }
  return notified(t, f, total, IN_ACCESS);
}

function writev(t: Task, fd: number, iov: number, cnt: number, pos: number | null): SyscallResult {
  const f = t.kernel.file(t, fd);
  const vecs = readIovec(t, iov, cnt);
  if (f.kind === 'socket' && pos === null && isMessageSocket(f)) return socketWritev(t, f, vecs); // one message
  if (f.kind === 'hostinet' && pos === null) return hostInetSend(t, f, vecs, 0);
  if (f.kind === 'pipe') {
    // Gather into one write so PIPE_BUF atomicity and blocking hold for the whole vector.
    const nonEmpty = vecs.filter(([, len]) => len > 0);
    if (nonEmpty.length === 1) return t.kernel.pipes.write(t, f, nonEmpty[0][0], nonEmpty[0][1]);
  }
  let total = 0;
  for (const [base, len] of vecs) {
    if (len === 0) continue;
    let r: SyscallResult;
    try { r = fileWrite(t, f, base, len, pos === null ? null : pos + total); } catch (e) { if (total > 0) return notified(t, f, total, IN_MODIFY); throw e; }
    if (typeof r !== 'number') return total > 0 ? notified(t, f, total, IN_MODIFY) : r;
    if (r < 0) return total > 0 ? notified(t, f, total, IN_MODIFY) : r;
    total += r;
    if (r < len) break;
  }
  return notified(t, f, total, IN_MODIFY);
}

/** lseek(2): the file's kind seeks (ESPIPE for pipes, sockets, terminals and other streams). */
function lseek(t: Task): number {
  return fileSeek(t, t.kernel.file(t, t.argInt(0)), t.argI64(1), t.argInt(2));
}

function statPath(t: Task, dirfd: number, pathAddr: number, flags: number): Stat {
  const path = t.mm.readCString(pathAddr);
  if (path === '') {
    if (!(flags & AT_EMPTY_PATH)) throw new SyscallError(E.ENOENT);
    if (dirfd === AT_FDCWD) return t.kernel.vfs.stat(t.kernel.vfs.resolve(t.tg.cwd, '/'));
    return statOfFile(t, t.kernel.file(t, dirfd));
  }
  const n = t.kernel.vfs.resolve(path, baseDir(t, dirfd, path), !(flags & AT_SYMLINK_NOFOLLOW));
  if (n.kind === 'synthetic' && n.node.magicFileId !== undefined && !(flags & AT_SYMLINK_NOFOLLOW)) {
    const f = t.kernel.state.openFiles[n.node.magicFileId];
    if (f) return statOfFile(t, f);
  }
  return t.kernel.vfs.stat(n);
}

/** getdents64(2): struct linux_dirent64 records; EINVAL if the first does not fit. */
function getdents64(t: Task): number {
  const f = t.kernel.file(t, t.argInt(0));
  const buf = t.arg(1), count = t.argU32(2);
  if (f.kind !== 'dir') return -E.ENOTDIR;
  if (!f.entries) {
    const n = t.kernel.vfs.lookup(f.path);
    if (!n) return -E.ENOENT;
    const self = t.kernel.vfs.stat(n).ino;
    t.kernel.setDirEntries(f, [{ name: '.', ino: self, type: 4 }, { name: '..', ino: 2, type: 4 }, ...t.kernel.vfs.listDir(n)]);
  }
  const out = new Uint8Array(Math.min(count, 65536));
  const v = new DataView(out.buffer);
  let pos = 0, at = f.offset;
  while (at < f.entries!.length) {
    const e = f.entries![at];
    const name = Buffer.from(e.name, 'latin1');
    const reclen = (19 + name.length + 1 + 7) & ~7;
    if (pos + reclen > out.length) {
      if (pos === 0) return -E.EINVAL;
      break;
    }
    v.setBigUint64(pos, BigInt(e.ino), true);
    v.setBigInt64(pos + 8, BigInt(at + 1), true);
    v.setUint16(pos + 16, reclen, true);
    out[pos + 18] = e.type;
    out.set(name, pos + 19);
    pos += reclen;
    at++;
  }
  if (pos) t.mm.write(buf, out.subarray(0, pos));
  t.kernel.seek(f, at);
  fsnotifyFile(t.kernel, f, IN_ACCESS); // iterate_dir: on every call, the end of the directory too
  return pos;
}



function fcntl(t: Task): SyscallResult {
  const fd = t.argInt(0), cmd = t.argInt(1);
  const k = t.kernel;
  const f = k.file(t, fd);
  const entry = t.fdTable.fds[fd];
  switch (cmd) {
    case F_DUPFD: case F_DUPFD_CLOEXEC: {
      const min = t.argInt(2);
      if (min < 0 || min >= k.fdLimit(t)) return -E.EINVAL;
      return k.installFd(t, entry.fileId, cmd === F_DUPFD_CLOEXEC, min);
    }
    case F_GETFD: return entry.cloexec ? FD_CLOEXEC : 0;
    case F_SETFD: return k.setCloexec(t, fd, !!(t.argInt(2) & FD_CLOEXEC));
    case F_GETFL: return f.flags & ~(O_CLOEXEC | O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC);
    case F_SETFL: {
      const settable = O_APPEND | O_NONBLOCK | 0o40000 /* O_DIRECT */ | 0o1000000 /* O_NOATIME */ | 0o20000 /* O_ASYNC */;
      k.setFileFlags(f, (f.flags & ~settable) | (t.argInt(2) & settable));
      return 0;
    }
    case F_GETLK: case F_OFD_GETLK: case F_SETLK: case F_SETLKW: case F_OFD_SETLK: case F_OFD_SETLKW:
      return fcntlLock(t, f, cmd, t.arg(2), () => BigInt(statOfFile(t, f).size));
    case F_SETOWN: return 0;
    case 1026 /* F_NOTIFY */: return f.kind === 'dir' ? 0 : -E.ENOTDIR; // dnotify: accepted, no events are ever sent
    case 1033 /* F_ADD_SEALS */: return f.kind === 'upper' ? 0 : -E.EINVAL;
    case 1034 /* F_GET_SEALS */: return f.kind === 'upper' ? 0 : -E.EINVAL;
    case F_GETOWN: return 0;
    case F_GETPIPE_SZ: return f.kind === 'pipe' ? t.kernel.state.pipes[f.pipeId]?.buf.length ?? 65536 : -E.EINVAL;
    case F_SETPIPE_SZ: {
      if (f.kind !== 'pipe') return -E.EBADF;
      const want = t.argInt(2);
      if (want < 0 || want > 1048576) return want < 0 ? -E.EINVAL : -E.EPERM;
      const p = t.kernel.state.pipes[f.pipeId];
      let size = 4096;
      while (size < want) size *= 2;
      if (size < p.len) return -E.EBUSY;
      const nb = new Uint8Array(size);
      nb.set(p.buf.subarray(0, p.len));
      t.kernel.emit({ type: 'pipe.resize', pipe: p.id, size }, [['set', ['pipes', p.id, 'buf'], nb]], true);
      return size;
    }
    default: return -E.EINVAL;
  }
}

/** ioctl(2): FIOCLEX, FIONCLEX and FIONBIO for every file; the rest is the file kind's (terminal requests, FIONREAD), else ENOTTY. */
function ioctl(t: Task): number {
  const fd = t.argInt(0), req = t.argU32(1), arg = t.arg(2);
  const f = t.kernel.file(t, fd);
  switch (req) {
    case FIOCLEX: return t.kernel.setCloexec(t, fd, true);
    case FIONCLEX: return t.kernel.setCloexec(t, fd, false);
    case FIONBIO: t.kernel.setFileFlags(f, t.mm.readU32(arg) ? f.flags | O_NONBLOCK : f.flags & ~O_NONBLOCK); return 0;
  }
  return fileIoctl(t, f, req, arg);
}

function dup3(t: Task, oldfd: number, newfd: number, flags: number, isDup2: boolean): number {
  const k = t.kernel;
  const e = t.fdTable.fds[oldfd];
  if (!e) return -E.EBADF;
  if (isDup2 && oldfd === newfd) return newfd;
  if (!isDup2 && (oldfd === newfd || (flags & ~O_CLOEXEC))) return -E.EINVAL;
  if (newfd < 0 || newfd >= k.fdLimit(t)) return -E.EBADF;
  k.installFdAt(t, newfd, e.fileId, !!(flags & O_CLOEXEC));
  return newfd;
}

/**
 * sendfile(2) from a regular file to a regular file, the caller's stdio, a pipe or a connected
 * stream socket, through a kernel buffer, at most 1 MiB (or what the pipe has room for) per
 * call; short counts are allowed. Other pairs give EINVAL, which callers (busybox, coreutils,
 * python's shutil) answer by falling back to read/write.
 */
function sendfile(t: Task): SyscallResult {
  const outFd = t.argInt(0), inFd = t.argInt(1), offPtr = t.arg(2);
  const k = t.kernel;
  const fin = k.file(t, inFd), fout = k.file(t, outFd);
  if ((fin.flags & O_ACCMODE) === O_WRONLY || (fout.flags & O_ACCMODE) === O_RDONLY) return -E.EBADF;
  if (fout.kind === 'hostinet' && (fin.kind === 'host' || fin.kind === 'upper')) {
    // Into a host TCP socket (--network=host): a send of the file's bytes, blocking as send does.
    const src = sendfileSource(t, fin, offPtr);
    if (typeof src === 'number') return src;
    const { pos, data } = src;
    if (!data.length) return 0;
    return hostInetSendBytes(t, fout, data, (n) => {
      if (offPtr) t.mm.writeU64(offPtr, pos + n); else k.seek(fin, pos + n);
      fsnotifyFile(k, fin, IN_ACCESS);
    });
  }
  // Into a pipe or a connected stream socket: whatever fits now (sendfile may return short).
  const outPipe = fout.kind === 'pipe' ? fout.pipeId : fout.kind === 'socket' && fout.socket.type === 1 && fout.socket.state === 'connected' ? fout.socket.tx : undefined;
  if (!(fin.kind === 'host' || fin.kind === 'upper') || !(fout.kind === 'upper' || fout.kind === 'hostfd' || outPipe)) return -E.EINVAL;
  const src = sendfileSource(t, fin, offPtr);
  if (typeof src === 'number') return src;
  const pos = src.pos;
  let data = src.data;
  let n: number;
  if (outPipe) {
    const p = k.state.pipes[outPipe];
    if (!p || p.readers === 0) { k.signals.send(t.tgid, SIGPIPE, { signo: SIGPIPE, code: 0, pid: t.tgid }, t.tid); return -E.EPIPE; }
    n = Math.min(data.length, p.buf.length - p.len);
    if (n === 0 && data.length) return -E.EAGAIN;
    k.emit({ type: 'pipe.write', pipe: p.id, len: n }, [['bytes', ['pipes', p.id], 0, 0, data.slice(0, n)], ['set', ['pipes', p.id, 'written'], (p.written ?? 0) + n]], true);
    k.pipes.changed$.next(p.id);
  } else if (fout.kind === 'hostfd') n = writeHostFd(t, fout.hostFd, data);
  else {
    const ino = k.state.fs.inodes[(fout as UpperFile).inodeId];
    const at = (fout.flags & O_APPEND) ? ino.size : fout.offset;
    data = data.subarray(0, fileWriteLimit(t, at, data.length));
    inodeWrite(k, ino, at, data.length, (put) => put(data, 0));
    k.seek(fout, at + data.length);
    n = data.length;
  }
  if (offPtr) t.mm.writeU64(offPtr, pos + n); else k.seek(fin, pos + n);
  if (n > 0) { fsnotifyFile(k, fin, IN_ACCESS); fsnotifyFile(k, fout, IN_MODIFY); }
  return n;
}

/**
 * sendfile's input: up to count (arg 3, at most 1 MiB) bytes of a host or upper-layer file from
 * *offPtr (guest address of a loff_t) or the file's offset; -EINVAL for a negative position.
 */
function sendfileSource(t: Task, fin: OpenFileState & { kind: 'host' | 'upper' }, offPtr: number): { pos: number; data: Uint8Array } | number {
  const k = t.kernel;
  const count = Math.min(t.arg(3), 1 << 20);
  const pos = offPtr ? Number(BigInt.asIntN(64, t.mm.readU64(offPtr))) : fin.offset;
  if (pos < 0) return -E.EINVAL;
  if (fin.kind === 'host') {
    const buf = Buffer.alloc(count);
    return { pos, data: buf.subarray(0, fs.readSync(k.hostFiles.fd(fin), buf, 0, count, pos)) };
  }
  return { pos, data: new Uint8Array(inodeRead(k, k.state.fs.inodes[fin.inodeId], pos, pos + count)) };
}

/** The bytes [pos, pos + count) of a host or upper-layer regular file (fewer at its end). */
export function readRegular(t: Task, f: OpenFileState & { kind: 'host' | 'upper' }, pos: number, count: number): Uint8Array {
  const k = t.kernel;
  if (f.kind === 'host') {
    const buf = Buffer.alloc(count);
    return buf.subarray(0, fs.readSync(k.hostFiles.fd(f), buf, 0, count, pos));
  }
  return new Uint8Array(inodeRead(k, k.state.fs.inodes[f.inodeId], pos, pos + count));
}

/** The size in bytes of a host or upper-layer regular file. */
export function regularSize(t: Task, f: OpenFileState & { kind: 'host' | 'upper' }): number {
  return f.kind === 'host' ? t.kernel.hostFiles.size(t.kernel.hostFiles.fd(f)) : t.kernel.state.fs.inodes[f.inodeId].size;
}

/**
 * copy_file_range(2) between regular files (upper layer or host), in vfs_copy_file_range's order:
 * EBADF for either fd, EFAULT for an offset pointer, EINVAL for flags; EISDIR for a directory,
 * EINVAL for anything else that is not a regular file, EBADF unless the input is open for reading
 * and the output for writing without O_APPEND; EOVERFLOW when an offset plus the length wraps
 * (as unsigned 64-bit, so a negative offset too); the length shortened to the input's end of file
 * (0 bytes at or past it), EFBIG past RLIMIT_FSIZE; EINVAL for overlapping ranges of one file.
 * At most 1 MiB per call (copy_file_range may copy less than asked). The offsets behind the
 * pointers (guest addresses of loff_t) or the files' offsets advance by the bytes copied.
 */
function copyFileRange(t: Task): number {
  const k = t.kernel;
  const fin = k.file(t, t.argInt(0)), offInPtr = t.arg(1), fout = k.file(t, t.argInt(2)), offOutPtr = t.arg(3);
  const len = t.arg(4), flags = t.argU32(5);
  if ((fin.flags & O_PATH) || (fout.flags & O_PATH)) return -E.EBADF;
  const offIn = offInPtr ? t.mm.readU64(offInPtr) : undefined, offOut = offOutPtr ? t.mm.readU64(offOutPtr) : undefined;
  if (flags !== 0) return -E.EINVAL;
  if (fin.kind === 'dir' || fout.kind === 'dir') return -E.EISDIR;
  const regular = (f: OpenFileState): f is OpenFileState & { kind: 'host' | 'upper' } =>
    (f.kind === 'upper' && isReg(k.state.fs.inodes[f.inodeId]?.mode ?? 0)) || (f.kind === 'host' && isReg(statOfFile(t, f).mode));
  if (!regular(fin) || !regular(fout)) return -E.EINVAL;
  const accIn = fin.flags & O_ACCMODE, accOut = fout.flags & O_ACCMODE;
  if (accIn === O_WRONLY || accIn === O_ACCMODE || accOut === O_RDONLY || accOut === O_ACCMODE || (fout.flags & O_APPEND)) return -E.EBADF;
  const posIn = offIn ?? BigInt(fin.offset), posOut = offOut ?? BigInt(fout.offset);
  const count = BigInt.asUintN(64, BigInt(len));
  const U64 = 1n << 64n;
  if (posIn + count >= U64 || posOut + count >= U64) return -E.EOVERFLOW; // wraps (generic_copy_file_checks)
  const pIn = Number(posIn), pOut = Number(posOut);
  const size = regularSize(t, fin);
  let n = pIn >= size ? 0 : Math.min(Number(count), size - pIn, 1 << 20);
  n = fileWriteLimit(t, pOut, n); // EFBIG + SIGXFSZ, or shorter
  const same = fin.kind === 'upper' && fout.kind === 'upper' ? fin.inodeId === fout.inodeId : fin.kind === 'host' && fout.kind === 'host' && fin.path === fout.path;
  if (same && pOut + n > pIn && pOut < pIn + n) return -E.EINVAL;
  if (n === 0) return 0;
  const data = readRegular(t, fin, pIn, n);
  if (fout.kind === 'host') {
    const hfd = k.hostFiles.fd(fout);
    n = 0;
    while (n < data.length) {
      const w = k.hostFiles.write(hfd, data.subarray(n), pOut + n);
      if (w <= 0) break;
      n += w;
    }
  } else {
    const ino = k.state.fs.inodes[fout.inodeId];
    checkFileGrowth(t, ino.size, Math.max(ino.size, pOut + data.length));
    inodeWrite(k, ino, pOut, data.length, (put) => put(data, 0));
    n = data.length;
  }
  if (offInPtr) t.mm.writeU64(offInPtr, pIn + n); else k.seek(fin, pIn + n);
  if (offOutPtr) t.mm.writeU64(offOutPtr, pOut + n); else k.seek(fout, pOut + n);
  if (n > 0) { fsnotifyFile(k, fin, IN_ACCESS); fsnotifyFile(k, fout, IN_MODIFY); }
  return n;
}

/** preadv(2)/pwritev(2) at an offset: EINVAL for a negative one before the fd, ESPIPE for streams (do_preadv, do_pwritev). */
function vectorAt(t: Task, write: boolean, fd: number, iov: number, cnt: number, pos: number): SyscallResult {
  if (pos < 0) return -E.EINVAL;
  const f = t.kernel.file(t, fd);
  const ops = t.kernel.fileOps(f);
  if ((write ? ops.pwritable : ops.preadable)?.(t, f) === false) return -E.ESPIPE;
  return write ? writev(t, fd, iov, cnt, pos) : readv(t, fd, iov, cnt, pos);
}

const RWF_HIPRI = 0x1, RWF_DSYNC = 0x2, RWF_SYNC = 0x4, RWF_NOWAIT = 0x8, RWF_APPEND = 0x10;

/**
 * preadv2(2)/pwritev2(2): offset -1 is the file's own (readv/writev), another negative one EINVAL.
 * Flags: RWF_HIPRI, RWF_DSYNC and RWF_SYNC change nothing here (nothing is flushed to a disk);
 * RWF_NOWAIT makes a read or write that would wait give EAGAIN (as O_NONBLOCK for this call);
 * RWF_APPEND writes at the end of the file (the file's offset moves only with offset -1).
 * Any other flag is EOPNOTSUPP (kiocb_set_rw_flags), after the fd (EBADF) and ESPIPE checks.
 */
function vector2(t: Task, write: boolean): SyscallResult {
  const fd = t.argInt(0), iov = t.arg(1), cnt = t.argInt(2), pos = t.argI64(3), flags = t.argU32(5);
  if (pos < -1) return -E.EINVAL;
  const f = t.kernel.file(t, fd);
  if (pos !== -1) {
    const ops = t.kernel.fileOps(f);
    if ((write ? ops.pwritable : ops.preadable)?.(t, f) === false) return -E.ESPIPE;
  }
  if (flags & ~(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND)) return -E.EOPNOTSUPP; // RWF_APPEND does nothing to a read
  if (write && (flags & RWF_APPEND) && (f.kind === 'upper' || f.kind === 'host')) {
    const end = regularSize(t, f as OpenFileState & { kind: 'host' | 'upper' });
    const r = writev(t, fd, iov, cnt, end);
    if (pos === -1 && typeof r === 'number' && r >= 0) t.kernel.seek(f, end + r);
    return r;
  }
  const at = pos === -1 ? null : pos;
  const run = () => (write ? writev(t, fd, iov, cnt, at) : readv(t, fd, iov, cnt, at));
  if (!(flags & RWF_NOWAIT) || (f.flags & O_NONBLOCK)) return run();
  // RWF_NOWAIT: this call only, as if the description were non-blocking (it cannot wait, so the flag is back before anything else runs).
  const k = t.kernel;
  k.setFileFlags(f, f.flags | O_NONBLOCK);
  try {
    return run();
  } finally {
    const now = k.state.openFiles[f.id];
    if (now) k.setFileFlags(now, now.flags & ~O_NONBLOCK);
  }
}

function ftruncateFile(t: Task, f: OpenFileState, len: number): number {
  if (len < 0) return -E.EINVAL;
  if (f.kind === 'host' && (f.flags & O_ACCMODE) !== O_RDONLY) {
    // A read-write volume's file, through its own fd.
    const fd = t.kernel.hostFiles.fd(f);
    checkFileGrowth(t, t.kernel.hostFiles.size(fd), len);
    t.kernel.hostFiles.truncate(fd, len);
    fsnotifyFile(t.kernel, f, IN_MODIFY);
    return 0;
  }
  if (f.kind !== 'upper') return (f.flags & O_ACCMODE) === O_RDONLY ? -E.EINVAL : -E.EINVAL;
  if ((f.flags & O_ACCMODE) === O_RDONLY) return -E.EINVAL;
  const ino = t.kernel.state.fs.inodes[f.inodeId];
  if (!isReg(ino.mode)) return -E.EINVAL;
  truncateInode(t, ino, len);
  fsnotifyFile(t.kernel, f, IN_MODIFY);
  return 0;
}

function pipe2(t: Task, fdsAddr: number, flags: number): number {
  t.mm.chunks(fdsAddr, 8, PROT_WRITE, () => undefined);
  const r = t.kernel.pipes.create(t, flags);
  if (typeof r === 'number') return r;
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setInt32(0, r[0], true); v.setInt32(4, r[1], true);
  t.mm.write(fdsAddr, b);
  return 0;
}

const FALLOC_FL_KEEP_SIZE = 0x01, FALLOC_FL_PUNCH_HOLE = 0x02, FALLOC_FL_COLLAPSE_RANGE = 0x08, FALLOC_FL_ZERO_RANGE = 0x10;
const FALLOC_FL_INSERT_RANGE = 0x20, FALLOC_FL_UNSHARE_RANGE = 0x40, FALLOC_FL_WRITE_ZEROES = 0x80;
const FALLOC_FL_MODE_MASK = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES;

/**
 * fallocate(2) in vfs_fallocate's order: EBADF for the fd, EINVAL for a negative offset or a length
 * ≤ 0, EOPNOTSUPP for an unknown or contradictory mode (PUNCH_HOLE without KEEP_SIZE; COLLAPSE,
 * INSERT or WRITE_ZEROES with it), EBADF unless open for writing, ESPIPE for a pipe or FIFO, EISDIR,
 * ENODEV for anything but a regular file (sockets, devices, anonymous files), EFBIG past the largest
 * file; then tmpfs's shmem_fallocate (the upper layer answers as tmpfs): only allocation (the size
 * grows to offset+len unless KEEP_SIZE; RLIMIT_FSIZE gives EFBIG + SIGXFSZ) and PUNCH_HOLE (zeros,
 * whole blocks dropped), EOPNOTSUPP for the other modes. IN_MODIFY on success.
 */
function fallocate(t: Task, fd: number, mode: number, off: number, len: number): number {
  const f = t.kernel.file(t, fd);
  if (f.flags & O_PATH) return -E.EBADF;
  if (off < 0 || len <= 0) return -E.EINVAL;
  if (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) return -E.EOPNOTSUPP;
  switch (mode & FALLOC_FL_MODE_MASK) {
    case 0: case FALLOC_FL_UNSHARE_RANGE: case FALLOC_FL_ZERO_RANGE: break;
    case FALLOC_FL_PUNCH_HOLE: if (!(mode & FALLOC_FL_KEEP_SIZE)) return -E.EOPNOTSUPP; break;
    case FALLOC_FL_COLLAPSE_RANGE: case FALLOC_FL_INSERT_RANGE: case FALLOC_FL_WRITE_ZEROES: if (mode & FALLOC_FL_KEEP_SIZE) return -E.EOPNOTSUPP; break;
    default: return -E.EOPNOTSUPP;
  }
  if ((f.flags & O_ACCMODE) === O_RDONLY || (f.flags & O_ACCMODE) === O_ACCMODE) return -E.EBADF;
  const type = statOfFile(t, f).mode & S_IFMT;
  if (type === S_IFIFO) return -E.ESPIPE;
  if (type === S_IFDIR) return -E.EISDIR;
  if (type !== S_IFREG || f.kind !== 'upper') return -E.ENODEV;
  if (off + len > MAX_UPPER_FILE) return -E.EFBIG;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return -E.EOPNOTSUPP; // shmem_fallocate
  const ino = t.kernel.state.fs.inodes[f.inodeId];
  const end = off + len;
  if (mode & FALLOC_FL_PUNCH_HOLE) inodeZero(t.kernel, ino, off, end);
  else if (!(mode & FALLOC_FL_KEEP_SIZE) && end > ino.size) truncateInode(t, ino, end);
  fsnotifyFile(t.kernel, f, IN_MODIFY);
  return 0;
}

/** fsync/fdatasync: 0, or EINVAL for files with no fsync operation (pipes, sockets, eventfds: vfs_fsync_range). */
function syncable(t: Task, f: OpenFileState): number {
  return t.kernel.fileOps(f).syncable === false ? -E.EINVAL : 0;
}

export const fileSyscalls = [
  syscall('read', 3, (t) => { const f = t.kernel.file(t, t.argInt(0)); return notified(t, f, fileRead(t, f, t.arg(1), t.arg(2), null), IN_ACCESS); }),
  syscall('write', 3, (t) => { const f = t.kernel.file(t, t.argInt(0)); return notified(t, f, fileWrite(t, f, t.arg(1), t.arg(2), null), IN_MODIFY); }),
  syscall('pipe', 1, (t) => pipe2(t, t.arg(0), 0)),
  syscall('pipe2', 2, (t) => pipe2(t, t.arg(0), t.argInt(1)), 'partial', 'O_DIRECT (packet mode) is accepted but behaves as a byte stream'),
  syscall('pread64', 4, (t) => {
    if (t.argI64(3) < 0) return -E.EINVAL; // before the fd, as ksys_pread64
    const f = t.kernel.file(t, t.argInt(0));
    if (t.kernel.fileOps(f).preadable?.(t, f) === false) return -E.ESPIPE;
    return notified(t, f, fileRead(t, f, t.arg(1), t.arg(2), t.argI64(3)), IN_ACCESS);
  }),
  syscall('pwrite64', 4, (t) => {
    if (t.argI64(3) < 0) return -E.EINVAL; // before the fd, as ksys_pwrite64
    const f = t.kernel.file(t, t.argInt(0));
    if (t.kernel.fileOps(f).pwritable?.(t, f) === false) return -E.ESPIPE;
    return notified(t, f, fileWrite(t, f, t.arg(1), t.arg(2), t.argI64(3)), IN_MODIFY);
  }),
  syscall('readv', 3, (t) => readv(t, t.argInt(0), t.arg(1), t.argInt(2), null)),
  syscall('writev', 3, (t) => writev(t, t.argInt(0), t.arg(1), t.argInt(2), null)),
  syscall('preadv', 4, (t) => vectorAt(t, false, t.argInt(0), t.arg(1), t.argInt(2), t.argI64(3))),
  syscall('pwritev', 4, (t) => vectorAt(t, true, t.argInt(0), t.arg(1), t.argInt(2), t.argI64(3))),
  syscall('preadv2', 6, (t) => vector2(t, false), 'full', 'RWF_HIPRI, RWF_DSYNC and RWF_SYNC change nothing (nothing is written back to a disk)'),
  syscall('pwritev2', 6, (t) => vector2(t, true), 'full', 'RWF_HIPRI, RWF_DSYNC and RWF_SYNC change nothing (nothing is written back to a disk)'),
  syscall('copy_file_range', 6, copyFileRange, 'partial', 'between regular files of the upper layer and host files; at most 1 MiB per call'),
  syscall('open', 3, (t) => doOpen(t, AT_FDCWD, t.arg(0), t.argInt(1), t.argU32(2))),
  syscall('openat', 4, (t) => doOpen(t, t.argInt(0), t.arg(1), t.argInt(2), t.argU32(3))),
  syscall('creat', 2, (t) => doOpen(t, AT_FDCWD, t.arg(0), O_CREAT | O_WRONLY | O_TRUNC, t.argU32(1))),
  syscall('close', 1, (t) => t.kernel.closeFd(t, t.argInt(0))),
  syscall('close_range', 3, (t) => {
    const first = t.argU32(0), last = t.argU32(1), flags = t.argU32(2);
    if (first > last || (flags & ~6)) return -E.EINVAL;
    for (const fd of Object.keys(t.fdTable.fds).map(Number)) {
      if (fd < first || fd > last) continue;
      if (flags & 4 /* CLOSE_RANGE_CLOEXEC */) t.kernel.setCloexec(t, fd, true); else t.kernel.closeFd(t, fd);
    }
    return 0;
  }),
  syscall('lseek', 3, lseek),
  syscall('fstat', 2, (t) => { t.mm.write(t.arg(1), encodeStat(statOfFile(t, t.kernel.file(t, t.argInt(0))))); return 0; }),
  syscall('stat', 2, (t) => { t.mm.write(t.arg(1), encodeStat(statPath(t, AT_FDCWD, t.arg(0), 0))); return 0; }),
  syscall('lstat', 2, (t) => { t.mm.write(t.arg(1), encodeStat(statPath(t, AT_FDCWD, t.arg(0), AT_SYMLINK_NOFOLLOW))); return 0; }),
  syscall('newfstatat', 4, (t) => { t.mm.write(t.arg(2), encodeStat(statPath(t, t.argInt(0), t.arg(1), t.argInt(3)))); return 0; }),
  syscall('statx', 5, (t) => { t.mm.write(t.arg(4), encodeStatx(statPath(t, t.argInt(0), t.arg(1), t.argInt(2)))); return 0; }, 'partial', 'reports STATX_BASIC_STATS, no btime'),
  syscall('getdents64', 3, getdents64),
  syscall('fcntl', 3, fcntl, 'partial', 'F_NOTIFY is accepted but sends no events; no leases'),
  syscall('ioctl', 3, ioctl, 'partial', 'terminal requests on stdio pass to the caller\'s terminal; on sockets FIONREAD, SIOCOUTQ and the interface requests for lo; others ENOTTY'),
  syscall('dup', 1, (t) => { const e = t.fdTable.fds[t.argInt(0)]; return e ? t.kernel.installFd(t, e.fileId, false) : -E.EBADF; }),
  syscall('dup2', 2, (t) => dup3(t, t.argInt(0), t.argInt(1), 0, true)),
  syscall('dup3', 3, (t) => dup3(t, t.argInt(0), t.argInt(1), t.argInt(2), false)),
  syscall('fsync', 1, (t) => syncable(t, t.kernel.file(t, t.argInt(0))), 'stub', 'the upper layer lives in memory: nothing to flush; EINVAL for pipes and sockets'),
  syscall('fdatasync', 1, (t) => syncable(t, t.kernel.file(t, t.argInt(0))), 'stub', 'the upper layer lives in memory: nothing to flush; EINVAL for pipes and sockets'),
  syscall('syncfs', 1, (t) => { t.kernel.file(t, t.argInt(0)); return 0; }, 'stub', 'the upper layer lives in memory: nothing to flush'),
  syscall('sync', 0, () => 0, 'stub', 'the upper layer lives in memory: nothing to flush'),
  syscall('fadvise64', 4, (t) => { t.kernel.file(t, t.argInt(0)); return 0; }, 'stub', 'advice only'),
  syscall('memfd_create', 2, (t) => {
    const name = t.mm.readCString(t.arg(0), 249);
    const flags = t.argU32(1);
    if (flags & ~(1 | 2 | 4 | 8 | 0x10)) return -E.EINVAL; // CLOEXEC, ALLOW_SEALING, HUGETLB, NOEXEC_SEAL, EXEC
    const k = t.kernel;
    const id = k.newId();
    const now = k.clock.realtimeNs();
    // An upper-layer inode with no name: it lives while an fd (or mapping) holds it.
    k.emit({ type: 'file.create', path: `/memfd:${name}`, inode: id, mode: S_IFREG | 0o777 }, [['set', ['fs', 'inodes', id], { id, mode: S_IFREG | 0o777, uid: t.tg.uid, gid: t.tg.gid, nlink: 0, size: 0, atimeNs: now, mtimeNs: now, ctimeNs: now }]]);
    const f = k.newOpenFile({ kind: 'upper', path: `/memfd:${name} (deleted)`, flags: O_RDWR | O_LARGEFILE, inodeId: id });
    const fd = k.installFd(t, f.id, !!(flags & 1));
    if (fd < 0) { k.discardFile(f.id); k.emit({ type: 'inode.release', inode: id }, [['del', ['fs', 'inodes', id]]]); }
    return fd;
  }, 'partial', 'seals are accepted but not enforced; MAP_SHARED mappings are copies'),
  syscall('fallocate', 4, (t) => fallocate(t, t.argInt(0), t.argInt(1), t.argI64(2), t.argI64(3)), 'partial', 'tmpfs\'s modes: allocation (with or without FALLOC_FL_KEEP_SIZE) and PUNCH_HOLE; ZERO_RANGE, COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE give EOPNOTSUPP as on tmpfs; memfd seals are not checked'),
  syscall('ftruncate', 2, (t) => (t.argI64(1) < 0 ? -E.EINVAL /* before the fd, as do_sys_ftruncate */ : ftruncateFile(t, t.kernel.file(t, t.argInt(0)), t.argI64(1)))),
  syscall('sendfile', 4, sendfile, 'partial', 'from regular files; into a full pipe or sandbox socket it gives EAGAIN rather than blocking (into a --network=host TCP socket it blocks as send does)'),
];
