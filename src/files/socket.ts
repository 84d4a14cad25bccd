/** 'socket' files: sockets of the sandbox's loopback network (the sockets themselves are src/net/socket.ts). */
import type { OpenFileBase, SocketState } from '../kernel/state.js';
import { releaseSocket, socketIoctl, socketRead, socketReadiness, socketWrite } from '../net/socket.js';
import { PIPE_BUF } from '../abi/linux.js';
import { FileOps, InodeAttrs, inodeStat } from './file-ops.js';
import type { Task } from '../kernel/task.js';
import { socketPath } from '../net/door.js';
import { S_IFSOCK } from '../abi/linux.js';

/** Graph record: the socket's whole state (connection pipes, addresses, queues, options). */
export interface SocketFile extends OpenFileBase {
  readonly kind: 'socket';
  readonly socket: SocketState;
}

/**
 * A socket's sockfs inode: its creator's filesystem ids (older graphs: its pipe's creator, else
 * the caller) and mode 0777 until fchmod. A bound socket's name is another inode (bind's mknod).
 */
function socketAttrs(t: Task, f: SocketFile): InodeAttrs {
  const s = f.socket;
  const [uid, gid] = s.owner ?? (s.tx !== undefined ? t.kernel.state.pipes[s.tx]?.owner : undefined) ?? [t.tg.uid, t.tg.gid];
  return { uid, gid, mode: s.mode ?? 0o777 };
}

export const socketFileOps: FileOps<SocketFile> = {
  read: (t, f, buf, count) => (count === 0 ? 0 : socketRead(t, f, buf, count)), // sock_read_iter: a 0-byte read returns 0 at once
  write: (t, f, buf, count) => socketWrite(t, f, buf, count),
  readiness: (t, f) => socketReadiness(t, f, PIPE_BUF),
  ioctl: (t, f, req, arg) => socketIoctl(t, f, req, arg),
  // One sockfs inode per socket, numbered as its /proc/PID/fd link ("socket:[N]", N the open file's id), owned by its creator.
  stat: (t, f) => inodeStat(0x8, f.id, S_IFSOCK, socketAttrs(t, f)),
  inodeAttrs: (t, f) => socketAttrs(t, f),
  setInodeAttrs(t, f, a) {
    t.kernel.emit({ type: 'socket.setattr', fileId: f.id, ...a }, [['set', socketPath(f, 'owner'), [a.uid, a.gid]], ['set', socketPath(f, 'mode'), a.mode]]);
  },
  release: (k, f) => releaseSocket(k, f),
  syncable: false,
  preadable: () => false,
  pwritable: () => false,
};
