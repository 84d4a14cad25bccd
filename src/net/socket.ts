/**
 * Sockets (man 7 socket, unix, ip, tcp, udp): the sandbox has its own loopback network and
 * nothing else. AF_INET/AF_INET6 on 127.0.0.0/8 and ::1, and AF_UNIX (paths and abstract
 * names), stream and datagram. A connected stream is two pipes in the graph (each end reads
 * one, writes the other), so sockets with bytes in flight checkpoint like pipes; listeners
 * keep their accept queue and datagram sockets their messages in the graph too. Other
 * addresses give ENETUNREACH (connect) or EADDRNOTAVAIL (bind).
 * Compare net/socket.c, net/unix/af_unix.c, net/ipv4/af_inet.c.
 */
import { persisted } from '../kernel/persist.js';
import type { SocketFile } from '../files/socket.js';
import { filter } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import type { NetState, SockAddr, SocketState } from '../kernel/state.js';
import { baseDir } from '../kernel/dirfd.js';
import { AF_INET, AF_INET6, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, MSG_CMSG_CLOEXEC, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, O_NONBLOCK, SCM_RIGHTS, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_SEQPACKET, SOCK_STREAM, SOCK_TYPE_MASK, SOL_SOCKET, SO_ACCEPTCONN, SO_DOMAIN, SO_ERROR, SO_PEERCRED, SO_PROTOCOL, SO_RCVBUF, SO_SNDBUF, SO_TYPE } from '../abi/linux.js';

/** Bytes of datagrams a socket may have queued before senders' messages are dropped (UDP) or wait. */
const DGRAM_QUEUE_BYTES = 212992;
/**
 * What each queued message costs a receive queue beyond its bytes, as a Linux skb's truesize does:
 * without it, zero-length datagrams could fill the graph without bound.
 */
const DGRAM_MESSAGE_OVERHEAD = 256;
/** Bytes a datagram queue is charged for (its messages plus DGRAM_MESSAGE_OVERHEAD each). */
const queuedBytes = (q: ReadonlyArray<{ data: Uint8Array }>) => q.reduce((n, d) => n + d.data.length + DGRAM_MESSAGE_OVERHEAD, 0);
const EPHEMERAL_FIRST = 32768, EPHEMERAL_LAST = 60999;

export const so = (f: SocketFile): SocketState => f.socket;
const nonblocking = (f: SocketFile, flags: number) => !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT);

function net(t: Task): NetState {
  return (t.kernel.state.net ??= { bound: {}, nextPort: EPHEMERAL_FIRST });
}

/** The socket behind fd: EBADF, or ENOTSOCK for another kind of file. */
export function sockFile(t: Task, fd: number): SocketFile {
  const f = t.kernel.file(t, fd);
  if (f.kind !== 'socket') throw new SyscallError(E.ENOTSOCK);
  return f;
}

function wake(t: Task, id: number): void { t.kernel.pipes.changed$.next(id); }
function changed$(t: Task, id: number) { return t.kernel.pipes.changed$.pipe(filter((x) => x === id)); }

// ---- addresses ----

function isLoopbackV4(ip: string) { return ip.startsWith('127.'); }

/** Decode a guest sockaddr of `len` bytes. EINVAL for a short or foreign one, EAFNOSUPPORT for another family. */
export function readAddr(t: Task, addr: number, len: number, domain: number): SockAddr {
  if (len < 2) throw new SyscallError(E.EINVAL);
  const b = t.mm.read(addr, Math.min(len, 128));
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const family = v.getUint16(0, true);
  if (family !== domain) throw new SyscallError(domain === AF_UNIX ? E.EINVAL : E.EAFNOSUPPORT);
  if (family === AF_INET) {
    if (len < 16) throw new SyscallError(E.EINVAL);
    return { family, port: v.getUint16(2, false), ip: [...b.subarray(4, 8)].join('.') };
  }
  if (family === AF_INET6) {
    if (len < 24) throw new SyscallError(E.EINVAL);
    const words = [];
    for (let i = 0; i < 8; i++) words.push(v.getUint16(8 + i * 2, false).toString(16));
    return { family, port: v.getUint16(2, false), ip: compressV6(words) };
  }
  // AF_UNIX: a path (NUL-terminated within len) or an abstract name (leading NUL).
  const raw = b.subarray(2, Math.min(len, 110));
  if (raw.length && raw[0] === 0) return { family, path: '\0' + Buffer.from(raw.subarray(1)).toString('latin1') };
  const nul = raw.indexOf(0);
  return { family, path: Buffer.from(nul >= 0 ? raw.subarray(0, nul) : raw).toString('latin1') };
}

