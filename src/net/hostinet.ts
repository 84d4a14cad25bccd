/**
 * Host-backed sockets (run --network=host; compare gVisor's pkg/sentry/socket/hostinet): a
 * guest's AF_INET/AF_INET6 TCP and UDP socket is a socket of the host's network namespace, so
 * guest clients reach host and remote services and guest servers are reached from the host.
 * AF_UNIX and netlink sockets stay the sandbox's own (src/net/socket.ts).
 *
 * Every host fd is non-blocking (platforms HostSockets); a guest call that would block waits for
 * the host fd's readiness (`whenReady`) the way every waiter of the kernel waits (`whenRunnable`),
 * interruptible by signals, so Node's event loop never blocks. poll/select/epoll see the host's
 * readiness, and wake when it changes: asking a socket's readiness arms a one-shot host watch
 * that announces the change on `Kernel.pipes.changed$` (the file's id).
 *
 * Graph and runtime: the record (src/files/hostinet.ts HostInetState: family, type, state,
 * addresses, options) is plain data; the host fd is runtime, kept here by open-file id. A
 * checkpoint with host-backed sockets is refused (snapshots/checkpoint.ts, naming them:
 * `hostInetDescriptions`) unless the sandbox runs with --tcp-close-on-checkpoint; a restore then
 * (`hostInetRestore`) opens listeners and UDP sockets again on their addresses with their
 * options, and leaves TCP connections reset: ECONNRESET once, then end of file and EPIPE, as a
 * connection whose peer vanished. Errors are the host's errno, passed through.
 */
import { Observable, map, merge } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import { INTERRUPTED, type Block, type Task, type SyscallResult } from '../kernel/task.js';
import { untilDeadline } from '../kernel/deadline.js';
import type { Kernel } from '../kernel/kernel.js';
import type { FileWaiter, PipeWriteWaiter, SockAddr } from '../kernel/state.js';
import type { HostSockets } from '../../platforms/host-services.js';
import type { HostInetFile, HostInetState } from '../files/hostinet.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_PEEK, MSG_TRUNC, MSG_WAITALL, O_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLOUT, POLLPRI, POLLRDHUP, PROT_READ, PROT_WRITE, SIGPIPE, SOCK_CLOEXEC, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_STREAM, SOCK_TYPE_MASK, SOL_SOCKET, SO_ERROR } from '../abi/linux.js';
import { encodeAddr, v6String } from './socket.js';
import { releaseUninstalled } from './door.js';
import { capable, credsOf } from '../kernel/creds.js';

const FIONREAD = 0x541b, SIOCOUTQ = 0x5411;
const ECONNRESET = 104;

// ---- runtime: host fds by open-file id ----

interface Runtime { fds: Map<number, number>; watches: Map<number, { events: number; cancel: () => void }> }
const runtimes = new WeakMap<Kernel, Runtime>();

function runtime(k: Kernel): Runtime {
  let r = runtimes.get(k);
  if (!r) {
    const rt: Runtime = r = { fds: new Map(), watches: new Map() };
    runtimes.set(k, rt);
    // The sandbox is gone (ended, or its kernel destroyed): every host socket it still had is closed.
    const closeAll = (): void => {
      for (const w of rt.watches.values()) w.cancel();
      for (const fd of rt.fds.values()) k.host.sockets.close(fd);
      rt.fds.clear(); rt.watches.clear();
    };
    void k.exited.then(closeAll);
    k.destroyed$.subscribe(closeAll);
  }
  return r;
}

const hs = (k: Kernel): HostSockets => k.host.sockets;
const st = (f: HostInetFile): HostInetState => f.hostinet;

/** Set fields of a host-backed socket's record (undefined deletes): event file.update. */
function update(k: Kernel, f: HostInetFile, what: string, fields: Partial<HostInetState>): void {
  k.emit({ type: 'file.update', fileId: f.id, what: `hostinet.${what}` }, Object.entries(fields).map(([key, v]) => (v === undefined ? ['del', ['openFiles', f.id, 'hostinet', key]] as const : ['set', ['openFiles', f.id, 'hostinet', key], v] as const)));
}

/** The host fd behind `f`: EBADF if it has none (a restored connection that was reset has none). */
function fdOf(k: Kernel, f: HostInetFile): number | undefined {
  return runtimes.get(k)?.fds.get(f.id);
}

/** An observable that fires whenever `fd` may be ready for `events` (host readiness). */
function ready$(k: Kernel, fd: number, events: number): Observable<void> {
  return new Observable<void>((sub) => hs(k).whenReady(fd, events, () => sub.next()));
}

/** SO_RCVTIMEO (20) or SO_SNDTIMEO (21) as set on the socket (struct timeval), in ns; undefined when unset or zero (wait forever). */
function timeoutNs(f: HostInetFile, name: 20 | 21): bigint | undefined {
  const v = st(f).opts[`${SOL_SOCKET}:${name}`] ?? st(f).opts[`${SOL_SOCKET}:${name + 46}`]; // SO_RCVTIMEO_NEW 66, SO_SNDTIMEO_NEW 67
  if (!v || v.length < 16) return undefined;
  const d = new DataView(v.buffer, v.byteOffset, 16);
  const ns = d.getBigInt64(0, true) * 1_000_000_000n + d.getBigInt64(8, true) * 1000n;
  return ns > 0n ? ns : undefined;
}

