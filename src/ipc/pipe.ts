/**
 * Pipes (fs/pipe.c, man 7 pipe): a 64 KiB buffer in the graph between a read and a write
 * open file. Writes of at most PIPE_BUF bytes are atomic; a reader blocks while the pipe
 * is empty and a writer exists; writing with no reader gives EPIPE and SIGPIPE. Blocked
 * readers and writers are Waiters woken through `changed$`; a partly done blocking write
 * keeps its progress in the waiter, so a restored task never writes a byte twice.
 */
import { byId, persisted } from '../kernel/persist.js';
import type { PipeFile } from '../files/pipe.js';
import type { SocketFile } from '../files/socket.js';
import { Subject, filter } from 'rxjs';
import { E } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { InodeState, PipeState, PipeWriteWaiter } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import { O_CLOEXEC, O_DIRECT, O_NONBLOCK, O_WRONLY, PIPE_BUF, PROT_READ, PROT_WRITE, SIGPIPE, SI_USER } from '../abi/linux.js';

export const PIPE_CAPACITY = 65536;
const EMPTY = new Uint8Array(0);

/** A new pipe's owner: the creating task's filesystem uid and gid. */
function ownerOf(t: Task): [number, number] {
  const tg = t.tg;
  return [tg.cred?.fsuid ?? tg.uid, tg.cred?.fsgid ?? tg.gid];
}

export class Pipes {
  /** Fires with a pipe's id whenever its buffer or its ends change. */
  readonly changed$ = new Subject<number>();

  constructor(private readonly k: Kernel) {}

  /** pipe2(2): a new pipe; returns [read fd, write fd]. EINVAL for unknown flags, EMFILE. */
  create(t: Task, flags: number): [number, number] | number {
    if (flags & ~(O_NONBLOCK | O_CLOEXEC | O_DIRECT)) return -E.EINVAL;
    const k = this.k;
    const id = k.newId();
    k.emit({ type: 'pipe.create', pipe: id }, [['set', ['pipes', id], { id, buf: new Uint8Array(PIPE_CAPACITY), len: 0, readers: 1, writers: 1, owner: ownerOf(t) }]]);
    const nb = flags & O_NONBLOCK;
    const r = k.newOpenFile({ kind: 'pipe', path: `pipe:[${id}]`, flags: nb, pipeId: id });
    const w = k.newOpenFile({ kind: 'pipe', path: `pipe:[${id}]`, flags: O_WRONLY | nb, pipeId: id });
    const cloexec = !!(flags & O_CLOEXEC);
    const rfd = k.installFd(t, r.id, cloexec);
    if (rfd < 0) { k.unrefFile(r.id); k.unrefFile(w.id); return rfd; }
    const wfd = k.installFd(t, w.id, cloexec);
    if (wfd < 0) { k.closeFd(t, rfd); k.unrefFile(w.id); return wfd; }
    return [rfd, wfd];
  }

  /**
   * open(2) of a FIFO (man 7 fifo): both ends meet in one pipe. O_RDWR never blocks; a
   * reader waits for a writer and a writer for a reader unless O_NONBLOCK (then a lone
   * writer gets ENXIO). Access mode 3 (neither reading nor writing) is EINVAL (fifo_open).
   */
  openFifo(t: Task, inode: InodeState, path: string, flags: number): SyscallResult {
    if ((flags & 3) === 3) return -E.EINVAL;
    const k = this.k;
    let p = inode.fifoPipeId !== undefined ? k.state.pipes[inode.fifoPipeId] : undefined;
    if (!p) {
      const id = k.newId();
      k.emit({ type: 'pipe.create', pipe: id }, [
        ['set', ['pipes', id], { id, buf: new Uint8Array(PIPE_CAPACITY), len: 0, readers: 0, writers: 0 }], ['set', ['fs', 'inodes', inode.id, 'fifoPipeId'], id],
      ]);
      p = k.state.pipes[id];
    }
    const pipe = p;
    const acc = flags & 3;
    if (acc === O_WRONLY && (flags & O_NONBLOCK) && pipe.readers === 0) return -E.ENXIO;
    this.ends(pipe, acc !== O_WRONLY ? 1 : 0, acc !== 0 ? 1 : 0);
    const f = k.newOpenFile({ kind: 'pipe', path, flags: flags & ~(0o100 | 0o200 | 0o1000), pipeId: pipe.id, inodeId: inode.id });
    const install = () => {
      const fd = k.installFd(t, f.id, !!(flags & O_CLOEXEC));
      if (fd < 0) { k.unrefFile(f.id); }
      return fd;
    };
    this.changed$.next(pipe.id);
    const peerMissing = () => (acc === 0 ? pipe.writers === 0 : acc === O_WRONLY ? pipe.readers === 0 : false);
    if (!peerMissing() || (flags & O_NONBLOCK)) return install();
    return {
      waiter: { kind: 'fifo-open', interruptible: true, restartable: true },
      result$: this.k.whenRunnable(this.wake$(pipe.id), () => (peerMissing() ? undefined : install())),
    };
  }

