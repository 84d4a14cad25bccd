/**
 * splice(2) and tee(2) (man 2 splice, man 2 tee; fs/splice.c): bytes moved between a pipe and a
 * regular file, or between two pipes, without passing through the caller's memory. The pipes
 * are src/ipc/pipe.ts's; the files the upper layer's or the host's (volumes, the lower layer).
 * Sockets are not spliced here (EINVAL), nor is vmsplice implemented.
 */
import { filter } from 'rxjs';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState, PipeWriteWaiter } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import type { PipeFile } from '../files/pipe.js';
import { syscall } from './entry.js';
import { readRegular, regularSize } from './file.js';
import { checkFileGrowth, fileWriteLimit } from '../kernel/rlimits.js';
import { inodeWrite } from '../vfs/inode-data.js';
import { isReg } from '../vfs/stat.js';
import { O_ACCMODE, O_APPEND, O_NONBLOCK, O_PATH, O_RDONLY, O_WRONLY, SIGPIPE } from '../abi/linux.js';
import { IN_ACCESS, IN_MODIFY, fsnotifyFile } from '../files/inotify.js';

const SPLICE_F_NONBLOCK = 0x02, SPLICE_F_ALL = 0x0f;
/** At most this many bytes per call (a pipe holds 64 KiB; a short count is allowed). */
const MAX_CHUNK = 1 << 20;

type Regular = OpenFileState & { kind: 'host' | 'upper' };

const isRegular = (t: Task, f: OpenFileState): f is Regular =>
  (f.kind === 'upper' && isReg(t.kernel.state.fs.inodes[f.inodeId]?.mode ?? 0)) || (f.kind === 'host' && isReg(t.kernel.fileOps(f).stat(t, f).mode));

/** Write `data` into a regular file at `pos` (bytes written; EFBIG + SIGXFSZ past RLIMIT_FSIZE). */
function writeRegular(t: Task, f: Regular, pos: number, data: Uint8Array): number {
  const k = t.kernel;
  const n = fileWriteLimit(t, pos, data.length);
  if (f.kind === 'host') {
    const hfd = k.hostFiles.fd(f);
    let done = 0;
    while (done < n) {
      const w = k.hostFiles.write(hfd, data.subarray(done, n), pos + done);
      if (w <= 0) break;
      done += w;
    }
    return done;
  }
  const ino = k.state.fs.inodes[f.inodeId];
  checkFileGrowth(t, ino.size, Math.max(ino.size, pos + n));
  inodeWrite(k, ino, pos, n, (put) => put(data.subarray(0, n), 0));
  return n;
}

/** Take `n` bytes from the front of pipe `id`'s buffer (a copy). */
function takeFromPipe(t: Task, id: number, n: number, consume: boolean): Uint8Array {
  const k = t.kernel, p = k.state.pipes[id];
  const data = p.buf.slice(0, n);
  if (consume) {
    k.emit({ type: 'pipe.read', pipe: id, len: n }, [['bytes', ['pipes', id], n, 0, new Uint8Array(0)], ['set', ['pipes', id, 'readTotal'], (p.readTotal ?? 0) + n]], true);
    k.pipes.changed$.next(id);
  }
  return data;
}

/** Append bytes to pipe `id`'s buffer (the caller checked the space). */
function putIntoPipe(t: Task, id: number, data: Uint8Array): void {
  const k = t.kernel, p = k.state.pipes[id];
  const ops: GraphOp[] = [['bytes', ['pipes', id], 0, 0, data], ['set', ['pipes', id, 'written'], (p.written ?? 0) + data.length]];
  k.emit({ type: 'pipe.write', pipe: id, len: data.length }, ops, true);
  k.pipes.changed$.next(id);
}

/** The pipe behind an open file, if it is one (an anonymous pipe's end or an open FIFO). */
const pipeOf = (f: OpenFileState): number | undefined => (f.kind === 'pipe' ? (f as PipeFile).pipeId : undefined);