function compressV6(words: string[]): string {
  const s = words.join(':');
  if (s === '0:0:0:0:0:0:0:1') return '::1';
  if (s === '0:0:0:0:0:0:0:0') return '::';
  return s.replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** Encode a sockaddr; returns the bytes (the full length the kernel reports). */
function encodeAddr(a: SockAddr | undefined, domain: number): Uint8Array {
  const fam = a?.family ?? domain;
  if (fam === AF_INET) {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setUint16(0, AF_INET, true); v.setUint16(2, a?.port ?? 0, false);
    (a?.ip ?? '0.0.0.0').split('.').forEach((x, i) => { b[4 + i] = Number(x); });
    return b;
  }
  if (fam === AF_INET6) {
    const b = new Uint8Array(28);
    const v = new DataView(b.buffer);
    v.setUint16(0, AF_INET6, true); v.setUint16(2, a?.port ?? 0, false);
    if ((a?.ip ?? '::') === '::1') b[23] = 1;
    return b;
  }
  const path = a?.path ? Buffer.from(a.path, 'latin1') : Buffer.alloc(0);
  const b = new Uint8Array(2 + path.length + (path.length && path[0] !== 0 ? 1 : 0));
  new DataView(b.buffer).setUint16(0, AF_UNIX, true);
  b.set(path, 2);
  return b;
}

/** Store a sockaddr at addr with its length at lenAddr (truncated to the room given, as Linux does). */
export function writeAddr(t: Task, addr: number, lenAddr: number, a: SockAddr | undefined, domain: number): void {
  if (!addr || !lenAddr) return;
  const bytes = encodeAddr(a, domain);
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) throw new SyscallError(E.EINVAL);
  t.mm.write(addr, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, bytes.length);
}

/** Key of a bound address in the port table (all loopback addresses of a family share ports). */
function key(type: number, a: SockAddr): string {
  if (a.family === AF_UNIX) return `unix:${type}:${a.path}`;
  return `${a.family === AF_INET6 ? 'in6' : 'in'}:${type}:${a.port}`;
}

function ephemeralPort(t: Task, type: number, family: number): number {
  const n = net(t);
  for (let i = 0; i <= EPHEMERAL_LAST - EPHEMERAL_FIRST; i++) {
    const port = n.nextPort;
    n.nextPort = port >= EPHEMERAL_LAST ? EPHEMERAL_FIRST : port + 1;
    if (!n.bound[key(type, { family, port })]) return port;
  }
  throw new SyscallError(E.EADDRINUSE);
}

function loopbackOf(family: number): string { return family === AF_INET6 ? '::1' : '127.0.0.1'; }

/** Bind `f` to `a` (port 0: an ephemeral one). EADDRINUSE, EADDRNOTAVAIL, EINVAL if already bound. */
export function doBind(t: Task, f: SocketFile, a: SockAddr): void {
  const s = so(f);
  if (s.local) throw new SyscallError(E.EINVAL);
  if (a.family === AF_UNIX) {
    if (!a.path) { a = { family: AF_UNIX, path: `\0${String(f.id).padStart(5, '0')}` }; }
    else if (!a.path.startsWith('\0')) {
      // A named socket is a file: creating it fails if the name exists.
      const r = t.kernel.vfs.walk(a.path, baseDir(t, -100, a.path), false);
      if (r.node) throw new SyscallError(E.EADDRINUSE);
      t.kernel.vfs.create(r.path, 0o140000 | (0o777 & ~t.tg.umask));
      a = { family: AF_UNIX, path: r.path };
    }
  } else {
    const ip = a.ip!;
    const any = ip === '0.0.0.0' || ip === '::';
    if (!any && !(a.family === AF_INET ? isLoopbackV4(ip) : ip === '::1')) throw new SyscallError(E.EADDRNOTAVAIL);
    a = { family: a.family, ip: any ? ip : ip, port: a.port || ephemeralPort(t, s.type!, a.family) };
  }
  const k = key(s.type!, a);
  if (net(t).bound[k] !== undefined) throw new SyscallError(E.EADDRINUSE);
  net(t).bound[k] = f.id;
  s.local = a;
  s.state = 'bound';
}

