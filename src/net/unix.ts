/**
 * AF_UNIX names and messages (man 7 unix; net/unix/af_unix.c): binding a socket to a path (a
 * socket file in the sandbox's filesystem, found again by its inode, as Linux finds the socket
 * by inode and not by name), to an abstract name or to an autobound one; looking names up for
 * connect/sendto (ENOENT, ECONNREFUSED, EPROTOTYPE as Linux); and sending a datagram or seqpacket
 * message with its credentials and passed files (unix_dgram_sendmsg). Everything is graph data:
 * names are keys of NetState.bound, messages sit in the receiver's SocketState.dgrams with their
 * SCM_CREDENTIALS and SCM_RIGHTS (open-file references) and are checkpointed with it.
 */
import { filter } from 'rxjs';
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import type { SockAddr, SocketMessage, SocketState, UCred } from '../kernel/state.js';
import type { SocketFile } from '../files/socket.js';
import { baseDir } from '../kernel/dirfd.js';
import { bindName, netState, refOps, setSocket, socketPath } from './door.js';
import { modeOf } from '../vfs/vfs.js';
import { MAY_WRITE } from '../kernel/creds.js';
import { AF_UNIX, MSG_DONTWAIT, MSG_NOSIGNAL, O_NONBLOCK, S_IFMT, S_IFSOCK, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, SOL_SOCKET, SO_PASSCRED } from '../abi/linux.js';
import { type SendControl, senderCred } from './cmsg.js';

/** Bytes of messages a unix socket's receive queue may hold (the default socket buffer). */
export const UNIX_QUEUE_BYTES = 212992;
/** What each queued message costs beyond its bytes, as a Linux skb's truesize does (zero-length messages still fill a queue). */
export const MESSAGE_OVERHEAD = 256;
/** Largest message a unix datagram/seqpacket socket takes (the default sk_sndbuf less its overhead), bytes. */
export const UNIX_MAX_MESSAGE = 212960;
/** net.unix.max_dgram_qlen: messages a socket queues from senders it is not connected to (one more is let in, as unix_recvq_full). */
const MAX_DGRAM_QLEN = 10;

/** Bytes a message queue is charged for (its messages plus MESSAGE_OVERHEAD each). */
export const queuedBytes = (q: ReadonlyArray<{ data: Uint8Array }>) => q.reduce((n, d) => n + d.data.length + MESSAGE_OVERHEAD, 0);

const UNNAMED: SockAddr = { family: AF_UNIX, path: '' };
const nonblocking = (f: SocketFile, flags: number) => !!(f.flags & O_NONBLOCK) || !!(flags & MSG_DONTWAIT);
const wake = (t: Task, id: number) => t.kernel.pipes.changed$.next(id);
const typeNames = [SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET];

/** SO_PASSCRED is set on the socket. */
export const passcred = (s: SocketState) => !!s.opts?.[`${SOL_SOCKET}:${SO_PASSCRED}`];

function bound(t: Task): Readonly<Record<string, number>> {
  return netState(t.kernel).bound;
}

/** NetState.bound key of a unix name: a path socket by its inode (`#id`), an abstract name by its bytes; per socket type. */
const nameKey = (type: number, name: string) => `unix:${type}:${name}`;

/**
 * bind(2) of a unix socket to `a`: '' autobinds; an abstract name ('\0…') is taken if free; a
 * path creates a socket file (mode 0777 less umask) and fails EADDRINUSE if the name exists.
 * The address getsockname shows is the one given (a relative path stays relative). EINVAL if
 * already bound; ENOENT, ENOTDIR, EACCES… from the path walk.
 */
export function unixBind(t: Task, f: SocketFile, a: SockAddr): void {
  const s = f.socket;
  if (s.local?.path) throw new SyscallError(E.EINVAL);
  const path = a.path ?? '';
  if (!path) { unixAutobind(t, f); return; }
  let k: string;
  if (path.startsWith('\0')) {
    k = nameKey(s.type!, path);
    if (bound(t)[k] !== undefined) throw new SyscallError(E.EADDRINUSE);
  } else {
    const r = t.kernel.vfs.walk(path, baseDir(t, -100, path), false);
    if (r.node) throw new SyscallError(E.EADDRINUSE);
    const inode = t.kernel.vfs.create(r.path, S_IFSOCK | (0o777 & ~t.tg.umask));
    k = nameKey(s.type!, `#${inode.id}`);
  }
  bindName(t.kernel, f, k, { boundKey: k, local: { family: AF_UNIX, path }, ...(s.state === 'unbound' || s.state === undefined ? { state: 'bound' as const } : {}) });
}

