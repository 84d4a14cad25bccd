/**
 * Host libc through koffi: the only door from snapvisor to the host kernel's
 * process, memory and ptrace facilities. Only `platforms/` and the runtime layer
 * import this module; the state graph never holds anything it returns.
 *
 * Hot-path conventions (see shared platform notes): registers and status words are
 * passed as typed arrays declared `void *`, never as koffi struct objects.
 */
import koffi from 'koffi';

let libc: ReturnType<typeof koffi.load> | undefined;

/**
 * A koffi function of the host's libc.so.6, declared on its first call rather than when this
 * module is evaluated: the CLI is evaluated into a Node startup snapshot (scripts/bundle.mjs),
 * which cannot hold a native library. `decl` is koffi's declaration (a C prototype string, or
 * name, result type and argument types); `rebind` stores the declared function in the variable
 * that held the returned stand-in, so later calls go straight to koffi; a caller that kept the
 * stand-in itself still reaches the same function. `.async` (koffi's asynchronous call) works
 * on the stand-in too. Loading libc.so.6 (koffi.load) happens at the first such call.
 */
export function libcFunc(rebind: (fn: never) => void, ...decl: unknown[]): unknown {
  let fn: ((...a: unknown[]) => unknown) & { async: (...a: unknown[]) => unknown } | undefined;
  const get = () => {
    if (!fn) {
      libc ??= koffi.load('libc.so.6');
      fn = (libc.func as (...d: unknown[]) => typeof fn)(...decl)!;
      rebind(fn as never);
    }
    return fn;
  };
  const standIn = (...a: unknown[]) => get()(...a);
  standIn.async = (...a: unknown[]) => get().async(...a);
  return standIn;
}

/** ptrace(2) with both trailing arguments as integers (addresses, options, signals). */
export let ptraceInt = libcFunc((f) => ptraceInt = f, 'long ptrace(int request, int pid, uint64_t addr, uint64_t data)') as
  (req: number, pid: number, addr: number | bigint, data: number | bigint) => number;
/** ptrace(2) with `data` pointing at a JS buffer (GETREGS, SETREGS, GETFPREGS, GETREGSET iovec…). */
export let ptraceBuf = libcFunc((f) => ptraceBuf = f, 'long ptrace(int request, int pid, uint64_t addr, void *data)') as
  (req: number, pid: number, addr: number | bigint, data: ArrayBufferView) => number;
/** waitpid(2); `status` is an Int32Array(1). */
export let waitpid = libcFunc((f) => waitpid = f, 'int waitpid(int pid, void *status, int options)') as
  ((pid: number, status: Int32Array, options: number) => number) & { async: Function };
export let kill = libcFunc((f) => kill = f, 'int kill(int pid, int sig)') as (pid: number, sig: number) => number;
export let tgkill = libcFunc((f) => tgkill = f, 'int tgkill(int tgid, int tid, int sig)') as (tgid: number, tid: number, sig: number) => number;
export let memfdCreate = libcFunc((f) => memfdCreate = f, 'int memfd_create(const char *name, unsigned int flags)') as (name: string, flags: number) => number;
export let ftruncate = libcFunc((f) => ftruncate = f, 'int ftruncate(int fd, int64_t length)') as (fd: number, len: number) => number;
export let fallocate = libcFunc((f) => fallocate = f, 'int fallocate(int fd, int mode, int64_t offset, int64_t len)') as
  (fd: number, mode: number, off: number, len: number) => number;
