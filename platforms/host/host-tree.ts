/**
 * A host directory tree reached only beneath a handle of its root, as gVisor's gofer
 * serves a rootfs: every file and directory is opened relative to the root's fd with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) (or, where
 * openat2 is missing, component by component with O_PATH | O_NOFOLLOW), never by a host
 * path string. A symlink anywhere on the way fails the open (ELOOP): symlinks are read
 * with readlinkat and resolved by the caller in its own namespace. Attributes come from
 * fstatat(parent handle, one name, AT_SYMLINK_NOFOLLOW), so no host path walk ever
 * follows a link either.
 *
 * Paths given to this module are "tree paths": absolute, canonical ('/' or '/a/b', no
 * '.', '..' or empty components), as latin1 strings (one char per byte). Handles of
 * directories are cached (a bounded map of O_PATH fds): a path lookup costs one fstatat.
 * The tree is assumed not to be rearranged on the host while a sandbox runs; if it is,
 * cached handles keep serving the directories they were opened on (never anything
 * outside the root, unless the host itself moves a directory out of it).
 */
import koffi from 'koffi';
import { HostError, type HostDirEntry, type HostStat, type HostTree } from '../host-services.js';
import { libcFunc } from './libc.js';

export { HostError, type HostDirEntry, type HostStat };

let sys5 = libcFunc((f) => sys5 = f, 'syscall', 'long', ['long', 'int', 'void *', 'void *', 'size_t']) as (nr: number, a: number, b: Uint8Array, c: Uint8Array, d: number) => number;
let openat = libcFunc((f) => openat = f, 'int openat(int dirfd, void *path, int flags, int mode)') as (dirfd: number, path: Uint8Array, flags: number, mode: number) => number;
let fstatat = libcFunc((f) => fstatat = f, 'int fstatat(int dirfd, void *path, void *st, int flags)') as (dirfd: number, path: Uint8Array, st: Uint8Array, flags: number) => number;
let readlinkat = libcFunc((f) => readlinkat = f, 'int64_t readlinkat(int dirfd, void *path, void *buf, size_t size)') as (dirfd: number, path: Uint8Array, buf: Uint8Array, size: number) => number;
let getdents64 = libcFunc((f) => getdents64 = f, 'int64_t getdents64(int fd, void *buf, size_t size)') as (fd: number, buf: Uint8Array, size: number) => number;
let closeFd = libcFunc((f) => closeFd = f, 'int close(int fd)') as (fd: number) => number;
let fstatfs = libcFunc((f) => fstatfs = f, 'int fstatfs(int fd, void *buf)') as (fd: number, buf: Uint8Array) => number;
let libcChmod = libcFunc((f) => libcChmod = f, 'int chmod(void *path, int mode)') as (path: Uint8Array, mode: number) => number;
let pread = libcFunc((f) => pread = f, 'int64_t pread(int fd, void *buf, size_t count, int64_t off)') as (fd: number, buf: Uint8Array, count: number, off: number) => number;
let lseek = libcFunc((f) => lseek = f, 'int64_t lseek(int fd, int64_t off, int whence)') as (fd: number, off: number, whence: number) => number;
let pwriteFn = libcFunc((f) => pwriteFn = f, 'int64_t pwrite(int fd, void *buf, size_t count, int64_t off)') as (fd: number, buf: Uint8Array, count: number, off: number) => number;
let ftruncateFn = libcFunc((f) => ftruncateFn = f, 'int ftruncate(int fd, int64_t len)') as (fd: number, len: number) => number;
let mkdirat = libcFunc((f) => mkdirat = f, 'int mkdirat(int dirfd, void *path, int mode)') as (dirfd: number, path: Uint8Array, mode: number) => number;
let unlinkat = libcFunc((f) => unlinkat = f, 'int unlinkat(int dirfd, void *path, int flags)') as (dirfd: number, path: Uint8Array, flags: number) => number;
let renameat = libcFunc((f) => renameat = f, 'int renameat(int olddirfd, void *oldpath, int newdirfd, void *newpath)') as (a: number, b: Uint8Array, c: number, d: Uint8Array) => number;
let linkat = libcFunc((f) => linkat = f, 'int linkat(int olddirfd, void *oldpath, int newdirfd, void *newpath, int flags)') as (a: number, b: Uint8Array, c: number, d: Uint8Array, f: number) => number;
let symlinkat = libcFunc((f) => symlinkat = f, 'int symlinkat(void *target, int dirfd, void *path)') as (t: Uint8Array, dirfd: number, path: Uint8Array) => number;
let fchownat = libcFunc((f) => fchownat = f, 'int fchownat(int dirfd, void *path, int uid, int gid, int flags)') as (dirfd: number, path: Uint8Array, uid: number, gid: number, flags: number) => number;
let fchmod = libcFunc((f) => fchmod = f, 'int fchmod(int fd, int mode)') as (fd: number, mode: number) => number;
let utimensat = libcFunc((f) => utimensat = f, 'int utimensat(int dirfd, void *path, void *times, int flags)') as (dirfd: number, path: Uint8Array, times: Uint8Array, flags: number) => number;

