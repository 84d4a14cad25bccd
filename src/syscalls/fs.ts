/**
 * Path syscalls (man 2 access, readlink, getcwd, chdir, mkdir, unlink, rename, symlink,
 * link, chmod, chown, utimensat, truncate, statfs). Compare Linux fs/namei.c, fs/open.c,
 * fs/attr.c. Permissions are Linux's discretionary access control (src/kernel/creds.ts):
 * search permission on every directory walked (in the VFS walk), write and search on a
 * parent to create or delete, the sticky bit, ownership or CAP_FOWNER/CAP_CHOWN for
 * attribute changes.
 */
import type { GraphOp } from '../kernel/events.js';
import { E, SyscallError } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { OpenFileState } from '../kernel/state.js';
import { Node, modeOf } from '../vfs/vfs.js';
import { isDir, isLnk } from '../vfs/stat.js';
import { nodeOfFile, statOfFile, truncateInode } from './file.js';
import { syscall } from './entry.js';
import { baseDir } from '../kernel/dirfd.js';
import { MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, TMPFS_MAGIC } from '../abi/linux.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW, O_PATH, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, UTIME_NOW, UTIME_OMIT, AT_EACCESS } from '../abi/linux.js';
import { CAP_CHOWN, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, MAY_EXEC, MAY_READ, MAY_WRITE, capable, inGroup, ownerOrCapable, permits } from '../kernel/creds.js';
import type { InodeAttrs } from '../files/file-ops.js';
import { cred } from './creds.js';
import { checkFileGrowth } from '../kernel/rlimits.js';
import { IN_ACCESS, IN_ATTRIB, IN_CREATE, IN_DELETE, IN_MODIFY, IN_MOVED_FROM, IN_MOVED_TO, IN_MOVE_SELF, fsObjectOf, fsnotify, fsnotifyDirent, fsnotifyGone, moveCookie } from '../files/inotify.js';

const parentPath = (p: string): string => p.slice(0, p.lastIndexOf('/')) || '/';
const baseName = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** Guest strings are latin1 (one char per byte): back to the bytes they came from. */
const bytesOf = (s: string): Uint8Array => Buffer.from(s, 'latin1');

/** A name to create, less its trailing slashes (filename_create looks its last component up unfollowed, slashes or not). */
const newName = (path: string): string => path.replace(/(.)\/+$/, '$1');

function pathArg(t: Task, addr: number): string {
  return t.mm.readCString(addr);
}

/**
 * faccessat2(2): checks with the real uid and gid (and, for a non-root real uid, no
 * capabilities) unless AT_EACCESS; EACCES as open/exec would give.
 */
