/**
 * Host runtime services: what the kernel needs of the host beyond executing guest code —
 * the caller's stdio and terminal, host poll, resource limits, and the memory file's host
 * backing. The kernel receives one implementation (injected by the composition root,
 * src/sandbox/) and never calls koffi or host syscalls itself; the implementation for a
 * Linux host is platforms/host/host-services.ts. Nothing here knows the state graph.
 */

/** A host file's attributes, as fstat(2) reports them (times in ns since the epoch, sizes in bytes). */
export interface HostStat {
  dev: number; ino: number; nlink: number; mode: number; uid: number; gid: number; rdev: number;
  size: number; blksize: number; blocks: number;
  atimeNs: bigint; mtimeNs: bigint; ctimeNs: bigint;
}

/** A directory entry as getdents64 reports it: name (latin1), inode number, d_type. */
export interface HostDirEntry { name: string; ino: number; type: number }

/** Error from the host with its errno (ENOENT, ELOOP, EACCES…). */
export class HostError extends Error {
  constructor(readonly errno: number, what: string) { super(`${what}: errno ${errno}`); }
}

/**
 * A host directory tree (the rootfs, the lower layer) reached only beneath a handle of its
 * root, as gVisor's gofer serves one (platforms/host/host-tree.ts). Paths are "tree paths":
 * absolute, canonical, latin1. Methods throw HostError with the host's errno.
 */
export interface HostTree {
  readonly rootPath: string;
  /** Attributes without following a final symlink; undefined if the path does not exist. */
  lstat(rel: string): HostStat | undefined;
  /** Target of a symlink (latin1). */
  readlink(rel: string): string;
  /** Entries of a directory (without . and ..). */
  readdir(rel: string): HostDirEntry[];
  /** Open a regular file read-only: its fd (the caller closes it with closeFile) and attributes. */
  openFile(rel: string): { fd: number; st: HostStat };
  /** A whole regular file's bytes and attributes. */
  readFile(rel: string): { bytes: Uint8Array; st: HostStat };
  /** pread(2) of an fd from openFile into `buf` at byte offset `off`: bytes read, 0 at the end. */
  pread(fd: number, buf: Uint8Array, off: number): number;
  /** Data ranges [start, end) (bytes) of an fd from openFile of `size` bytes (SEEK_DATA/SEEK_HOLE). */
  dataRanges(fd: number, size: number): Array<[number, number]>;
  /** Close an fd from openFile. */
  closeFile(fd: number): void;
  /** Close every handle; the tree is unusable afterwards. */
  close(): void;
  /**
   * Writes (a read-write volume): each is one *at call on the handle of the parent directory
   * with one name, never following a symlink; they throw HostError with the host's errno.
   */
  /** Open an existing regular file for writing (`rdwr`: read too); O_TRUNC when `trunc`. Its fd and attributes. */
  openWrite?(rel: string, rdwr: boolean, trunc: boolean): { fd: number; st: HostStat };
  /** Create a new node: a regular file (closed again), a directory, or a symlink to `target`; owned by uid/gid where the host lets us. */
  create?(rel: string, kind: 'file' | 'dir' | 'symlink', mode: number, uid: number, gid: number, target?: string): void;
  /** unlinkat (AT_REMOVEDIR for a directory). */
  unlink?(rel: string, dir: boolean): void;
  /** renameat within the tree. */
  rename?(from: string, to: string): void;
  /** linkat within the tree (the source not followed). */
  link?(from: string, to: string): void;
  /** Permission bits of a file or directory (never a symlink's target). */
  chmod?(rel: string, mode: number): void;
  /** fchownat(AT_SYMLINK_NOFOLLOW). */
  chown?(rel: string, uid: number, gid: number): void;
  /** utimensat(AT_SYMLINK_NOFOLLOW), ns since the epoch; undefined leaves a time as it is. */
  utimes?(rel: string, atimeNs: bigint | undefined, mtimeNs: bigint | undefined): void;
  /** pwrite(2) from `buf` at byte `off` on an fd from openWrite: bytes written. */
  pwrite?(fd: number, buf: Uint8Array, off: number): number;
  /** ftruncate(2) of an fd from openWrite. */
  ftruncate?(fd: number, size: number): void;
  /** fstat(2) of an fd. */
  fstat?(fd: number): HostStat;
  /** fstatfs(2) of the tree's root: the raw struct statfs (120 bytes, x86-64). */
  statfs?(): Uint8Array;
}

/**
 * Sparse host memory that backs the kernel's memory file (a memfd on Linux). Offsets and
 * lengths are bytes, multiples of 4096.
 */