/** unix_autobind: an abstract name of five hex digits ('\0' + "%05x"), the first free one. EADDRINUSE if all are taken. */
export function unixAutobind(t: Task, f: SocketFile): void {
  const s = f.socket;
  if (s.local?.path) return;
  const b = bound(t);
  for (let i = 0; i <= 0xfffff; i++) {
    const name = '\0' + ((f.id + i) & 0xfffff).toString(16).padStart(5, '0');
    const k = nameKey(s.type!, name);
    if (b[k] !== undefined) continue;
    bindName(t.kernel, f, k, { boundKey: k, local: { family: AF_UNIX, path: name }, ...(s.state === 'unbound' || s.state === undefined ? { state: 'bound' as const } : {}) });
    return;
  }
  throw new SyscallError(E.EADDRINUSE);
}

/**
 * The socket of `type` bound to unix address `a` (unix_find_other). A path: ENOENT if nothing is
 * there, EACCES without write permission on it, ECONNREFUSED if it is not a socket file or no socket holds it, EPROTOTYPE if a socket of
 * another type does. An abstract name: ECONNREFUSED if no socket of this type holds it. EINVAL
 * for the unnamed address.
 */
export function unixLookup(t: Task, type: number, a: SockAddr): SocketFile {
  const path = a.path ?? '';
  if (!path) throw new SyscallError(E.EINVAL);
  const b = bound(t);
  const found = (k: string) => { const id = b[k]; return id === undefined ? undefined : t.kernel.state.openFiles[id] as SocketFile | undefined; };
  if (path.startsWith('\0')) {
    const f = found(nameKey(type, path));
    if (!f) throw new SyscallError(E.ECONNREFUSED);
    return f;
  }
  const r = t.kernel.vfs.walk(path, baseDir(t, -100, path), true);
  if (!r.node) throw new SyscallError(E.ENOENT);
  t.kernel.vfs.checkAccess(r.node, MAY_WRITE); // unix_find_bsd: write permission on the socket file
  if ((modeOf(r.node) & S_IFMT) !== S_IFSOCK || r.node.kind !== 'upper') throw new SyscallError(E.ECONNREFUSED);
  const name = `#${r.node.inode.id}`;
  // Graphs from before sockets were found by inode keyed path sockets by their canonical path.
  const f = found(nameKey(type, name)) ?? found(nameKey(type, r.path));
  if (f) return f;
  if (typeNames.some((ty) => ty !== type && found(nameKey(ty, name)))) throw new SyscallError(E.EPROTOTYPE);
  throw new SyscallError(E.ECONNREFUSED);
}

/** The socket `s` sends to (unix_peer), if it is still open. */
export function peerOf(k: Kernel, s: SocketState): SocketFile | undefined {
  const p = s.pairPeer === undefined ? undefined : k.state.openFiles[s.pairPeer];
  return p?.kind === 'socket' ? p : undefined;
}

/** Forget the peer of a datagram socket (its peer closed, or connect(AF_UNSPEC)). */
export function unixDisconnect(k: Kernel, f: SocketFile): void {
  setSocket(k, f, 'disconnect', { pairPeer: undefined, peer: undefined, state: f.socket.local?.path ? 'bound' : 'unbound' });
}

/**
 * Send one message on a unix datagram or seqpacket socket (unix_dgram_sendmsg,
 * unix_seqpacket_sendmsg). `to`: sendto's address (ignored for seqpacket); otherwise the
 * connected peer. `read` gives the message's `count` bytes (called once the checks pass). `ctl`: fds to pass and explicit credentials (src/net/cmsg.ts parseControl).
 * Errors: ENOTCONN (no peer), EMSGSIZE, ENOENT/ECONNREFUSED/EPROTOTYPE (lookup), EPERM (the
 * target is connected to another socket), EPIPE (this end shut for writing, a seqpacket peer
 * gone, or the target shut for reading; SIGPIPE unless MSG_NOSIGNAL for the first two), a
 * closed connected peer is ECONNREFUSED once (then the socket is unconnected: ENOTCONN), a full
 * queue blocks (a 'send' waiter) or is EAGAIN when nonblocking.
 */