function accessAt(t: Task, dirfd: number, pathAddr: number, mode: number, flags: number): number {
  if (mode & ~7) return -E.EINVAL;
  if (flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  const path = pathArg(t, pathAddr);
  const c = cred(t);
  const as = (flags & AT_EACCESS) ? c : { ...c, fsuid: c.ruid, fsgid: c.rgid, capEff: c.ruid === 0 ? c.capPrm : 0n };
  return t.kernel.vfs.withCreds(as, () => {
    const n = t.kernel.vfs.resolve(path, baseDir(t, dirfd, path), !(flags & AT_SYMLINK_NOFOLLOW));
    if (!t.kernel.vfs.permits(as, n, mode)) return -E.EACCES;
    if ((mode & 2) && n.kind === 'synthetic' && !n.node.dev) return -E.EACCES;
    return 0;
  });
}

function readlinkAt(t: Task, dirfd: number, pathAddr: number, buf: number, size: number): number {
  if (size <= 0) return -E.EINVAL;
  const path = pathArg(t, pathAddr);
  const n = t.kernel.vfs.resolve(path, baseDir(t, dirfd, path), false);
  if (!isLnk(modeOf(n))) return -E.EINVAL;
  const target = bytesOf(t.kernel.vfs.readlinkNode(n));
  const out = target.subarray(0, Math.min(size, target.length));
  t.mm.write(buf, out);
  return out.length;
}

function chdirTo(t: Task, n: Node, path: string): number {
  if (!isDir(modeOf(n))) return -E.ENOTDIR;
  t.kernel.vfs.checkAccess(n, MAY_EXEC);
  t.kernel.setCwd(t, path);
  return 0;
}

function mkdirAt(t: Task, dirfd: number, pathAddr: number, mode: number): number {
  const path = pathArg(t, pathAddr);
  // Trailing slashes name the directory to make; an existing non-directory there is EEXIST, not ENOTDIR.
  const r = t.kernel.vfs.walk(newName(path), baseDir(t, dirfd, path), false);
  if (r.node) return -E.EEXIST;
  t.kernel.vfs.createNode(r.path, S_IFDIR | (mode & 0o1777 & ~t.tg.umask)); // vfs_mkdir keeps S_IRWXUGO|S_ISVTX: S_ISGID only from the parent, S_ISUID never
  fsnotifyDirent(t.kernel, parentPath(r.path), IN_CREATE, baseName(r.path), true);
  return 0;
}

function unlinkAt(t: Task, dirfd: number, pathAddr: number, flags: number): number {
  if (flags & ~AT_REMOVEDIR) return -E.EINVAL;
  const path = pathArg(t, pathAddr);
  const vfs = t.kernel.vfs;
  const r = vfs.walk(path, baseDir(t, dirfd, path), false);
  if (!r.node) return -E.ENOENT;
  if (r.path === '/' || vfs.isMountpoint(r.path)) return -E.EBUSY;
  if (r.node.kind === 'synthetic') return -E.EPERM;
  const dir = isDir(modeOf(r.node));
  if (flags & AT_REMOVEDIR) {
    if (!dir) return -E.ENOTDIR;
    if (path.endsWith('/.') || path === '.') return -E.EINVAL;
    if (vfs.listDir(r.node).length > 0) return -E.ENOTEMPTY;
  } else if (dir) return -E.EISDIR;
  vfs.checkDelete(r.path, r.node);
  const obj = fsObjectOf(r.node);
  vfs.remove(r.path);
  // A file's link count changed (IN_ATTRIB, fsnotify_link_count); the inode freed now (no link, not
  // open) is IN_DELETE_SELF + IN_IGNORED (else at its last close); then the directory's IN_DELETE.
  if (!dir) fsnotify(t.kernel, obj, IN_ATTRIB, { selfOnly: true });
  if (r.node.kind === 'upper') t.kernel.releaseInodeIfUnused(r.node.inode.id);
  else fsnotifyGone(t.kernel, obj);
  fsnotifyDirent(t.kernel, parentPath(r.path), IN_DELETE, baseName(r.path), dir);
  return 0;
}

function renameAt(t: Task, olddirfd: number, oldAddr: number, newdirfd: number, newAddr: number, flags: number): number {
  const RENAME_NOREPLACE = 1;
  if (flags & ~RENAME_NOREPLACE) return -E.EINVAL;
  const vfs = t.kernel.vfs;
  const oldPath = pathArg(t, oldAddr), newPath = pathArg(t, newAddr);
  // A last component of "." or ".." on either side is EBUSY before the old name is looked up (do_renameat2).
  const dotLast = (p: string) => /(^|\/)\.\.?\/*$/.test(p);
  // Both parents are looked up first (filename_parentat): a missing one is ENOENT, one that is not a directory ENOTDIR.
  const parentError = (p: string, dirfd: number): number => {
    const i = p.replace(/\/+$/, '').lastIndexOf('/');
    if (i <= 0) return 0;
    const parent = vfs.walk(p.slice(0, i), baseDir(t, dirfd, p), true).node;
    return !parent ? E.ENOENT : !isDir(modeOf(parent)) ? E.ENOTDIR : 0;
  };
  if (oldPath === '' || newPath === '') return -E.ENOENT; // getname of an empty path, before anything else
  // Both parents before anything else (a looping one: ELOOP even when the old name is missing).
  const parentErr = parentError(oldPath, olddirfd) || parentError(newPath, newdirfd);
  if (parentErr) return -parentErr;
  if (dotLast(oldPath) || dotLast(newPath)) return -E.EBUSY;
  const from = vfs.walk(oldPath, baseDir(t, olddirfd, oldPath), false);
  if (!from.node) return -E.ENOENT;
  // A trailing slash on either name asks for a directory: ENOTDIR for anything else, before the new name is looked at (do_renameat2).
  if (!isDir(modeOf(from.node)) && (/[^/]\/+$/.test(oldPath) || /[^/]\/+$/.test(newPath))) return -E.ENOTDIR;
  const to = vfs.walk(newPath, baseDir(t, newdirfd, newPath), false);
  if (from.path === to.path) return 0;
  // Two names of one inode: rename does nothing (man 2 rename).
  if (to.node && from.node.kind === 'upper' && to.node.kind === 'upper' && from.node.inode.id === to.node.inode.id) return 0;
  if (to.node && from.node.kind === 'host' && to.node.kind === 'host' && from.node.st.ino === to.node.st.ino && from.node.st.dev === to.node.st.dev) return 0;
  if (to.path.startsWith(from.path + '/')) return -E.EINVAL;
  if (vfs.isMountpoint(from.path) || vfs.isMountpoint(to.path)) return -E.EBUSY;
  vfs.checkDelete(from.path, from.node);
  if (to.node) vfs.checkDelete(to.path, to.node); else vfs.checkCreate(to.path);
  const fromDir = isDir(modeOf(from.node));
  // Moving a directory to another parent rewrites its "..": write permission on it (may_delete of a directory).
  if (fromDir && to.path.slice(0, to.path.lastIndexOf('/')) !== from.path.slice(0, from.path.lastIndexOf('/'))) vfs.checkAccess(from.node, MAY_WRITE);
  if (to.node) {
    if (flags & RENAME_NOREPLACE) return -E.EEXIST;
    const toDir = isDir(modeOf(to.node));
    if (fromDir && !toDir) return -E.ENOTDIR;
    if (!fromDir && toDir) return -E.EISDIR;
    if (toDir && vfs.listDir(to.node).length > 0) return -E.ENOTEMPTY;
  } else {
    const parent = to.path.slice(0, to.path.lastIndexOf('/')) || '/';
    const pn = vfs.lookup(parent);
    if (!pn) return -E.ENOENT;
  }
  const replacedObj = to.node ? fsObjectOf(to.node) : undefined;
  const replaced = vfs.rename(from.node, to.path);
  // Open files of the upper layer and working directories follow their dentry (d_path): /proc/PID/fd/N,
  // getcwd, fchdir and inotify events name the new path.
  const moved = (p: string) => p === from.path || p.startsWith(from.path + '/');
  const follow: GraphOp[] = [];
  for (const f of Object.values(t.kernel.state.openFiles)) {
    if ((f.kind === 'upper' || f.kind === 'dir') && moved(f.path)) follow.push(['set', ['openFiles', f.id, 'path'], to.path + f.path.slice(from.path.length)]);
  }
  for (const g of Object.values(t.kernel.state.threadGroups)) if (moved(g.cwd)) follow.push(['set', ['threadGroups', g.tgid, 'cwd'], to.path + g.cwd.slice(from.path.length)]);
  const mounts = vfs.mountsFollow(from.path, to.path);
  follow.push(...mounts);
  if (follow.length) t.kernel.emit({ type: 'file.follow', from: from.path, to: to.path }, follow);
  if (mounts.length) vfs.mountsChanged();
  // fsnotify_move: IN_MOVED_FROM and IN_MOVED_TO (one cookie), the replaced file's link count, IN_MOVE_SELF; the replaced file is gone.
  const k = t.kernel, cookie = moveCookie(k);
  fsnotifyDirent(k, parentPath(from.path), IN_MOVED_FROM, baseName(from.path), fromDir, cookie);
  fsnotifyDirent(k, parentPath(to.path), IN_MOVED_TO, baseName(to.path), fromDir, cookie);
  const gone = replacedObj && (replaced === undefined || k.state.fs.inodes[replaced]?.nlink === 0);
  if (replacedObj && !replacedObj.dir) fsnotify(k, replacedObj, IN_ATTRIB, { selfOnly: true });
  // The moved object is in the upper layer now (rename copies up); a watch by its old lower path moves onto it.
  fsnotify(k, { path: from.path, inodeId: k.state.fs.upper[vfs.keyFor(to.path)] || undefined, dir: fromDir }, IN_MOVE_SELF, { selfOnly: true });
  // The replaced file is freed (IN_DELETE_SELF, IN_IGNORED) now, or at its last close.
  if (replacedObj && gone && replacedObj.inodeId === undefined) fsnotifyGone(k, replacedObj);
  k.releaseInodeIfUnused(replaced);
  return 0;
}

function symlinkAt(t: Task, targetAddr: number, dirfd: number, pathAddr: number): number {
  const target = pathArg(t, targetAddr);
  const path = pathArg(t, pathAddr);
  // The new name's last component is looked up without following it, trailing slashes or not: an existing name (a dangling symlink too) is EEXIST (filename_create).
  const r = t.kernel.vfs.walk(newName(path), baseDir(t, dirfd, path), false);
  if (r.node) return -E.EEXIST;
  if (path.endsWith('/')) return -E.ENOENT; // a new non-directory named with a trailing slash (filename_create)
  t.kernel.vfs.createNode(r.path, S_IFLNK | 0o777, { target, size: bytesOf(target).length });
  fsnotifyDirent(t.kernel, parentPath(r.path), IN_CREATE, baseName(r.path), false);
  return 0;
}

/** linkat's source: a node, or -errno (ENOENT for AT_EMPTY_PATH without CAP_DAC_READ_SEARCH, EXDEV for an open file on another mount). */
function linkSource(t: Task, olddirfd: number, oldPath: string, flags: number): Node | number {
  const vfs = t.kernel.vfs;
  let fromFile: OpenFileState | undefined;
  if (oldPath === '' && (flags & AT_EMPTY_PATH)) {
    if (!capable(cred(t), CAP_DAC_READ_SEARCH)) return -E.ENOENT;
    if (olddirfd === AT_FDCWD) return vfs.resolve(t.tg.cwd, '/', true);
    fromFile = t.kernel.file(t, olddirfd);
  } else {
    const n = vfs.resolve(oldPath, baseDir(t, olddirfd, oldPath), !!(flags & AT_SYMLINK_FOLLOW));
    if (!(n.kind === 'synthetic' && n.node.magicFileId !== undefined && (flags & AT_SYMLINK_FOLLOW))) return n;
    fromFile = t.kernel.state.openFiles[n.node.magicFileId];
    if (!fromFile) return -E.ENOENT;
  }
  const n = fromFile.path.startsWith('/memfd:') ? undefined : nodeOfFile(t, fromFile);
  return n ?? -E.EXDEV;
}

/**
 * linkat(2) (do_linkat, vfs_link). The source may be an open file: `olddirfd` itself with an empty
 * path and AT_EMPTY_PATH (which needs CAP_DAC_READ_SEARCH, else ENOENT), or a followed
 * /proc/PID/fd/N magic link; a file with no link can be named only if it is a linkable O_TMPFILE
 * (ENOENT otherwise); a memfd, pipe or socket lives on another mount (EXDEV). EINVAL for unknown flags.
 */
function linkAt(t: Task, olddirfd: number, oldAddr: number, newdirfd: number, newAddr: number, flags: number): number {
  if (flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH)) return -E.EINVAL;
  const vfs = t.kernel.vfs;
  const oldPath = pathArg(t, oldAddr), newPath = pathArg(t, newAddr);
  const source = linkSource(t, olddirfd, oldPath, flags);
  if (typeof source === 'number') return source;
  const from = source;
  const to = vfs.walk(newName(newPath), baseDir(t, newdirfd, newPath), false);
  if (to.node) return -E.EEXIST;
  // A new name with a trailing slash asks for a directory, which link never makes: ENOENT (filename_create).
  if (/[^/]\/+$/.test(newPath)) return -E.ENOENT;
  // The new name's mount must be writable (EROFS) and be the source's (EXDEV), as do_linkat checks before may_linkat.
  const toLoc = vfs.locate(to.path);
  vfs.checkWritable(toLoc);
  if (vfs.locate(from.path).m?.id !== toLoc.m?.id) return -E.EXDEV;
  // fs.protected_hardlinks (default 1): a file of another user only if it is a plain file we may read and write.
  const c = cred(t), o = vfs.owner(from);
  if (c.fsuid !== o.uid && !capable(c, CAP_FOWNER)) {
    const safe = (o.mode & S_IFMT) === S_IFREG && !(o.mode & 0o4000) && (o.mode & 0o2010) !== 0o2010 && vfs.permits(c, from, MAY_READ | MAY_WRITE);
    if (!safe) return -E.EPERM;
  }
  vfs.checkCreate(to.path);
  if (isDir(modeOf(from))) return -E.EPERM; // after the new name's checks, as vfs_link
  if (from.kind === 'upper' && from.inode.nlink === 0 && !from.inode.linkable) return -E.ENOENT;
  const inode = vfs.link(from, to.path);
  if (!inode) { // a read-write volume: the host linked it
    fsnotifyDirent(t.kernel, parentPath(to.path), IN_CREATE, baseName(to.path), false);
    return 0;
  }
  t.kernel.emit({ type: 'file.link', path: to.path, inode: inode.id }, [
    ['set', ['fs', 'inodes', inode.id, 'nlink'], inode.nlink + 1], ['del', ['fs', 'inodes', inode.id, 'linkable']], ['set', ['fs', 'upper', vfs.keyFor(to.path)], inode.id],
  ]);
  fsnotify(t.kernel, { path: from.path, inodeId: inode.id, dir: false }, IN_ATTRIB, { selfOnly: true });
  fsnotifyDirent(t.kernel, parentPath(to.path), IN_CREATE, baseName(to.path), false);
  return 0;
}

/**
 * What chmod/chown/utimensat change: a filesystem node, or the inode of an open file that has
 * none (a pipefs or sockfs inode: FileOps.inodeAttrs) with its owner and permission bits.
 */
type AttrTarget = Node | { readonly kind: 'file-inode'; readonly file: OpenFileState; readonly attrs: InodeAttrs };

/**
 * The target of an attribute change through an open file: its own inode (pipes, sockets), its
 * node, or none (the caller's host stdio: EPERM). anon_inodefs files and pidfds: EOPNOTSUPP
 * (anon_inode_setattr, pidfs_setattr).
 */
function fileTarget(t: Task, f: OpenFileState): AttrTarget {
  const ops = t.kernel.fileOps(f);
  if (ops.anonInode) throw new SyscallError(E.EOPNOTSUPP);
  const attrs = ops.inodeAttrs?.(t, f);
  if (attrs) return { kind: 'file-inode', file: f, attrs };
  const n = nodeOfFile(t, f);
  if (!n) throw new SyscallError(E.EPERM);
  return n;
}

/**
 * Resolve a path (or an fd with AT_EMPTY_PATH) to what chmod/chown/utimensat change. With no
 * path at all (fchmod, fchown, utimensat(fd, NULL)) an O_PATH fd is EBADF (fdget skips them);
 * fchownat(fd, "", AT_EMPTY_PATH) takes one.
 */
function nodeAt(t: Task, dirfd: number, pathAddr: number, flags: number): AttrTarget {
  const path = pathAddr ? pathArg(t, pathAddr) : '';
  if (path === '') {
    if (!(flags & AT_EMPTY_PATH) && pathAddr) throw new SyscallError(E.ENOENT);
    const f = t.kernel.file(t, dirfd);
    if (!pathAddr && (f.flags & O_PATH)) throw new SyscallError(E.EBADF);
    return fileTarget(t, f);
  }
  const n = t.kernel.vfs.resolve(path, baseDir(t, dirfd, path), !(flags & AT_SYMLINK_NOFOLLOW));
  // A followed /proc/<pid>/fd/N magic link names the open file's own inode (glibc's fchmodat with
  // AT_SYMLINK_NOFOLLOW, used by tar, chmods "/proc/self/fd/N" of an O_PATH fd; a pipe's is its pipefs inode).
  if (n.kind === 'synthetic' && n.node.magicFileId !== undefined && !(flags & AT_SYMLINK_NOFOLLOW)) {
    const f = t.kernel.state.openFiles[n.node.magicFileId];
    if (f) {
      const ops = t.kernel.fileOps(f);
      if (ops.anonInode || ops.inodeAttrs?.(t, f)) return fileTarget(t, f);
      const target = nodeOfFile(t, f);
      if (target) return target;
    }
  }
  return n;
}

/** Owner, group and mode (with its file type) of what an attribute change targets. */
function ownerOfTarget(t: Task, n: AttrTarget): { mode: number; uid: number; gid: number } {
  if (n.kind !== 'file-inode') return t.kernel.vfs.owner(n);
  return { ...n.attrs, mode: (statOfFile(t, n.file).mode & S_IFMT) | n.attrs.mode };
}

/** chmod(2): the owner or CAP_FOWNER (EPERM); set-group-ID is dropped for a group the caller is not in, without CAP_FSETID. */
function chmodNode(t: Task, n: AttrTarget, mode: number): number {
  if (n.kind === 'synthetic') return -E.EPERM;
  const c = cred(t), o = ownerOfTarget(t, n);
  if (!ownerOrCapable(c, o.uid)) return -E.EPERM;
  mode &= 0o7777;
  if (!inGroup(c, o.gid) && !capable(c, CAP_FSETID)) mode &= ~0o2000;
  if (n.kind === 'file-inode') {
    t.kernel.fileOps(n.file).setInodeAttrs!(t, n.file, { ...n.attrs, mode });
    return 0;
  }
  if (t.kernel.vfs.isVolumeNode(n)) {
    t.kernel.vfs.hostChange(n, (tree, key) => tree.chmod!(key, mode));
    fsnotify(t.kernel, fsObjectOf(n), IN_ATTRIB);
    return 0;
  }
  const ino = t.kernel.vfs.copyUp(n);
  const m = (ino.mode & S_IFMT) | mode;
  t.kernel.emit({ type: 'file.chmod', inode: ino.id, mode: m }, [
    ['set', ['fs', 'inodes', ino.id, 'mode'], m], ['set', ['fs', 'inodes', ino.id, 'ctimeNs'], t.kernel.clock.realtimeNs()],
  ]);
  fsnotify(t.kernel, { ...fsObjectOf(n), inodeId: ino.id }, IN_ATTRIB);
  return 0;
}

/**
 * The mode after chown(2) of anything but a directory (chown_common, even with both ids -1):
 * set-user-ID is dropped, and set-group-ID when group-executable or when the caller is neither
 * in the file's group nor has CAP_FSETID (setattr_should_drop_sgid). For root too.
 */
function modeAfterChown(t: Task, o: { mode: number; gid: number }): number {
  let m = o.mode;
  if ((m & S_IFMT) === S_IFDIR) return m;
  m &= ~0o4000;
  const c = cred(t);
  if ((m & 0o2000) && ((m & 0o010) || (!inGroup(c, o.gid) && !capable(c, CAP_FSETID)))) m &= ~0o2000;
  return m;
}

/**
 * chown(2) (fs/attr.c chown_ok, chgrp_ok): a new owner needs CAP_CHOWN; the owner may give
 * the file to a group it is in. Anything but a directory loses set-user-ID (modeAfterChown).
 */
function chownNode(t: Task, n: AttrTarget, uid: number, gid: number): number {
  if (n.kind === 'synthetic') return -E.EPERM;
  const c = cred(t), o = ownerOfTarget(t, n);
  if (uid !== 0xffffffff && uid !== o.uid && !capable(c, CAP_CHOWN)) return -E.EPERM;
  if (uid !== 0xffffffff && uid === o.uid && c.fsuid !== o.uid && !capable(c, CAP_CHOWN)) return -E.EPERM;
  if (gid !== 0xffffffff && !capable(c, CAP_CHOWN) && !(c.fsuid === o.uid && (gid === o.gid || inGroup(c, gid)))) return -E.EPERM;
  if (n.kind === 'file-inode') {
    t.kernel.fileOps(n.file).setInodeAttrs!(t, n.file, {
      uid: uid !== 0xffffffff ? uid : o.uid, gid: gid !== 0xffffffff ? gid : o.gid, mode: modeAfterChown(t, o) & 0o7777,
    });
    return 0;
  }
  if (t.kernel.vfs.isVolumeNode(n)) {
    t.kernel.vfs.hostChange(n, (tree, key) => tree.chown!(key, uid === 0xffffffff ? -1 : uid, gid === 0xffffffff ? -1 : gid));
    fsnotify(t.kernel, fsObjectOf(n), IN_ATTRIB);
    return 0;
  }
  const ino = t.kernel.vfs.copyUp(n);
  const u = uid !== 0xffffffff ? uid : ino.uid, g = gid !== 0xffffffff ? gid : ino.gid;
  const m = modeAfterChown(t, ino);
  t.kernel.emit({ type: 'file.chown', inode: ino.id, uid: u, gid: g }, [
    ['set', ['fs', 'inodes', ino.id, 'uid'], u], ['set', ['fs', 'inodes', ino.id, 'gid'], g], ['set', ['fs', 'inodes', ino.id, 'mode'], m],
    ['set', ['fs', 'inodes', ino.id, 'ctimeNs'], t.kernel.clock.realtimeNs()],
  ]);
  fsnotify(t.kernel, { ...fsObjectOf(n), inodeId: ino.id }, IN_ATTRIB);
  return 0;
}

function utimensat(t: Task): number {
  const dirfd = t.argInt(0), pathAddr = t.arg(1), times = t.arg(2), flags = t.argInt(3);
  const n = nodeAt(t, dirfd, pathAddr, flags | (pathAddr ? 0 : AT_EMPTY_PATH));
  if (n.kind === 'synthetic') return 0;
  const now = t.kernel.clock.realtimeNs();
  let at = now, mt = now, omitA = false, omitM = false, explicit = false;
  if (times) {
    const b = t.mm.read(times, 32);
    const v = new DataView(b.buffer, b.byteOffset, 32);
    const sec = (i: number) => v.getBigInt64(i * 16, true), nsec = (i: number) => Number(v.getBigInt64(i * 16 + 8, true));
    for (const i of [0, 1]) {
      const ns = nsec(i);
      if (ns !== UTIME_NOW && ns !== UTIME_OMIT && (ns < 0 || ns >= 1e9)) return -E.EINVAL;
    }
    if (nsec(0) === UTIME_OMIT) omitA = true; else if (nsec(0) !== UTIME_NOW) { at = sec(0) * 1_000_000_000n + BigInt(nsec(0)); explicit = true; }
    if (nsec(1) === UTIME_OMIT) omitM = true; else if (nsec(1) !== UTIME_NOW) { mt = sec(1) * 1_000_000_000n + BigInt(nsec(1)); explicit = true; }
  }
  if (omitA && omitM) return 0;
  // Explicit times: the owner or CAP_FOWNER (EPERM); "now": also anyone who may write it (EACCES).
  const c = cred(t), o = ownerOfTarget(t, n);
  if (!ownerOrCapable(c, o.uid)) {
    if (explicit) return -E.EPERM;
    if (!permits(c, o.mode, o.uid, o.gid, MAY_WRITE, false)) return -E.EACCES;
  }
  if (n.kind === 'file-inode') return 0; // a pipefs/sockfs inode's times are not kept (fstat shows 0)
  if (t.kernel.vfs.isVolumeNode(n)) {
    t.kernel.vfs.hostChange(n, (tree, key) => tree.utimes!(key, omitA ? undefined : at, omitM ? undefined : mt));
    fsnotify(t.kernel, fsObjectOf(n), !omitA && !omitM ? IN_ATTRIB : omitM ? IN_ACCESS : IN_MODIFY);
    return 0;
  }
  const ino = t.kernel.vfs.copyUp(n);
  t.kernel.emit({ type: 'file.utimes', inode: ino.id }, [
    ...(omitA ? [] : [['set', ['fs', 'inodes', ino.id, 'atimeNs'], at] as GraphOp]),
    ...(omitM ? [] : [['set', ['fs', 'inodes', ino.id, 'mtimeNs'], mt] as GraphOp]),
    ['set', ['fs', 'inodes', ino.id, 'ctimeNs'], now],
  ]);
  // fsnotify_change: both times are IN_ATTRIB (a utimes call), the access time alone IN_ACCESS, the modification time alone IN_MODIFY.
  fsnotify(t.kernel, { ...fsObjectOf(n), inodeId: ino.id }, !omitA && !omitM ? IN_ATTRIB : omitM ? IN_ACCESS : IN_MODIFY);
  return 0;
}

/**
 * struct statfs (120 bytes) of the filesystem guest path `p` is on: a tmpfs (TMPFS_MAGIC, its
 * size= limit, else half the memory limit, and what its files use), else the sandbox's overlay
 * (with --disk, its size and what is left of it). f_flags carries the mount's ST_RDONLY etc.
 */
function statfsBytes(t: Task, p: string): Uint8Array {
  const b = new Uint8Array(120);
  const v = new DataView(b.buffer);
  const loc = t.kernel.vfs.locate(p);
  const sb = loc.sb ? t.kernel.vfs.superblock(loc.sb) : undefined;
  if (loc.m) v.setBigInt64(80, BigInt(0x20 | 0x1000 | (loc.m.flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)) | (sb?.type === 'volume' && sb.readonly ? MS_RDONLY : 0)), true); // f_flags: ST_VALID | ST_*
  if (sb?.type === 'volume') {
    // The host filesystem the volume is on, as a bind mount shows it; the flags are the mount's.
    let host: Uint8Array | undefined;
    try { host = t.kernel.vfs.treeOf({ sb: sb.id }).statfs?.(); } catch { /* the host refused: the overlay's figures below */ }
    if (host) {
      b.set(host.subarray(0, 80));
      return b;
    }
  }
  if (sb?.type === 'tmpfs') {
    const size = sb.sizeLimit ?? Math.floor((t.kernel.state.config.memoryLimit ?? 2 ** 31) / 2);
    const total = BigInt(Math.floor(size / 4096)), free = BigInt(Math.max(0, Math.floor((size - sb.usedBytes) / 4096)));
    v.setBigInt64(0, BigInt(TMPFS_MAGIC), true);
    v.setBigInt64(8, 4096n, true);
    v.setBigUint64(16, total, true);
    v.setBigUint64(24, free, true);
    v.setBigUint64(32, free, true);
    v.setBigUint64(40, 1n << 20n, true);
    v.setBigUint64(48, 1n << 19n, true);
    v.setBigInt64(64, 255n, true);
    v.setBigInt64(72, 4096n, true);
    return b;
  }
  const limit = t.kernel.state.config.diskLimit, used = t.kernel.state.fs.diskBytes ?? 0;
  const total = limit !== undefined ? BigInt(Math.floor(limit / 4096)) : 1n << 24n;
  const free = limit !== undefined ? BigInt(Math.max(0, Math.floor((limit - used) / 4096))) : 1n << 23n;
  v.setBigInt64(0, 0x794c7630n, true);        // f_type OVERLAYFS_SUPER_MAGIC
  v.setBigInt64(8, 4096n, true);              // f_bsize
  v.setBigUint64(16, total, true);            // f_blocks
  v.setBigUint64(24, free, true);             // f_bfree
  v.setBigUint64(32, free, true);             // f_bavail
  v.setBigUint64(40, 1n << 20n, true);        // f_files
  v.setBigUint64(48, 1n << 19n, true);        // f_ffree
  v.setBigInt64(64, 255n, true);              // f_namelen
  v.setBigInt64(72, 4096n, true);             // f_frsize
  return b;
}