function autobind(t: Task, f: SocketFile): void {
  const s = so(f);
  if (s.local) return;
  // Implicit binds take the wildcard address (getsockname shows 0.0.0.0 until a connect picks a source).
  doBind(t, f, s.domain === AF_UNIX ? { family: AF_UNIX, path: '' } : { family: s.domain!, ip: s.domain === AF_INET6 ? '::' : '0.0.0.0', port: 0 });
}

/** The address a socket's packets come from: its bound one, the wildcard replaced by loopback. */
function sourceOf(s: SocketState): SockAddr {
  const l = s.local!;
  if (l.family === AF_UNIX || (l.ip !== '0.0.0.0' && l.ip !== '::')) return l;
  return { ...l, ip: loopbackOf(l.family) };
}

/** The socket bound to `a` for `type`, if any (connect and sendto targets). */
function lookup(t: Task, type: number, a: SockAddr): SocketFile | undefined {
  if (a.family !== AF_UNIX) {
    const ip = a.ip!;
    const reachable = a.family === AF_INET ? isLoopbackV4(ip) || ip === '0.0.0.0' : ip === '::1' || ip === '::';
    if (!reachable) throw new SyscallError(E.ENETUNREACH);
  } else if (a.path && !a.path.startsWith('\0')) {
    const r = t.kernel.vfs.walk(a.path, baseDir(t, -100, a.path), true);
    if (!r.node) throw new SyscallError(E.ENOENT);
    a = { family: AF_UNIX, path: r.path };
  }
  const id = net(t).bound[key(type, a)];
  return id === undefined ? undefined : t.kernel.state.openFiles[id] as SocketFile;
}

// ---- socket(2) and friends ----

/** A new socket open file (refs 0 until installed); SOCK_NONBLOCK in `type` sets O_NONBLOCK. */
export function newSocket(t: Task, domain: number, type: number, state: SocketState): SocketFile {
  return t.kernel.newOpenFile({ kind: 'socket', path: `socket:[${t.kernel.state.nextId}]`, flags: 2 | (type & SOCK_NONBLOCK ? O_NONBLOCK : 0), socket: { ...state, domain, type: type & SOCK_TYPE_MASK } });
}

/** Install a socket at the lowest free fd; on EMFILE the socket is released. Returns the fd or -EMFILE. */
export function installSocket(t: Task, f: SocketFile, cloexec: boolean): number {
  const fd = t.kernel.installFd(t, f.id, cloexec);
  if (fd < 0) { f.refs = 1; t.kernel.unrefFile(f.id); }
  return fd;
}

export function listen(t: Task, fd: number, backlog: number): number {
  const f = sockFile(t, fd);
  const s = so(f);
  if (s.type !== SOCK_STREAM) return -E.EOPNOTSUPP;
  if (s.state === 'connected') return -E.EINVAL;
  autobind(t, f);
  s.state = 'listening';
  s.backlog ??= [];
  s.backlogMax = Math.max(1, Math.min(backlog, 4096));
  return 0;
}

/** connect(2): streams get a connection queued on the listener at once (loopback never waits). */
export function connect(t: Task, fd: number, addrPtr: number, len: number): number {
  const f = sockFile(t, fd);
  const s = so(f);
  const a = readAddr(t, addrPtr, len, s.domain!);
  if (s.type === SOCK_DGRAM) {
    autobind(t, f);
    s.peer = a.family === AF_UNIX ? a : { ...a, ip: a.ip === '0.0.0.0' ? '127.0.0.1' : a.ip === '::' ? '::1' : a.ip };
    s.local = sourceOf(s);
    return 0;
  }
  if (s.state === 'connected') return -E.EISCONN;
  if (s.state === 'listening') return -E.EINVAL;
  const listener = lookup(t, SOCK_STREAM, a);
  const ls = listener && so(listener);
  if (!ls || ls.state !== 'listening') return a.family === AF_UNIX && !ls ? -E.ECONNREFUSED : -E.ECONNREFUSED;
  if (ls.backlog!.length > ls.backlogMax!) return -E.EAGAIN;
  autobind(t, f);
  s.local = sourceOf(s);
  const k = t.kernel;
  const up = k.pipes.newPipe(1, 1), down = k.pipes.newPipe(1, 1);
  const server = newSocket(t, s.domain!, SOCK_STREAM, {
    rx: up.id, tx: down.id, shutRd: false, shutWr: false, state: 'connected', opts: {},
    local: ls.local!.family === AF_UNIX ? ls.local : { ...ls.local!, ip: loopbackOf(s.domain!) }, peer: s.local,
  });
  server.refs = 0;
  ls.backlog!.push(server.id);
  s.rx = down.id; s.tx = up.id; s.state = 'connected';
  s.peer = ls.local!.family === AF_UNIX ? ls.local : { ...ls.local!, ip: a.ip === '0.0.0.0' || a.ip === '::' ? loopbackOf(s.domain!) : a.ip };
  wake(t, listener!.id);
  // A non-blocking TCP connect reports EINPROGRESS even on loopback (the connection is made;
  // poll shows it writable and SO_ERROR reads 0), as Linux does; AF_UNIX completes at once.
  return s.domain !== AF_UNIX && (f.flags & O_NONBLOCK) ? -E.EINPROGRESS : 0;
}

