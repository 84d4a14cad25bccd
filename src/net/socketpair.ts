/**
 * socketpair(2) for AF_UNIX SOCK_STREAM: two connected sockets built from two pipes in the
 * graph (each end reads one and writes the other), so they checkpoint like pipes. With
 * send/recv(+from/msg), shutdown, getsockopt/setsockopt, getsockname/getpeername.
 * socket(2) itself (listening, connecting, AF_INET) belongs to the network issue.
 * Compare net/unix/af_unix.c.
 */
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState } from '../kernel/state.js';
import { syscall } from '../syscalls/table.js';

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_TYPE_MASK = 0xf, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
const MSG_PEEK = 2, MSG_DONTWAIT = 0x40, MSG_WAITALL = 0x100, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1, SO_TYPE = 3, SO_ERROR = 4, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_DOMAIN = 39, SO_PROTOCOL = 38, SO_ACCEPTCONN = 30, SO_PEERCRED = 17;
const O_NONBLOCK = 0o4000;

/** The socket behind fd: EBADF for a bad fd, ENOTSOCK for another kind of file. */
function sock(t: Task, fd: number): OpenFileState {
  const f = t.kernel.file(t, fd);
  if (f.kind !== 'socket') throw Object.assign(new Error('ENOTSOCK'), { errno: E.ENOTSOCK });
  return f;
}
function withSock<T>(t: Task, fd: number, fn: (f: OpenFileState) => T): T | number {
  const f = t.kernel.file(t, fd);
  if (f.kind !== 'socket') return -E.ENOTSOCK;
  return fn(f);
}
void sock;

function socketpair(t: Task): number {
  const domain = t.argInt(0), type = t.argInt(1), proto = t.argInt(2), sv = t.arg(3);
  if (domain !== AF_UNIX) return -E.EAFNOSUPPORT;
  if ((type & SOCK_TYPE_MASK) !== SOCK_STREAM) return -E.EOPNOTSUPP; // datagram and seqpacket pairs: not yet
  if (type & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  if (proto !== 0) return -E.EPROTONOSUPPORT;
  t.mm.chunks(sv, 8, 2, () => undefined);
  const k = t.kernel;
  const ab = k.pipes.newPipe(1, 1), ba = k.pipes.newPipe(1, 1);
  const flags = 2 | (type & SOCK_NONBLOCK ? O_NONBLOCK : 0);
  const a = k.newOpenFile({ kind: 'socket', path: `socket:[${ab.id}]`, flags, socket: { rx: ba.id, tx: ab.id, shutRd: false, shutWr: false } });
  const b = k.newOpenFile({ kind: 'socket', path: `socket:[${ba.id}]`, flags, socket: { rx: ab.id, tx: ba.id, shutRd: false, shutWr: false } });
  const cloexec = !!(type & SOCK_CLOEXEC);
  const fa = k.installFd(t, a.id, cloexec);
  if (fa < 0) { a.refs = 1; k.unrefFile(a.id); b.refs = 1; k.unrefFile(b.id); return fa; }
  const fb = k.installFd(t, b.id, cloexec);
  if (fb < 0) { k.closeFd(t, fa); b.refs = 1; k.unrefFile(b.id); return fb; }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setInt32(0, fa, true);
  new DataView(out.buffer).setInt32(4, fb, true);
  t.mm.write(sv, out);
  return 0;
}

/** read/recv on a socket. */
export function socketRead(t: Task, f: OpenFileState, buf: number, count: number, flags = 0): SyscallResult {
  const so = f.socket!;
  if (so.shutRd) return 0;
  if (flags & MSG_PEEK) {
    const p = t.kernel.state.pipes[so.rx];
    const n = Math.min(count, p?.len ?? 0);
    if (n > 0) { t.mm.write(buf, p!.buf.subarray(0, n)); return n; }
    if (!p || p.writers === 0) return 0;
    if ((f.flags & O_NONBLOCK) || (flags & MSG_DONTWAIT)) return -E.EAGAIN;
  }
  void MSG_WAITALL;
  return t.kernel.pipes.read(t, f, buf, count, so.rx, !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT));
}

/** write/send on a socket (EPIPE, and SIGPIPE unless MSG_NOSIGNAL, once the peer is gone or shut down). */
export function socketWrite(t: Task, f: OpenFileState, buf: number, count: number, flags = 0): SyscallResult {
  const so = f.socket!;
  if (so.shutWr) {
    if (!(flags & MSG_NOSIGNAL)) t.kernel.signals.send(t.tgid, 13, { signo: 13, code: 0, pid: t.tgid }, t.tid);
    return -E.EPIPE;
  }
  return t.kernel.pipes.write(t, f, buf, count, so.tx, !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT), !(flags & MSG_NOSIGNAL));
}

/** sockaddr_un of an unnamed socket: just the family (addrlen 2). */
function writeUnnamed(t: Task, addr: number, lenAddr: number): void {
  if (!addr || !lenAddr) return;
  const room = t.mm.readU32(lenAddr);
  const sa = new Uint8Array(2);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  t.mm.write(addr, sa.subarray(0, Math.min(room, 2)));
  t.mm.writeU32(lenAddr, 2);
}

/** struct msghdr's iovecs as [base, len] (the first one that has room is used for stream I/O). */
function msgIov(t: Task, msg: number): { iov: Array<[number, number]>; name: number; nameLenAddr: number } {
  const b = t.mm.read(msg, 56);
  const v = new DataView(b.buffer, b.byteOffset, 56);
  const iovAddr = Number(v.getBigUint64(16, true)), iovLen = Number(v.getBigUint64(24, true));
  if (iovLen > 1024) throw Object.assign(new Error('EMSGSIZE'), {});
  const iov: Array<[number, number]> = [];
  const raw = t.mm.read(iovAddr, iovLen * 16);
  const rv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < iovLen; i++) iov.push([Number(rv.getBigUint64(i * 16, true)), Number(rv.getBigUint64(i * 16 + 8, true))]);
  return { iov, name: Number(v.getBigUint64(0, true)), nameLenAddr: msg + 8 };
}