const SYS_openat2 = 437;
const O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0o100, O_EXCL = 0o200, AT_REMOVEDIR = 0x200;
const UTIME_OMIT = (1 << 30) - 2;
const O_RDONLY = 0, O_NOCTTY = 0o400, O_NONBLOCK = 0o4000, O_DIRECTORY = 0o200000, O_NOFOLLOW = 0o400000, O_CLOEXEC = 0o2000000, O_PATH = 0o10000000;
const RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_BENEATH = 0x08;
const AT_SYMLINK_NOFOLLOW = 0x100, AT_EMPTY_PATH = 0x1000;
const ENOSYS = 38, EINTR = 4, EAGAIN = 11, ELOOP = 40;
const SEEK_DATA = 3, SEEK_HOLE = 4;
const S_IFMT = 0o170000, S_IFREG = 0o100000, S_IFDIR = 0o040000, S_IFLNK = 0o120000;
/** Directory handles kept open (O_PATH fds). */
const DIR_CACHE_MAX = 256;

const cstr = (s: string): Uint8Array => Buffer.from(s + '\0', 'latin1');
const statBuf = new Uint8Array(144);
const statView = new DataView(statBuf.buffer);

function parseStat(): HostStat {
  const v = statView;
  const u64 = (o: number) => Number(v.getBigUint64(o, true));
  const ts = (o: number) => v.getBigInt64(o, true) * 1_000_000_000n + v.getBigInt64(o + 8, true);
  return {
    dev: u64(0), ino: u64(8), nlink: u64(16), mode: v.getUint32(24, true), uid: v.getUint32(28, true), gid: v.getUint32(32, true),
    rdev: u64(40), size: Number(v.getBigInt64(48, true)), blksize: Number(v.getBigInt64(56, true)), blocks: Number(v.getBigInt64(64, true)),
    atimeNs: ts(72), mtimeNs: ts(88), ctimeNs: ts(104),
  };
}

export const hostIsDir = (s: HostStat) => (s.mode & S_IFMT) === S_IFDIR;
export const hostIsReg = (s: HostStat) => (s.mode & S_IFMT) === S_IFREG;
export const hostIsLnk = (s: HostStat) => (s.mode & S_IFMT) === S_IFLNK;

/** fstat(2) of a host fd held by the caller. */
export function hostFstat(fd: number): HostStat {
  if (fstatat(fd, cstr(''), statBuf, AT_EMPTY_PATH) !== 0) throw new HostError(koffi.errno(), 'fstat');
  return parseStat();
}

/** pread(2) into `buf` at byte offset `off`; returns bytes read (0 at end of file). */
export function hostPread(fd: number, buf: Uint8Array, off: number): number {
  for (;;) {
    const n = pread(fd, buf, buf.length, off);
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e !== EINTR && e !== EAGAIN) throw new HostError(e, 'pread');
  }
}

/**
 * The data ranges of a host file at or after `from` as [start, end) byte pairs
 * (SEEK_DATA/SEEK_HOLE; one range covering the file where holes are not reported).
 */
export function hostDataRanges(fd: number, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let pos = 0;
  while (pos < size) {
    const d = lseek(fd, pos, SEEK_DATA);
    if (d < 0) { if (koffi.errno() === 6 /* ENXIO: only a hole is left */) break; out.push([pos, size]); break; }
    let h = lseek(fd, d, SEEK_HOLE);
    if (h < 0 || h > size) h = size;
    out.push([d, h]);
    pos = h;
  }
  return out;
}