export function accept(t: Task, fd: number, addr: number, lenAddr: number, flags: number): SyscallResult {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  const f = sockFile(t, fd);
  const s = so(f);
  if (s.state !== 'listening') return -E.EINVAL;
  const attempt = (): number | undefined => {
    const id = s.backlog?.shift();
    if (id === undefined) return undefined;
    const c = t.kernel.state.openFiles[id] as SocketFile;
    if (flags & SOCK_NONBLOCK) c.flags |= O_NONBLOCK;
    writeAddr(t, addr, lenAddr, so(c).peer, s.domain!);
    return installSocket(t, c, !!(flags & SOCK_CLOEXEC));
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & O_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'accept', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, f.id), attempt) };
}

// ---- data ----

/** read/recv on a stream or datagram socket. `from`, if given, receives the sender's address. */
export function socketRead(t: Task, f: SocketFile, buf: number, count: number, flags = 0, from?: [number, number]): SyscallResult {
  const s = so(f);
  if (s.type === SOCK_DGRAM || s.type === SOCK_SEQPACKET) return dgramRecv(t, f, buf, count, flags, from);
  if (s.state !== 'connected') return -E.ENOTCONN;
  if (s.shutRd) return 0;
  if (from) writeAddr(t, from[0], from[1], s.peer, s.domain!);
  if (flags & MSG_PEEK) {
    const p = t.kernel.state.pipes[s.rx];
    const n = Math.min(count, p?.len ?? 0);
    if (n > 0) { t.mm.write(buf, p!.buf.subarray(0, n)); return n; }
    if (!p || p.writers === 0) return 0;
    if (nonblocking(f, flags)) return -E.EAGAIN;
  }
  return t.kernel.pipes.read(t, f, buf, count, s.rx, nonblocking(f, flags));
}

/** write/send on a socket: EPIPE (and SIGPIPE unless MSG_NOSIGNAL) once the peer is gone. */
export function socketWrite(t: Task, f: SocketFile, buf: number, count: number, flags = 0, to?: SockAddr): SyscallResult {
  const s = so(f);
  if (s.pairPeer !== undefined && (s.type === SOCK_SEQPACKET || !to)) return pairSend(t, f, () => new Uint8Array(t.mm.read(buf, count)), count, flags);
  if (s.type === SOCK_DGRAM) return dgramSend(t, f, buf, count, to ?? s.peer);
  if (s.state !== 'connected') return -E.ENOTCONN;
  if (s.shutWr) {
    if (!(flags & MSG_NOSIGNAL)) t.kernel.signals.send(t.tgid, 13, { signo: 13, code: 0, pid: t.tgid }, t.tid);
    return -E.EPIPE;
  }
  return t.kernel.pipes.write(t, f, buf, count, s.tx, nonblocking(f, flags), !(flags & MSG_NOSIGNAL));
}

function dgramSend(t: Task, f: SocketFile, buf: number, count: number, to: SockAddr | undefined): number {
  const s = so(f);
  if (!to) return -E.EDESTADDRREQ;
  if (count > 65507 && s.domain !== AF_UNIX) return -E.EMSGSIZE;
  autobind(t, f);
  const target = lookup(t, SOCK_DGRAM, to);
  const data = new Uint8Array(t.mm.read(buf, count));
  if (!target) return s.domain === AF_UNIX ? -E.ECONNREFUSED : count; // UDP to a closed port: the datagram is lost
  const ts = so(target);
  if (queuedBytes(ts.dgrams!) + count + DGRAM_MESSAGE_OVERHEAD > DGRAM_QUEUE_BYTES) return s.domain === AF_UNIX ? -E.EAGAIN : count;
  ts.dgrams!.push({ from: sourceOf(s), data });
  wake(t, target.id);
  return count;
}