export let lseek = libcFunc((f) => lseek = f, 'int64_t lseek(int fd, int64_t offset, int whence)') as (fd: number, off: number, whence: number) => number;
export let close = libcFunc((f) => close = f, 'int close(int fd)') as (fd: number) => number;
let fcntlVariadic = libcFunc((f) => fcntlVariadic = f, 'int fcntl(int fd, int cmd, ...)') as (fd: number, cmd: number, type: string, arg: number) => number;
/** fcntl(fd, F_DUPFD_CLOEXEC, min): a close-on-exec duplicate of `fd` numbered ≥ `min`, or -1. */
export const dupfdCloexec = (fd: number, min: number): number => fcntlVariadic(fd, 1030 /* F_DUPFD_CLOEXEC */, 'int', min);
/** fcntl(fd, F_GETFL): the file status flags and access mode of `fd`'s open file description, or -1 (errno). */
export const getfl = (fd: number): number => fcntlVariadic(fd, 3 /* F_GETFL */, 'int', 0);
/** mmap(2) in the kernel's own (Node's) address space; returns an external pointer. */
export let mmap = libcFunc((f) => mmap = f, 'void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)') as
  (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => unknown;
export let munmap = libcFunc((f) => munmap = f, 'int munmap(void *addr, size_t len)') as (addr: unknown, len: number) => number;
export let posixSpawn = libcFunc((f) => posixSpawn = f, 'int posix_spawn(_Out_ int *pid, const char *path, void *fileActions, void *attr, const char **argv, const char **envp)') as
  (pid: number[], path: string, fa: Uint8Array, attr: Uint8Array, argv: (string | null)[], envp: (string | null)[]) => number;
export let posixSpawnFileActionsInit = libcFunc((f) => posixSpawnFileActionsInit = f, 'int posix_spawn_file_actions_init(void *fa)') as (fa: Uint8Array) => number;
export let posixSpawnFileActionsAddDup2 = libcFunc((f) => posixSpawnFileActionsAddDup2 = f, 'int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)') as (fa: Uint8Array, fd: number, newfd: number) => number;
export let posixSpawnFileActionsDestroy = libcFunc((f) => posixSpawnFileActionsDestroy = f, 'int posix_spawn_file_actions_destroy(void *fa)') as (fa: Uint8Array) => number;
export let posixSpawnattrInit = libcFunc((f) => posixSpawnattrInit = f, 'int posix_spawnattr_init(void *attr)') as (a: Uint8Array) => number;
export let posixSpawnattrSetflags = libcFunc((f) => posixSpawnattrSetflags = f, 'int posix_spawnattr_setflags(void *attr, short flags)') as (a: Uint8Array, f: number) => number;
export let posixSpawnattrSetsigdefault = libcFunc((f) => posixSpawnattrSetsigdefault = f, 'int posix_spawnattr_setsigdefault(void *attr, void *sigset)') as (a: Uint8Array, s: Uint8Array) => number;
export let posixSpawnattrSetsigmask = libcFunc((f) => posixSpawnattrSetsigmask = f, 'int posix_spawnattr_setsigmask(void *attr, void *sigset)') as (a: Uint8Array, s: Uint8Array) => number;
export let posixSpawnattrDestroy = libcFunc((f) => posixSpawnattrDestroy = f, 'int posix_spawnattr_destroy(void *attr)') as (a: Uint8Array) => number;
export let sigfillset = libcFunc((f) => sigfillset = f, 'int sigfillset(void *set)') as (s: Uint8Array) => number;
export let sigemptyset = libcFunc((f) => sigemptyset = f, 'int sigemptyset(void *set)') as (s: Uint8Array) => number;
export let getpid = libcFunc((f) => getpid = f, 'int getpid(void)') as () => number;

/** errno of the last failing call made through koffi on this thread. */
export const errno = (): number => koffi.errno();
/** Zero-copy ArrayBuffer over `len` bytes of host memory at `ptr` (keep len ≤ 4 GiB). */
export const view = (ptr: unknown, len: number): ArrayBuffer => koffi.view(ptr, len);
export const pointerIsFailed = (ptr: unknown): boolean => koffi.address(ptr) === 0xffffffffffffffffn;

export const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
export const MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
export const MFD_CLOEXEC = 1, MFD_EXEC = 0x10;
export const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
export const SEEK_DATA = 3, SEEK_HOLE = 4;
export const WNOHANG = 1, WUNTRACED = 2, __WALL = 0x40000000;
export const POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSID = 0x80;
/**
 * A buffer of `len` bytes in stable native memory (never moved by V8), for structures
 * that the host kernel reads through a pointer stored in another structure (iovecs).
 */
export function nativeBuffer(len: number): { address: bigint; bytes: Uint8Array } {
  const ptr = koffi.alloc('uint8_t', len);
  return { address: koffi.address(ptr), bytes: new Uint8Array(koffi.view(ptr, len)) };
}
/** sched_setaffinity(2) for the calling thread (pid 0); `mask` is a CPU bit set (Uint8Array). */
export let schedSetaffinity = libcFunc((f) => schedSetaffinity = f, 'int sched_setaffinity(int pid, size_t size, void *mask)') as (pid: number, size: number, mask: Uint8Array) => number;
export let schedGetaffinity = libcFunc((f) => schedGetaffinity = f, 'int sched_getaffinity(int pid, size_t size, void *mask)') as (pid: number, size: number, mask: Uint8Array) => number;
/** ioctl(2) on a host fd with a buffer argument (terminal requests for the caller's stdio). */
export let ioctlBuf = libcFunc((f) => ioctlBuf = f, 'int ioctl(int fd, unsigned long request, void *arg)') as (fd: number, req: number, arg: Uint8Array) => number;
/** clock_gettime(2) into a BigInt64Array(2) [sec, nsec]: CPU clocks of stub processes. */
export let clockGettime = libcFunc((f) => clockGettime = f, 'int clock_gettime(int clk, void *ts)') as (clk: number, ts: BigInt64Array) => number;
/** poll(2) on host fds: `fds` is an array of struct pollfd (8 bytes each: fd i32, events i16, revents i16). */
export let poll = libcFunc((f) => poll = f, 'int poll(void *fds, uint64_t nfds, int timeout)') as ((fds: Uint8Array, n: number, timeout: number) => number) & { async: Function };
/** sched_yield(2): let the stub (pinned to our CPU) run while we wait for its next stop. */
export let schedYield = libcFunc((f) => schedYield = f, 'int sched_yield(void)') as () => number;
/** getrlimit(2) of the kernel's own process into a BigUint64Array(2) [soft, hard]. */
export let getsockname = libcFunc((f) => getsockname = f, 'int getsockname(int fd, void *addr, void *len)') as (fd: number, addr: Uint8Array, len: Uint32Array) => number;
export let getpeername = libcFunc((f) => getpeername = f, 'int getpeername(int fd, void *addr, void *len)') as (fd: number, addr: Uint8Array, len: Uint32Array) => number;
export let getsockopt = libcFunc((f) => getsockopt = f, 'int getsockopt(int fd, int level, int name, void *val, void *len)') as (fd: number, level: number, name: number, val: Int32Array, len: Uint32Array) => number;
export let getrlimit = libcFunc((f) => getrlimit = f, 'int getrlimit(int resource, void *rlim)') as (res: number, out: BigUint64Array) => number;
/** Host sockets (run --network=host, platforms/host/host-sockets.ts): addresses and option values as byte buffers. */
export let socket = libcFunc((f) => socket = f, 'int socket(int domain, int type, int protocol)') as (domain: number, type: number, proto: number) => number;
export let bind = libcFunc((f) => bind = f, 'int bind(int fd, void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
export let listen = libcFunc((f) => listen = f, 'int listen(int fd, int backlog)') as (fd: number, backlog: number) => number;
export let connect = libcFunc((f) => connect = f, 'int connect(int fd, void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
export let accept4 = libcFunc((f) => accept4 = f, 'int accept4(int fd, void *addr, void *len, int flags)') as (fd: number, addr: Uint8Array, len: Uint32Array, flags: number) => number;
export let sendto = libcFunc((f) => sendto = f, 'int64_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t alen)') as (fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, alen: number) => number;
export let recvfrom = libcFunc((f) => recvfrom = f, 'int64_t recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *alen)') as (fd: number, buf: Uint8Array, len: number, flags: number, addr: Uint8Array | null, alen: Uint32Array | null) => number;
export let shutdown = libcFunc((f) => shutdown = f, 'int shutdown(int fd, int how)') as (fd: number, how: number) => number;
export let setsockoptBuf = libcFunc((f) => setsockoptBuf = f, 'int setsockopt(int fd, int level, int name, void *val, uint32_t len)') as (fd: number, level: number, name: number, val: Uint8Array, len: number) => number;
export let getsockoptBuf = libcFunc((f) => getsockoptBuf = f, 'int getsockopt(int fd, int level, int name, void *val, void *len)') as (fd: number, level: number, name: number, val: Uint8Array, len: Uint32Array) => number;
export let eventfd = libcFunc((f) => eventfd = f, 'int eventfd(unsigned int initval, int flags)') as (init: number, flags: number) => number;
export const SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000, EFD_NONBLOCK = 0o4000, EFD_CLOEXEC = 0o2000000;
/**
 * Run `fn` with `len` bytes of native memory (never moved by V8) at a host address, then free them:
 * for structures that hold a pointer to another buffer. `bytes` is a view of the memory.
 */
export function withNativeBuffer<T>(len: number, fn: (address: bigint, bytes: Uint8Array) => T): T {
  const ptr = koffi.alloc('uint8_t', Math.max(len, 1));
  try { return fn(koffi.address(ptr), new Uint8Array(koffi.view(ptr, Math.max(len, 1)))); } finally { koffi.free(ptr); }
}
