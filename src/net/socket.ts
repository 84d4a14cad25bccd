/**
 * Sockets (man 7 socket, unix, ip, ipv6, tcp, udp): the sandbox has its own loopback network and
 * nothing else. AF_INET/AF_INET6 on 127.0.0.0/8, ::1 and IPv4-mapped ::ffff:127.0.0.0/104 (an
 * AF_INET6 socket without IPV6_V6ONLY talks to AF_INET ones), and AF_UNIX (paths, abstract and
 * autobound names: src/net/unix.ts), stream, datagram and (unix) seqpacket. A connected stream is two pipes in the graph (each end reads
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
import type { NetState, PipeState, SockAddr, SocketMessage, SocketState, UCred } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import { bindName, netState, refOps, releaseUninstalled, setSocket, socketPath } from './door.js';

export { setSocket } from './door.js';
import { AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, AF_UNSPEC, SOL_NETLINK, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPV6_HOPLIMIT, IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS, IPV6_TCLASS, IPV6_UNICAST_HOPS, IPV6_V6ONLY, MSG_CMSG_CLOEXEC, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, O_NONBLOCK, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_SEQPACKET, SOCK_STREAM, SOCK_TYPE_MASK, SOL_SOCKET, SO_ACCEPTCONN, SO_DOMAIN, SO_ERROR, SO_PEERCRED, SO_PROTOCOL, SO_RCVBUF, SO_SNDBUF, SO_TYPE } from '../abi/linux.js';
import { ControlWriter, parseControl, peerCredOf, senderCred, type SendControl } from './cmsg.js';
import { INTERFACE_IOCTLS, decodeNetlinkAddr, encodeNetlinkAddr, interfaceIoctl, isNetlink, netlinkBind, netlinkRequest } from './netlink.js';
import { MESSAGE_OVERHEAD, NO_PEER_CRED, UNIX_QUEUE_BYTES, dropMessages, passcred, peerOf, queuedBytes, unixAutobind, unixBind, unixDisconnect, unixLookup, unixSend } from './unix.js';

/** Bytes of datagrams a UDP socket may have queued before senders' messages are dropped. */
const DGRAM_QUEUE_BYTES = UNIX_QUEUE_BYTES;
const DGRAM_MESSAGE_OVERHEAD = MESSAGE_OVERHEAD;
const EPHEMERAL_FIRST = 32768, EPHEMERAL_LAST = 60999;

export const so = (f: SocketFile): SocketState => f.socket;
const nonblocking = (f: SocketFile, flags: number) => !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT);