/** The other end of a datagram/seqpacket socketpair, if it is still open. */
function pairPeerOf(t: Task, s: SocketState): SocketFile | undefined {
  const p = s.pairPeer === undefined ? undefined : t.kernel.state.openFiles[s.pairPeer];
  return p?.kind === 'socket' ? p : undefined;
}

/** Largest message a unix datagram/seqpacket socket takes (the default sk_sndbuf less its overhead). */
const UNIX_MAX_MESSAGE = 212960;

/**
 * send on a datagram or seqpacket socketpair (net/unix/af_unix.c unix_dgram_sendmsg and
 * unix_seqpacket_sendmsg): the message goes to the other end's queue whole. A closed other end is
 * ECONNREFUSED once, then ENOTCONN, for a datagram pair, and EPIPE (with SIGPIPE unless
 * MSG_NOSIGNAL) for a seqpacket pair or after shutdown(SHUT_WR); EMSGSIZE past the socket buffer;
 * a full queue blocks ('send' waiter) or gives EAGAIN when nonblocking.
 */
function pairSend(t: Task, f: SocketFile, data: () => Uint8Array, count: number, flags: number): SyscallResult {
  const s = so(f);
  const epipe = () => {
    if (!(flags & MSG_NOSIGNAL)) t.kernel.signals.send(t.tgid, 13, { signo: 13, code: 0, pid: t.tgid }, t.tid);
    return -E.EPIPE;
  };
  if (s.shutWr) return epipe();
  const peer = pairPeerOf(t, s);
  if (!peer || so(peer).shutRd) {
    if (s.type === SOCK_SEQPACKET) return epipe();
    if (peer) return -E.EPIPE;
    if (s.pairPeer !== undefined && s.state === 'connected') { s.state = 'unbound'; return -E.ECONNREFUSED; }
    return -E.ENOTCONN;
  }
  if (count > UNIX_MAX_MESSAGE) return -E.EMSGSIZE;
  const msg = data();
  const attempt = (): number | undefined => {
    const target = pairPeerOf(t, s);
    if (!target) return s.type === SOCK_SEQPACKET ? epipe() : -E.ECONNREFUSED;
    const q = so(target).dgrams!;
    if (q.length && queuedBytes(q) + msg.length + DGRAM_MESSAGE_OVERHEAD > DGRAM_QUEUE_BYTES) return undefined;
    q.push({ from: { family: AF_UNIX, path: s.local?.path ?? '' }, data: msg });
    wake(t, target.id);
    return msg.length;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return { waiter: { kind: 'send', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, s.pairPeer!), attempt) };
}

function dgramRecv(t: Task, f: SocketFile, buf: number, count: number, flags: number, from?: [number, number]): SyscallResult {
  const s = so(f);
  const attempt = (): number | undefined => {
    const d = s.dgrams![0];
    // A seqpacket pair reads end of file once the other end is closed or shut for writing, or this one for reading.
    if (!d) return s.shutRd || (s.type === SOCK_SEQPACKET && (!pairPeerOf(t, s) || so(pairPeerOf(t, s)!).shutWr)) ? 0 : undefined;
    if (!(flags & MSG_PEEK)) {
      s.dgrams!.shift();
      if (s.pairPeer !== undefined) wake(t, f.id); // room again for a sender blocked on this queue
    }
    const n = Math.min(count, d.data.length);
    t.mm.write(buf, d.data.subarray(0, n));
    if (from) writeAddr(t, from[0], from[1], d.from, s.domain!);
    return flags & MSG_TRUNC ? d.data.length : n;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return { waiter: { kind: 'recv', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, f.id), attempt) };
}

/** struct msghdr (56 bytes): name, iovecs. */
function readMsghdr(t: Task, msg: number) {
  const b = t.mm.read(msg, 56);
  const v = new DataView(b.buffer, b.byteOffset, 56);
  const iovAddr = Number(v.getBigUint64(16, true)), iovLen = Number(v.getBigUint64(24, true));
  if (iovLen > 1024) throw new SyscallError(E.EMSGSIZE);
  const iov: Array<[number, number]> = [];
  const raw = t.mm.read(iovAddr, iovLen * 16);
  const rv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < iovLen; i++) iov.push([Number(rv.getBigUint64(i * 16, true)), Number(rv.getBigUint64(i * 16 + 8, true))]);
  return { iov, name: Number(v.getBigUint64(0, true)), nameLen: v.getUint32(8, true) };
}