/** mknod(2): FIFOs and regular files; device nodes need CAP_MKNOD, which the sandbox doesn't grant. */
function mknodAt(t: Task, dirfd: number, pathAddr: number, mode: number): number {
  const type = mode & S_IFMT;
  if (type !== 0 && type !== S_IFREG && type !== S_IFIFO) return type === 0o020000 || type === 0o060000 ? -E.EPERM : -E.EINVAL;
  const path = pathArg(t, pathAddr);
  // The new name's last component is looked up without following it, trailing slashes or not: an existing name (a dangling symlink too) is EEXIST (filename_create).
  const r = t.kernel.vfs.walk(newName(path), baseDir(t, dirfd, path), false);
  if (r.node) return -E.EEXIST;
  if (path.endsWith('/')) return -E.ENOENT; // a new non-directory named with a trailing slash (filename_create)
  t.kernel.vfs.createNode(r.path, (type || S_IFREG) | (mode & 0o7777 & ~t.tg.umask));
  fsnotifyDirent(t.kernel, parentPath(r.path), IN_CREATE, baseName(r.path), false);
  return 0;
}

export const fsSyscalls = [
  syscall('mknod', 3, (t) => mknodAt(t, AT_FDCWD, t.arg(0), t.argU32(1)), 'partial', 'FIFOs and regular files; device nodes give EPERM'),
  syscall('mknodat', 4, (t) => mknodAt(t, t.argInt(0), t.arg(1), t.argU32(2)), 'partial', 'FIFOs and regular files; device nodes give EPERM'),
  syscall('access', 2, (t) => accessAt(t, AT_FDCWD, t.arg(0), t.argInt(1), 0)),
  syscall('faccessat', 3, (t) => accessAt(t, t.argInt(0), t.arg(1), t.argInt(2), 0)),
  syscall('faccessat2', 4, (t) => accessAt(t, t.argInt(0), t.arg(1), t.argInt(2), t.argInt(3))),
  syscall('readlink', 3, (t) => readlinkAt(t, AT_FDCWD, t.arg(0), t.arg(1), t.argInt(2))),
  syscall('readlinkat', 4, (t) => readlinkAt(t, t.argInt(0), t.arg(1), t.arg(2), t.argInt(3))),
  syscall('getcwd', 2, (t) => {
    const cwd = bytesOf(t.tg.cwd + '\0');
    if (t.arg(1) < cwd.length) return -E.ERANGE;
    t.mm.write(t.arg(0), cwd);
    return cwd.length;
  }),
  syscall('chdir', 1, (t) => {
    const path = pathArg(t, t.arg(0));
    const r = t.kernel.vfs.walk(path, t.tg.cwd, true);
    if (!r.node) return -E.ENOENT;
    return chdirTo(t, r.node, r.path);
  }),
  syscall('fchdir', 1, (t) => {
    const f = t.kernel.file(t, t.argInt(0));
    if (f.kind !== 'dir') return -E.ENOTDIR;
    const n = t.kernel.vfs.lookup(f.path);
    if (n) t.kernel.vfs.checkAccess(n, MAY_EXEC);
    t.kernel.setCwd(t, f.path);
    return 0;
  }),
  syscall('chroot', 1, () => -E.EPERM, 'stub', 'the sandbox root is fixed'),
  syscall('mkdir', 2, (t) => mkdirAt(t, AT_FDCWD, t.arg(0), t.argU32(1))),
  syscall('mkdirat', 3, (t) => mkdirAt(t, t.argInt(0), t.arg(1), t.argU32(2))),
  syscall('rmdir', 1, (t) => unlinkAt(t, AT_FDCWD, t.arg(0), AT_REMOVEDIR)),
  syscall('unlink', 1, (t) => unlinkAt(t, AT_FDCWD, t.arg(0), 0)),
  syscall('unlinkat', 3, (t) => unlinkAt(t, t.argInt(0), t.arg(1), t.argInt(2))),
  syscall('rename', 2, (t) => renameAt(t, AT_FDCWD, t.arg(0), AT_FDCWD, t.arg(1), 0)),
  syscall('renameat', 4, (t) => renameAt(t, t.argInt(0), t.arg(1), t.argInt(2), t.arg(3), 0)),
  syscall('renameat2', 5, (t) => renameAt(t, t.argInt(0), t.arg(1), t.argInt(2), t.arg(3), t.argU32(4)), 'partial', 'RENAME_EXCHANGE and RENAME_WHITEOUT give EINVAL'),
  syscall('symlink', 2, (t) => symlinkAt(t, t.arg(0), AT_FDCWD, t.arg(1))),
  syscall('symlinkat', 3, (t) => symlinkAt(t, t.arg(0), t.argInt(1), t.arg(2))),
  syscall('link', 2, (t) => linkAt(t, AT_FDCWD, t.arg(0), AT_FDCWD, t.arg(1), 0)),
  syscall('linkat', 5, (t) => linkAt(t, t.argInt(0), t.arg(1), t.argInt(2), t.arg(3), t.argInt(4))),
  syscall('chmod', 2, (t) => chmodNode(t, nodeAt(t, AT_FDCWD, t.arg(0), 0), t.argU32(1))),
  syscall('fchmod', 2, (t) => chmodNode(t, nodeAt(t, t.argInt(0), 0, AT_EMPTY_PATH), t.argU32(1))),
  syscall('fchmodat', 3, (t) => chmodNode(t, nodeAt(t, t.argInt(0), t.arg(1), 0), t.argU32(2))),
  syscall('chown', 3, (t) => chownNode(t, nodeAt(t, AT_FDCWD, t.arg(0), 0), t.argU32(1), t.argU32(2))),
  syscall('lchown', 3, (t) => chownNode(t, nodeAt(t, AT_FDCWD, t.arg(0), AT_SYMLINK_NOFOLLOW), t.argU32(1), t.argU32(2))),
  syscall('fchown', 3, (t) => chownNode(t, nodeAt(t, t.argInt(0), 0, AT_EMPTY_PATH), t.argU32(1), t.argU32(2))),
  syscall('fchownat', 5, (t) => chownNode(t, nodeAt(t, t.argInt(0), t.arg(1), t.argInt(4)), t.argU32(2), t.argU32(3))),
  syscall('utimensat', 4, utimensat),
  syscall('truncate', 2, (t) => {
    if (t.argI64(1) < 0) return -E.EINVAL; // before the path, as do_sys_truncate
    const n = t.kernel.vfs.resolve(pathArg(t, t.arg(0)), t.tg.cwd, true);
    if (isDir(modeOf(n))) return -E.EISDIR;
    t.kernel.vfs.checkAccess(n, MAY_WRITE);
    if (t.kernel.vfs.isVolumeNode(n)) {
      const size = t.argI64(1);
      checkFileGrowth(t, n.st.size, size);
      t.kernel.vfs.hostChange(n, (tree, key) => { const o = tree.openWrite!(key, false, false); try { tree.ftruncate!(o.fd, size); } finally { tree.closeFile(o.fd); } });
      fsnotify(t.kernel, fsObjectOf(n), IN_MODIFY);
      return 0;
    }
    const ino = t.kernel.vfs.copyUp(n);
    truncateInode(t, ino, t.argI64(1));
    fsnotify(t.kernel, { ...fsObjectOf(n), inodeId: ino.id }, IN_MODIFY);
    return 0;
  }),
  syscall('umask', 1, (t) => {
    const old = t.tg.umask;
    t.kernel.emit({ type: 'proc.umask', tgid: t.tgid, umask: t.argU32(0) & 0o777 }, [['set', ['threadGroups', t.tgid, 'umask'], t.argU32(0) & 0o777]]);
    return old;
  }),
  syscall('statfs', 2, (t) => { const r = t.kernel.vfs.walk(pathArg(t, t.arg(0)), t.tg.cwd, true); if (!r.node) return -E.ENOENT; t.mm.write(t.arg(1), statfsBytes(t, r.path)); return 0; }, 'partial', 'a tmpfs mount reports its size; everything else an overlay filesystem (its size from --disk, else fixed)'),
  syscall('fstatfs', 2, (t) => { const f = t.kernel.file(t, t.argInt(0)); t.mm.write(t.arg(1), statfsBytes(t, f.path)); return 0; }, 'partial', 'a tmpfs mount reports its size; everything else an overlay filesystem (its size from --disk, else fixed)'),
];
