/**
 * The socket syscalls (man 2 socket, socketpair, bind, listen, connect, accept, send, recv,
 * getsockopt…): argument decoding and entries. The sockets themselves (loopback network,
 * unix names, connections as pipe pairs, datagram queues) are src/net/socket.ts.
 */
import { E } from '../errno.js';
import type { SyscallResult, Task } from '../kernel/task.js';
import { map } from 'rxjs';
import type { SocketFile } from '../files/socket.js';
import { peerCredOf } from '../net/cmsg.js';
import { NETLINK_ROUTE } from '../net/netlink.js';
import {
  accept, connect, doBind, getsockopt, installSocket, listen, newSocket, readAddr, recvmsg, sendmsg, setsockopt, so, sockFile,
  socketRead, socketWrite, writeAddr, setSocket,
} from '../net/socket.js';
import { AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, S_IFMT, S_IFSOCK, SO_ACCEPTCONN, SO_DOMAIN, SO_ERROR, SO_PROTOCOL, SO_RCVBUF, SO_SNDBUF, SO_TYPE, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_RAW, SOCK_SEQPACKET, SOCK_STREAM, SOCK_TYPE_MASK, SOL_SOCKET, MSG_DONTWAIT, MSG_WAITFORONE } from '../abi/linux.js';
import { syscall } from './entry.js';
import type { HostInetFile } from '../files/hostinet.js';
import {
  hostInetAccept, hostInetBind, hostInetConnect, hostInetGetsockopt, hostInetListen, hostInetName, hostInetRecv, hostInetRecvmsg, hostInetSend,
  hostInetSendmsg, hostInetSetsockopt, hostInetShutdown, hostInetSocket,
} from '../net/hostinet.js';

/**
 * The host fd behind guest fd arg 0 when it is a host socket the sandbox was given as stdio (a
 * parent that spawns the sandbox with socketpair stdio, as Node's child_process does). Such an fd
 * is a connected stream to the guest; its name and type are read from the host so that programs
 * that ask what their stdio is (libuv's uv_guess_handle: fstat, getsockname, SO_TYPE) see a
 * socket, as gVisor shows an imported host socket. Undefined for every other file.
 */
function hostStdioSocket(t: Task): number | undefined {
  const e = t.fdTable.fds[t.argInt(0)];
  const file = e ? t.kernel.state.openFiles[e.fileId] : undefined;
  if (!file || file.kind !== 'hostfd' || file.hostFd === undefined || !t.kernel.host.isStream(file.hostFd)) return undefined;
  try { return (t.kernel.host.fstat(file.hostFd).mode & S_IFMT) === S_IFSOCK ? file.hostFd : undefined; } catch { return undefined; }
}

/** getsockname(2)/getpeername(2) of a host stdio socket (hostStdioSocket): 0 or -errno; undefined if not one. EFAULT, EINVAL (negative length). */
function hostStdioSocketAddress(t: Task, peer: boolean): number | undefined {
  const hfd = hostStdioSocket(t);
  if (hfd === undefined) return undefined;
  const bytes = t.kernel.host.socketAddress(hfd, peer);
  if (typeof bytes === 'number') return bytes;
  const addr = t.arg(1), lenAddr = t.arg(2);
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) return -E.EINVAL;
  t.mm.write(addr, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, bytes.length);
  return 0;
}

/** The read-only SOL_SOCKET options of a host stdio socket (type, domain, protocol, listening, error, buffer sizes). */
const HOST_STDIO_SOCKET_OPTIONS = new Set([SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, SO_ERROR, SO_SNDBUF, SO_RCVBUF]);

/** getsockopt(2) on a host stdio socket: int options above from the host, ENOPROTOOPT for others; undefined if not one. */
function hostStdioSocketOption(t: Task): number | undefined {
  const hfd = hostStdioSocket(t);
  if (hfd === undefined) return undefined;
  const level = t.argInt(1), name = t.argInt(2), valAddr = t.arg(3), lenAddr = t.arg(4);
  if (level !== SOL_SOCKET || !HOST_STDIO_SOCKET_OPTIONS.has(name)) return -E.ENOPROTOOPT;
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) return -E.EINVAL;
  const v = t.kernel.host.socketIntOption(hfd, level, name);
  if (typeof v !== 'number') return -v.errno;
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  t.mm.write(valAddr, b.subarray(0, Math.min(room, 4)));
  t.mm.writeU32(lenAddr, Math.min(room, 4));
  return 0;
}

