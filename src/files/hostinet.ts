/**
 * 'hostinet' files: AF_INET/AF_INET6 TCP and UDP sockets of a sandbox run with --network=host,
 * each backed by a socket of the host's network namespace (the sockets themselves are
 * src/net/hostinet.ts; compare gVisor's pkg/sentry/socket/hostinet).
 */
import type { Task } from '../kernel/task.js';
import type { OpenFileBase, SockAddr } from '../kernel/state.js';
import { hostInetReadiness, hostInetRecv, hostInetRelease, hostInetRestore, hostInetSend, hostInetIoctl } from '../net/hostinet.js';
import type { FileOps, InodeAttrs } from './file-ops.js';
import { inodeStat } from './file-ops.js';

/**
 * A host-backed socket as plain data: what it is, where it is bound and connected, and the
 * options set on it (a restore applies them again). The host fd is runtime only
 * (src/net/hostinet.ts keeps it by open-file id), never in the graph.
 */
export interface HostInetState {
  readonly domain: number;
  /** SOCK_STREAM (TCP) or SOCK_DGRAM (UDP). */
  readonly type: number;
  /** The protocol asked for at socket(2) (0, IPPROTO_TCP or IPPROTO_UDP). */
  readonly protocol: number;
  /** 'connecting': a non-blocking (or interrupted) TCP connect under way. */
  readonly state: 'unbound' | 'bound' | 'listening' | 'connecting' | 'connected';
  /** The address the host reports for it (getsockname), once bound or connected. */
  readonly local?: SockAddr;
  /** The connected peer (TCP, or a connected UDP socket's default destination). */
  readonly peer?: SockAddr;
  /** listen(2) backlog. */
  readonly backlog?: number;
  /** setsockopt(2) values by "level:option", as the bytes given (applied again by a restore). */
  readonly opts: Readonly<Record<string, Uint8Array>>;
  /**
   * Set by a restore (--tcp-close-on-checkpoint) on a TCP connection whose host socket could not
   * survive: 'pending' reports ECONNRESET once (to a receive, a send or SO_ERROR), 'reported'
   * thereafter reads end of file and writes EPIPE.
   */
  readonly reset?: 'pending' | 'reported';
  /**
   * Owner [uid, gid] and permission bits of its sockfs inode once fchown/fchmod changed them
   * (unset: its creator's, 0777). The sandbox's own: the host socket is never changed.
   */
  readonly owner?: readonly [number, number];
  readonly mode?: number;
}

export interface HostInetFile extends OpenFileBase {
  readonly kind: 'hostinet';
  readonly hostinet: HostInetState;
}

/** Owner and permission bits of a host socket's sockfs inode, as the guest set them (HostInetState.owner/mode). */
function hostInetAttrs(t: Task, f: HostInetFile): InodeAttrs {
  const [uid, gid] = f.hostinet.owner ?? [t.tg.uid, t.tg.gid];
  return { uid, gid, mode: f.hostinet.mode ?? 0o777 };
}

export const hostInetFileOps: FileOps<HostInetFile> = {
  read: (t, f, buf, count) => hostInetRecv(t, f, [[buf, count]], 0),
  write: (t, f, buf, count) => hostInetSend(t, f, [[buf, count]], 0),
  readiness: (t, f) => hostInetReadiness(t, f),
  ioctl: (t, f, req, arg) => hostInetIoctl(t, f, req, arg),
  // One sockfs inode per socket, numbered as its /proc/PID/fd link ("socket:[N]") and /proc/net's inode column.
  stat: (t, f) => inodeStat(0x8, f.id, 0o140000, hostInetAttrs(t, f)),
  // fchmod/fchown change the sandbox's record of that inode, as for its own sockets (sock_setattr); the host socket is left alone.
  inodeAttrs: (t, f) => hostInetAttrs(t, f),
  setInodeAttrs(t, f, a) {
    t.kernel.emit({ type: 'socket.setattr', fileId: f.id, ...a }, [['set', ['openFiles', f.id, 'hostinet', 'owner'], [a.uid, a.gid]], ['set', ['openFiles', f.id, 'hostinet', 'mode'], a.mode]]);
  },
  release: (k, f) => hostInetRelease(k, f),
  restore: (k, f) => hostInetRestore(k, f),
  syncable: false,
  preadable: () => false,
  pwritable: () => false,
};