/**
 * Block until `attempt` gives a result, woken by the host fd's readiness for `events`. With a
 * socket timeout (SO_RCVTIMEO, SO_SNDTIMEO) the wait ends at it with `onTimeout()` (EAGAIN, or the
 * bytes already moved) and a signal ends it with EINTR; without, it restarts under SA_RESTART (as
 * Linux's sock_intr_errno). `settle` (optional) turns an interruption into a partial count.
 */
function waitFor(t: Task, f: HostInetFile, fd: number, events: number, kind: FileWaiter['kind'] | PipeWriteWaiter, attempt: () => number | undefined, timeout: bigint | undefined, onTimeout: () => number, settle?: (v: number) => number): Block {
  const k = t.kernel;
  const restartable = timeout === undefined;
  // A send's waiter is the caller's object (its progress grows while it waits): updated in place.
  const waiter: FileWaiter | PipeWriteWaiter = typeof kind === 'string' ? { kind, fileId: f.id, interruptible: true, restartable } : Object.assign(kind, { restartable });
  let timedOut = false;
  const triggers: Observable<unknown>[] = [ready$(k, fd, events)];
  if (timeout !== undefined) triggers.push(untilDeadline(t, k.clock.monotonicNs() + timeout).pipe(map(() => { timedOut = true; })));
  return {
    waiter,
    result$: k.whenRunnable(merge(...triggers), () => { const r = attempt(); return r !== undefined ? r : timedOut ? onTimeout() : undefined; }),
    settle,
  };
}

// ---- addresses ----

/** A struct sockaddr of `len` guest bytes at `addr`, as the host takes it. EINVAL (negative or past 128 bytes), EFAULT. */
function readRawAddr(t: Task, addr: number, len: number): Uint8Array {
  if ((len | 0) < 0 || len > 128) throw new SyscallError(E.EINVAL);
  return new Uint8Array(t.mm.read(addr, len));
}

/** A host's struct sockaddr bytes as graph data (family, ip, port). */
export function decodeInetAddr(b: Uint8Array): SockAddr | undefined {
  if (b.length < 2) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const family = v.getUint16(0, true);
  if (family === AF_INET && b.length >= 8) return { family, port: v.getUint16(2, false), ip: [...b.subarray(4, 8)].join('.') };
  if (family === AF_INET6 && b.length >= 24) return { family, port: v.getUint16(2, false), ip: v6String(b.subarray(8, 24)) };
  return { family };
}

/** Store address bytes at `addr` with their length at `lenAddr` (truncated to the room given, as Linux does). EINVAL for a negative room. */
function writeRawAddr(t: Task, addr: number, lenAddr: number, bytes: Uint8Array): void {
  if (!addr || !lenAddr) return;
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) throw new SyscallError(E.EINVAL);
  t.mm.write(addr, bytes.subarray(0, Math.min(room, bytes.length)));
  t.mm.writeU32(lenAddr, bytes.length);
}

/** "tcp 127.0.0.1:8080 -> 127.0.0.1:41234" for messages. */
function fmt(a: SockAddr | undefined): string {
  if (!a || a.ip === undefined) return '*';
  return a.family === AF_INET6 ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}

/** The host's view of the socket's own address, recorded in the graph (after bind, listen, connect, a first send). */
function noteLocal(k: Kernel, f: HostInetFile, fd: number): void {
  const b = hs(k).address(fd, false);
  if (typeof b === 'number') return;
  const a = decodeInetAddr(b);
  const l = st(f).local;
  if (a && (!l || l.ip !== a.ip || l.port !== a.port)) update(k, f, 'local', { local: a, ...(st(f).state === 'unbound' ? { state: 'bound' as const } : {}) });
}

// ---- socket(2) ----

/**
 * socket(2) of AF_INET/AF_INET6 SOCK_STREAM or SOCK_DGRAM in a --network=host sandbox: a host
 * socket and its record. The guest fd, or the host's errno (EPROTONOSUPPORT, EMFILE…).
 */
export function hostInetSocket(t: Task, domain: number, type: number, protocol: number): number {
  const k = t.kernel;
  const base = type & SOCK_TYPE_MASK;
  const fd = hs(k).open(domain, base, protocol);
  if (fd < 0) return fd;
  const f = k.newOpenFile({ kind: 'hostinet', path: `socket:[${k.state.nextId}]`, flags: 2 | (type & SOCK_NONBLOCK ? O_NONBLOCK : 0), hostinet: { domain, type: base, protocol, state: 'unbound', opts: {} } });
  runtime(k).fds.set(f.id, fd);
  return install(t, f, !!(type & SOCK_CLOEXEC));
}

function install(t: Task, f: HostInetFile, cloexec: boolean): number {
  const fd = t.kernel.installFd(t, f.id, cloexec);
  if (fd < 0) releaseUninstalled(t.kernel, f.id);
  return fd;
}

/** The host fd, or the errno a socket without one reports (a reset connection: ENOTCONN). */
function need(k: Kernel, f: HostInetFile): number {
  const fd = fdOf(k, f);
  if (fd === undefined) throw new SyscallError(st(f).reset ? E.ENOTCONN : E.EBADF);
  return fd;
}

const CAP_NET_BIND_SERVICE = 10, CAP_NET_ADMIN = 12, CAP_NET_RAW = 13;
/** The sandbox's net.ipv4.ip_unprivileged_port_start: Linux's default (the host's own setting is not the guest's). */
const UNPRIVILEGED_PORT_START = 1024;