  /** A new pipe with the given ends open (socketpair builds a stream of two of these). */
  newPipe(readers: number, writers: number): PipeState {
    const id = this.k.newId();
    this.k.emit({ type: 'pipe.create', pipe: id }, [['set', ['pipes', id], { id, buf: new Uint8Array(PIPE_CAPACITY), len: 0, readers, writers, owner: this.k.current && ownerOf(this.k.current) }]]);
    return this.k.state.pipes[id];
  }

  /** Add `readers` and `writers` (±1) to a pipe's open ends: event pipe.ends. */
  ends(p: PipeState, readers: number, writers: number): void {
    if (!readers && !writers) return;
    this.k.emit({ type: 'pipe.ends', pipe: p.id, readers: p.readers + readers, writers: p.writers + writers }, [
      ['set', ['pipes', p.id, 'readers'], p.readers + readers], ['set', ['pipes', p.id, 'writers'], p.writers + writers],
    ]);
  }

  /** Close one end of a pipe by id (socket shutdown and release). */
  closeEnd(pipeId: number, end: 'read' | 'write'): void {
    const p = this.k.state.pipes[pipeId];
    if (!p) return;
    this.ends(p, end === 'read' ? -1 : 0, end === 'write' ? -1 : 0);
    if (p.readers <= 0 && p.writers <= 0) this.drop(p);
    this.changed$.next(p.id);
  }

  /** A pipe nobody holds: gone, with any files that were in flight on it. */
  private drop(p: PipeState): void {
    this.k.emit({ type: 'pipe.release', pipe: p.id }, [['del', ['pipes', p.id]]]);
    for (const r of p.rights ?? []) for (const id of r.fileIds) this.k.unrefFile(id);
  }

  /** The last fd of one end was closed. */
  release(f: PipeFile): void {
    const p = this.k.state.pipes[f.pipeId];
    if (!p) return;
    const acc = f.flags & 3;
    this.ends(p, acc !== O_WRONLY ? -1 : 0, acc !== 0 ? -1 : 0);
    if (p.readers <= 0 && p.writers <= 0) this.k.emit({ type: 'pipe.release', pipe: p.id }, [['del', ['pipes', p.id]]]);
    this.changed$.next(p.id);
  }

  private wake$(id: number) {
    return this.changed$.pipe(filter((x) => x === id));
  }

  /** Bytes readable now (FIONREAD). */
  available(f: PipeFile): number {
    return this.k.state.pipes[f.pipeId]?.len ?? 0;
  }