function gather(t: Task, iov: Array<[number, number]>): Uint8Array {
  const total = iov.reduce((n, [, l]) => n + l, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const [base, len] of iov) { if (len) { out.set(t.mm.read(base, len), o); o += len; } }
  return out;
}

/** The fds of SCM_RIGHTS messages in a msghdr's control buffer (EBADF for a closed one, EINVAL for bad lengths). */
function readRights(t: Task, msg: number): number[] {
  const b = t.mm.read(msg, 56);
  const v = new DataView(b.buffer, b.byteOffset, 56);
  const ctl = Number(v.getBigUint64(32, true)), ctlLen = Number(v.getBigUint64(40, true));
  if (!ctl || ctlLen < 16) return [];
  const raw = t.mm.read(ctl, Math.min(ctlLen, 4096));
  const cv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const fds: number[] = [];
  for (let off = 0; off + 16 <= raw.length;) {
    const len = Number(cv.getBigUint64(off, true));
    if (len < 16 || off + len > raw.length) throw new SyscallError(E.EINVAL);
    if (cv.getInt32(off + 8, true) === SOL_SOCKET && cv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + 16; p + 4 <= off + len; p += 4) {
        const fd = cv.getInt32(p, true);
        if (!t.fdTable.fds[fd]) throw new SyscallError(E.EBADF);
        fds.push(fd);
      }
    }
    off += (len + 7) & ~7;
  }
  if (fds.length > 253) throw new SyscallError(E.EINVAL); // SCM_MAX_FD
  return fds;
}

/**
 * Attach files to the next byte written to a unix stream (SCM_RIGHTS): each holds a
 * reference while in flight, and arrives with that byte at the receiver's recvmsg.
 */
function attachRights(t: Task, f: SocketFile, fds: number[]): (() => void) | undefined {
  const s = so(f);
  if (!fds.length) return undefined;
  if (s.domain !== AF_UNIX || s.type !== SOCK_STREAM || s.state !== 'connected') throw new SyscallError(E.EOPNOTSUPP);
  const p = t.kernel.state.pipes[s.tx];
  if (!p) throw new SyscallError(E.EPIPE);
  const fileIds = fds.map((fd) => t.fdTable.fds[fd].fileId);
  for (const id of fileIds) t.kernel.state.openFiles[id].refs++;
  const entry = { at: p.written ?? 0, fileIds }; // the next byte written
  (p.rights ??= []).push(entry);
  return () => { // the send failed: nothing is in flight
    const i = p.rights?.indexOf(entry) ?? -1;
    if (i >= 0) { p.rights!.splice(i, 1); for (const id of fileIds) t.kernel.unrefFile(id); }
  };
}

export function sendmsg(t: Task, f: SocketFile, msg: number, flags: number): SyscallResult {
  const { iov, name, nameLen } = readMsghdr(t, msg);
  const to = name && nameLen ? readAddr(t, name, nameLen, so(f).domain!) : undefined;
  const parts = iov.filter(([, n]) => n > 0);
  const undo = attachRights(t, f, readRights(t, msg));
  if (undo) {
    const r = parts.length ? socketWrite(t, f, parts[0][0], parts[0][1], flags) : 0;
    if (typeof r === 'number' && r <= 0) undo();
    return r;
  }
  if (parts.length <= 1) return socketWrite(t, f, parts[0]?.[0] ?? 0, parts[0]?.[1] ?? 0, flags, to);
  // Several buffers: one message (datagram) or one write (stream), through a kernel copy in guest scratch.
  const data = gather(t, parts);
  if (so(f).pairPeer !== undefined && (so(f).type === SOCK_SEQPACKET || !to)) return pairSend(t, f, () => data, data.length, flags);
  if (so(f).type === SOCK_DGRAM) {
    const target = to ?? so(f).peer;
    if (!target) return -E.EDESTADDRREQ;
    autobind(t, f);
    const dst = lookup(t, SOCK_DGRAM, target);
    if (dst) { so(dst).dgrams!.push({ from: sourceOf(so(f)), data }); wake(t, dst.id); }
    return data.length;
  }
  let total = 0;
  for (const [base, len] of parts) {
    const r = socketWrite(t, f, base, len, flags | MSG_DONTWAIT);
    if (typeof r !== 'number' || r < 0) return total || (typeof r === 'number' ? r : -E.EAGAIN);
    total += r;
    if (r < len) break;
  }
  return total;
}

