/** 'socket' files: sockets of the sandbox's loopback network (the sockets themselves are src/net/socket.ts). */
import type { OpenFileBase, SocketState } from '../kernel/state.js';
import { releaseSocket, socketIoctl, socketRead, socketReadiness, socketWrite } from '../net/socket.js';
import { PIPE_BUF } from '../abi/linux.js';
import { FileOps, anonStat } from './file-ops.js';

/** Graph record: the socket's whole state (connection pipes, addresses, queues, options). */
export interface SocketFile extends OpenFileBase {
  readonly kind: 'socket';
  readonly socket: SocketState;
}

export const socketFileOps: FileOps<SocketFile> = {
  read: (t, f, buf, count) => (count === 0 ? 0 : socketRead(t, f, buf, count)), // sock_read_iter: a 0-byte read returns 0 at once
  write: (t, f, buf, count) => socketWrite(t, f, buf, count),
  readiness: (t, f) => socketReadiness(t, f, PIPE_BUF),
  ioctl: (t, f, req, arg) => socketIoctl(t, f, req, arg),
  // One sockfs inode per socket, numbered as its /proc/PID/fd link ("socket:[N]", N the open file's id), owned by its creator.
  stat: (t, f) => {
    const st = anonStat(t, 0x8, f.id, 0o140777, f.socket.tx);
    return f.socket.owner ? { ...st, uid: f.socket.owner[0], gid: f.socket.owner[1] } : st;
  },
  release: (k, f) => releaseSocket(k, f),
  syncable: false,
  preadable: () => false,
  pwritable: () => false,
};