export function hostClose(fd: number): void { closeFd(fd); }

/** One host directory tree, reached beneath the handle of its root (see the module comment). */
export class LinuxHostTree implements HostTree {
  private readonly rootFd: number;
  private readonly dirs = new Map<string, number>();
  private readonly how = new Uint8Array(24);
  private haveOpenat2 = true;

  /** Open `rootPath` (the one host path string this module uses). Throws Error naming it if it is missing or not a directory. */
  constructor(readonly rootPath: string) {
    const fd = openat(-100, cstr(rootPath), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) throw new Error(`rootfs ${rootPath} is missing or not a directory (errno ${koffi.errno()})`);
    this.rootFd = fd;
  }

  /**
   * Open `rel` (a canonical tree path, '/' for the root) beneath the root with `flags`;
   * no symlink or magic link may appear in it, nor '..'. Returns the fd or -errno.
   */
  private openBeneath(rel: string, flags: number): number {
    const p = rel === '/' ? '.' : rel.slice(1);
    if (this.haveOpenat2) {
      const v = new DataView(this.how.buffer);
      v.setBigUint64(0, BigInt(flags | O_CLOEXEC), true);
      v.setBigUint64(8, 0n, true);
      v.setBigUint64(16, BigInt(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), true);
      for (;;) {
        const fd = sys5(SYS_openat2, this.rootFd, cstr(p), this.how, 24);
        if (fd >= 0) return fd;
        const e = koffi.errno();
        if (e === EINTR || e === EAGAIN) continue;
        if (e !== ENOSYS) return -e;
        this.haveOpenat2 = false;
        break;
      }
    }
    // No openat2: walk component by component, never following a link.
    const parts = p === '.' ? [] : p.split('/');
    let dir = this.rootFd;
    for (let i = 0; i < parts.length; i++) {
      const c = parts[i];
      if (c === '' || c === '.' || c === '..') { if (dir !== this.rootFd) closeFd(dir); return -ELOOP; }
      const last = i === parts.length - 1;
      const fd = openat(dir, cstr(c), last ? flags | O_NOFOLLOW | O_CLOEXEC : O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
      const e = koffi.errno();
      if (dir !== this.rootFd) closeFd(dir);
      if (fd < 0) return -e;
      if (last) return fd;
      dir = fd;
    }
    return openat(this.rootFd, cstr('.'), flags | O_CLOEXEC, 0);
  }

  /** An O_PATH handle of directory `rel` (cached; owned by the tree: never close it). -errno if it is not a directory beneath the root. */
  private dirHandle(rel: string): number {
    if (rel === '/') return this.rootFd;
    const cached = this.dirs.get(rel);
    if (cached !== undefined) return cached;
    const fd = this.openBeneath(rel, O_PATH | O_DIRECTORY);
    if (fd < 0) return fd;
    if (this.dirs.size >= DIR_CACHE_MAX) {
      // Drop the oldest half: directories looked up recently stay.
      let n = DIR_CACHE_MAX / 2;
      for (const [k, v] of this.dirs) { if (n-- <= 0) break; closeFd(v); this.dirs.delete(k); }
    }
    this.dirs.set(rel, fd);
    return fd;
  }

  private split(rel: string): [string, string] {
    const i = rel.lastIndexOf('/');
    return [i <= 0 ? '/' : rel.slice(0, i), rel.slice(i + 1)];
  }

  /** lstat of `rel` (never following a final symlink); undefined if it is not there (ENOENT, ENOTDIR, a link on the way). */
  lstat(rel: string): HostStat | undefined {
    if (rel === '/') return hostFstat(this.rootFd);
    const [parent, name] = this.split(rel);
    const d = this.dirHandle(parent);
    if (d < 0) return undefined;
    if (fstatat(d, cstr(name), statBuf, AT_SYMLINK_NOFOLLOW) !== 0) return undefined;
    return parseStat();
  }

  /** The target of symlink `rel`, as latin1. Throws HostError (EINVAL if not a link). */
  readlink(rel: string): string {
    const [parent, name] = this.split(rel);
    const d = this.dirHandle(parent);
    if (d < 0) throw new HostError(-d, 'readlink');
    const buf = new Uint8Array(4096);
    const n = readlinkat(d, cstr(name), buf, buf.length);
    if (n < 0) throw new HostError(koffi.errno(), 'readlink');
    return Buffer.from(buf.buffer, 0, n).toString('latin1');
  }

  /** Entries of directory `rel` (without '.' and '..'). Throws HostError. */
  readdir(rel: string): HostDirEntry[] {
    const fd = this.openBeneath(rel, O_RDONLY | O_DIRECTORY | O_NONBLOCK);
    if (fd < 0) throw new HostError(-fd, 'opendir');
    const out: HostDirEntry[] = [];
    try {
      const buf = new Uint8Array(32768);
      const v = new DataView(buf.buffer);
      for (;;) {
        const n = getdents64(fd, buf, buf.length);
        if (n < 0) throw new HostError(koffi.errno(), 'getdents64');
        if (n === 0) break;
        for (let off = 0; off < n;) {
          const ino = Number(v.getBigUint64(off, true));
          const reclen = v.getUint16(off + 16, true);
          const type = buf[off + 18];
          let end = off + 19;
          while (buf[end] !== 0) end++;
          const name = Buffer.from(buf.buffer, off + 19, end - off - 19).toString('latin1');
          if (name !== '.' && name !== '..') out.push({ name, ino, type });
          off += reclen;
        }
      }
    } finally {
      closeFd(fd);
    }
    return out;
  }

  /**
   * Open regular file `rel` read-only: the caller owns the returned fd (close it with
   * hostClose). Throws HostError: ENOENT/ELOOP/… from the open, EACCES if it is not a
   * regular file (fifos, devices and sockets of the tree are never opened for I/O).
   */
  openFile(rel: string): { fd: number; st: HostStat } {
    const fd = this.openBeneath(rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) throw new HostError(-fd, 'open');
    const st = hostFstat(fd);
    if (!hostIsReg(st)) { closeFd(fd); throw new HostError(13, 'open'); }
    return { fd, st };
  }

  /** The whole contents of regular file `rel` (read through one fd). Throws HostError. */
  readFile(rel: string): { bytes: Uint8Array; st: HostStat } {
    const { fd, st } = this.openFile(rel);
    try {
      const bytes = new Uint8Array(st.size);
      let done = 0;
      while (done < bytes.length) {
        const n = hostPread(fd, bytes.subarray(done), done);
        if (n === 0) break;
        done += n;
      }
      return { bytes: done === bytes.length ? bytes : bytes.subarray(0, done), st };
    } finally {
      closeFd(fd);
    }
  }

  // ------------------------------------------------------------ writes (a read-write volume)

  /** The parent directory's handle and the last name of `rel`; throws HostError if the parent is not a directory beneath the root. */
  private parentOf(rel: string): [number, Uint8Array] {
    if (rel === '/') throw new HostError(16 /* EBUSY: the root itself */, 'write');
    const [parent, name] = this.split(rel);
    const d = this.dirHandle(parent);
    if (d < 0) throw new HostError(-d, 'openat');
    return [d, cstr(name)];
  }

  private check(rc: number, what: string): void {
    if (rc < 0) throw new HostError(koffi.errno(), what);
  }

  /** Open existing regular file `rel` for writing (never through a symlink; EACCES if it is not a regular file). */
  openWrite(rel: string, rdwr: boolean, trunc: boolean): { fd: number; st: HostStat } {
    const fd = this.openBeneath(rel, (rdwr ? O_RDWR : O_WRONLY) | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) throw new HostError(-fd, 'open');
    const st = hostFstat(fd);
    if (!hostIsReg(st)) { closeFd(fd); throw new HostError(13, 'open'); }
    if (trunc && ftruncateFn(fd, 0) !== 0) { const e = koffi.errno(); closeFd(fd); throw new HostError(e, 'ftruncate'); }
    return { fd, st: trunc ? hostFstat(fd) : st };
  }

  /** Create a regular file (O_EXCL, closed again), a directory or a symlink at `rel`, then give it to uid/gid where the host lets us. */
  create(rel: string, kind: 'file' | 'dir' | 'symlink', mode: number, uid: number, gid: number, target?: string): void {
    const [d, name] = this.parentOf(rel);
    if (kind === 'file') {
      const fd = openat(d, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode & 0o7777);
      this.check(fd, 'open');
      // The mode as asked, not as the host's umask left it.
      fchmod(fd, mode & 0o7777);
      closeFd(fd);
    } else if (kind === 'dir') {
      this.check(mkdirat(d, name, mode & 0o7777), 'mkdir');
    } else {
      this.check(symlinkat(cstr(target ?? ''), d, name), 'symlink');
    }
    if (kind === 'dir') this.chmod(rel, mode & 0o7777);
    fchownat(d, name, uid, gid, AT_SYMLINK_NOFOLLOW); // best effort: an unprivileged snapvisor keeps its own ids
  }

  unlink(rel: string, dir: boolean): void {
    const [d, name] = this.parentOf(rel);
    this.check(unlinkat(d, name, dir ? AT_REMOVEDIR : 0), 'unlink');
    if (dir) this.forget(rel);
  }

  rename(from: string, to: string): void {
    const [d1, n1] = this.parentOf(from);
    const [d2, n2] = this.parentOf(to);
    this.check(renameat(d1, n1, d2, n2), 'rename');
    this.forget(from);
    this.forget(to);
  }

  link(from: string, to: string): void {
    const [d1, n1] = this.parentOf(from);
    const [d2, n2] = this.parentOf(to);
    this.check(linkat(d1, n1, d2, n2, 0), 'link');
  }

  /** chmod through an O_PATH handle of the node itself (opened beneath, never a symlink) and its /proc/self/fd link. */
  chmod(rel: string, mode: number): void {
    const fd = this.openBeneath(rel, O_PATH | O_NOFOLLOW);
    if (fd < 0) throw new HostError(-fd, 'open');
    try {
      if (hostIsLnk(hostFstat(fd))) throw new HostError(95 /* EOPNOTSUPP */, 'chmod');
      const r = libcChmod(cstr(`/proc/self/fd/${fd}`), mode & 0o7777);
      this.check(r, 'chmod');
    } finally {
      closeFd(fd);
    }
  }

  chown(rel: string, uid: number, gid: number): void {
    const [d, name] = this.parentOf(rel);
    this.check(fchownat(d, name, uid, gid, AT_SYMLINK_NOFOLLOW), 'chown');
  }

  utimes(rel: string, atimeNs: bigint | undefined, mtimeNs: bigint | undefined): void {
    const [d, name] = this.parentOf(rel);
    const b = new Uint8Array(32);
    const v = new DataView(b.buffer);
    const put = (i: number, t: bigint | undefined) => {
      if (t === undefined) { v.setBigInt64(i * 16 + 8, BigInt(UTIME_OMIT), true); return; }
      v.setBigInt64(i * 16, t / 1_000_000_000n, true);
      v.setBigInt64(i * 16 + 8, t % 1_000_000_000n, true);
    };
    put(0, atimeNs);
    put(1, mtimeNs);
    this.check(utimensat(d, name, b, AT_SYMLINK_NOFOLLOW), 'utimensat');
  }

  pwrite(fd: number, buf: Uint8Array, off: number): number {
    for (;;) {
      const n = pwriteFn(fd, buf, buf.length, off);
      if (n >= 0) return n;
      const e = koffi.errno();
      if (e !== EINTR && e !== EAGAIN) throw new HostError(e, 'pwrite');
    }
  }

  ftruncate(fd: number, size: number): void { this.check(ftruncateFn(fd, size), 'ftruncate'); }
  fstat(fd: number): HostStat { return hostFstat(fd); }

  /** fstatfs(2) of the root handle: the raw x86-64 struct statfs (120 bytes). */
  statfs(): Uint8Array {
    const b = new Uint8Array(120);
    this.check(fstatfs(this.rootFd, b), 'fstatfs');
    return b;
  }

  /** Drop cached handles of directory `rel` and below (it was removed or moved). */
  private forget(rel: string): void {
    for (const [k, fd] of this.dirs) if (k === rel || k.startsWith(rel + '/')) { closeFd(fd); this.dirs.delete(k); }
  }

  pread(fd: number, buf: Uint8Array, off: number): number { return hostPread(fd, buf, off); }
  dataRanges(fd: number, size: number): Array<[number, number]> { return hostDataRanges(fd, size); }
  closeFile(fd: number): void { hostClose(fd); }

  /** Close every handle (the tree is unusable afterwards). */
  close(): void {
    for (const fd of this.dirs.values()) closeFd(fd);
    this.dirs.clear();
    closeFd(this.rootFd);
  }
}