/**
 * socket(2): AF_UNIX stream, datagram (SOCK_RAW is one, as unix_create makes it) and seqpacket;
 * AF_NETLINK NETLINK_ROUTE (raw or datagram; src/net/netlink.ts);
 * AF_INET/AF_INET6 stream (TCP) and datagram (UDP, and UDP-Lite: UDP with its own ports; checksum
 * coverage options are stored, there being no checksums on this loopback). EAFNOSUPPORT, EINVAL, ESOCKTNOSUPPORT,
 * EPROTONOSUPPORT, EMFILE.
 */
function socket(t: Task): number {
  const domain = t.argInt(0), type = t.argInt(1), proto = t.argInt(2);
  if (![AF_UNIX, AF_INET, AF_INET6, AF_NETLINK].includes(domain)) return -E.EAFNOSUPPORT;
  let base = type & SOCK_TYPE_MASK;
  if (type & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  if (domain === AF_NETLINK) {
    if (base !== SOCK_RAW && base !== SOCK_DGRAM) return -E.ESOCKTNOSUPPORT;
    if (proto !== NETLINK_ROUTE) return -E.EPROTONOSUPPORT;
    const nl = newSocket(t, domain, type, { rx: 0, tx: 0, shutRd: false, shutWr: false, state: 'unbound', opts: {}, dgrams: [] });
    return installSocket(t, nl, !!(type & SOCK_CLOEXEC));
  }
  if (domain === AF_UNIX) {
    if (proto !== 0 && proto !== AF_UNIX) return -E.EPROTONOSUPPORT;
    if (base === SOCK_RAW) base = SOCK_DGRAM;
    if (base !== SOCK_STREAM && base !== SOCK_DGRAM && base !== SOCK_SEQPACKET) return -E.ESOCKTNOSUPPORT;
  } else {
    if (base !== SOCK_STREAM && base !== SOCK_DGRAM) return -E.ESOCKTNOSUPPORT;
    if (proto !== 0 && proto !== (base === SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP) && !(base === SOCK_DGRAM && proto === IPPROTO_UDPLITE)) return -E.EPROTONOSUPPORT;
    // --network=host: TCP and UDP sockets are the host's (src/net/hostinet.ts).
    if (t.kernel.state.config.network === 'host' && proto !== IPPROTO_UDPLITE) return hostInetSocket(t, domain, type, proto);
  }
  const f = newSocket(t, domain, base | (type & ~SOCK_TYPE_MASK), { rx: 0, tx: 0, shutRd: false, shutWr: false, state: 'unbound', opts: {}, dgrams: base !== SOCK_STREAM ? [] : undefined, ...(proto === IPPROTO_UDPLITE ? { protocol: proto } : {}) });
  return installSocket(t, f, !!(type & SOCK_CLOEXEC));
}

/**
 * socketpair(2) for AF_UNIX: a stream pair is two sockets over a pair of pipes; a datagram or
 * seqpacket pair (SOCK_RAW is a datagram socket, as unix_create makes it) is two sockets whose
 * messages go to each other's queue whole (src/net/unix.ts unixSend). Both ends record the
 * caller as their SO_PEERCRED. Errors: EAFNOSUPPORT,
 * EOPNOTSUPP (AF_INET/AF_INET6), EINVAL (unknown flags), EPROTONOSUPPORT, ESOCKTNOSUPPORT,
 * EFAULT (bad `sv`), EMFILE.
 */
function socketpair(t: Task): number {
  const domain = t.argInt(0), type = t.argInt(1), proto = t.argInt(2), sv = t.arg(3);
  if (domain !== AF_UNIX) return domain === AF_INET || domain === AF_INET6 ? -E.EOPNOTSUPP : -E.EAFNOSUPPORT;
  if (type & ~(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  if (proto !== 0 && proto !== AF_UNIX) return -E.EPROTONOSUPPORT;
  const base = (type & SOCK_TYPE_MASK) === SOCK_RAW ? SOCK_DGRAM : type & SOCK_TYPE_MASK;
  if (base !== SOCK_STREAM && base !== SOCK_DGRAM && base !== SOCK_SEQPACKET) return -E.ESOCKTNOSUPPORT;
  t.mm.chunks(sv, 8, 2, () => undefined);
  const k = t.kernel;
  const flags = type & ~SOCK_TYPE_MASK;
  let a: SocketFile, b: SocketFile;
  if (base === SOCK_STREAM) {
    const ab = k.pipes.newPipe(1, 1), ba = k.pipes.newPipe(1, 1);
    a = newSocket(t, AF_UNIX, type, { rx: ba.id, tx: ab.id, shutRd: false, shutWr: false, state: 'connected', opts: {}, peerCred: peerCredOf(t), peer: { family: AF_UNIX, path: '' } });
    b = newSocket(t, AF_UNIX, type, { rx: ab.id, tx: ba.id, shutRd: false, shutWr: false, state: 'connected', opts: {}, peerCred: peerCredOf(t), peer: { family: AF_UNIX, path: '' } });
  } else {
    const unnamed = () => ({ rx: 0, tx: 0, shutRd: false, shutWr: false, state: 'connected' as const, opts: {}, dgrams: [], peer: { family: AF_UNIX, path: '' }, peerCred: peerCredOf(t) });
    a = newSocket(t, AF_UNIX, base | flags, unnamed());
    b = newSocket(t, AF_UNIX, base | flags, unnamed());
    setSocket(k, a, 'pair', { pairPeer: b.id });
    setSocket(k, b, 'pair', { pairPeer: a.id });
  }
  const cloexec = !!(type & SOCK_CLOEXEC);
  const fa = installSocket(t, a, cloexec);
  if (fa < 0) { k.unrefFile(b.id); return fa; }
  const fb = installSocket(t, b, cloexec);
  if (fb < 0) { k.closeFd(t, fa); return fb; }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setInt32(0, fa, true);
  new DataView(out.buffer).setInt32(4, fb, true);
  t.mm.write(sv, out);
  return 0;
}


/** The socket behind `fd`: a host-backed one (--network=host) to `host`, the sandbox's own to `own`. EBADF, ENOTSOCK. */
function either<T>(t: Task, fd: number, host: (f: HostInetFile) => T, own: (f: SocketFile) => T): T {
  const f = t.kernel.file(t, fd);
  return f.kind === 'hostinet' ? host(f) : own(sockFile(t, fd));
}

/** Bytes of a struct mmsghdr: a struct msghdr (56) and its msg_len (u32), padded. */
const MMSGHDR_BYTES = 64;
/** Most messages one sendmmsg/recvmmsg handles (UIO_MAXIOV). */
const UIO_MAXIOV = 1024;

/**
 * sendmmsg(2)/recvmmsg(2) (man 2 sendmmsg, net/socket.c __sys_sendmmsg): `one` (sendmsg or
 * recvmsg) for each of the `vlen` struct mmsghdr at guest address `vec`, each one's byte count
 * stored in its msg_len; returns how many were done. The first may block (unless MSG_DONTWAIT or a
 * non-blocking socket); the later ones are tried without blocking and the call ends at the first
 * that would block or fails (an error is returned only if none was done). EFAULT for a bad `vec`.
 */
function multiMsg<F>(t: Task, f: F, vec: number, vlen: number, flags: number, one: (t: Task, f: F, msg: number, flags: number) => SyscallResult): SyscallResult {
  const n = Math.min(vlen, UIO_MAXIOV);
  if (n === 0) return 0;
  t.mm.read(vec, MMSGHDR_BYTES); // EFAULT before anything is sent
  const first = one(t, f, vec, flags & ~MSG_WAITFORONE);
  const rest = (done: number): number => {
    for (let i = done; i < n; i++) {
      const r = one(t, f, vec + i * MMSGHDR_BYTES, (flags & ~MSG_WAITFORONE) | MSG_DONTWAIT);
      if (typeof r !== 'number' || r < 0) return i;
      t.mm.writeU32(vec + i * MMSGHDR_BYTES + 56, r);
    }
    return n;
  };
  if (typeof first !== 'number') {
    return { ...first, result$: first.result$.pipe(map((r) => { if (r < 0) return r; t.mm.writeU32(vec + 56, r); return rest(1); })) };
  }
  if (first < 0) return first;
  t.mm.writeU32(vec + 56, first);
  return rest(1);
}

export const netSyscalls = [
  syscall('socket', 3, socket, 'partial', 'AF_INET/AF_INET6 (TCP, UDP, UDP-Lite) on the sandbox\'s loopback (127.0.0.0/8, ::1 and IPv4-mapped), or TCP and UDP as host sockets with --network=host; AF_UNIX stream, datagram and seqpacket; AF_NETLINK NETLINK_ROUTE answering link and address dumps for lo'),
  syscall('socketpair', 4, socketpair, 'partial', 'AF_UNIX stream, datagram and seqpacket pairs (no other family has them here)'),
  syscall('bind', 3, (t) => either(t, t.argInt(0), (f) => hostInetBind(t, f, t.arg(1), t.argU32(2)), (f) => { doBind(t, f, readAddr(t, t.arg(1), t.argU32(2), so(f).domain!)); return 0; })),
  syscall('listen', 2, (t) => either(t, t.argInt(0), (f) => hostInetListen(t, f, t.argInt(1)), () => listen(t, t.argInt(0), t.argInt(1)))),
  syscall('connect', 3, (t) => either(t, t.argInt(0), (f) => hostInetConnect(t, f, t.arg(1), t.argU32(2)), () => connect(t, t.argInt(0), t.arg(1), t.argU32(2))), 'partial', 'loopback connects are made at once (non-blocking TCP still reports EINPROGRESS); --network=host: the host\'s connect'),
  syscall('accept', 3, (t) => either(t, t.argInt(0), (f) => hostInetAccept(t, f, t.arg(1), t.arg(2), 0), () => accept(t, t.argInt(0), t.arg(1), t.arg(2), 0))),
  syscall('accept4', 4, (t) => either(t, t.argInt(0), (f) => hostInetAccept(t, f, t.arg(1), t.arg(2), t.argInt(3)), () => accept(t, t.argInt(0), t.arg(1), t.arg(2), t.argInt(3)))),
  syscall('sendto', 6, (t) => either(t, t.argInt(0), (f) => hostInetSend(t, f, [[t.arg(1), t.arg(2)]], t.argInt(3), t.arg(4) ? [t.arg(4), t.argU32(5)] : undefined), (f) => socketWrite(t, f, t.arg(1), t.arg(2), t.argInt(3), t.arg(4) ? readAddr(t, t.arg(4), t.argU32(5), so(f).domain!) : undefined))),
  syscall('recvfrom', 6, (t) => either(t, t.argInt(0), (f) => hostInetRecv(t, f, [[t.arg(1), t.arg(2)]], t.argInt(3), { name: t.arg(4) ? [t.arg(4), t.arg(5)] : undefined }), (f) => socketRead(t, f, t.arg(1), t.arg(2), t.argInt(3), t.arg(4) ? [t.arg(4), t.arg(5)] : undefined))),
  syscall('sendmsg', 3, (t) => either(t, t.argInt(0), (f) => hostInetSendmsg(t, f, t.arg(1), t.argInt(2)), (f) => sendmsg(t, f, t.arg(1), t.argInt(2))), 'partial', 'SCM_RIGHTS and SCM_CREDENTIALS on unix sockets; IPV6_HOPLIMIT and IPV6_TCLASS on IPv6 datagrams; other IP-level items are ignored (--network=host: no control messages)'),
  syscall('sendmmsg', 4, (t) => either(t, t.argInt(0), (f) => multiMsg(t, f, t.arg(1), t.argU32(2), t.argInt(3), hostInetSendmsg), (f) => multiMsg(t, f, t.arg(1), t.argU32(2), t.argInt(3), sendmsg)), 'partial', 'sendmsg per message (as sendmsg); only the first may block, later ones stop the call where they would'),
  syscall('recvmmsg', 5, (t) => either(t, t.argInt(0), (f) => multiMsg(t, f, t.arg(1), t.argU32(2), t.argInt(3), hostInetRecvmsg), (f) => multiMsg(t, f, t.arg(1), t.argU32(2), t.argInt(3), recvmsg)), 'partial', 'recvmsg per message; only the first may block (as with MSG_WAITFORONE); the timeout argument is not used'),
  syscall('recvmsg', 3, (t) => either(t, t.argInt(0), (f) => hostInetRecvmsg(t, f, t.arg(1), t.argInt(2)), (f) => recvmsg(t, f, t.arg(1), t.argInt(2))), 'partial', 'SCM_RIGHTS and SCM_CREDENTIALS (SO_PASSCRED) on unix sockets; IPV6_HOPLIMIT and IPV6_TCLASS on IPv6 datagrams; no IPv4-level items (IP_TTL, IP_TOS, IP_PKTINFO); --network=host: no control messages'),
  syscall('shutdown', 2, (t) => either(t, t.argInt(0), (f) => hostInetShutdown(t, f, t.argInt(1)), (f) => {
    const how = t.argInt(1), s = so(f);
    if (how < 0 || how > 2) return -E.EINVAL;
    if (s.domain === AF_NETLINK) return -E.EOPNOTSUPP; // netlink has no shutdown (sock_no_shutdown)
    if (s.domain === AF_UNIX && !(s.type === SOCK_STREAM && s.state === 'connected')) {
      // unix_shutdown never fails: the flags are this end's; a seqpacket peer sees them.
      setSocket(t.kernel, f, 'shutdown', { shutRd: s.shutRd || how === 0 || how === 2, shutWr: s.shutWr || how === 1 || how === 2 });
      t.kernel.pipes.changed$.next(f.id);
      if (s.pairPeer !== undefined) t.kernel.pipes.changed$.next(s.pairPeer);
      return 0;
    }
    if (s.state !== 'connected' || s.type !== SOCK_STREAM) return -E.ENOTCONN;
    if ((how === 0 || how === 2) && !s.shutRd) { setSocket(t.kernel, f, 'shutdown', { shutRd: true }); t.kernel.pipes.closeEnd(s.rx, 'read'); }
    if ((how === 1 || how === 2) && !s.shutWr) { setSocket(t.kernel, f, 'shutdown', { shutWr: true }); t.kernel.pipes.closeEnd(s.tx, 'write'); }
    return 0;
  })),
  syscall('getsockopt', 5, (t) => hostStdioSocketOption(t) ?? either(t, t.argInt(0), (f) => hostInetGetsockopt(t, f, t.argInt(1), t.argInt(2), t.arg(3), t.arg(4)), (f) => getsockopt(t, f, t.argInt(1), t.argInt(2), t.arg(3), t.arg(4))), 'partial', 'options are stored and read back; they change no behaviour (--network=host: the host\'s)'),
  syscall('setsockopt', 5, (t) => either(t, t.argInt(0), (f) => hostInetSetsockopt(t, f, t.argInt(1), t.argInt(2), t.arg(3), t.argInt(4)), (f) => setsockopt(t, f, t.argInt(1), t.argInt(2), t.arg(3), t.argInt(4))), 'partial', 'options are stored and read back; they change no behaviour (--network=host: given to the host, except those holding pointers or fds)'),
  syscall('getsockname', 3, (t) => hostStdioSocketAddress(t, false) ?? either(t, t.argInt(0), (f) => hostInetName(t, f, t.arg(1), t.arg(2), false), (f) => { const s = so(f); writeAddr(t, t.arg(1), t.arg(2), s.local, s.domain!); return 0; })),
  syscall('getpeername', 3, (t) => hostStdioSocketAddress(t, true) ?? either(t, t.argInt(0), (f) => hostInetName(t, f, t.arg(1), t.arg(2), true), (f) => { const s = so(f); if (!s.peer && s.state !== 'connected') return -E.ENOTCONN; writeAddr(t, t.arg(1), t.arg(2), s.peer, s.domain!); return 0; })),
];
