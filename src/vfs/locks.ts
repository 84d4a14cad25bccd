/**
 * Advisory file locks, as Linux's fs/locks.c keeps them: POSIX record locks (fcntl F_SETLK/
 * F_SETLKW/F_GETLK, owned by a process, byte ranges split and merged, released when the process
 * closes any fd of the file or exits, deadlock detection EDEADLK), open-file-description locks
 * (F_OFD_*, owned by the open file description, sharing the POSIX locks' space) and flock(2) locks
 * (whole file, owned by the open file description, a space of their own).
 *
 * Every lock is plain data in the graph (`FilesystemState.locks`, by lock key), so held locks are in
 * checkpoints. A blocked F_SETLKW or flock is a 'lock' waiter: a restored waiter re-runs the call and
 * waits again. Who waits for whom (for EDEADLK) is runtime state, rebuilt as the restored calls wait.
 */
import { Subject } from 'rxjs';
import { E } from '../errno.js';
import type { Kernel } from '../kernel/kernel.js';
import type { FileLock, FilesystemState, OpenFileState } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';

export type { FileLock };

/** F_RDLCK / F_WRLCK / F_UNLCK (struct flock l_type). */
export const F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
/** Largest offset (OFFSET_MAX): a lock "to the end of the file" ends here. */
export const OFFSET_MAX = (1n << 63n) - 1n;


/** A lock request: what F_SETLK(W)/F_OFD_SETLK(W)/flock asks for (type F_UNLCK removes). */
export interface LockRequest {
  kind: FileLock['kind'];
  type: number;
  start: bigint;
  end: bigint;
  owner: number;
  pid: number;
}

/**
 * The key locks of an open file are filed under: the upper-layer inode, else the lower file's guest
 * path (moved to the inode's key when the file is copied up: `moveLocksOnCopyUp`), else the open file
 * itself (a pipe or socket: only its own description can lock it).
 */
export function lockKey(f: OpenFileState): string {
  const inodeId = (f as { inodeId?: number }).inodeId;
  if (inodeId !== undefined) return `i${inodeId}`;
  if (f.kind === 'host') return `p${f.path}`;
  return `f${f.id}`;
}

/**
 * The ops that move a lower file's locks to its new upper inode (overlayfs copy-up keeps the
 * file's identity for locks); none when it has none.
 */
export function moveLocksOnCopyUp(fs: FilesystemState, path: string, inodeId: number): GraphOp[] {
  const locks = fs.locks;
  const from = locks?.[`p${path}`];
  if (!locks || !from) return [];
  return [['del', ['fs', 'locks', `p${path}`]], ['set', ['fs', 'locks', `i${inodeId}`], [...(locks[`i${inodeId}`] ?? []), ...from]]];
}

/** Set the locks held on `key` (none: the key goes): event lock.change. */
function setLocks(k: Kernel, key: string, next: FileLock[]): void {
  const ops: GraphOp[] = k.state.fs.locks ? [] : [['set', ['fs', 'locks'], {}]];
  ops.push(next.length ? ['set', ['fs', 'locks', key], next] : ['del', ['fs', 'locks', key]]);
  k.emit({ type: 'lock.change', key, count: next.length }, ops);
}

/** Runtime per kernel: wake-ups by lock key, and which POSIX owner waits on which key (deadlock detection). */
interface LockRuntime { changed$: Subject<string>; waiting: Map<number, { key: string; req: LockRequest }> }
const runtimes = new WeakMap<Kernel, LockRuntime>();
/** The lock runtime of kernel `k` (made on first use). */
export function lockRuntime(k: Kernel): LockRuntime {
  let r = runtimes.get(k);
  if (!r) { r = { changed$: new Subject<string>(), waiting: new Map() }; runtimes.set(k, r); }
  return r;
}

const sameSpace = (a: FileLock['kind'], b: FileLock['kind']) => (a === 'flock') === (b === 'flock');
const sameOwner = (l: FileLock, r: LockRequest) => (l.kind === 'posix') === (r.kind === 'posix') && l.owner === r.owner;

/** Whether held lock `l` stands in the way of request `r` (fs/locks.c posix_locks_conflict, flock_locks_conflict). */
function conflicts(l: FileLock, r: LockRequest): boolean {
  if (!sameSpace(l.kind, r.kind) || sameOwner(l, r)) return false;
  if (l.type !== F_WRLCK && r.type !== F_WRLCK) return false;
  return l.start <= r.end && r.start <= l.end;
}

/** The first held lock on `key` that conflicts with `r`, if any (F_GETLK's answer). */
export function findConflict(k: Kernel, key: string, r: LockRequest): FileLock | undefined {
  return k.state.fs.locks?.[key]?.find((l) => conflicts(l, r));
}