function net(t: Task): NetState {
  return netState(t.kernel);
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

/** The IPv4 address an AF_INET address or an IPv4-mapped IPv6 one (::ffff:a.b.c.d) stands for; undefined for other IPv6 ones. */
function v4Of(a: SockAddr): string | undefined {
  if (a.family === AF_INET) return a.ip;
  return a.ip?.startsWith('::ffff:') && a.ip.includes('.') ? a.ip.slice(7) : undefined;
}

/** `a` as a socket of `family` sees it: an AF_INET address to an AF_INET6 socket is IPv4-mapped, a mapped one to AF_INET is plain. */
function asFamily(a: SockAddr | undefined, family: number): SockAddr | undefined {
  if (!a || a.family === family || a.family === AF_UNIX) return a;
  if (family === AF_INET6) return { family, ip: `::ffff:${a.ip}`, port: a.port };
  const v4 = v4Of(a);
  return v4 ? { family, ip: v4, port: a.port } : a;
}

/** 16 bytes of an IPv6 address in our canonical text form (also '::ffff:a.b.c.d'). */
function v6Bytes(ip: string): Uint8Array {
  const b = new Uint8Array(16);
  let s = ip;
  const dot = s.lastIndexOf(':');
  if (s.includes('.')) { // a trailing dotted quad
    s.slice(dot + 1).split('.').forEach((x, i) => { b[12 + i] = Number(x); });
    s = s.slice(0, dot + 1) + '0:0';
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const hw = head ? head.split(':') : [];
  const tw = tail ? tail.split(':') : [];
  const words = tail === undefined ? hw : [...hw, ...Array(8 - hw.length - tw.length).fill('0'), ...tw];
  words.forEach((w, i) => { if (i < 6 || !ip.includes('.')) { const n = parseInt(w || '0', 16); b[i * 2] = n >> 8; b[i * 2 + 1] = n & 0xff; } });
  return b;
}

/** The canonical text of 16 IPv6 bytes (RFC 5952: lower case, the longest run of zero words as '::'; IPv4-mapped as ::ffff:a.b.c.d). */
export function v6String(b: Uint8Array): string {
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const w = Array.from({ length: 8 }, (_, i) => (b[i * 2] << 8) | b[i * 2 + 1]);
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = w.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * Decode a guest sockaddr of `len` bytes for a socket of `domain`. EINVAL for a short one or,
 * on a unix socket, another family; EAFNOSUPPORT for another family on an inet socket.
 */
export function readAddr(t: Task, addr: number, len: number, domain: number): SockAddr {
  if (len < 2 || (len | 0) < 0) throw new SyscallError(E.EINVAL);
  const b = t.mm.read(addr, Math.min(len, 128));
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const family = v.getUint16(0, true);
  if (family !== domain) throw new SyscallError(domain === AF_UNIX || domain === AF_NETLINK ? E.EINVAL : E.EAFNOSUPPORT);
  if (family === AF_NETLINK) return decodeNetlinkAddr(b, len);
  if (family === AF_INET) {
    if (len < 16) throw new SyscallError(E.EINVAL);
    return { family, port: v.getUint16(2, false), ip: [...b.subarray(4, 8)].join('.') };
  }
  if (family === AF_INET6) {
    if (len < 24) throw new SyscallError(E.EINVAL);
    return { family, port: v.getUint16(2, false), ip: v6String(b.subarray(8, 24)) };
  }
  if (len > 110) throw new SyscallError(E.EINVAL);
  // AF_UNIX: a path (NUL-terminated within len) or an abstract name (leading NUL, every byte of len).
  const raw = b.subarray(2, len);
  if (raw.length && raw[0] === 0) return { family, path: '\0' + Buffer.from(raw.subarray(1)).toString('latin1') };
  const nul = raw.indexOf(0);
  return { family, path: Buffer.from(nul >= 0 ? raw.subarray(0, nul) : raw).toString('latin1') };
}

/** Encode a sockaddr; returns the bytes (the full length the kernel reports). */
export function encodeAddr(a: SockAddr | undefined, domain: number): Uint8Array {
  const fam = a?.family ?? domain;
  if (fam === AF_NETLINK) return encodeNetlinkAddr(a);
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
    b.set(v6Bytes(a?.ip ?? '::'), 8);
    return b;
  }
  const path = a?.path ? Buffer.from(a.path, 'latin1') : Buffer.alloc(0);
  const b = new Uint8Array(2 + path.length + (path.length && path[0] !== 0 ? 1 : 0));
  new DataView(b.buffer).setUint16(0, AF_UNIX, true);
  b.set(path, 2);
  return b;
}

/** Store a sockaddr at addr with its length at lenAddr (truncated to the room given, as Linux does). EINVAL for a negative room. */
export function writeAddr(t: Task, addr: number, lenAddr: number, a: SockAddr | undefined, domain: number): void {
  if (!addr || !lenAddr) return;
  const bytes = encodeAddr(a, domain);
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) throw new SyscallError(E.EINVAL);
  t.mm.write(addr, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, bytes.length);
}

/**
 * The sender's address as recvfrom/recvmsg give it (unix_copy_addr, inet's msg_name): an unnamed
 * unix sender, or none (a stream's bytes), gives length 0.
 */
function writeFrom(t: Task, addr: number, lenAddr: number, a: SockAddr | undefined, domain: number): void {
  if (!addr || !lenAddr) return;
  if (!a || (a.family === AF_UNIX && !a.path)) { t.mm.writeU32(lenAddr, 0); return; }
  writeAddr(t, addr, lenAddr, asFamily(a, domain), domain);
}

/**
 * Key of a bound address in the port table (all loopback addresses of a family share ports).
 * `space`: the socket type, or 'udplite' (UDP-Lite has its own ports).
 */
function key(type: number | string, a: SockAddr): string {
  if (a.family === AF_UNIX) return `unix:${type}:${a.path}`;
  return `${a.family === AF_INET6 ? 'in6' : 'in'}:${type}:${a.port}`;
}

/** An AF_INET6 socket that also takes IPv4 traffic: bound to :: or a mapped address, without IPV6_V6ONLY. */
function dualStack(s: SocketState): boolean {
  return s.domain === AF_INET6 && !s.opts?.[`${IPPROTO_IPV6}:${IPV6_V6ONLY}`] && (s.local?.ip === '::' || !!(s.local && v4Of(s.local)));
}

/** The socket holding port `port` of `family` for `type`, if any. */
function holder(t: Task, type: number | string, family: number, port: number): SocketFile | undefined {
  const id = net(t).bound[key(type, { family, port })];
  return id === undefined ? undefined : t.kernel.state.openFiles[id] as SocketFile | undefined;
}

/** Whether an inet bind of `family`/`port` clashes: the port is taken in the family, or across families by a dual-stack socket. */
function portTaken(t: Task, type: number | string, family: number, port: number, dual: boolean): boolean {
  if (holder(t, type, family, port)) return true;
  if (family === AF_INET) { const h = holder(t, type, AF_INET6, port); return !!h && dualStack(h.socket); }
  return dual && !!holder(t, type, AF_INET, port);
}

function ephemeralPort(t: Task, type: number | string, family: number, dual: boolean): number {
  const n = net(t);
  for (let i = 0; i <= EPHEMERAL_LAST - EPHEMERAL_FIRST; i++) {
    const port = n.nextPort;
    t.kernel.stage([['set', ['net', 'nextPort'], port >= EPHEMERAL_LAST ? EPHEMERAL_FIRST : port + 1]]);
    if (!portTaken(t, type, family, port, dual)) return port;
  }
  throw new SyscallError(E.EADDRINUSE);
}

/** The port table an inet socket's ports are in: its type's, or UDP-Lite's own. */
const portSpace = (s: SocketState): number | string => (s.protocol === IPPROTO_UDPLITE ? 'udplite' : s.type!);

function loopbackOf(family: number): string { return family === AF_INET6 ? '::1' : '127.0.0.1'; }

/**
 * Bind `f` to `a` (port 0: an ephemeral one). Unix names: src/net/unix.ts unixBind. Inet:
 * EADDRINUSE (the port is taken, also across AF_INET and a dual-stack AF_INET6 socket),
 * EADDRNOTAVAIL (not a loopback or wildcard address), EINVAL if already bound.
 */
export function doBind(t: Task, f: SocketFile, a: SockAddr): void {
  const s = so(f);
  if (a.family === AF_UNIX) { unixBind(t, f, a); return; }
  if (a.family === AF_NETLINK) { netlinkBind(t, f, a); return; }
  if (s.local) throw new SyscallError(E.EINVAL);
  const ip = a.ip!;
  const any = ip === '0.0.0.0' || ip === '::';
  const v4 = a.family === AF_INET6 ? v4Of(a) : ip;
  const loop = a.family === AF_INET6 && v4 === undefined ? ip === '::1' : v4 !== undefined && (isLoopbackV4(v4) || v4 === '0.0.0.0');
  if (!any && !loop) throw new SyscallError(E.EADDRNOTAVAIL);
  if (a.family === AF_INET6 && v4 !== undefined && s.opts?.[`${IPPROTO_IPV6}:${IPV6_V6ONLY}`]) throw new SyscallError(E.EINVAL);
  const dual = a.family === AF_INET6 && !s.opts?.[`${IPPROTO_IPV6}:${IPV6_V6ONLY}`] && (any || v4 !== undefined);
  if (a.port && portTaken(t, portSpace(s), a.family, a.port, dual)) throw new SyscallError(E.EADDRINUSE);
  a = { family: a.family, ip, port: a.port || ephemeralPort(t, portSpace(s), a.family, dual) };
  const k = key(portSpace(s), a);
  bindName(t.kernel, f, k, { boundKey: k, local: a, state: 'bound' });
}

/** An inet socket's implicit bind before it sends or connects: the wildcard address and an ephemeral port (getsockname shows the wildcard until a connect picks a source). */
function autobind(t: Task, f: SocketFile): void {
  const s = so(f);
  if (s.local || s.domain === AF_UNIX) return;
  doBind(t, f, { family: s.domain!, ip: s.domain === AF_INET6 ? '::' : '0.0.0.0', port: 0 });
}

/** The address a socket's packets to `dest` come from: its bound one, the wildcard replaced by loopback (IPv4-mapped to an IPv4 destination). */
function sourceOf(s: SocketState, dest?: SockAddr): SockAddr {
  const l = s.local;
  if (!l) return { family: AF_UNIX, path: '' };
  if (l.family === AF_UNIX || (l.ip !== '0.0.0.0' && l.ip !== '::')) return l;
  if (l.family === AF_INET6 && dest && v4Of(dest) !== undefined) return { ...l, ip: '::ffff:127.0.0.1' };
  return { ...l, ip: loopbackOf(l.family) };
}

/** A destination as a connect or sendto reaches it: the wildcard means loopback. */
function reached(a: SockAddr): SockAddr {
  if (a.ip === '0.0.0.0') return { ...a, ip: '127.0.0.1' };
  if (a.ip === '::') return { ...a, ip: '::1' };
  if (a.ip === '::ffff:0.0.0.0') return { ...a, ip: '::ffff:127.0.0.1' };
  return a;
}

/**
 * The inet socket bound to `a` for `type`, if any (connect and sendto targets): an IPv4 (or
 * IPv4-mapped) destination reaches AF_INET sockets and dual-stack AF_INET6 ones; an IPv6 one only
 * AF_INET6 sockets. ENETUNREACH for a non-loopback address; a pure-IPv6 destination from an
 * IPV6_V6ONLY-less socket is fine, a mapped one from an IPV6_V6ONLY socket is ENETUNREACH.
 */
function lookup(t: Task, type: number | string, a: SockAddr): SocketFile | undefined {
  const v4 = v4Of(a);
  if (v4 !== undefined) {
    if (!isLoopbackV4(v4) && v4 !== '0.0.0.0') throw new SyscallError(E.ENETUNREACH);
    const h4 = holder(t, type, AF_INET, a.port!);
    if (h4) return h4;
    const h6 = holder(t, type, AF_INET6, a.port!);
    return h6 && dualStack(h6.socket) ? h6 : undefined;
  }
  if (a.ip !== '::1' && a.ip !== '::') throw new SyscallError(E.ENETUNREACH);
  return holder(t, type, AF_INET6, a.port!);
}

// ---- socket(2) and friends ----

/** A new socket open file (refs 0 until installed); SOCK_NONBLOCK in `type` sets O_NONBLOCK. */
export function newSocket(t: Task, domain: number, type: number, state: SocketState): SocketFile {
  const owner: [number, number] = [t.tg.cred?.fsuid ?? t.tg.uid, t.tg.cred?.fsgid ?? t.tg.gid];
  return t.kernel.newOpenFile({ kind: 'socket', path: `socket:[${t.kernel.state.nextId}]`, flags: 2 | (type & SOCK_NONBLOCK ? O_NONBLOCK : 0), socket: { owner, ...state, domain, type: type & SOCK_TYPE_MASK } });
}

/** Install a socket at the lowest free fd; on EMFILE the socket is released. Returns the fd or -EMFILE. */
export function installSocket(t: Task, f: SocketFile, cloexec: boolean): number {
  const fd = t.kernel.installFd(t, f.id, cloexec);
  if (fd < 0) releaseUninstalled(t.kernel, f.id);
  return fd;
}

/**
 * listen(2): EOPNOTSUPP for datagram sockets, EINVAL for a connected one or an unbound unix
 * one (unix_listen); an inet socket is bound to an ephemeral port first. A unix listener records
 * its caller's identity: connecting clients see it as SO_PEERCRED.
 */
export function listen(t: Task, fd: number, backlog: number): number {
  const f = sockFile(t, fd);
  const s = so(f);
  if (s.type === SOCK_DGRAM || isNetlink(s)) return -E.EOPNOTSUPP;
  if (s.state === 'connected' || s.pairPeer !== undefined) return -E.EINVAL;
  if (s.domain === AF_UNIX) {
    if (!s.local?.path) return -E.EINVAL;
    setSocket(t.kernel, f, 'listen', { peerCred: peerCredOf(t) });
  }
  autobind(t, f);
  setSocket(t.kernel, f, 'listen', { state: 'listening', backlog: s.backlog ?? [], backlogMax: Math.max(1, Math.min(backlog, 4096)) });
  wake(t, f.id);
  return 0;
}

/**
 * connect(2). Datagram: sets the default destination (unix: the socket found at the address,
 * which must exist and take our messages; AF_UNSPEC disconnects). Stream and seqpacket: a
 * connection is queued on the listener at once (loopback never waits): a stream is a pair of
 * pipes, a unix seqpacket connection two sockets that are each other's peer. Errors: EISCONN,
 * EINVAL (listening), ECONNREFUSED (nobody listening), EAGAIN (backlog full: a blocking unix
 * connect waits for room, a 'connect' waiter, as unix_wait_for_peer), ENOENT,
 * EPROTOTYPE (unix), ENETUNREACH, EPERM (a unix datagram target connected elsewhere).
 */
export function connect(t: Task, fd: number, addrPtr: number, len: number, mayWait = true): SyscallResult {
  const f = sockFile(t, fd);
  const s = so(f);
  if (s.domain === AF_UNIX && s.type === SOCK_DGRAM && len >= 2 && (t.mm.read(addrPtr, 2)[0] | t.mm.read(addrPtr, 2)[1]) === AF_UNSPEC) {
    unixDisconnect(t.kernel, f); // unix_dgram_connect: AF_UNSPEC dissolves the association
    return 0;
  }
  const a = readAddr(t, addrPtr, len, s.domain!);
  if (isNetlink(s)) { // netlink_connect: autobind, then the default destination
    netlinkBind(t, f, { family: AF_NETLINK, port: 0 });
    setSocket(t.kernel, f, 'connect', { peer: a });
    return 0;
  }
  if (s.type === SOCK_DGRAM) {
    if (s.domain === AF_UNIX) {
      if (passcred(s)) unixAutobind(t, f);
      const target = unixLookup(t, SOCK_DGRAM, a);
      const tp = target.socket.pairPeer;
      if (target.id !== f.id && tp !== undefined && tp !== f.id && peerOf(t.kernel, target.socket)) return -E.EPERM;
      setSocket(t.kernel, f, 'connect', { pairPeer: target.id, peer: target.socket.local, state: 'connected' });
      return 0;
    }
    autobind(t, f);
    const peer = reached(a);
    setSocket(t.kernel, f, 'connect', { peer, local: sourceOf(s, peer) });
    return 0;
  }
  if (s.state === 'connected' || s.pairPeer !== undefined) return -E.EISCONN;
  if (s.state === 'listening') return -E.EINVAL;
  let listener: SocketFile | undefined;
  if (s.domain === AF_UNIX) {
    listener = unixLookup(t, s.type!, a);
    if (listener.socket.state !== 'listening') return -E.ECONNREFUSED;
  } else {
    listener = lookup(t, SOCK_STREAM, a);
    if (!listener || listener.socket.state !== 'listening') return -E.ECONNREFUSED;
  }
  const ls = so(listener);
  if (ls.backlog!.length > ls.backlogMax!) {
    if (!mayWait || s.domain !== AF_UNIX || (f.flags & O_NONBLOCK)) return -E.EAGAIN;
    const retry = () => {
      let r: number;
      try { r = connect(t, fd, addrPtr, len, false) as number; } catch (e) { if (e instanceof SyscallError) return -e.errno; throw e; }
      return r === -E.EAGAIN ? undefined : r;
    };
    return { waiter: { kind: 'connect', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, listener.id), retry) };
  }
  if (s.domain === AF_UNIX && passcred(s)) unixAutobind(t, f);
  const dest = s.domain === AF_UNIX ? ls.local! : reached(a);
  autobind(t, f);
  if (s.domain !== AF_UNIX) setSocket(t.kernel, f, 'source', { local: sourceOf(s, dest) });
  const k = t.kernel;
  const serverSide: SocketState = {
    rx: 0, tx: 0, shutRd: false, shutWr: false, state: 'connected', opts: {},
    local: s.domain === AF_UNIX ? ls.local : asFamily(dest, ls.domain!), peer: asFamily(s.local, ls.domain!) ?? { family: AF_UNIX, path: '' },
    peerCred: s.domain === AF_UNIX ? peerCredOf(t) : undefined,
  };
  let server: SocketFile;
  if (s.type === SOCK_SEQPACKET) {
    server = newSocket(t, AF_UNIX, SOCK_SEQPACKET, { ...serverSide, dgrams: [], pairPeer: f.id });
    setSocket(k, f, 'connect', { pairPeer: server.id, dgrams: s.dgrams ?? [] });
  } else {
    const up = k.pipes.newPipe(1, 1), down = k.pipes.newPipe(1, 1);
    server = newSocket(t, s.domain!, SOCK_STREAM, { ...serverSide, rx: up.id, tx: down.id });
    setSocket(k, f, 'connect', { rx: down.id, tx: up.id });
  }
  k.emit({ type: 'socket.connect', fileId: f.id, listener: listener.id, server: server.id }, [['splice', socketPath(listener, 'backlog'), ls.backlog!.length, 0, server.id]]);
  setSocket(k, f, 'connect', { state: 'connected', peer: s.domain === AF_UNIX ? ls.local : dest, ...(s.domain === AF_UNIX ? { peerCred: ls.peerCred } : {}) });
  wake(t, listener.id);
  // A non-blocking TCP connect reports EINPROGRESS even on loopback (the connection is made;
  // poll shows it writable and SO_ERROR reads 0), as Linux does; AF_UNIX completes at once.
  return s.domain !== AF_UNIX && (f.flags & O_NONBLOCK) ? -E.EINPROGRESS : 0;
}