/**
 * bind(2): the host's bind; the address the host gives is recorded. A port below 1024 needs the
 * guest's CAP_NET_BIND_SERVICE (EACCES, as inet_bind checks), whatever snapvisor itself may do.
 */
export function hostInetBind(t: Task, f: HostInetFile, addr: number, len: number): number {
  const k = t.kernel;
  const fd = need(k, f);
  const raw = readRawAddr(t, addr, len);
  const port = raw.length >= 4 ? (raw[2] << 8) | raw[3] : 0;
  if (port > 0 && port < UNPRIVILEGED_PORT_START && !capable(credsOf(t.tg), CAP_NET_BIND_SERVICE)) return -E.EACCES;
  const r = hs(k).bind(fd, raw);
  if (r < 0) return r;
  noteLocal(k, f, fd);
  if (st(f).state === 'unbound') update(k, f, 'bind', { state: 'bound' });
  return 0;
}

/** listen(2): the host's listen; the backlog is recorded (a restore listens again with it). */
export function hostInetListen(t: Task, f: HostInetFile, backlog: number): number {
  const k = t.kernel;
  const fd = need(k, f);
  const r = hs(k).listen(fd, backlog);
  if (r < 0) return r;
  update(k, f, 'listen', { state: 'listening', backlog });
  noteLocal(k, f, fd);
  k.pipes.changed$.next(f.id);
  return 0;
}

/** A finished connect: the state and both addresses recorded. */
function connected(k: Kernel, f: HostInetFile, fd: number): void {
  const p = hs(k).address(fd, true);
  const peer = typeof p === 'number' ? undefined : decodeInetAddr(p);
  update(k, f, 'connect', { state: peer || st(f).type === SOCK_STREAM ? 'connected' : 'bound', peer });
  noteLocal(k, f, fd);
}

/**
 * connect(2): the host's connect. A blocking guest socket whose host connect is under way
 * (EINPROGRESS, or EALREADY after an interrupted one) waits for the host fd to become writable,
 * then takes SO_ERROR (a 'connect' waiter, restartable as Linux's inet_stream_connect); a
 * non-blocking one returns EINPROGRESS and finds the outcome with poll and SO_ERROR. AF_UNSPEC
 * on a UDP socket dissolves its association (the host's).
 */
export function hostInetConnect(t: Task, f: HostInetFile, addr: number, len: number): SyscallResult {
  const k = t.kernel;
  const fd = need(k, f);
  const raw = readRawAddr(t, addr, len);
  const r = hs(k).connect(fd, raw);
  if (r === 0 || (r === -E.EISCONN && st(f).state === 'connecting')) {
    if (st(f).type === SOCK_DGRAM && raw.length >= 2 && raw[0] === 0 && raw[1] === 0) update(k, f, 'disconnect', { peer: undefined, state: st(f).local ? 'bound' : 'unbound' });
    else connected(k, f, fd);
    return 0;
  }
  if (r !== -E.EINPROGRESS && r !== -E.EALREADY) return r;
  if (st(f).state !== 'connecting') update(k, f, 'connecting', { state: 'connecting' });
  noteLocal(k, f, fd);
  if (f.flags & O_NONBLOCK) return r;
  const attempt = (): number | undefined => {
    const rev = hs(k).poll(fd, POLLOUT);
    if (rev <= 0 || !(rev & (POLLOUT | POLLERR | POLLHUP))) return undefined;
    return finishConnect(k, f, fd);
  };
  return waitFor(t, f, fd, POLLOUT, 'connect', attempt, timeoutNs(f, 21), () => -E.EINPROGRESS);
}

/** A connect under way is over: 0 and the connection recorded, or SO_ERROR's errno. */
function finishConnect(k: Kernel, f: HostInetFile, fd: number): number {
  const e = hs(k).getOption(fd, SOL_SOCKET, SO_ERROR, 4);
  const err = typeof e === 'number' ? -e : new DataView(e.buffer, e.byteOffset, 4).getInt32(0, true);
  if (err) { update(k, f, 'refused', { state: st(f).local ? 'bound' : 'unbound' }); return -err; }
  connected(k, f, fd);
  return 0;
}

/**
 * accept4(2): a connection the host listener accepted becomes a new host-backed socket (its own
 * host fd). EINVAL for bad flags; EAGAIN, or an 'accept' waiter (restartable) when blocking.
 */
export function hostInetAccept(t: Task, f: HostInetFile, addr: number, lenAddr: number, flags: number): SyscallResult {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return -E.EINVAL;
  const k = t.kernel;
  const fd = need(k, f);
  const attempt = (): number | undefined => {
    const c = hs(k).accept(fd);
    if (c === -E.EAGAIN) return undefined;
    if (typeof c === 'number') return c;
    const s = st(f);
    const local = hs(k).address(c.fd, false);
    const nf = k.newOpenFile({
      kind: 'hostinet', path: `socket:[${k.state.nextId}]`, flags: 2 | (flags & SOCK_NONBLOCK ? O_NONBLOCK : 0),
      hostinet: { domain: s.domain, type: s.type, protocol: s.protocol, state: 'connected', local: typeof local === 'number' ? undefined : decodeInetAddr(local), peer: decodeInetAddr(c.peer), opts: {} },
    });
    runtime(k).fds.set(nf.id, c.fd);
    try { writeRawAddr(t, addr, lenAddr, c.peer); } catch (e) { releaseUninstalled(k, nf.id); throw e; }
    return install(t, nf, !!(flags & SOCK_CLOEXEC));
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & O_NONBLOCK) return -E.EAGAIN;
  return waitFor(t, f, fd, POLLIN, 'accept', attempt, timeoutNs(f, 20), () => -E.EAGAIN);
}