/**
 * Whether POSIX owner `owner` waiting for `blocker` would close a cycle of waiting owners
 * (posix_locks_deadlock: follows what each blocker itself waits for, at most 10 steps).
 */
function wouldDeadlock(k: Kernel, owner: number, blocker: FileLock): boolean {
  const { waiting } = lockRuntime(k);
  let b: FileLock | undefined = blocker;
  for (let i = 0; b && b.kind === 'posix' && i < 10; i++) {
    if (b.owner === owner) return true;
    const w = waiting.get(b.owner);
    if (!w) return false;
    b = findConflict(k, w.key, w.req);
  }
  return false;
}

/**
 * Try to apply `r` on `key` now: 0 when done, -EAGAIN when a conflicting lock is held (the caller
 * blocks or fails), -EDEADLK when `blocking` and waiting would deadlock (POSIX locks only), -ENOLCK
 * past the per-file lock count. Unlocking always succeeds. A POSIX/OFD lock replaces the owner's
 * locks on its range (splitting them) and merges with the owner's adjacent locks of the same type;
 * a flock lock replaces the owner's lock on the file.
 */
export function tryLock(k: Kernel, key: string, r: LockRequest, blocking: boolean): number {
  const fs = k.state.fs;
  const held = fs.locks?.[key] ?? [];
  if (r.type !== F_UNLCK) {
    const c = held.find((l) => conflicts(l, r));
    if (c) {
      if (blocking && r.kind === 'posix' && wouldDeadlock(k, r.owner, c)) return -E.EDEADLK;
      return -E.EAGAIN;
    }
  }
  let next: FileLock[];
  if (r.kind === 'flock') {
    next = held.filter((l) => !(l.kind === 'flock' && l.owner === r.owner));
    if (r.type !== F_UNLCK) next.push({ kind: 'flock', type: r.type as 0 | 1, start: 0n, end: OFFSET_MAX, owner: r.owner, pid: r.pid });
  } else {
    next = [];
    const mine: FileLock[] = [];
    for (const l of held) (sameOwner(l, r) ? mine : next).push(l);
    // Cut the request's range out of the owner's locks (posix_lock_inode's split).
    const kept: FileLock[] = [];
    for (const l of mine) {
      if (l.end < r.start || l.start > r.end) { kept.push(l); continue; }
      if (l.start < r.start) kept.push({ ...l, end: r.start - 1n });
      if (l.end > r.end) kept.push({ ...l, start: r.end + 1n });
    }
    if (r.type !== F_UNLCK) kept.push({ kind: r.kind, type: r.type as 0 | 1, start: r.start, end: r.end, owner: r.owner, pid: r.pid });
    // Merge touching or overlapping locks of the same type.
    kept.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const merged: FileLock[] = [];
    for (const l of kept) {
      const last = merged[merged.length - 1];
      if (last && last.type === l.type && last.end !== OFFSET_MAX && last.end + 1n >= l.start) {
        if (l.end > last.end) merged[merged.length - 1] = { ...last, end: l.end };
      } else merged.push({ ...l });
    }
    next.push(...merged);
  }
  if (next.length > 100_000) return -E.ENOLCK;
  if (next.length || held.length) setLocks(k, key, next);
  lockRuntime(k).changed$.next(key);
  return 0;
}

/** Drop every lock on `key` matching `pred`, waking waiters if any went. */
function dropWhere(k: Kernel, key: string, pred: (l: FileLock) => boolean): void {
  const held = k.state.fs.locks?.[key];
  if (!held) return;
  const next = held.filter((l) => !pred(l));
  if (next.length === held.length) return;
  setLocks(k, key, next);
  lockRuntime(k).changed$.next(key);
}

/** close(2) of any fd of file `f` by process `tgid` releases all its POSIX locks on that file (locks_remove_posix). */
export function releasePosixOnClose(k: Kernel, tgid: number, f: OpenFileState): void {
  if (k.state.fs.locks) dropWhere(k, lockKey(f), (l) => l.kind === 'posix' && l.owner === tgid);
}

/** The last reference to open file `f` went: its OFD and flock locks go (locks_remove_file). */
export function releaseFileLocks(k: Kernel, f: OpenFileState): void {
  if (k.state.fs.locks) dropWhere(k, lockKey(f), (l) => l.kind !== 'posix' && l.owner === f.id);
}

/** Process `tgid` exited: all its POSIX locks go. */
export function releaseProcessLocks(k: Kernel, tgid: number): void {
  const locks = k.state.fs.locks;
  if (!locks) return;
  for (const key of Object.keys(locks)) dropWhere(k, key, (l) => l.kind === 'posix' && l.owner === tgid);
  lockRuntime(k).waiting.delete(tgid);
}