/** accept4(2): the oldest queued connection, with its peer's address. EINVAL (not listening, bad flags), EOPNOTSUPP (datagram), EAGAIN, EMFILE. */
export function accept(t: Task, fd: number, addr: number, lenAddr: number, flags: number): SyscallResult {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  const f = sockFile(t, fd);
  const s = so(f);
  if (s.type === SOCK_DGRAM || isNetlink(s)) return -E.EOPNOTSUPP;
  if (s.state !== 'listening') return -E.EINVAL;
  const attempt = (): number | undefined => {
    const id = s.backlog?.[0];
    if (id === undefined) return undefined;
    const c = t.kernel.state.openFiles[id] as SocketFile;
    // The accepted socket's inode is made by accept (sock_alloc): owned by the acceptor.
    t.kernel.emit({ type: 'socket.accept', fileId: f.id, conn: id }, [['splice', socketPath(f, 'backlog'), 0, 1], ['set', socketPath(c, 'owner'), [t.tg.cred?.fsuid ?? t.tg.uid, t.tg.cred?.fsgid ?? t.tg.gid]]]);
    if (flags & SOCK_NONBLOCK) t.kernel.setFileFlags(c, c.flags | O_NONBLOCK);
    wake(t, f.id); // room in the backlog for a connect waiting on it
    writeAddr(t, addr, lenAddr, so(c).peer, s.domain!);
    return installSocket(t, c, !!(flags & SOCK_CLOEXEC));
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & O_NONBLOCK) return -E.EAGAIN;
  return { waiter: { kind: 'accept', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, f.id), attempt) };
}