// ---- data ----

const nonblocking = (f: HostInetFile, flags: number): boolean => !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT);

/** A restored, reset TCP connection: ECONNRESET once, then `after`. */
function resetResult(k: Kernel, f: HostInetFile, after: number): number {
  if (st(f).reset === 'pending') { update(k, f, 'reset', { reset: 'reported' }); return -ECONNRESET; }
  return after;
}

/** EPIPE from a stream send raises SIGPIPE unless MSG_NOSIGNAL. */
function epipe(t: Task, flags: number): number {
  if (!(flags & MSG_NOSIGNAL)) t.kernel.signals.send(t.tgid, SIGPIPE, { signo: SIGPIPE, code: 0, pid: t.tgid }, t.tid);
  return -E.EPIPE;
}

/**
 * send/sendto/sendmsg/write/writev: the buffers `iov` (guest addresses, bytes) to the host
 * socket, to `to` (raw sockaddr) if given. UDP: one datagram (gathered). TCP: zero-copy from
 * guest memory; a blocking socket sends everything (a 'pipe-write' waiter keeps its progress, so
 * an interrupted send returns the bytes sent), a non-blocking one what fits (EAGAIN if nothing).
 * EPIPE raises SIGPIPE unless MSG_NOSIGNAL. Host errors are passed through.
 */
export function hostInetSend(t: Task, f: HostInetFile, iov: Array<[number, number]>, flags: number, toAddr?: [number, number]): SyscallResult {
  const k = t.kernel;
  const to = toAddr && toAddr[0] ? readRawAddr(t, toAddr[0], toAddr[1]) : undefined;
  const parts = iov.filter(([, n]) => n > 0);
  const total = parts.reduce((n, [, l]) => n + l, 0);
  if (st(f).reset) { const r = resetResult(k, f, -E.EPIPE); return r === -E.EPIPE ? epipe(t, flags) : r; }
  const fd = need(k, f);
  const hostFlags = flags & ~(MSG_DONTWAIT | MSG_NOSIGNAL);
  if (st(f).type === SOCK_DGRAM) {
    const data = new Uint8Array(total);
    let o = 0;
    for (const [base, len] of parts) { data.set(t.mm.read(base, len), o); o += len; }
    const once = (): number | undefined => {
      const r = hs(k).send(fd, data, hostFlags, to);
      if (r === -E.EAGAIN) return undefined;
      if (!st(f).local) noteLocal(k, f, fd);
      return r;
    };
    const now = once();
    if (now !== undefined) return now;
    if (nonblocking(f, flags)) return -E.EAGAIN;
    return waitFor(t, f, fd, POLLOUT, 'send', once, timeoutNs(f, 21), () => -E.EAGAIN);
  }
  for (const [base, len] of parts) t.mm.chunks(base, len, PROT_READ, () => undefined); // EFAULT before any byte leaves
  const waiter: PipeWriteWaiter = { kind: 'pipe-write', fileId: f.id, interruptible: true, restartable: true, progress: t.resumed('pipe-write')?.progress ?? 0 };
  /** Send from byte `waiter.progress` on, as much as the host takes now: the error of a first byte that cannot go, else undefined. */
  const push = (): number | undefined => {
    let skip = waiter.progress;
    for (const [base, len] of parts) {
      if (skip >= len) { skip -= len; continue; }
      let stop: number | undefined;
      t.mm.chunks(base + skip, len - skip, PROT_READ, (view) => {
        if (stop !== undefined) return;
        const r = hs(k).send(fd, view, hostFlags, to);
        if (r < 0) { stop = r; return; }
        waiter.progress += r;
        if (r < view.length) stop = -E.EAGAIN;
      });
      skip = 0;
      if (stop !== undefined) return stop;
    }
    return undefined;
  };
  const attempt = (): number | undefined => {
    const before = waiter.progress;
    const e = push();
    if (waiter.progress !== before && k.state.tasks[t.tid]?.waiter?.kind === 'pipe-write') k.emit({ type: 'task.progress', tid: t.tid, progress: waiter.progress }, [['set', ['tasks', t.tid, 'waiter', 'progress'], waiter.progress]]);
    if (e === undefined || waiter.progress === total) return waiter.progress;
    if (e !== -E.EAGAIN) return waiter.progress > 0 ? waiter.progress : e === -E.EPIPE ? epipe(t, flags) : e;
    if (nonblocking(f, flags)) return waiter.progress > 0 ? waiter.progress : -E.EAGAIN;
    return undefined;
  };
  const now = attempt();
  if (now !== undefined) return now;
  return waitFor(t, f, fd, POLLOUT, waiter, attempt, timeoutNs(f, 21), () => (waiter.progress > 0 ? waiter.progress : -E.EAGAIN));
}

/**
 * Kernel bytes (sendfile's, read from a file) to a host-backed TCP socket, as a send of them:
 * blocking until all are sent (a 'pipe-write' waiter with its progress; an interrupted one
 * returns the bytes sent, after `sent(n)` has recorded them), or what fits when non-blocking.
 * `sent(n)` runs once with the bytes that went (n > 0). EINVAL for a UDP socket (sendfile's
 * fallback to read/write then applies), EPIPE with SIGPIPE.
 */