function sendmsg(t: Task, f: OpenFileState, msg: number, flags: number): SyscallResult {
  const { iov } = msgIov(t, msg);
  const parts = iov.filter(([, n]) => n > 0);
  if (!parts.length) return 0;
  // Stream sockets: one write per call; a gather of several buffers goes through a kernel copy.
  if (parts.length === 1) return socketWrite(t, f, parts[0][0], parts[0][1], flags);
  let total = 0;
  for (const [base, len] of parts) {
    const r = socketWrite(t, f, base, len, flags | MSG_DONTWAIT);
    if (typeof r !== 'number' || r < 0) return total || (typeof r === 'number' ? r : -E.EAGAIN);
    total += r;
    if (r < len) break;
  }
  return total;
}

function recvmsg(t: Task, f: OpenFileState, msg: number, flags: number): SyscallResult {
  const { iov } = msgIov(t, msg);
  // No ancillary data and an unnamed peer: clear msg_namelen, msg_controllen, msg_flags.
  const hdr = new Uint8Array(t.mm.read(msg, 56));
  const hv = new DataView(hdr.buffer);
  hv.setUint32(8, 0, true); hv.setBigUint64(40, 0n, true); hv.setInt32(48, 0, true);
  t.mm.write(msg, hdr);
  const first = iov.find(([, n]) => n > 0);
  if (!first) return 0;
  return socketRead(t, f, first[0], first[1], flags);
}

function getsockopt(t: Task, f: OpenFileState, level: number, opt: number, val: number, lenAddr: number): number {
  if (level !== SOL_SOCKET) return -E.ENOPROTOOPT;
  let v: number | Uint8Array;
  switch (opt) {
    case SO_TYPE: v = SOCK_STREAM; break;
    case SO_ERROR: v = 0; break;
    case SO_DOMAIN: v = AF_UNIX; break;
    case SO_PROTOCOL: v = 0; break;
    case SO_ACCEPTCONN: v = 0; break;
    case SO_SNDBUF: case SO_RCVBUF: v = t.kernel.state.pipes[f.socket!.rx]?.buf.length ?? 65536; break;
    case SO_PEERCRED: {
      const b = new Uint8Array(12);
      const dv = new DataView(b.buffer);
      dv.setInt32(0, t.tgid, true); dv.setUint32(4, t.tg.uid, true); dv.setUint32(8, t.tg.gid, true);
      v = b; break;
    }
    default: return -E.ENOPROTOOPT;
  }
  const bytes = typeof v === 'number' ? new Uint8Array(new Int32Array([v]).buffer) : v;
  const room = t.mm.readU32(lenAddr);
  t.mm.write(val, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, bytes.length);
  return 0;
}

export const socketpairSyscalls = [
  syscall('socketpair', 4, socketpair, 'partial', 'AF_UNIX SOCK_STREAM; datagram and seqpacket pairs give EOPNOTSUPP; no SCM_RIGHTS'),
  syscall('sendto', 6, (t) => withSock(t, t.argInt(0), (f) => socketWrite(t, f, t.arg(1), t.arg(2), t.argInt(3))), 'partial', 'connected AF_UNIX stream sockets only'),
  syscall('recvfrom', 6, (t) => withSock(t, t.argInt(0), (f) => { const r = socketRead(t, f, t.arg(1), t.arg(2), t.argInt(3)); if (t.arg(4)) writeUnnamed(t, t.arg(4), t.arg(5)); return r; }), 'partial', 'connected AF_UNIX stream sockets only'),
  syscall('sendmsg', 3, (t) => withSock(t, t.argInt(0), (f) => sendmsg(t, f, t.arg(1), t.argInt(2))), 'partial', 'no ancillary data (SCM_RIGHTS, SCM_CREDENTIALS)'),
  syscall('recvmsg', 3, (t) => withSock(t, t.argInt(0), (f) => recvmsg(t, f, t.arg(1), t.argInt(2) & ~MSG_CMSG_CLOEXEC)), 'partial', 'no ancillary data; fills the first non-empty iovec'),
  syscall('shutdown', 2, (t) => withSock(t, t.argInt(0), (f) => {
    const how = t.argInt(1), so = f.socket!;
    if (how < 0 || how > 2) return -E.EINVAL;
    if ((how === 0 || how === 2) && !so.shutRd) { so.shutRd = true; t.kernel.pipes.closeEnd(so.rx, 'read'); }
    if ((how === 1 || how === 2) && !so.shutWr) { so.shutWr = true; t.kernel.pipes.closeEnd(so.tx, 'write'); }
    return 0;
  })),
  syscall('getsockopt', 5, (t) => withSock(t, t.argInt(0), (f) => getsockopt(t, f, t.argInt(1), t.argInt(2), t.arg(3), t.arg(4))), 'partial', 'SOL_SOCKET basics'),
  syscall('setsockopt', 5, (t) => withSock(t, t.argInt(0), () => (t.argInt(1) === SOL_SOCKET ? 0 : -E.ENOPROTOOPT)), 'stub', 'options are accepted and ignored'),
  syscall('getsockname', 3, (t) => withSock(t, t.argInt(0), () => { writeUnnamed(t, t.arg(1), t.arg(2)); return 0; })),
  syscall('getpeername', 3, (t) => withSock(t, t.argInt(0), () => { writeUnnamed(t, t.arg(1), t.arg(2)); return 0; })),
];