/** Wait for pipe `id` to change, then try again; a 'pipe-read' (data) or 'pipe-write' (space) waiter, restarted after a handler. */
function waitOn(t: Task, f: OpenFileState, id: number, forSpace: boolean, attempt: () => number | undefined): SyscallResult {
  const k = t.kernel;
  const waiter = forSpace
    ? ({ kind: 'pipe-write', fileId: f.id, interruptible: true, restartable: true, progress: 0 } as PipeWriteWaiter)
    : ({ kind: 'pipe-read', fileId: f.id, interruptible: true, restartable: true } as const);
  return { waiter, result$: k.whenRunnable(k.pipes.changed$.pipe(filter((x) => x === id)), attempt) };
}

/** EPIPE and SIGPIPE for a pipe with no reader (pipe_write). */
function brokenPipe(t: Task): number {
  t.kernel.signals.send(t.tgid, SIGPIPE, { signo: SIGPIPE, code: 0, pid: t.tgid }, t.tid);
  return -E.EPIPE;
}

/**
 * splice(2), in do_splice's order: 0 for a zero length, EINVAL for unknown flags, EBADF for a
 * bad fd or one not open for reading (input) or writing (output), EINVAL for an O_APPEND output;
 * then by the kinds: both pipes (ESPIPE with an offset pointer, EINVAL for one pipe twice), a
 * pipe into a regular file, or a regular file into a pipe (ESPIPE for an offset pointer on the
 * pipe's side, EFAULT for a bad one, EINVAL for a negative offset); EINVAL otherwise. A splice
 * waits for data or for space unless SPLICE_F_NONBLOCK or the pipe is O_NONBLOCK (EAGAIN); it
 * returns 0 at end of input. The offsets behind the pointers (guest addresses of loff_t) or the
 * file's offset advance by the bytes moved. At most 1 MiB per call.
 */
function splice(t: Task): SyscallResult {
  const k = t.kernel;
  const inFd = t.argInt(0), offInPtr = t.arg(1), outFd = t.argInt(2), offOutPtr = t.arg(3), len = t.arg(4), flags = t.argU32(5);
  if (len === 0) return 0;
  if (flags & ~SPLICE_F_ALL) return -E.EINVAL;
  const fin = k.file(t, inFd), fout = k.file(t, outFd);
  const accIn = fin.flags & O_ACCMODE, accOut = fout.flags & O_ACCMODE;
  if ((fin.flags & O_PATH) || (fout.flags & O_PATH) || accIn === O_WRONLY || accIn === 3 || accOut === O_RDONLY || accOut === 3) return -E.EBADF;
  if (fout.flags & O_APPEND) return -E.EINVAL;
  const ip = pipeOf(fin), op = pipeOf(fout);
  const count = Math.min(len, MAX_CHUNK);
  if (ip !== undefined && op !== undefined) {
    if (offInPtr || offOutPtr) return -E.ESPIPE;
    if (ip === op) return -E.EINVAL;
    const nonblock = !!(flags & SPLICE_F_NONBLOCK) || !!(fin.flags & O_NONBLOCK) || !!(fout.flags & O_NONBLOCK);
    let waitingForSpace = false;
    const attempt = (): number | undefined => {
      const a = k.state.pipes[ip], b = k.state.pipes[op];
      if (!b || b.readers === 0) return brokenPipe(t);
      if (!a || (a.len === 0 && a.writers === 0)) return 0;
      const space = b.buf.length - b.len;
      waitingForSpace = a.len > 0 && space === 0;
      if (a.len === 0 || space === 0) return nonblock ? -E.EAGAIN : undefined;
      const n = Math.min(count, a.len, space);
      putIntoPipe(t, op, takeFromPipe(t, ip, n, true));
      return n;
    };
    const now = attempt();
    return now !== undefined ? now : waitOn(t, waitingForSpace ? fout : fin, waitingForSpace ? op : ip, waitingForSpace, attempt);
  }
  if (ip !== undefined) {
    // A pipe into a regular file.
    if (offInPtr) return -E.ESPIPE;
    if (!isRegular(t, fout)) return -E.EINVAL;
    const pos = offOutPtr ? Number(BigInt.asIntN(64, t.mm.readU64(offOutPtr))) : fout.offset;
    if (pos < 0) return -E.EINVAL;
    const nonblock = !!(flags & SPLICE_F_NONBLOCK) || !!(fin.flags & O_NONBLOCK);
    const attempt = (): number | undefined => {
      const p = k.state.pipes[ip];
      if (!p || (p.len === 0 && p.writers === 0)) return 0;
      if (p.len === 0) return nonblock ? -E.EAGAIN : undefined;
      const data = takeFromPipe(t, ip, Math.min(count, p.len), false);
      const n = writeRegular(t, fout, pos, data);
      takeFromPipe(t, ip, n, true);
      if (offOutPtr) t.mm.writeU64(offOutPtr, pos + n); else k.seek(fout, pos + n);
      if (n > 0) fsnotifyFile(k, fout, IN_MODIFY);
      return n;
    };
    const now = attempt();
    return now !== undefined ? now : waitOn(t, fin, ip, false, attempt);
  }
  if (op !== undefined) {
    // A regular file into a pipe.
    if (offOutPtr) return -E.ESPIPE;
    if (!isRegular(t, fin)) return -E.EINVAL;
    const pos = offInPtr ? Number(BigInt.asIntN(64, t.mm.readU64(offInPtr))) : fin.offset;
    if (pos < 0) return -E.EINVAL;
    const nonblock = !!(flags & SPLICE_F_NONBLOCK) || !!(fout.flags & O_NONBLOCK);
    const attempt = (): number | undefined => {
      const p = k.state.pipes[op];
      if (!p || p.readers === 0) return brokenPipe(t);
      const space = p.buf.length - p.len;
      if (space === 0) return nonblock ? -E.EAGAIN : undefined;
      const data = readRegular(t, fin, pos, Math.min(count, space, Math.max(0, regularSize(t, fin) - pos)));
      if (data.length === 0) return 0;
      putIntoPipe(t, op, data);
      if (offInPtr) t.mm.writeU64(offInPtr, pos + data.length); else k.seek(fin, pos + data.length);
      fsnotifyFile(k, fin, IN_ACCESS);
      return data.length;
    };
    const now = attempt();
    return now !== undefined ? now : waitOn(t, fout, op, true, attempt);
  }
  return -E.EINVAL;
}