export function hostInetSendBytes(t: Task, f: HostInetFile, data: Uint8Array, sent: (n: number) => void): SyscallResult {
  const k = t.kernel;
  if (st(f).type !== SOCK_STREAM) return -E.EINVAL;
  if (st(f).reset) { const r = resetResult(k, f, -E.EPIPE); return r === -E.EPIPE ? epipe(t, 0) : r; }
  const fd = need(k, f);
  const waiter: PipeWriteWaiter = { kind: 'pipe-write', fileId: f.id, interruptible: true, restartable: true, progress: 0 };
  const done = (n: number): number => { if (n > 0) sent(n); return n; };
  const attempt = (): number | undefined => {
    while (waiter.progress < data.length) {
      const r = hs(k).send(fd, data.subarray(waiter.progress), 0);
      if (r === -E.EAGAIN) break;
      if (r < 0) return done(waiter.progress) || (r === -E.EPIPE ? epipe(t, 0) : r);
      waiter.progress += r;
    }
    if (waiter.progress === data.length) return done(waiter.progress);
    if (f.flags & O_NONBLOCK) return waiter.progress > 0 ? done(waiter.progress) : -E.EAGAIN;
    return undefined;
  };
  const now = attempt();
  if (now !== undefined) return now;
  // Interrupted with bytes sent: they are recorded (the kernel then returns the progress).
  return waitFor(t, f, fd, POLLOUT, waiter, attempt, timeoutNs(f, 21), () => (waiter.progress > 0 ? done(waiter.progress) : -E.EAGAIN), (v) => { if (v === INTERRUPTED && waiter.progress > 0) done(waiter.progress); return v; });
}

/** Where a receive's sender address and recvmsg's msghdr go (as src/net/socket.ts RecvInto). */
export interface HostRecvInto {
  /** Address buffer and the address of its length (recvfrom's, or msg_name and &msg_namelen). */
  name?: [number, number];
  /** recvmsg: the msghdr's guest address (msg_controllen and msg_flags are written back: no control messages). */
  msgHdr?: number;
}

/**
 * recv/recvfrom/recvmsg/read/readv into the buffers `iov`. TCP: zero-copy into guest memory, what
 * is there now (0 at end of file); UDP: one datagram scattered over the buffers, the rest dropped
 * (MSG_TRUNC in msg_flags; the MSG_TRUNC flag returns its whole length), with the sender's address.
 * No control messages are delivered. EAGAIN, or a 'recv' waiter (restartable) when blocking.
 */
export function hostInetRecv(t: Task, f: HostInetFile, iov: Array<[number, number]>, flags: number, into: HostRecvInto = {}): SyscallResult {
  const k = t.kernel;
  const parts = iov.filter(([, n]) => n > 0);
  const total = parts.reduce((n, [, l]) => n + l, 0);
  const finish = (n: number, from: Uint8Array | undefined, msgFlags: number): number => {
    if (into.name) { if (from && from.length > 2) writeRawAddr(t, into.name[0], into.name[1], from); else t.mm.writeU32(into.name[1], 0); }
    if (into.msgHdr !== undefined) { t.mm.writeU64(into.msgHdr + 40, 0); t.mm.writeU32(into.msgHdr + 48, msgFlags); }
    return n;
  };
  if (st(f).reset) return resetResult(k, f, finish(0, undefined, 0));
  const fd = need(k, f);
  const s = st(f);
  if (s.type === SOCK_STREAM && s.state === 'listening') return -E.ENOTCONN;
  const hostFlags = flags & ~(MSG_DONTWAIT | MSG_TRUNC);
  let attempt: () => number | undefined;
  if (s.type === SOCK_DGRAM) {
    const buf = new Uint8Array(Math.min(total, 65536 * 4));
    attempt = () => {
      const r = hs(k).recv(fd, buf, hostFlags | MSG_TRUNC, !!into.name);
      if (r === -E.EAGAIN) return undefined;
      if (typeof r === 'number') return r;
      const got = Math.min(r.n, buf.length);
      let o = 0;
      for (const [base, len] of parts) { if (o >= got) break; const n = Math.min(len, got - o); t.mm.write(base, buf.subarray(o, o + n)); o += n; }
      return finish(flags & MSG_TRUNC ? r.n : got, r.from, r.n > got ? MSG_TRUNC : 0);
    };
  } else {
    for (const [base, len] of parts) { t.mm.chunks(base, Math.min(len, 1), PROT_WRITE, () => undefined); break; } // EFAULT before waiting
    // MSG_WAITALL on a blocking socket: receive until the buffers are full (or end of file, an
    // error, a signal, the timeout), `got` bytes so far; otherwise what is there.
    const waitAll = !!(flags & MSG_WAITALL) && !(flags & MSG_PEEK) && !nonblocking(f, flags);
    let got = 0;
    attempt = () => {
      if (!parts.length) return finish(0, undefined, 0);
      let skip = got, end = false, err: number | undefined;
      const before = got;
      for (const [base, len] of parts) {
        if (skip >= len) { skip -= len; continue; }
        t.mm.chunks(base + skip, len - skip, PROT_WRITE, (view) => {
          if (end || err !== undefined) return;
          const r = hs(k).recv(fd, view, hostFlags & ~MSG_WAITALL, false);
          if (typeof r === 'number') { err = r; end = true; return; }
          got += r.n;
          if (r.n < view.length) end = true;
          if (r.n === 0) err = 0; // end of file
        });
        skip = 0;
        if (end || err !== undefined || flags & MSG_PEEK) break;
      }
      if (err === -E.EAGAIN || (err === undefined && got < total && waitAll)) {
        if (!waitAll || got === 0) return got > before ? finish(got, undefined, 0) : undefined;
        return got === total ? finish(got, undefined, 0) : undefined;
      }
      if (got === 0 && err !== undefined && err < 0) return err;
      return finish(got, undefined, 0);
    };
    const now = attempt();
    if (now !== undefined) return now;
    if (nonblocking(f, flags)) return -E.EAGAIN;
    const partial = (v: number): number => (v === INTERRUPTED && got > 0 ? finish(got, undefined, 0) : v);
    return waitFor(t, f, fd, POLLIN, 'recv', attempt, timeoutNs(f, 20), () => (got > 0 ? finish(got, undefined, 0) : -E.EAGAIN), partial);
  }
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return waitFor(t, f, fd, POLLIN, 'recv', attempt, timeoutNs(f, 20), () => -E.EAGAIN);
}