export interface MemoryBacking {
  /** Host fd the platform maps guest memory from. */
  readonly fd: number;
  /** Map [off, off+len) into the kernel's own process, shared: a zero-copy view (len ≤ 4 GiB). */
  mapView(off: number, len: number): Uint8Array;
  /** pread(2) into `buf` from byte `off` (zeros past the end); the pages are not mapped into the kernel. */
  read(off: number, buf: Uint8Array): void;
  /** pwrite(2) of `data` at byte `off`, without mapping the pages into the kernel. */
  write(off: number, data: Uint8Array): void;
  /** Drop the pages of a range (FALLOC_FL_PUNCH_HOLE): it reads back as zeros. */
  punchHole(off: number, len: number): void;
  /** lseek(SEEK_DATA): the first offset ≥ pos holding data, or -1 if none. */
  seekData(pos: number): number;
  /** lseek(SEEK_HOLE): the first offset ≥ pos in a hole (the size at the end), or -1. */
  seekHole(pos: number): number;
  /** Bytes of memory the memfd holds now (fstat's st_blocks × 512): its pages present or swapped out. */
  allocatedBytes(): number;
  /** Unmap every view and close the fd; views must not be used afterwards. */
  destroy(): void;
}

/**
 * A read-only host file mapped into the kernel's own process (a restored checkpoint's page
 * file): views are read-only memory, never to be written. Offsets and lengths in bytes.
 */
export interface ReadOnlyFileMapping {
  /** Host fd of the file (opened read-only); the platform maps guest pages from it. */
  readonly fd: number;
  /** Map [off, off+len) read-only and shared (len ≤ 4 GiB; past the file's end must not be read). */
  mapView(off: number, len: number): Uint8Array;
  /** pread(2) into `buf` from byte `off`, without mapping the pages into the kernel; past the file's end reads as zeros. */
  read(off: number, buf: Uint8Array): void;
  /** lseek(SEEK_DATA): the first offset ≥ pos holding data, or -1 if none (past the end included). */
  seekData(pos: number): number;
  /** lseek(SEEK_HOLE): the first offset ≥ pos in a hole (the size at the end), or -1. */
  seekHole(pos: number): number;
  /** Unmap every view and close the fd; views must not be used afterwards. */
  destroy(): void;
}

/**
 * Sockets of the host's network namespace (run --network=host; the kernel side is
 * src/net/hostinet.ts), as gVisor's hostinet uses them: every fd is non-blocking and
 * close-on-exec on the host, so no call ever blocks the caller's thread; a caller waits with
 * `whenReady`. Addresses are raw struct sockaddr bytes (at most 128), option values raw bytes.
 * Results are ≥ 0 or -errno (the host's, e.g. -EAGAIN, -EINPROGRESS, -ECONNREFUSED).
 */
export interface HostSockets {
  /** socket(2) with SOCK_NONBLOCK | SOCK_CLOEXEC added: the host fd, or -errno. */
  open(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Uint8Array): number;
  listen(fd: number, backlog: number): number;
  /** connect(2): 0, -EINPROGRESS (wait for writability, then SO_ERROR), or -errno. */
  connect(fd: number, addr: Uint8Array): number;
  /** accept4(2) (the new fd non-blocking and close-on-exec): its fd and the peer's address, or -errno. */
  accept(fd: number): { fd: number; peer: Uint8Array } | number;
  /** sendto(2) of `data` (MSG_DONTWAIT | MSG_NOSIGNAL added), to `to` if given: bytes sent, or -errno. */
  send(fd: number, data: Uint8Array, flags: number, to?: Uint8Array): number;
  /**
   * recvfrom(2) into `into` (MSG_DONTWAIT added): `n` as the host returns it (with MSG_TRUNC on a
   * datagram socket, the datagram's whole length) and, if `withFrom`, the sender's address; or -errno.
   */
  recv(fd: number, into: Uint8Array, flags: number, withFrom: boolean): { n: number; from?: Uint8Array } | number;
  shutdown(fd: number, how: number): number;
  /** setsockopt(2) with the value's bytes: 0 or -errno. */
  setOption(fd: number, level: number, name: number, value: Uint8Array): number;
  /** getsockopt(2) with `room` bytes of room: the value's bytes, or -errno. */
  getOption(fd: number, level: number, name: number, room: number): Uint8Array | number;
  /** getsockname(2) (`peer` false) or getpeername(2): the address bytes, or -errno. */
  address(fd: number, peer: boolean): Uint8Array | number;
  /** An int-valued ioctl(2) such as FIONREAD (SIOCINQ) or SIOCOUTQ: the value, or -errno. */
  ioctlInt(fd: number, request: number): number;
  /** An interface request on a struct ifreq (40 bytes, no pointers: SIOCGIFFLAGS, SIOCGIFADDR…), in place: 0 or -errno. */
  ioctlIfreq(fd: number, request: number, ifreq: Uint8Array): number;
  /** SIOCGIFCONF with room for `room` bytes of struct ifreq: those the host filled (their length is the ifc_len), or -errno. */
  interfaceConf(fd: number, room: number): Uint8Array | number;
  /** poll(2) of the fd without waiting: its revents (POLL* bits), or -errno. */
  poll(fd: number, events: number): number;
  /**
   * One rtnetlink request (a struct nlmsghdr and its body, a GET: the caller checks) sent to the
   * host kernel on a NETLINK_ROUTE socket of its own: the reply datagrams as the host wrote them
   * (each holding whole messages; a dump up to NLMSG_DONE, at most 4 MiB in all), or -errno.
   */
  routeQuery(request: Uint8Array): Uint8Array[] | number;
  /**
   * Call `ready` whenever the fd may have become ready for `events` (or has an error or hang-up),
   * until the returned function is called. One poll(2) thread serves every waiting fd.
   */
  whenReady(fd: number, events: number, ready: () => void): () => void;
  close(fd: number): void;
}

