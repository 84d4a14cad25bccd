/**
 * Passing host fds between processes over unix stream sockets with SCM_RIGHTS (man 7 unix,
 * man 3 cmsg), which Node cannot do itself: the warm pool (cli/pool.ts, docs/pools.md) takes
 * a caller's stdin/stdout/stderr and hands them to a restored clone. Also dup2, for a clone
 * to make the received fds its own 0, 1 and 2. Runtime only: nothing here is saved.
 *
 * Layouts (x86-64): struct msghdr is 56 bytes (name, namelen+pad, iov, iovlen, control,
 * controllen, flags+pad); struct cmsghdr is { size_t len; int level; int type; } then the fds.
 */
import koffi from 'koffi';
import { errno, libcFunc } from './libc.js';

let sendmsgFn = libcFunc((f) => sendmsgFn = f, 'int64_t sendmsg(int fd, void *msg, int flags)') as (fd: number, msg: Uint8Array, flags: number) => number;
let recvmsgFn = libcFunc((f) => recvmsgFn = f, 'int64_t recvmsg(int fd, void *msg, int flags)') as (fd: number, msg: Uint8Array, flags: number) => number;
let dup2Fn = libcFunc((f) => dup2Fn = f, 'int dup2(int oldfd, int newfd)') as (a: number, b: number) => number;
let closeFn = libcFunc((f) => closeFn = f, 'int close(int fd)') as (fd: number) => number;
let pollFn = libcFunc((f) => pollFn = f, 'int poll(void *fds, uint64_t nfds, int timeout)') as { async: Function };
let strerror = libcFunc((f) => strerror = f, 'const char *strerror(int errnum)') as (e: number) => string;

const SOL_SOCKET = 1, SCM_RIGHTS = 1;
const MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
const EAGAIN = 11, EINTR = 4;
/** At most this many fds in one message. */
export const MAX_FDS = 16;

/** Host memory koffi will not move, with its address; `free` gives it back. */
function alloc(len: number): { address: bigint; bytes: Uint8Array; free(): void } {
  const ptr = koffi.alloc('uint8_t', len);
  return { address: koffi.address(ptr), bytes: new Uint8Array(koffi.view(ptr, len)), free: () => koffi.free(ptr) };
}

const cmsgSpace = (nfds: number) => 16 + ((nfds * 4 + 7) & ~7);

/** A msghdr over `data` (iov) and a control buffer for `nfds` fds. */
function message(dataLen: number, nfds: number) {
  const data = alloc(Math.max(1, dataLen));
  const iov = alloc(16);
  const iv = new DataView(iov.bytes.buffer, iov.bytes.byteOffset, 16);
  iv.setBigUint64(0, data.address, true);
  iv.setBigUint64(8, BigInt(Math.max(1, dataLen)), true);
  const control = alloc(cmsgSpace(Math.max(1, nfds)));
  const msg = new Uint8Array(56);
  const mv = new DataView(msg.buffer);
  mv.setBigUint64(16, iov.address, true);
  mv.setBigUint64(24, 1n, true);
  mv.setBigUint64(32, control.address, true);
  mv.setBigUint64(40, BigInt(nfds ? cmsgSpace(nfds) : 0), true);
  return { data, control, msg, mv, free: () => { data.free(); iov.free(); control.free(); } };
}

/**
 * Send `data` (at least 1 byte) with `fds` attached (SCM_RIGHTS) on connected unix stream
 * socket `sock`, without blocking (MSG_DONTWAIT; the message must fit the socket buffer) and
 * without SIGPIPE. Returns 0 or -errno (EAGAIN, EPIPE, ECONNRESET…).
 */
export function sendFds(sock: number, data: Uint8Array, fds: number[]): number {
  if (fds.length > MAX_FDS) throw new RangeError(`at most ${MAX_FDS} fds`);
  const m = message(data.length, fds.length);
  try {
    m.data.bytes.set(data);
    if (fds.length) {
      const cv = new DataView(m.control.bytes.buffer, m.control.bytes.byteOffset, m.control.bytes.length);
      cv.setBigUint64(0, BigInt(16 + fds.length * 4), true);
      cv.setInt32(8, SOL_SOCKET, true);
      cv.setInt32(12, SCM_RIGHTS, true);
      fds.forEach((fd, i) => cv.setInt32(16 + i * 4, fd, true));
    }
    for (;;) {
      const n = sendmsgFn(sock, m.msg, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return n === data.length ? 0 : -EAGAIN; // a partial send of a few hundred bytes: treat as full buffer
      if (errno() !== EINTR) return -errno();
    }
  } finally {
    m.free();
  }
}

/** What one recvmsg gave: the bytes and the fds that came with them (close-on-exec), or 'eof'. */
export type Received = { data: Buffer; fds: number[] } | 'eof';

function decode(m: ReturnType<typeof message>, n: number): Received {
  if (n === 0) return 'eof';
  const fds: number[] = [];
  const controllen = Number(m.mv.getBigUint64(40, true));
  const cv = new DataView(m.control.bytes.buffer, m.control.bytes.byteOffset, m.control.bytes.length);
  for (let off = 0; off + 16 <= controllen;) {
    const len = Number(cv.getBigUint64(off, true));
    if (len < 16) break;
    if (cv.getInt32(off + 8, true) === SOL_SOCKET && cv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let i = off + 16; i + 4 <= off + len; i += 4) fds.push(cv.getInt32(i, true));
    }
    off += (len + 7) & ~7;
  }
  return { data: Buffer.from(m.data.bytes.subarray(0, n)), fds };
}