/** struct msghdr (56 bytes): name, iovecs (at most 1024: EMSGSIZE), and where msg_controllen and msg_flags go. */
function readMsghdr(t: Task, msg: number): { name: number; nameLen: number; iov: Array<[number, number]> } {
  const b = t.mm.read(msg, 56);
  const v = new DataView(b.buffer, b.byteOffset, 56);
  const iovAddr = Number(v.getBigUint64(16, true)), iovLen = Number(v.getBigUint64(24, true));
  if (iovLen > 1024) throw new SyscallError(E.EMSGSIZE);
  const raw = iovLen ? t.mm.read(iovAddr, iovLen * 16) : new Uint8Array(0);
  const rv = new DataView(raw.buffer, raw.byteOffset, raw.length);
  const iov: Array<[number, number]> = [];
  for (let i = 0; i < iovLen; i++) iov.push([Number(rv.getBigUint64(i * 16, true)), Number(rv.getBigUint64(i * 16 + 8, true))]);
  return { name: Number(v.getBigUint64(0, true)), nameLen: v.getInt32(8, true), iov };
}

/** sendmsg(2) on a host-backed socket: the buffers and msg_name as hostInetSend; control messages are not passed on. */
export function hostInetSendmsg(t: Task, f: HostInetFile, msg: number, flags: number): SyscallResult {
  const m = readMsghdr(t, msg);
  return hostInetSend(t, f, m.iov, flags, m.name && m.nameLen ? [m.name, m.nameLen] : undefined);
}

/** recvmsg(2) on a host-backed socket: hostInetRecv with msg_name; msg_controllen 0 (no control messages), msg_flags written. */
export function hostInetRecvmsg(t: Task, f: HostInetFile, msg: number, flags: number): SyscallResult {
  const m = readMsghdr(t, msg);
  if (!m.name) t.mm.writeU32(msg + 8, 0);
  return hostInetRecv(t, f, m.iov, flags, { name: m.name ? [m.name, msg + 8] : undefined, msgHdr: msg });
}

/** shutdown(2): the host's (ENOTCONN for a reset connection). */
export function hostInetShutdown(t: Task, f: HostInetFile, how: number): number {
  if (how < 0 || how > 2) return -E.EINVAL;
  if (st(f).reset) return -E.ENOTCONN;
  const r = hs(t.kernel).shutdown(need(t.kernel, f), how);
  t.kernel.pipes.changed$.next(f.id);
  return r;
}

/** getsockname(2) (`peer` false) or getpeername(2): the host's answer (a reset connection: its recorded local address; ENOTCONN for the peer). */
export function hostInetName(t: Task, f: HostInetFile, addr: number, lenAddr: number, peer: boolean): number {
  const k = t.kernel;
  const fd = fdOf(k, f);
  let b: Uint8Array | number;
  if (fd === undefined) b = peer ? -E.ENOTCONN : encodeAddr(st(f).local, st(f).domain);
  else b = hs(k).address(fd, peer);
  if (typeof b === 'number') return b;
  writeRawAddr(t, addr, lenAddr, b);
  return 0;
}

/**
 * Options the host must not be given: their values hold pointers into the caller's memory or
 * host fd numbers (a socket filter program, a BPF program fd, TCP_ZEROCOPY_RECEIVE), which would
 * name the kernel's own memory or fds. "level:option".
 */
const REFUSED_OPTIONS = new Set([`${SOL_SOCKET}:26` /* SO_ATTACH_FILTER */, `${SOL_SOCKET}:50` /* SO_ATTACH_BPF */, `${SOL_SOCKET}:51` /* SO_ATTACH_REUSEPORT_CBPF */, `${SOL_SOCKET}:52` /* SO_ATTACH_REUSEPORT_EBPF */, `${IPPROTO_TCP}:35` /* TCP_ZEROCOPY_RECEIVE */]);

/**
 * Options that need a capability of the guest (checked here: the host would check snapvisor's
 * own): "level:option" -> the capabilities any one of which allows it (sk_setsockopt, do_ip_setsockopt).
 */
