/**
 * Host pseudo-terminals and fd passing for the OCI runtime's `--console-socket`
 * (runc's contract, docs/cli.md): open a host pty pair (man 7 pty: /dev/ptmx, TIOCSPTLCK,
 * TIOCGPTN) and send its master fd over a unix socket with SCM_RIGHTS (man 7 unix,
 * man 3 cmsg), as runc's utils.SendFile does: one message whose data is the master's
 * name and whose control message carries the fd. Runtime only: nothing here is saved.
 */
import fs from 'node:fs';
import { ioctlBuf, errno, nativeBuffer, libcFunc } from './libc.js';

let socketFn = libcFunc((f) => socketFn = f, 'int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
let connectFn = libcFunc((f) => connectFn = f, 'int connect(int fd, void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
let sendmsgFn = libcFunc((f) => sendmsgFn = f, 'int64_t sendmsg(int fd, void *msg, int flags)') as (fd: number, msg: Uint8Array, flags: number) => number;
let closeFn = libcFunc((f) => closeFn = f, 'int close(int fd)') as (fd: number) => number;
let strerror = libcFunc((f) => strerror = f, 'const char *strerror(int errnum)') as (e: number) => string;

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000, SOL_SOCKET = 1, SCM_RIGHTS = 1;
const TIOCSPTLCK = 0x40045431, TIOCGPTN = 0x80045430, TIOCSWINSZ = 0x5414, TIOCSCTTY = 0x540e;

/** A host pty pair: `master` and `slave` are host fds (O_RDWR, not the caller's controlling tty). */
export interface HostPty { master: number; slave: number; slavePath: string }

/**
 * Open a new host pty pair; with `size` ({rows, cols} in character cells) the window size is set.
 * Throws Error with the host's strerror text.
 */
export function openHostPty(size?: { rows: number; cols: number }): HostPty {
  const master = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
  try {
    const n = new Uint8Array(4);
    if (ioctlBuf(master, TIOCSPTLCK, n) < 0) throw new Error(`unlockpt: ${strerror(errno())}`);
    if (ioctlBuf(master, TIOCGPTN, n) < 0) throw new Error(`ptsname: ${strerror(errno())}`);
    const slavePath = `/dev/pts/${new DataView(n.buffer).getUint32(0, true)}`;
    if (size && size.rows > 0 && size.cols > 0) {
      const ws = new Uint8Array(8);
      const v = new DataView(ws.buffer);
      v.setUint16(0, size.rows, true);
      v.setUint16(2, size.cols, true);
      ioctlBuf(master, TIOCSWINSZ, ws);
    }
    const slave = fs.openSync(slavePath, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    return { master, slave, slavePath };
  } catch (e) {
    fs.closeSync(master);
    throw e;
  }
}

/** Make the terminal on host fd `fd` the caller's controlling terminal (the caller must lead a session). Returns 0 or -errno. */
export function setControllingTty(fd: number): number {
  return ioctlBuf(fd, TIOCSCTTY, new Uint8Array(8)) < 0 ? -errno() : 0;
}

/**
 * Connect to the unix stream socket at `socketPath` and send `fd` with SCM_RIGHTS, the
 * message's data being `name` (runc sends the master's path). Throws Error naming the socket.
 */
export function sendFdOverSocket(socketPath: string, fd: number, name: string): void {
  const s = socketFn(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw new Error(`socket: ${strerror(errno())}`);
  try {
    const pathBytes = Buffer.from(socketPath);
    if (pathBytes.length >= 108) throw new Error(`console socket path ${socketPath} is too long`);
    const addr = new Uint8Array(110);
    addr[0] = AF_UNIX;
    addr.set(pathBytes, 2);
    if (connectFn(s, addr, 2 + pathBytes.length + 1) < 0) throw new Error(`connect to console socket ${socketPath}: ${strerror(errno())}`);
    const data = nativeBuffer(Math.max(1, Buffer.byteLength(name)));
    data.bytes.set(Buffer.from(name));
    const iov = nativeBuffer(16);
    const iv = new DataView(iov.bytes.buffer, iov.bytes.byteOffset, 16);
    iv.setBigUint64(0, data.address, true);
    iv.setBigUint64(8, BigInt(Math.max(1, Buffer.byteLength(name))), true);
    // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; int fd; } padded to CMSG_SPACE(4) = 24.
    const cmsg = nativeBuffer(24);
    const cv = new DataView(cmsg.bytes.buffer, cmsg.bytes.byteOffset, 24);
    cv.setBigUint64(0, 20n, true);
    cv.setInt32(8, SOL_SOCKET, true);
    cv.setInt32(12, SCM_RIGHTS, true);
    cv.setInt32(16, fd, true);
    // struct msghdr (x86-64): name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad): 56 bytes.
    const msg = new Uint8Array(56);
    const mv = new DataView(msg.buffer);
    mv.setBigUint64(16, iov.address, true);
    mv.setBigUint64(24, 1n, true);
    mv.setBigUint64(32, cmsg.address, true);
    mv.setBigUint64(40, 24n, true);
    if (sendmsgFn(s, msg, 0) < 0) throw new Error(`send to console socket ${socketPath}: ${strerror(errno())}`);
  } finally {
    closeFn(s);
  }
}