// ---- data ----

/** read/recv/recvfrom on a socket into one buffer. `from`: recvfrom's [address, length address]. */
export function socketRead(t: Task, f: SocketFile, buf: number, count: number, flags = 0, from?: [number, number]): SyscallResult {
  const s = so(f);
  if (s.type === SOCK_DGRAM || s.type === SOCK_SEQPACKET || isNetlink(s)) return messageRecv(t, f, flags, { iov: [[buf, count]], name: from });
  return streamRecv(t, f, flags, { iov: [[buf, count]], name: from });
}

/** write/send/sendto on a socket: EPIPE (and SIGPIPE unless MSG_NOSIGNAL) once the peer is gone. */
export function socketWrite(t: Task, f: SocketFile, buf: number | Uint8Array, count: number, flags = 0, to?: SockAddr, cred?: UCred): SyscallResult {
  const s = so(f);
  const data = () => (typeof buf !== 'number' ? buf : count ? new Uint8Array(t.mm.read(buf, count)) : new Uint8Array(0));
  if (isNetlink(s)) return netlinkSend(t, f, data, count, to);
  if (s.domain === AF_UNIX && s.type !== SOCK_STREAM) return unixSend(t, f, data, count, flags, to, { fds: [] });
  if (s.type === SOCK_DGRAM) return dgramSend(t, f, data, count, to);
  if (to && s.domain === AF_UNIX) return s.state === 'connected' ? -E.EISCONN : -E.EOPNOTSUPP;
  if (s.state !== 'connected') return -E.ENOTCONN;
  if (s.shutWr) {
    if (!(flags & MSG_NOSIGNAL)) t.kernel.signals.send(t.tgid, 13, { signo: 13, code: 0, pid: t.tgid }, t.tid);
    return -E.EPIPE;
  }
  if (s.domain === AF_UNIX) noteWriter(t, s, cred ?? senderCred(t));
  else {
    const p = t.kernel.state.pipes[s.tx];
    if (!p || p.readers === 0) {
      // TCP: the first bytes to a closed peer are sent (and lost); the peer answers with a reset
      // (tcp_reset in CLOSE_WAIT: EPIPE in SO_ERROR); writes after that fail EPIPE.
      if (!s.reset) { setSocket(t.kernel, f, 'reset', { reset: true, error: E.EPIPE }); wake(t, f.id); return count; }
      if (s.error !== undefined) setSocket(t.kernel, f, 'error', { error: undefined }); // the pending error is what this call reports
    }
  }
  return t.kernel.pipes.write(t, f, buf, count, s.tx, nonblocking(f, flags), !(flags & MSG_NOSIGNAL));
}