export function unixSend(t: Task, f: SocketFile, read: () => Uint8Array, count: number, flags: number, to: SockAddr | undefined, ctl: SendControl): SyscallResult {
  const s = f.socket;
  const seq = s.type === SOCK_SEQPACKET;
  const k = t.kernel;
  const epipe = () => {
    if (!(flags & MSG_NOSIGNAL)) k.signals.send(t.tgid, 13, { signo: 13, code: 0, pid: t.tgid }, t.tid);
    return -E.EPIPE;
  };
  if (seq) {
    if (s.pairPeer === undefined) return -E.ENOTCONN;
    to = undefined;
  }
  if (s.shutWr) return epipe();
  let target: SocketFile | undefined;
  if (to && to.path) {
    if (passcred(s)) unixAutobind(t, f);
    if (count > UNIX_MAX_MESSAGE) return -E.EMSGSIZE;
    target = unixLookup(t, SOCK_DGRAM, to);
  } else {
    if (s.pairPeer === undefined) return -E.ENOTCONN;
    target = peerOf(k, s);
    if (!target) {
      if (seq) return epipe();
      unixDisconnect(k, f);
      return -E.ECONNREFUSED;
    }
    if (passcred(s)) unixAutobind(t, f);
    if (count > UNIX_MAX_MESSAGE) return -E.EMSGSIZE;
  }
  const ts = target.socket;
  if (ts.shutRd) return seq ? epipe() : -E.EPIPE;
  if (!seq && ts.pairPeer !== undefined && ts.pairPeer !== f.id) return -E.EPERM;
  const targetId = target.id;
  const data = read();
  const attempt = (): number | undefined => {
    const dst = k.state.openFiles[targetId] as SocketFile | undefined;
    if (!dst) return seq ? epipe() : -E.ECONNREFUSED;
    const q = dst.socket.dgrams!;
    // A receiver takes a few messages from strangers (max_dgram_qlen), more from its own peer, all within its buffer.
    if (q.length && (queuedBytes(q) + data.length + MESSAGE_OVERHEAD > UNIX_QUEUE_BYTES || (dst.socket.pairPeer !== f.id && q.length > MAX_DGRAM_QLEN))) return undefined;
    const fileIds = ctl.fds.map((fd) => t.fdTable.fds[fd]?.fileId).filter((id): id is number => id !== undefined);
    const m: SocketMessage = { from: s.local ?? UNNAMED, data, creds: ctl.creds ?? senderCred(t), ...(fileIds.length ? { fileIds } : {}) };
    k.emit({ type: 'socket.queue', fileId: targetId, len: data.length }, [...refOps(k, fileIds), ['splice', socketPath(dst, 'dgrams'), q.length, 0, m]]);
    wake(t, targetId);
    return data.length;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (nonblocking(f, flags)) return -E.EAGAIN;
  return { waiter: { kind: 'send', fileId: f.id, interruptible: true, restartable: true }, result$: k.whenRunnable(k.pipes.changed$.pipe(filter((x) => x === targetId)), attempt) };
}

/** Drop the references of files in flight in a released socket's queue (their messages are never read). */
export function dropMessages(k: Kernel, f: SocketFile): void {
  const s = f.socket;
  for (const m of s.dgrams ?? []) for (const id of m.fileIds ?? []) k.unrefFile(id);
  // At the last close the record is already gone from the graph (and its queue with it).
  if (s.dgrams?.length && k.state.openFiles[f.id]) k.emit({ type: 'socket.dequeue', fileId: f.id, len: -1 }, [['set', socketPath(f, 'dgrams'), []]]);
}

/** The credentials of SO_PEERCRED for a socket without any: pid 0, uid and gid -1 (cred_to_ucred of nothing). */
export const NO_PEER_CRED: UCred = { pid: 0, uid: 0xffffffff, gid: 0xffffffff };