/**
 * tee(2): copy up to `len` bytes from one pipe to another without consuming them. EINVAL for
 * unknown flags, for files that are not pipes or one pipe twice; EBADF for fds not open for
 * reading/writing; waits for data or space unless SPLICE_F_NONBLOCK (EAGAIN); 0 when the input
 * pipe is empty with no writers.
 */
function tee(t: Task): SyscallResult {
  const k = t.kernel;
  const inFd = t.argInt(0), outFd = t.argInt(1), len = t.arg(2), flags = t.argU32(3);
  if (flags & ~SPLICE_F_ALL) return -E.EINVAL;
  if (len === 0) return 0;
  const fin = k.file(t, inFd), fout = k.file(t, outFd);
  const accIn = fin.flags & O_ACCMODE, accOut = fout.flags & O_ACCMODE;
  if ((fin.flags & O_PATH) || (fout.flags & O_PATH) || accIn === O_WRONLY || accIn === 3 || accOut === O_RDONLY || accOut === 3) return -E.EBADF;
  const ip = pipeOf(fin), op = pipeOf(fout);
  if (ip === undefined || op === undefined || ip === op) return -E.EINVAL;
  const nonblock = !!(flags & SPLICE_F_NONBLOCK);
  let waitingForSpace = false;
  const attempt = (): number | undefined => {
    const a = k.state.pipes[ip], b = k.state.pipes[op];
    if (!b || b.readers === 0) return brokenPipe(t);
    if (!a || (a.len === 0 && a.writers === 0)) return 0;
    const space = b.buf.length - b.len;
    waitingForSpace = a.len > 0 && space === 0;
    if (a.len === 0 || space === 0) return nonblock ? -E.EAGAIN : undefined;
    const n = Math.min(len, MAX_CHUNK, a.len, space);
    putIntoPipe(t, op, takeFromPipe(t, ip, n, false));
    return n;
  };
  const now = attempt();
  return now !== undefined ? now : waitOn(t, waitingForSpace ? fout : fin, waitingForSpace ? op : ip, waitingForSpace, attempt);
}

export const spliceSyscalls = [
  syscall('splice', 6, splice, 'partial', 'between a pipe and a regular file (upper layer or host) or two pipes; sockets give EINVAL; at most 1 MiB per call'),
  syscall('tee', 4, tee, 'full'),
];