  /** read(2) on a pipe's read end. */
  read(t: Task, f: PipeFile | SocketFile, buf: number, count: number, pipeId = (f as PipeFile).pipeId, nonblock = !!(f.flags & O_NONBLOCK), onRights?: (fileIds: number[]) => void): SyscallResult {
    if (count === 0) return 0;
    t.mm.chunks(buf, 1, PROT_WRITE, () => undefined); // EFAULT before blocking
    const attempt = (): number | undefined => {
      const p = this.k.state.pipes[pipeId];
      if (!p) return 0;
      if (p.len > 0) {
        let n = Math.min(count, p.len);
        // Files passed with SCM_RIGHTS arrive with their byte; a read never runs past the next such byte.
        const pos = p.readTotal ?? 0;
        if (p.rights?.length) {
          const head = p.rights[0];
          if (head.at === pos) {
            this.k.stage([['splice', ['pipes', p.id, 'rights'], 0, 1]]);
            if (onRights) onRights(head.fileIds); else for (const id of head.fileIds) this.k.unrefFile(id);
          }
          const next = p.rights?.[0];
          if (next && next.at > pos) n = Math.min(n, next.at - pos);
        }
        t.mm.chunks(buf, n, PROT_WRITE, (view, ro) => view.set(p.buf.subarray(ro, ro + view.length)));
        // Small: the op says how many bytes left the front of the buffer, not what is left.
        this.k.emit({ type: 'pipe.read', pipe: p.id, len: n }, [['bytes', ['pipes', p.id], n, 0, EMPTY], ['set', ['pipes', p.id, 'readTotal'], pos + n]], true);
        this.changed$.next(p.id);
        return n;
      }
      if (p.writers === 0) return 0;
      return undefined;
    };
    const now = attempt();
    if (now !== undefined) return now;
    if (nonblock) return -E.EAGAIN;
    return { waiter: { kind: 'pipe-read', fileId: f.id, interruptible: true, restartable: true }, result$: this.k.whenRunnable(this.wake$(pipeId), attempt) };
  }

  /**
   * write(2) on a pipe's write end (PIPE_BUF atomicity; a blocking write completes fully). `buf`:
   * the guest address of the bytes, or the bytes themselves (a kernel copy, e.g. sendmsg's gathered buffers).
   */
  write(t: Task, f: PipeFile | SocketFile, buf: number | Uint8Array, count: number, pipeId = (f as PipeFile).pipeId, nonblock = !!(f.flags & O_NONBLOCK), sigpipe = true): SyscallResult {
    if (count === 0) return 0;
    if (typeof buf === 'number') t.mm.chunks(buf, Math.min(count, 1), PROT_READ, () => undefined);
    const waiter: PipeWriteWaiter = { kind: 'pipe-write', fileId: f.id, interruptible: true, restartable: true, progress: t.resumed('pipe-write')?.progress ?? 0 };
    const attempt = (): number | undefined => {
      const p = this.k.state.pipes[pipeId];
      if (!p || p.readers === 0) {
        if (sigpipe) this.k.signals.send(t.tgid, SIGPIPE, { signo: SIGPIPE, code: SI_USER, pid: t.tgid }, t.tid);
        return waiter.progress > 0 ? waiter.progress : -E.EPIPE;
      }
      const space = p.buf.length - p.len;
      const left = count - waiter.progress;
      // Writes of at most PIPE_BUF bytes go in whole or not at all.
      const n = left <= PIPE_BUF ? (space >= left ? left : 0) : Math.min(space, left);
      if (n > 0) {
        // The op carries the bytes appended (a copy made here, owned by the event), not the buffer.
        const data = typeof buf === 'number' ? new Uint8Array(t.mm.read(buf + waiter.progress, n)) : buf.slice(waiter.progress, waiter.progress + n);
        const ops: GraphOp[] = [['bytes', ['pipes', p.id], 0, 0, data], ['set', ['pipes', p.id, 'written'], (p.written ?? 0) + n]];
        waiter.progress += n;
        // A blocked writer's progress is in its graph waiter (a restore resumes from it).
        if (this.k.state.tasks[t.tid]?.waiter?.kind === 'pipe-write') ops.push(['set', ['tasks', t.tid, 'waiter', 'progress'], waiter.progress]);
        this.k.emit({ type: 'pipe.write', pipe: p.id, len: n }, ops, true);
        this.changed$.next(p.id);
      }
      if (waiter.progress === count) return count;
      if (nonblock) return waiter.progress > 0 ? waiter.progress : -E.EAGAIN;
      return undefined;
    };
    const now = attempt();
    if (now !== undefined) return now;
    return { waiter, result$: this.k.whenRunnable(this.wake$(pipeId), attempt) };
  }
}

/** Persistence: a pipe's buffer, counts and in-flight SCM_RIGHTS are data. */
export const pipePersist = persisted<PipeState>({
  kind: 'pipe',
  records: (g) => byId(g.pipes),
  rebuilds: 'nothing: plain data (wake-up streams are made by the waiters that need them)',
});
