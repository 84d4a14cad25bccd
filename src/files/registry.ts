/**
 * Every kind of open file and its file operations: one line per kind. A new kind of file
 * is a module in src/files/ (its graph record, extending OpenFileBase, and its FileOps)
 * plus one line here and one member in the OpenFileState union (src/kernel/state.ts).
 */
import type { OpenFileKind, OpenFileState } from '../kernel/state.js';
import type { FileOps } from './file-ops.js';
import { byId, persisted, type PersistedKind } from '../kernel/persist.js';
import { hostFileOps } from './host.js';
import { upperFileOps } from './upper.js';
import { hostFdFileOps } from './hostfd.js';
import { devFileOps } from './dev.js';
import { syntheticFileOps } from './synthetic.js';
import { dirFileOps } from './dir.js';
import { pipeFileOps } from './pipe.js';
import { epollFileOps } from './epoll.js';
import { pidFdFileOps } from './pidfd.js';
import { eventFdFileOps } from './eventfd.js';
import { socketFileOps } from './socket.js';
import { hostInetFileOps } from './hostinet.js';
import { ptyFileOps } from './pty.js';
import { timerFdFileOps } from './timerfd.js';
import { signalFdFileOps } from './signalfd.js';
import { inotifyFileOps } from './inotify.js';

/** File operations by kind (the type makes a missing or mistyped kind a compile error). */
export const FILE_KINDS: { readonly [K in OpenFileKind]: FileOps<Extract<OpenFileState, { kind: K }>> } = {
  host: hostFileOps,
  upper: upperFileOps,
  hostfd: hostFdFileOps,
  dev: devFileOps,
  synthetic: syntheticFileOps,
  dir: dirFileOps,
  pipe: pipeFileOps,
  epoll: epollFileOps,
  pidfd: pidFdFileOps,
  eventfd: eventFdFileOps,
  socket: socketFileOps,
  hostinet: hostInetFileOps,
  pty: ptyFileOps,
  timerfd: timerFdFileOps,
  signalfd: signalFdFileOps,
  inotify: inotifyFileOps,
};

/** The file operations of an open file. */
export function fileOpsOf(f: OpenFileState): FileOps {
  return FILE_KINDS[f.kind] as FileOps;
}

/**
 * Persistence of open files, one kind each: the record (its type beside its FileOps) is data;
 * the runtime part is rebuilt by the kind's `restore` (host files are re-opened and checked).
 */
export const filePersists: PersistedKind<OpenFileState>[] = (Object.keys(FILE_KINDS) as OpenFileKind[]).map((kind) => persisted<OpenFileState>({
  kind: `file:${kind}`,
  records: (g) => byId(g.openFiles).filter(([, f]) => f.kind === kind),
  restore(k) {
    const ops = FILE_KINDS[kind] as FileOps;
    if (!ops.restore) return undefined;
    for (const f of Object.values(k.state.openFiles)) {
      if (f.kind !== kind) continue;
      const why = ops.restore(k, f);
      if (why) return why;
    }
    return undefined;
  },
  rebuilds: kind === 'host' ? 'the host file is opened again beneath the rootfs handle and must have the recorded size and mtime'
    : kind === 'hostfd' ? 'attached to the restoring command\'s own stdio fd of the same number'
    : kind === 'hostinet' ? 'a new host socket with the recorded options, bound (and listening, or UDP-connected) as recorded; a TCP connection is left reset (src/net/hostinet.ts)'
    : 'nothing: plain data',
}));