export function recvmsg(t: Task, f: SocketFile, msg: number, flags: number): SyscallResult {
  const { iov, name } = readMsghdr(t, msg);
  const hdr = new Uint8Array(t.mm.read(msg, 56));
  const hv = new DataView(hdr.buffer);
  const ctl = Number(hv.getBigUint64(32, true)), ctlRoom = Number(hv.getBigUint64(40, true));
  hv.setBigUint64(40, 0n, true); hv.setInt32(48, 0, true); // no ancillary data, no flags
  const first = iov.find(([, n]) => n > 0);
  // The sender's address goes to msg_name; its length to msg_namelen (in the header we write back).
  let from: [number, number] | undefined;
  if (name) {
    const lenAddr = msg + 8;
    from = [name, lenAddr];
  } else hv.setUint32(8, 0, true);
  if (!name) t.mm.write(msg, hdr);
  else { t.mm.write(msg + 40, hdr.subarray(40, 56)); }
  if (!first) return 0;
  const s = so(f);
  if (s.type === SOCK_STREAM && s.state === 'connected' && !(flags & MSG_PEEK)) {
    // Files that arrive with these bytes go into the control buffer as SCM_RIGHTS.
    const onRights = (fileIds: number[]) => {
      const room = ctl ? Math.max(0, Math.floor((ctlRoom - 16) / 4)) : 0;
      const fds: number[] = [];
      fileIds.forEach((id, i) => {
        if (i < room) {
          const fd = t.kernel.installFd(t, id, !!(flags & MSG_CMSG_CLOEXEC));
          if (fd >= 0) fds.push(fd);
        }
        t.kernel.unrefFile(id); // the in-flight reference
      });
      const cmsgLen = 16 + fds.length * 4;
      if (fds.length && ctl) {
        const c = new Uint8Array(cmsgLen);
        const cv = new DataView(c.buffer);
        cv.setBigUint64(0, BigInt(cmsgLen), true); cv.setInt32(8, SOL_SOCKET, true); cv.setInt32(12, SCM_RIGHTS, true);
        fds.forEach((fd, i) => cv.setInt32(16 + i * 4, fd, true));
        t.mm.write(ctl, c);
        t.mm.writeU64(msg + 40, (cmsgLen + 7) & ~7);
      }
      if (fds.length < fileIds.length) t.mm.writeU32(msg + 48, 8 /* MSG_CTRUNC */);
    };
    if (s.shutRd) return 0;
    return t.kernel.pipes.read(t, f, first[0], first[1], s.rx, nonblocking(f, flags), onRights);
  }
  return socketRead(t, f, first[0], first[1], flags, from);
}

function optKey(level: number, opt: number) { return `${level}:${opt}`; }

export function getsockopt(t: Task, f: SocketFile, level: number, opt: number, val: number, lenAddr: number): number {
  const s = so(f);
  let v: number | Uint8Array;
  if (level === SOL_SOCKET) {
    switch (opt) {
      case SO_TYPE: v = s.type!; break;
      case SO_ERROR: v = s.error ?? 0; s.error = undefined; break;
      case SO_DOMAIN: v = s.domain!; break;
      case SO_PROTOCOL: v = s.domain === AF_UNIX ? 0 : s.type === SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP; break;
      case SO_ACCEPTCONN: v = s.state === 'listening' ? 1 : 0; break;
      case SO_SNDBUF: case SO_RCVBUF: v = s.opts?.[optKey(level, opt)] ?? 212992; break;
      case SO_PEERCRED: {
        const b = new Uint8Array(12);
        const dv = new DataView(b.buffer);
        dv.setInt32(0, t.tgid, true); dv.setUint32(4, t.tg.uid, true); dv.setUint32(8, t.tg.gid, true);
        v = b; break;
      }
      default: v = s.opts?.[optKey(level, opt)] ?? 0;
    }
  } else if (level === IPPROTO_TCP || level === IPPROTO_UDP || level === 0 /* IP */ || level === 41 /* IPV6 */) {
    v = s.opts?.[optKey(level, opt)] ?? 0;
  } else return -E.ENOPROTOOPT;
  const bytes = typeof v === 'number' ? new Uint8Array(new Int32Array([v]).buffer) : v;
  const room = t.mm.readU32(lenAddr);
  t.mm.write(val, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, Math.min(room, bytes.length));
  return 0;
}