const PRIVILEGED_OPTIONS: Record<string, number[]> = {
  [`${SOL_SOCKET}:32`]: [CAP_NET_ADMIN], // SO_SNDBUFFORCE
  [`${SOL_SOCKET}:33`]: [CAP_NET_ADMIN], // SO_RCVBUFFORCE
  [`${SOL_SOCKET}:36`]: [CAP_NET_ADMIN, CAP_NET_RAW], // SO_MARK
  ['0:19']: [CAP_NET_ADMIN, CAP_NET_RAW], // IP_TRANSPARENT
  ['41:75']: [CAP_NET_ADMIN, CAP_NET_RAW], // IPV6_TRANSPARENT
};

/**
 * setsockopt(2): given to the host (the value's bytes, at most 4096) and recorded for a restore.
 * ENOPROTOOPT for the refused ones; EPERM for a privileged one (SO_MARK, SO_*BUFFORCE,
 * IP_TRANSPARENT, SO_PRIORITY outside 0–6) without the guest's capability.
 */
export function hostInetSetsockopt(t: Task, f: HostInetFile, level: number, name: number, val: number, len: number): number {
  if ((len | 0) < 0) return -E.EINVAL;
  const key = `${level}:${name}`;
  if (REFUSED_OPTIONS.has(key)) return -E.ENOPROTOOPT;
  const k = t.kernel;
  const bytes = new Uint8Array(t.mm.read(val, Math.min(len, 4096)));
  const creds = credsOf(t.tg);
  const may = (caps: number[]) => caps.some((c) => capable(creds, c));
  if (PRIVILEGED_OPTIONS[key] && !may(PRIVILEGED_OPTIONS[key])) return -E.EPERM;
  if (key === `${SOL_SOCKET}:12` && bytes.length >= 4) { // SO_PRIORITY
    const v = new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true);
    if ((v < 0 || v > 6) && !may([CAP_NET_ADMIN, CAP_NET_RAW])) return -E.EPERM;
  }
  const fd = fdOf(k, f);
  const r = fd === undefined ? 0 : hs(k).setOption(fd, level, name, bytes);
  if (r === 0) update(k, f, 'option', { opts: { ...st(f).opts, [key]: bytes } });
  return r;
}

/** getsockopt(2): the host's answer (at most 4096 bytes); SO_ERROR of a reset connection reports ECONNRESET once. */
export function hostInetGetsockopt(t: Task, f: HostInetFile, level: number, name: number, val: number, lenAddr: number): number {
  const k = t.kernel;
  const room = t.mm.readU32(lenAddr);
  if ((room | 0) < 0) return -E.EINVAL;
  if (REFUSED_OPTIONS.has(`${level}:${name}`)) return -E.ENOPROTOOPT;
  const fd = fdOf(k, f);
  let b: Uint8Array | number;
  if (fd === undefined) {
    const v = level === SOL_SOCKET && name === SO_ERROR && st(f).reset === 'pending' ? -resetResult(k, f, 0) : 0;
    b = new Uint8Array(new Int32Array([v]).buffer).subarray(0, Math.min(room, 4));
  } else b = hs(k).getOption(fd, level, name, Math.min(room, 4096));
  if (typeof b === 'number') return b;
  t.mm.write(val, b);
  t.mm.writeU32(lenAddr, b.length);
  return 0;
}

/** Interface requests on a struct ifreq that only read (no pointers in it): answered by the host. */
const IFREQ_GETS = new Set([
  0x8910 /* SIOCGIFNAME */, 0x8913 /* SIOCGIFFLAGS */, 0x8915 /* SIOCGIFADDR */, 0x8917 /* SIOCGIFDSTADDR */, 0x8919 /* SIOCGIFBRDADDR */,
  0x891b /* SIOCGIFNETMASK */, 0x8921 /* SIOCGIFMTU */, 0x8927 /* SIOCGIFHWADDR */, 0x8933 /* SIOCGIFINDEX */, 0x8942 /* SIOCGIFTXQLEN */,
]);
const SIOCGIFCONF = 0x8912, IFREQ_BYTES = 40;

/**
 * ioctl(2): FIONREAD (SIOCINQ) and SIOCOUTQ from the host; the host's interfaces for the
 * read-only interface requests (SIOCGIFCONF, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFINDEX…), as its
 * netlink answers (src/net/netlink.ts); ENOTTY for the rest (nothing that changes an interface).
 */
export function hostInetIoctl(t: Task, f: HostInetFile, req: number, arg: number): number {
  const k = t.kernel;
  const fd = fdOf(k, f);
  if (IFREQ_GETS.has(req)) {
    if (fd === undefined) return -E.ENOTTY;
    const ifr = new Uint8Array(t.mm.read(arg, IFREQ_BYTES));
    const r = hs(k).ioctlIfreq(fd, req, ifr);
    if (r < 0) return r;
    t.mm.write(arg, ifr);
    return 0;
  }
  if (req === SIOCGIFCONF) {
    if (fd === undefined) return -E.ENOTTY;
    // struct ifconf: int ifc_len, padding, char *ifc_buf (NULL: ifc_len gets the room needed).
    const hdr = t.mm.read(arg, 16);
    const hv = new DataView(hdr.buffer, hdr.byteOffset, 16);
    const len = hv.getInt32(0, true), buf = Number(hv.getBigUint64(8, true));
    const got = hs(k).interfaceConf(fd, buf ? Math.max(len, 0) : 65536);
    if (typeof got === 'number') return got;
    if (buf) t.mm.write(buf, got);
    t.mm.writeU32(arg, got.length);
    return 0;
  }
  if (req !== FIONREAD && req !== SIOCOUTQ) return -E.ENOTTY;
  const v = fd === undefined ? 0 : hs(k).ioctlInt(fd, req);
  if (v < 0) return v;
  t.mm.writeU32(arg, v);
  return 0;
}