/**
 * One recvmsg on `sock` without blocking: up to `maxData` bytes and up to MAX_FDS fds, made
 * close-on-exec. Returns the message, 'eof', 'again' (nothing there yet), or throws Error with
 * the host's reason.
 */
export function recvFdsNow(sock: number, maxData = 4096): Received | 'again' {
  const m = message(maxData, MAX_FDS);
  try {
    for (;;) {
      const n = recvmsgFn(sock, m.msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n >= 0) return decode(m, n);
      const e = errno();
      if (e === EAGAIN) return 'again';
      if (e !== EINTR) throw new Error(`recvmsg: ${strerror(e)}`);
    }
  } finally {
    m.free();
  }
}

/** Resolve once `fd` is readable (or hung up), waiting in libuv's thread pool so the event loop runs meanwhile. */
export function waitReadable(fd: number, timeoutMs = -1): Promise<boolean> {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1 /* POLLIN */, true);
  return new Promise((resolve, reject) => {
    // pfd is used in the callback so that it outlives the call (koffi's asynchronous call holds
    // no reference to it, and poll(2) writes revents into it as it returns: host-streams.ts).
    pollFn.async(pfd, 1, timeoutMs, (err: Error | null, n: number) => (err ? reject(err) : resolve(n > 0 && v.getInt16(6, true) !== 0)));
  });
}

/**
 * Block until `fd` is readable (or hung up), or `timeoutMs` passed (-1: no limit): true when
 * readable. It blocks the calling thread and its event loop: only for a process with nothing
 * else to do meanwhile (a warm pool's waiting clone), where it wakes a few thread hops sooner
 * than waitReadable. Throws Error with the host's reason.
 */
export function waitReadableSync(fd: number, timeoutMs = -1): boolean {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, 1 /* POLLIN */, true);
  for (;;) {
    const n = (pollFn as unknown as (p: Uint8Array, n: number, t: number) => number)(pfd, 1, timeoutMs);
    if (n >= 0) return n > 0;
    const e = errno();
    if (e !== EINTR) throw new Error(`poll: ${strerror(e)}`);
  }
}

const POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20, POLLRDHUP = 0x2000;

/**
 * Whether the peer of connected stream socket `fd` has closed it or shut down its writing, as
 * poll(2) says now without waiting: POLLRDHUP, POLLHUP, POLLERR or POLLNVAL (an fd not open).
 * Reads nothing, so data waiting on the socket stays for whoever reads it next. The warm pool
 * looks with it whether the caller of a take still waiting is gone (cli/pool.ts): its end of
 * file is what a clone running the take reads as the caller gone, too.
 */
export function peerClosed(fd: number): boolean {
  const pfd = new Uint8Array(8);
  const v = new DataView(pfd.buffer);
  v.setInt32(0, fd, true);
  v.setInt16(4, POLLRDHUP, true);
  const n = (pollFn as unknown as (p: Uint8Array, n: number, t: number) => number)(pfd, 1, 0);
  return n > 0 && (v.getInt16(6, true) & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) !== 0;
}

/** The next message on `sock` (blocking or not), waiting for it without blocking the event loop: as recvFdsNow, never 'again'. */
export async function recvFds(sock: number, maxData = 4096): Promise<Received> {
  for (;;) {
    const r = recvFdsNow(sock, maxData);
    if (r !== 'again') return r;
    await waitReadable(sock);
  }
}

let socketFn = libcFunc((f) => socketFn = f, 'int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
let connectFn = libcFunc((f) => connectFn = f, 'int connect(int fd, void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;

/**
 * A unix stream socket connected to `socketPath` (close-on-exec, blocking). Throws Error with
 * the host's reason (No such file or directory, Connection refused…).
 */
export function connectUnix(socketPath: string): number {
  const p = Buffer.from(socketPath);
  if (p.length >= 108) throw new Error('socket path too long');
  const s = socketFn(1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | 0o2000000 /* SOCK_CLOEXEC */, 0);
  if (s < 0) throw new Error(strerror(errno()));
  const addr = new Uint8Array(110);
  addr[0] = 1;
  addr.set(p, 2);
  if (connectFn(s, addr, 2 + p.length + 1) < 0) {
    const e = errno();
    closeFn(s);
    throw new Error(strerror(e));
  }
  return s;
}

/** dup2(2): make `newfd` refer to what `oldfd` does. Throws Error with the host's reason. */
export function dup2(oldfd: number, newfd: number): void {
  if (dup2Fn(oldfd, newfd) < 0) throw new Error(`dup2(${oldfd}, ${newfd}): ${strerror(errno())}`);
}

/** close(2), ignoring errors. */
export function closeFd(fd: number): void { closeFn(fd); }