const sameCred = (a: UCred, b: UCred) => a.pid === b.pid && a.uid === b.uid && a.gid === b.gid;

/** Record who writes the next bytes of a unix stream (a new PipeState.creds entry when the writer changes). */
function noteWriter(t: Task, s: SocketState, cred: UCred): void {
  const p = t.kernel.state.pipes[s.tx];
  if (!p) return;
  const last = p.creds?.[p.creds.length - 1];
  if (last && sameCred(last.cred, cred)) return;
  const at = p.written ?? 0;
  const k = t.kernel;
  if (last && last.at === at) k.emit({ type: 'socket.cred', pipe: p.id }, [['set', ['pipes', p.id, 'creds', p.creds!.length - 1, 'cred'], cred]]); // nothing was written with the previous one
  else k.emit({ type: 'socket.cred', pipe: p.id }, [...(p.creds ? [] : [['set', ['pipes', p.id, 'creds'], []] as GraphOp]), ['splice', ['pipes', p.id, 'creds'], p.creds?.length ?? 0, 0, { at, cred }]]);
}

/** The writer of the next byte a unix stream's reader gets, and how many bytes from there it wrote; earlier entries pruned. */
function writerAt(k: Kernel, p: PipeState): { cred?: UCred; run: number } {
  const pos = p.readTotal ?? 0;
  let c = p.creds;
  if (!c?.length) return { run: Infinity };
  let drop = 0;
  while (drop + 1 < c.length && c[drop + 1].at <= pos) drop++;
  if (drop) { k.emit({ type: 'socket.cred', pipe: p.id }, [['splice', ['pipes', p.id, 'creds'], 0, drop]]); c = p.creds!; }
  const run = c.length > 1 ? c[1].at - pos : Infinity;
  return { cred: c[0].at <= pos ? c[0].cred : undefined, run };
}

/** A message to the kernel on a netlink socket (autobinds it): answered into its queue. ECONNREFUSED for another socket's port id. */
function netlinkSend(t: Task, f: SocketFile, data: () => Uint8Array, count: number, to: SockAddr | undefined): number {
  netlinkBind(t, f, { family: AF_NETLINK, port: 0 });
  if ((to ?? f.socket.peer)?.port) return -E.ECONNREFUSED;
  netlinkRequest(t, f, data());
  return count;
}

/** A UDP datagram to `to` (or the connected peer): lost if nobody is bound there or the queue is full, as on a network. EDESTADDRREQ, EMSGSIZE, ENETUNREACH. */
function dgramSend(t: Task, f: SocketFile, data: () => Uint8Array, count: number, to: SockAddr | undefined, ctl?: SendControl): number {
  const s = so(f);
  const dest = to ? reached(to) : s.peer;
  if (!dest) return -E.EDESTADDRREQ;
  if (count > 65507 && s.domain !== AF_UNIX) return -E.EMSGSIZE;
  autobind(t, f);
  const target = lookup(t, portSpace(s), dest);
  const bytes = data();
  if (!target) return count; // UDP to a closed port: the datagram is lost
  const ts = so(target);
  if (queuedBytes(ts.dgrams!) + count + DGRAM_MESSAGE_OVERHEAD > DGRAM_QUEUE_BYTES) return count;
  let m: SocketMessage = { from: sourceOf(s, dest), data: bytes };
  if (s.domain === AF_INET6) {
    // The hop limit and traffic class: the message's own, else the socket's options, else Linux's defaults (64, 0).
    const hops = ctl?.hopLimit ?? -1, tc = ctl?.tclass ?? -1;
    const optHops = s.opts?.[`${IPPROTO_IPV6}:${IPV6_UNICAST_HOPS}`] ?? -1, optTc = s.opts?.[`${IPPROTO_IPV6}:${IPV6_TCLASS}`] ?? -1;
    m = { ...m, hopLimit: hops >= 0 ? hops : optHops >= 0 ? optHops : 64, tclass: tc >= 0 ? tc : optTc >= 0 ? optTc : 0 };
  }
  t.kernel.emit({ type: 'socket.queue', fileId: target.id, len: bytes.length }, [['splice', socketPath(target, 'dgrams'), ts.dgrams!.length, 0, m]]);
  wake(t, target.id);
  return count;
}

/** Where a receive puts what it gets: the data's buffers, the sender's address, and (recvmsg) the msghdr with its control buffer. */
interface RecvInto {
  iov: Array<[number, number]>;
  /** Address buffer and the address of its length (recvfrom's arguments, or msg_name and &msg_namelen). */
  name?: [number, number];
  /** recvmsg: the msghdr's guest address (msg_controllen and msg_flags are written back) and its control buffer. */
  msg?: { hdr: number; ctl: number; ctlLen: number };
}

/** Copy `data` across the buffers in order; returns the bytes copied. */
function scatter(t: Task, iov: Array<[number, number]>, data: Uint8Array): number {
  let off = 0;
  for (const [base, len] of iov) {
    if (off >= data.length) break;
    const n = Math.min(len, data.length - off);
    if (n > 0) t.mm.write(base, data.subarray(off, off + n));
    off += n;
  }
  return off;
}

/** Files arriving with a message (SCM_RIGHTS): installed while the control buffer has room, the rest closed (MSG_CTRUNC); a peek installs copies. */
function deliverRights(t: Task, w: ControlWriter | undefined, fileIds: number[], flags: number): void {
  const room = w ? w.fdRoom() : 0;
  const fds: number[] = [];
  fileIds.forEach((id, i) => {
    if (w && i < room) {
      const fd = t.kernel.installFd(t, id, !!(flags & MSG_CMSG_CLOEXEC));
      if (fd >= 0) fds.push(fd);
    }
    if (!(flags & MSG_PEEK)) t.kernel.unrefFile(id); // the reference the message held
  });
  w?.putRights(fds, fileIds.length);
}

/** Write back msg_controllen and msg_flags of a recvmsg. */
function finishMsg(t: Task, into: RecvInto, w: ControlWriter | undefined, flags: number): void {
  if (!into.msg) return;
  const done = w ? w.finish() : { controllen: 0, flags: 0 };
  t.mm.writeU64(into.msg.hdr + 40, done.controllen);
  t.mm.writeU32(into.msg.hdr + 48, flags | done.flags);
}