export function setsockopt(t: Task, f: SocketFile, level: number, opt: number, val: number, len: number): number {
  if (len < 0) return -E.EINVAL;
  if (![SOL_SOCKET, IPPROTO_TCP, IPPROTO_UDP, 0, 41].includes(level)) return -E.ENOPROTOOPT;
  const s = so(f);
  const v = len >= 4 ? t.mm.readU32(val) | 0 : len >= 1 ? t.mm.read(val, 1)[0] : 0;
  s.opts ??= {};
  // Buffer sizes read back doubled, as Linux keeps room for its bookkeeping.
  s.opts[optKey(level, opt)] = level === SOL_SOCKET && (opt === SO_SNDBUF || opt === SO_RCVBUF) ? v * 2 : v;
  return 0;
}

/** The last fd of a socket closed: connected streams close their pipe ends; bound names are freed. */
export function releaseSocket(k: Kernel, f: SocketFile): void {
  const s = so(f);
  // The other end of a socketpair sees the close (seqpacket: end of file; blocked senders: an error).
  if (s.pairPeer !== undefined) { k.pipes.changed$.next(s.pairPeer); k.pipes.changed$.next(f.id); }
  if (s.rx && !s.shutRd) k.pipes.closeEnd(s.rx, 'read');
  if (s.tx && !s.shutWr) k.pipes.closeEnd(s.tx, 'write');
  const n = k.state.net;
  if (n && s.local && s.type) {
    const kk = key(s.type, s.local);
    if (n.bound[kk] === f.id) delete n.bound[kk];
  }
  // Connections nobody accepted are reset.
  for (const id of s.backlog ?? []) {
    const c = k.state.openFiles[id];
    if (c) { c.refs = 1; k.unrefFile(id); }
  }
}

/** Poll readiness of a socket (POLLIN 1, POLLOUT 4, POLLERR 8, POLLHUP 0x10, POLLRDHUP 0x2000). */
export function socketReadiness(t: Task, f: SocketFile, pipeBuf: number): number {
  const s = so(f);
  if (s.state === 'listening') return s.backlog!.length ? 1 : 0;
  if (s.pairPeer !== undefined) {
    // unix_dgram_poll: the receive side shut (by this end, or a seqpacket peer's close or SHUT_WR)
    // reads end of file; HUP once both sides are shut or a seqpacket peer is gone; always writable.
    const peer = pairPeerOf(t, s);
    const seq = s.type === SOCK_SEQPACKET;
    const rcvShut = s.shutRd || (seq && (!peer || so(peer).shutWr));
    const sndShut = s.shutWr || (seq && (!peer || so(peer).shutRd));
    let r = 4 | 0x100;
    if (rcvShut) r |= 1 | 0x40 | 0x2000;
    if ((rcvShut && sndShut) || (seq && !peer)) r |= 0x10;
    if (s.dgrams!.length) r |= 1 | 0x40;
    return r;
  }
  if (s.type === SOCK_DGRAM) return (s.dgrams!.length ? 1 : 0) | 4;
  if (s.state !== 'connected') return 4 | 0x10;
  const rx = t.kernel.state.pipes[s.rx], tx = t.kernel.state.pipes[s.tx];
  let r = 0;
  if (s.shutRd || !rx || rx.len > 0 || rx.writers === 0) r |= 1 | 0x40;
  if (!s.shutWr && tx && tx.readers > 0 && tx.buf.length - tx.len >= pipeBuf) r |= 4 | 0x100;
  if ((!rx || rx.writers === 0) && (s.shutWr || !tx || tx.readers === 0)) r |= 0x10;
  if (!rx || rx.writers === 0) r |= 0x2000;
  if (!s.shutWr && (!tx || tx.readers === 0)) r |= 8;
  return r;
}

/** Persistence: the loopback network's bound names and next ephemeral port are data (sockets are open files). */
export const netPersist = persisted<NetState>({
  kind: 'net',
  records: (g) => (g.net ? [['net', g.net]] : []),
  rebuilds: 'nothing: plain data',
});