export interface HostServices {
  /** The host's sockets (run --network=host). */
  readonly sockets: HostSockets;
  /** Open the host directory `rootPath` as a tree (throws Error naming it if missing or not a directory). */
  openTree(rootPath: string): HostTree;
  /** A new sparse backing of `size` bytes for a memory file (throws Error with errno text on failure). */
  createMemoryBacking(name: string, size: number): MemoryBacking;
  /** Take over host fd `fd` (a file opened read-only) to map it read-only (ReadOnlyFileMapping). */
  mapReadOnlyFile(fd: number): ReadOnlyFileMapping;
  /** fstat(2) of a host fd (throws the Node error on failure). */
  fstat(fd: number): HostStat;
  /** Whether a host fd is a pipe, socket or character device (its reads may block). */
  isStream(fd: number): boolean;
  /** Whether a host fd is a terminal (TCGETS succeeds). */
  isTerminal(fd: number): boolean;
  /**
   * The access mode of a host fd's open file description: fcntl(2) F_GETFL & O_ACCMODE (0 O_RDONLY,
   * 1 O_WRONLY, 2 O_RDWR), or undefined if the fd is not open (EBADF).
   */
  accessMode(fd: number): number | undefined;
  /** ioctl(2) on a host fd with an in/out buffer: the result (≥ 0) or -errno. */
  ioctl(fd: number, request: number, arg: Uint8Array): number;
  /** poll(2) of one host fd without waiting: its revents (POLL* bits), or -errno. */
  pollOnce(fd: number, events: number): number;
  /** read(2) from a host fd at its own position, synchronously: bytes read (throws the Node error). */
  readSync(fd: number, into: Uint8Array, position: number | null): number;
  /**
   * read(2) from a host stream (pipe, terminal, socket) without blocking, and without changing the
   * caller's open file description (which other processes share): bytes read (0 at end of file), or
   * undefined when nothing is there yet. Throws HostError with the host's errno.
   */
  readNow(fd: number, into: Uint8Array): number | undefined;
  /**
   * Call `ready` whenever host fd `fd` may have become readable (or hung up), until the returned
   * function is called. Nothing is read meanwhile: an abandoned wait consumes no bytes.
   */
  onReadable(fd: number, ready: () => void): () => void;
  /** write(2) to a host fd: bytes written (throws the Node error, e.g. code EAGAIN/EPIPE). */
  writeSync(fd: number, from: Uint8Array, offset: number, length: number): number;
  /** Where a host fd leads, as readlink(2) of /proc/self/fd/FD shows it (a path, `pipe:[N]`, `socket:[N]`…); undefined if it is not open. */
  fdPath(fd: number): string | undefined;
  /** getrlimit(2) of the kernel's own process: [soft, hard], or undefined if it fails. */
  getrlimit(resource: number): [bigint, bigint] | undefined;
  /**
   * getsockname(2) (`peer` false) or getpeername(2) (`peer` true) of a host socket handed to the
   * sandbox as stdio: the raw struct sockaddr bytes (at most 128), or -errno.
   */
  socketAddress(fd: number, peer: boolean): Uint8Array | number;
  /** getsockopt(2) of an int-valued option of a host socket handed to the sandbox as stdio: its value, or -errno. */
  socketIntOption(fd: number, level: number, name: number): number | { errno: number };
}