/**
 * Receive one message of a datagram or seqpacket socket (unix_dgram_recvmsg, udp_recvmsg): its
 * bytes scattered over the buffers (the rest dropped, MSG_TRUNC in msg_flags; the MSG_TRUNC flag
 * returns the whole length), the sender's address, and for unix sockets SCM_CREDENTIALS (with
 * SO_PASSCRED) and SCM_RIGHTS. A seqpacket socket reads 0 at end of file (peer gone or shut,
 * or this end shut for reading). ENOTCONN for an unconnected seqpacket socket; EAGAIN, or a
 * 'recv' waiter when blocking.
 */
function messageRecv(t: Task, f: SocketFile, flags: number, into: RecvInto): SyscallResult {
  const s = so(f);
  const seq = s.type === SOCK_SEQPACKET;
  if (seq && s.pairPeer === undefined) return -E.ENOTCONN;
  const attempt = (): number | undefined => {
    const d = s.dgrams![0];
    if (!d) {
      const peer = peerOf(t.kernel, s);
      if (!(s.shutRd || (seq && (!peer || peer.socket.shutWr)))) return undefined;
      if (into.name) t.mm.writeU32(into.name[1], 0);
      finishMsg(t, into, undefined, 0);
      return 0;
    }
    if (!(flags & MSG_PEEK)) {
      t.kernel.emit({ type: 'socket.dequeue', fileId: f.id, len: d.data.length }, [['splice', socketPath(f, 'dgrams'), 0, 1]]);
      if (s.domain === AF_UNIX) wake(t, f.id); // room again for a sender blocked on this queue
    }
    const n = scatter(t, into.iov, d.data);
    if (into.name) writeFrom(t, into.name[0], into.name[1], d.from, s.domain!);
    const w = into.msg ? new ControlWriter(t, into.msg.ctl, into.msg.ctlLen) : undefined;
    if (w && s.domain === AF_UNIX && passcred(s)) w.putCreds(d.creds ?? NO_PEER_CRED);
    if (d.fileIds?.length) deliverRights(t, w, [...d.fileIds], flags);
    if (w && s.domain === AF_INET6) { // ip6_datagram_recv_specific_ctl's order: hop limit, then traffic class
      if (s.opts?.[`${IPPROTO_IPV6}:${IPV6_RECVHOPLIMIT}`]) w.putInt(IPPROTO_IPV6, IPV6_HOPLIMIT, d.hopLimit ?? 64);
      if (s.opts?.[`${IPPROTO_IPV6}:${IPV6_RECVTCLASS}`]) w.putInt(IPPROTO_IPV6, IPV6_TCLASS, d.tclass ?? 0);
    }
    finishMsg(t, into, w, n < d.data.length ? MSG_TRUNC : 0);
    return flags & MSG_TRUNC ? d.data.length : n;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return { waiter: { kind: 'recv', fileId: f.id, interruptible: true, restartable: true }, result$: t.kernel.whenRunnable(changed$(t, f.id), attempt) };
}

/**
 * Receive from a connected stream into the buffers (unix_stream_read_generic, tcp_recvmsg): what
 * is there now, up to the buffers' room, never past bytes that carry passed files (they arrive with
 * their first byte, SCM_RIGHTS); MSG_PEEK copies without consuming. A unix receiver with
 * SO_PASSCRED gets SCM_CREDENTIALS of the bytes' writer (PipeState.creds) and never bytes of two
 * writers in one receive. The sender's address: the unix peer's name; none for TCP.
 * ENOTCONN unconnected; 0 at end of file; EAGAIN or a 'pipe-read' waiter.
 */
function streamRecv(t: Task, f: SocketFile, flags: number, into: RecvInto): SyscallResult {
  const s = so(f);
  const k = t.kernel;
  if (s.state !== 'connected') return s.state === 'listening' && s.domain === AF_UNIX ? -E.EINVAL : -E.ENOTCONN;
  const parts = into.iov.filter(([, n]) => n > 0);
  const done = (n: number, w?: ControlWriter) => {
    if (into.name) writeFrom(t, into.name[0], into.name[1], n > 0 && s.domain === AF_UNIX ? s.peer : undefined, s.domain!);
    finishMsg(t, into, w, 0);
    return n;
  };
  if (s.shutRd) return done(0);
  const attempt = (): number | undefined => {
    const p = k.state.pipes[s.rx];
    // No room: still waits for data or end of file like any receive (the low-water mark is at
    // least 1 byte: sock_rcvlowat), then returns 0 without consuming anything.
    if (!parts.length) return !p || p.len > 0 || p.writers === 0 ? done(0) : undefined;
    if (flags & MSG_PEEK) {
      if (p && p.len > 0) return done(scatter(t, parts, p.buf.subarray(0, p.len)));
      return !p || p.writers === 0 ? done(0) : undefined;
    }
    const rights: number[] = [];
    // With SO_PASSCRED, one receive holds the bytes of one writer only (unix_stream_read_generic).
    const creds = s.domain === AF_UNIX && passcred(s) && p ? writerAt(t.kernel, p) : { run: Infinity, cred: undefined };
    let total = 0;
    for (const [base, len] of parts) {
      // One receive stops before bytes that carry other files.
      if (total > 0 && (rights.length || (p?.rights?.[0] && p.rights[0].at === (p.readTotal ?? 0)))) break;
      const want = Math.min(len, creds.run - total);
      if (want <= 0) break;
      const r = k.pipes.read(t, f, base, want, s.rx, true, (ids) => rights.push(...ids)) as number;
      if (r < 0) { if (total > 0) break; return r === -E.EAGAIN ? undefined : r; }
      total += r;
      if (r < want) break;
    }
    const w = into.msg ? new ControlWriter(t, into.msg.ctl, into.msg.ctlLen) : undefined;
    if (w && total > 0 && s.domain === AF_UNIX && passcred(s)) w.putCreds(creds.cred ?? s.peerCred ?? NO_PEER_CRED);
    if (rights.length) deliverRights(t, w, rights, flags);
    return done(total, w);
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return { waiter: { kind: 'pipe-read', fileId: f.id, interruptible: true, restartable: true }, result$: k.whenRunnable(k.pipes.changed$.pipe(filter((x) => x === s.rx)), attempt) };
}

/** struct msghdr (56 bytes): name, iovecs, control buffer. EMSGSIZE past 1024 iovecs (UIO_MAXIOV), EFAULT. */
function readMsghdr(t: Task, msg: number) {
  const b = t.mm.read(msg, 56);
  const v = new DataView(b.buffer, b.byteOffset, 56);
  const iovAddr = Number(v.getBigUint64(16, true)), iovLen = Number(v.getBigUint64(24, true));
  if (iovLen > 1024) throw new SyscallError(E.EMSGSIZE);
  const iov: Array<[number, number]> = [];
  const raw = iovLen ? t.mm.read(iovAddr, iovLen * 16) : new Uint8Array(0);
  const rv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  for (let i = 0; i < iovLen; i++) iov.push([Number(rv.getBigUint64(i * 16, true)), Number(rv.getBigUint64(i * 16 + 8, true))]);
  return { iov, name: Number(v.getBigUint64(0, true)), nameLen: v.getInt32(8, true), ctl: Number(v.getBigUint64(32, true)), ctlLen: Number(v.getBigUint64(40, true)) };
}

function gather(t: Task, iov: Array<[number, number]>): Uint8Array {
  const total = iov.reduce((n, [, l]) => n + l, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const [base, len] of iov) { if (len) { out.set(t.mm.read(base, len), o); o += len; } }
  return out;
}

/**
 * Attach files to the next byte written to a unix stream (SCM_RIGHTS): each holds a
 * reference while in flight, and arrives with that byte at the receiver's recvmsg.
 */
function attachRights(t: Task, f: SocketFile, fds: number[]): (() => void) | undefined {
  const s = so(f);
  if (!fds.length) return undefined;
  if (s.domain !== AF_UNIX || s.type !== SOCK_STREAM || s.state !== 'connected') throw new SyscallError(s.domain === AF_UNIX ? E.ENOTCONN : E.EINVAL);
  const p = t.kernel.state.pipes[s.tx];
  if (!p) throw new SyscallError(E.EPIPE);
  const fileIds = fds.map((fd) => t.fdTable.fds[fd].fileId);
  const at = p.written ?? 0; // the next byte written
  t.kernel.emit({ type: 'socket.rights', fileId: f.id, count: fileIds.length }, [
    ...refOps(t.kernel, fileIds),
    ...(p.rights ? [] : [['set', ['pipes', p.id, 'rights'], []] as GraphOp]),
    ['splice', ['pipes', p.id, 'rights'], p.rights?.length ?? 0, 0, { at, fileIds }],
  ]);
  return () => { // the send failed: nothing is in flight
    const i = p.rights?.findIndex((r) => r.at === at && r.fileIds.length === fileIds.length && r.fileIds.every((x, j) => x === fileIds[j])) ?? -1;
    if (i >= 0) { t.kernel.emit({ type: 'socket.rights', fileId: f.id, count: 0 }, [['splice', ['pipes', p.id, 'rights'], i, 1]]); for (const id of fileIds) t.kernel.unrefFile(id); }
  };
}

/**
 * sendmsg(2): the buffers gathered into one message (datagram, seqpacket) or written in order
 * (stream), with control messages (src/net/cmsg.ts: SCM_RIGHTS, SCM_CREDENTIALS on unix sockets).
 */
export function sendmsg(t: Task, f: SocketFile, msg: number, flags: number): SyscallResult {
  const s = so(f);
  const { iov, name, nameLen, ctl, ctlLen } = readMsghdr(t, msg);
  const control: SendControl = parseControl(t, ctl, ctlLen, s.domain!, s.type!);
  const to = name && nameLen ? readAddr(t, name, nameLen, s.domain!) : undefined;
  const parts = iov.filter(([, n]) => n > 0);
  const total = parts.reduce((n, [, l]) => n + l, 0);
  if (isNetlink(s)) return netlinkSend(t, f, () => gather(t, parts), total, to);
  if (s.domain === AF_UNIX && s.type !== SOCK_STREAM) return unixSend(t, f, () => gather(t, parts), total, flags, to, control);
  if (s.type === SOCK_DGRAM) return dgramSend(t, f, () => gather(t, parts), total, to, control);
  if (to && s.domain === AF_UNIX) return s.state === 'connected' ? -E.EISCONN : -E.EOPNOTSUPP;
  const undo = attachRights(t, f, control.fds);
  if (parts.length <= 1) {
    const r = socketWrite(t, f, parts[0]?.[0] ?? 0, parts[0]?.[1] ?? 0, flags, undefined, control.creds);
    if (undo && typeof r === 'number' && r <= 0) undo();
    return r;
  }
  // Several buffers on a stream: gathered and written as one send (blocking until all is written).
  const r = socketWrite(t, f, gather(t, parts), total, flags, undefined, control.creds);
  if (undo && typeof r === 'number' && r <= 0) undo();
  return r;
}

/** A socket whose reads and writes are whole messages (datagram, seqpacket, netlink). */
export const isMessageSocket = (f: SocketFile): boolean => f.socket.type === SOCK_DGRAM || f.socket.type === SOCK_SEQPACKET || isNetlink(f.socket);

/** readv(2) on a socket: one receive scattered over the buffers (a datagram is not split between messages). */
export function socketReadv(t: Task, f: SocketFile, iov: Array<[number, number]>): SyscallResult {
  if (!iov.some(([, n]) => n > 0)) return 0; // sock_read_iter: nothing asked, nothing waited for
  return isMessageSocket(f) ? messageRecv(t, f, 0, { iov }) : streamRecv(t, f, 0, { iov });
}

/** writev(2) on a datagram, seqpacket or netlink socket: the buffers gathered into one message. */
export function socketWritev(t: Task, f: SocketFile, iov: Array<[number, number]>): SyscallResult {
  const s = so(f);
  const parts = iov.filter(([, n]) => n > 0);
  const total = parts.reduce((n, [, l]) => n + l, 0);
  if (isNetlink(s)) return netlinkSend(t, f, () => gather(t, parts), total, undefined);
  if (s.domain === AF_UNIX) return unixSend(t, f, () => gather(t, parts), total, 0, undefined, { fds: [] });
  return dgramSend(t, f, () => gather(t, parts), total, undefined);
}

/** recvmsg(2): src/net/socket.ts messageRecv (datagram, seqpacket) or streamRecv; msg_namelen, msg_controllen and msg_flags written back. */
export function recvmsg(t: Task, f: SocketFile, msg: number, flags: number): SyscallResult {
  const { iov, name, ctl, ctlLen } = readMsghdr(t, msg);
  const s = so(f);
  if (!name) t.mm.writeU32(msg + 8, 0);
  const into: RecvInto = { iov, name: name ? [name, msg + 8] : undefined, msg: { hdr: msg, ctl, ctlLen } };
  if (s.type === SOCK_DGRAM || s.type === SOCK_SEQPACKET || isNetlink(s)) return messageRecv(t, f, flags, into);
  return streamRecv(t, f, flags, into);
}

function optKey(level: number, opt: number) { return `${level}:${opt}`; }

export function getsockopt(t: Task, f: SocketFile, level: number, opt: number, val: number, lenAddr: number): number {
  const s = so(f);
  let v: number | Uint8Array;
  if (level === SOL_SOCKET) {
    switch (opt) {
      case SO_TYPE: v = s.type!; break;
      case SO_ERROR: v = s.error ?? 0; if (s.error !== undefined) setSocket(t.kernel, f, 'error', { error: undefined }); break;
      case SO_DOMAIN: v = s.domain!; break;
      case SO_PROTOCOL: v = s.domain === AF_UNIX || isNetlink(s) ? 0 : s.protocol ?? (s.type === SOCK_STREAM ? IPPROTO_TCP : IPPROTO_UDP); break;
      case SO_ACCEPTCONN: v = s.state === 'listening' ? 1 : 0; break;
      case SO_SNDBUF: case SO_RCVBUF: v = s.opts?.[optKey(level, opt)] ?? 212992; break;
      case SO_PEERCRED: {
        const b = new Uint8Array(12);
        const dv = new DataView(b.buffer);
        const c = s.peerCred ?? NO_PEER_CRED;
        dv.setInt32(0, c.pid, true); dv.setUint32(4, c.uid, true); dv.setUint32(8, c.gid, true);
        v = b; break;
      }
      default: v = s.opts?.[optKey(level, opt)] ?? 0;
    }
  } else if (level === IPPROTO_TCP || level === IPPROTO_UDP || level === IPPROTO_UDPLITE || level === SOL_NETLINK || level === 0 /* IP */ || level === 41 /* IPV6 */) {
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
  if (![SOL_SOCKET, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, SOL_NETLINK, 0, 41].includes(level)) return -E.ENOPROTOOPT;
  const s = so(f);
  const v = len >= 4 ? t.mm.readU32(val) | 0 : len >= 1 ? t.mm.read(val, 1)[0] : 0;
  // Buffer sizes read back doubled, as Linux keeps room for its bookkeeping.
  setSocket(t.kernel, f, 'option', { opts: { ...s.opts, [optKey(level, opt)]: level === SOL_SOCKET && (opt === SO_SNDBUF || opt === SO_RCVBUF) ? v * 2 : v } });
  return 0;
}

/**
 * The last fd of a socket closed: connected streams close their pipe ends; bound names are freed;
 * files in flight in its queue are dropped; its peer and senders blocked on it are woken.
 */
export function releaseSocket(k: Kernel, f: SocketFile): void {
  const s = so(f);
  // The other end of a socketpair sees the close (seqpacket: end of file; blocked senders: an error).
  if (s.pairPeer !== undefined) k.pipes.changed$.next(s.pairPeer);
  k.pipes.changed$.next(f.id);
  if (s.rx && !s.shutRd) k.pipes.closeEnd(s.rx, 'read');
  if (s.tx && !s.shutWr) k.pipes.closeEnd(s.tx, 'write');
  const n = k.state.net;
  if (n && s.local && s.type) {
    const kk = s.boundKey ?? key(s.type, s.local);
    if (n.bound[kk] === f.id) k.emit({ type: 'socket.unbind', fileId: f.id }, [['del', ['net', 'bound', kk]]]);
  }
  dropMessages(k, f);
  // Connections nobody accepted are reset.
  for (const id of s.backlog ?? []) {
    const c = k.state.openFiles[id];
    if (c) releaseUninstalled(k, id);
  }
}

/**
 * ioctl(2) on a socket: FIONREAD/SIOCINQ (a stream's or seqpacket socket's unread bytes, the size
 * of the next message of a datagram socket; EINVAL listening), SIOCOUTQ (bytes written and not yet read by the peer), the
 * interface requests of src/net/netlink.ts; ENOTTY for the rest.
 */
export function socketIoctl(t: Task, f: SocketFile, req: number, arg: number): number {
  const s = so(f);
  if (req === 0x541b /* FIONREAD */ || req === 0x5411 /* SIOCOUTQ */) {
    let n = 0;
    if (s.state === 'listening') return -E.EINVAL;
    if (s.dgrams) n = req !== 0x541b ? 0 : s.type === SOCK_SEQPACKET ? s.dgrams.reduce((m, d) => m + d.data.length, 0) : s.dgrams[0]?.data.length ?? 0;
    else n = t.kernel.state.pipes[req === 0x541b ? s.rx : s.tx]?.len ?? 0;
    t.mm.writeU32(arg, n);
    return 0;
  }
  if (INTERFACE_IOCTLS.has(req)) return interfaceIoctl(t, f, req, arg);
  return -E.ENOTTY;
}

/** Poll readiness of a socket (POLLIN 1, POLLOUT 4, POLLERR 8, POLLHUP 0x10, POLLRDHUP 0x2000). */
export function socketReadiness(t: Task, f: SocketFile, pipeBuf: number): number {
  const s = so(f);
  if (s.state === 'listening') return s.backlog!.length ? 1 : 0;
  if (s.pairPeer !== undefined) {
    // unix_dgram_poll: the receive side shut (by this end, or a seqpacket peer's close or SHUT_WR)
    // reads end of file; HUP once both sides are shut or a seqpacket peer is gone; always writable.
    const peer = peerOf(t.kernel, s);
    const seq = s.type === SOCK_SEQPACKET;
    const rcvShut = s.shutRd || (seq && (!peer || so(peer).shutWr));
    const sndShut = s.shutWr || (seq && (!peer || so(peer).shutRd));
    let r = 4 | 0x100;
    if (rcvShut) r |= 1 | 0x40 | 0x2000;
    if ((rcvShut && sndShut) || (seq && !peer)) r |= 0x10;
    if (s.dgrams!.length) r |= 1 | 0x40;
    return r;
  }
  if (s.type === SOCK_DGRAM || isNetlink(s)) return (s.dgrams!.length ? 1 : 0) | 4;
  if (s.state !== 'connected') return 4 | 0x10;
  const rx = t.kernel.state.pipes[s.rx], tx = t.kernel.state.pipes[s.tx];
  if (s.domain !== AF_UNIX) {
    // tcp_poll: a closed peer's FIN reads as end of file (IN, RDHUP); HUP once both directions are
    // shut (our SHUT_WR, or the reset our write drew); writable unless we shut; ERR while SO_ERROR is set.
    const rdShut = s.shutRd || !rx || rx.writers === 0;
    let r = 0;
    if (rdShut || rx.len > 0) r |= 1 | 0x40;
    if (!rx || rx.writers === 0) r |= 0x2000;
    const wrGone = s.shutWr || !!s.reset;
    if (wrGone || !tx || tx.readers === 0 || tx.buf.length - tx.len >= pipeBuf) r |= 4 | 0x100;
    if (rdShut && wrGone) r |= 0x10;
    if (s.error) r |= 8;
    return r;
  }
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