/**
 * Readiness (POLL* bits) as the host reports it. Arms a one-shot host watch for the events not
 * ready now (POLLIN, POLLOUT), which announces a change on `pipes.changed$` so that poll, select
 * and epoll waiters look again. A reset connection is readable, writable and hung up.
 */
export function hostInetReadiness(t: Task, f: HostInetFile): number {
  const k = t.kernel;
  const fd = fdOf(k, f);
  if (fd === undefined) return POLLIN | POLLOUT | POLLHUP | POLLRDHUP | (st(f).reset === 'pending' ? POLLERR : 0) | 0x40 | 0x100;
  const r = hs(k).poll(fd, POLLIN | POLLOUT | POLLPRI | POLLRDHUP);
  if (r < 0) return POLLERR;
  const want = (POLLIN | POLLOUT) & ~r;
  const rt = runtime(k);
  const w = rt.watches.get(f.id);
  if (want && (!w || w.events !== want)) {
    w?.cancel();
    let cancel: () => void = () => undefined;
    const entry = { events: want, cancel: () => cancel() };
    rt.watches.set(f.id, entry);
    cancel = hs(k).whenReady(fd, want, () => {
      cancel();
      if (rt.watches.get(f.id) === entry) rt.watches.delete(f.id);
      k.pipes.changed$.next(f.id);
    });
  }
  // Linux adds the RDNORM/WRNORM twins of IN/OUT.
  return r | (r & POLLIN ? 0x40 : 0) | (r & POLLOUT ? 0x100 : 0);
}

/** The last reference is gone: the host socket is closed. */
export function hostInetRelease(k: Kernel, f: HostInetFile): void {
  const rt = runtimes.get(k);
  if (!rt) return;
  rt.watches.get(f.id)?.cancel();
  rt.watches.delete(f.id);
  const fd = rt.fds.get(f.id);
  rt.fds.delete(f.id);
  if (fd !== undefined) hs(k).close(fd);
}

// ---- checkpoint and restore ----

/** One line per host-backed socket of the sandbox ("TCP 127.0.0.1:41234 -> 127.0.0.1:8080", "UDP listener…"): what a checkpoint names. */
export function hostInetDescriptions(k: Kernel): string[] {
  const out: string[] = [];
  for (const f of Object.values(k.state.openFiles)) {
    if (f.kind !== 'hostinet') continue;
    const s = f.hostinet;
    const proto = s.type === SOCK_STREAM ? 'TCP' : 'UDP';
    // The host's own view where there is a host socket (a non-blocking connect may have finished since).
    const fd = fdOf(k, f);
    const live = (peer: boolean): SockAddr | undefined => {
      const b = fd === undefined ? -1 : hs(k).address(fd, peer);
      return typeof b === 'number' ? undefined : decodeInetAddr(b);
    };
    const local = live(false) ?? s.local, peer = s.state === 'listening' ? undefined : live(true) ?? (fd === undefined ? s.peer : undefined);
    if (s.state === 'listening') out.push(`${proto} ${fmt(local)} (listening)`);
    else if (peer) out.push(`${proto} ${fmt(local)} -> ${fmt(peer)}`);
    else out.push(`${proto} ${fmt(local)}`);
  }
  return out;
}

/**
 * After a restore (--tcp-close-on-checkpoint): a TCP connection (or one under way) is reset —
 * no host socket; a listener, a bound or connected UDP socket and an unconnected TCP socket get a
 * new host socket with their options, bound to their address again (a listener listening, a UDP
 * socket connected to its peer). Returns why not, in one line (e.g. the port is taken on this host).
 */
export function hostInetRestore(k: Kernel, f: HostInetFile): string | undefined {
  const s = st(f);
  if (s.type === SOCK_STREAM && (s.state === 'connected' || s.state === 'connecting')) {
    if (!s.reset) update(k, f, 'reset', { reset: 'pending' });
    return undefined;
  }
  if (fdOf(k, f) !== undefined) return undefined; // restored already (restore runs once for files, once with every kind)
  const h = hs(k);
  const fd = h.open(s.domain, s.type, s.protocol);
  const proto = s.type === SOCK_STREAM ? 'TCP' : 'UDP';
  if (fd < 0) return `a host socket for the guest's ${proto} socket ${fmt(s.local)} cannot be opened (errno ${-fd})`;
  runtime(k).fds.set(f.id, fd);
  for (const [key, v] of Object.entries(s.opts)) {
    const [level, name] = key.split(':').map(Number);
    h.setOption(fd, level, name, v);
  }
  if (s.local && s.state !== 'unbound') {
    const r = h.bind(fd, encodeAddr(s.local, s.domain));
    if (r < 0) return `the guest's ${proto} socket ${s.state === 'listening' ? 'listening on' : 'bound to'} ${fmt(s.local)} cannot have its address again on this host (errno ${-r}${r === -E.EADDRINUSE ? ': EADDRINUSE, the port is taken' : ''})`;
  }
  if (s.state === 'listening') {
    const r = h.listen(fd, s.backlog ?? 128);
    if (r < 0) return `the guest's TCP listener on ${fmt(s.local)} cannot listen again (errno ${-r})`;
  }
  if (s.type === SOCK_DGRAM && s.peer) h.connect(fd, encodeAddr(s.peer, s.domain));
  return undefined;
}
