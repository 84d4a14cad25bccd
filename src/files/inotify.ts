/**
 * 'inotify' files (man 7 inotify; Linux fs/notify/inotify/, fs/notify/fsnotify.c,
 * include/linux/fsnotify.h): watches on filesystem objects and a queue of the events the
 * sandbox's own changes make on them. Everything is plain data in the open file's graph record
 * — its watches (wd, mask, the object watched) and its queued events — so both survive
 * checkpoint/restore as they are; nothing runs on the host (the host's own inotify is not used:
 * only the sandbox changes its upper layer, and the lower layer is read-only).
 *
 * Objects are named as the overlay names them: an upper-layer object by its inode id (it follows
 * renames, as a Linux inode does), a lower-layer one by its path until it is copied up (the first
 * event that finds it in the upper layer moves the watch onto the new inode).
 *
 * The hooks (`fsnotify*`) are called by the syscalls that change or use files, in Linux's order:
 * a child's event goes first to its parent directory's watches (with the child's name), then to
 * its own (fsnotify_parent, then the inode); IN_ATTRIB for a link count and IN_MOVE_SELF /
 * IN_DELETE_SELF go to the object only. Consecutive identical events are merged (inotify_merge);
 * past MAX_QUEUED_EVENTS one IN_Q_OVERFLOW (wd -1) is queued and further events are dropped.
 */
import { E, SyscallError } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { Kernel } from '../kernel/kernel.js';
import type { OpenFileBase, OpenFileState } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import type { Node } from '../vfs/vfs.js';
import { isDir } from '../vfs/stat.js';
import { filter } from 'rxjs';
import { FIONREAD, O_ACCMODE, O_NONBLOCK, O_PATH, O_RDONLY, POLLIN, POLLRDNORM } from '../abi/linux.js';
import { FileOps, anonInodeStat, copyToGuest } from './file-ops.js';

export const IN_ACCESS = 0x1, IN_MODIFY = 0x2, IN_ATTRIB = 0x4, IN_CLOSE_WRITE = 0x8, IN_CLOSE_NOWRITE = 0x10, IN_OPEN = 0x20;
export const IN_MOVED_FROM = 0x40, IN_MOVED_TO = 0x80, IN_CREATE = 0x100, IN_DELETE = 0x200, IN_DELETE_SELF = 0x400, IN_MOVE_SELF = 0x800;
export const IN_Q_OVERFLOW = 0x4000, IN_IGNORED = 0x8000;
export const IN_ONLYDIR = 0x0100_0000, IN_DONT_FOLLOW = 0x0200_0000, IN_EXCL_UNLINK = 0x0400_0000, IN_MASK_CREATE = 0x1000_0000, IN_MASK_ADD = 0x2000_0000;
export const IN_ISDIR = 0x4000_0000, IN_ONESHOT = 0x8000_0000;
export const IN_ALL_EVENTS = 0xfff;
/** The bits inotify_add_watch accepts (ALL_INOTIFY_BITS less IN_UNMOUNT/IN_Q_OVERFLOW/IN_IGNORED, which are output only). */
export const IN_VALID_BITS = (IN_ALL_EVENTS | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_MASK_CREATE | IN_MASK_ADD | IN_ONESHOT | IN_ISDIR | 0x2000 | IN_Q_OVERFLOW | IN_IGNORED) >>> 0;
/** /proc/sys/fs/inotify/max_queued_events (Linux's default). */
export const MAX_QUEUED_EVENTS = 16384;
/** /proc/sys/fs/inotify/max_user_instances (Linux's default): inotify_init1 gives EMFILE past it. */
export const MAX_INSTANCES = 128;

/** One watch: its descriptor, the mask asked for (events | IN_ONESHOT | IN_EXCL_UNLINK), the object watched. */
export interface InotifyWatch { readonly wd: number; readonly mask: number; readonly path: string; readonly inodeId?: number }
/** One queued event (struct inotify_event without its padding): `name` for an event about a directory's child. */
export interface InotifyEvent { readonly wd: number; readonly mask: number; readonly cookie: number; readonly name?: string }

/** Graph record: watches by creation order, the next wd to hand out (cyclic, from 1, as idr_alloc_cyclic), queued events. */
export interface InotifyFile extends OpenFileBase {
  readonly kind: 'inotify';
  readonly inotify: { readonly nextWd: number; readonly watches: readonly InotifyWatch[]; readonly queue: readonly InotifyEvent[] };
}

/** A filesystem object an event is about: its canonical path and, in the upper layer, its inode. */
export interface FsObject { path: string; inodeId?: number; dir: boolean }

/** The object a node names. */
export function fsObjectOf(n: Node): FsObject {
  const mode = n.kind === 'upper' ? n.inode.mode : n.kind === 'host' ? n.st.mode : n.node.mode;
  return { path: n.path, inodeId: n.kind === 'upper' ? n.inode.id : undefined, dir: isDir(mode) };
}

const parentOf = (p: string): string => p.slice(0, p.lastIndexOf('/')) || '/';
const baseOf = (p: string): string => p.slice(p.lastIndexOf('/') + 1);

/** The object at a path now, if any (the parent directory of an event). */
function objectAt(k: Kernel, p: string): FsObject | undefined {
  const n = k.vfs.lookup(p);
  return n ? fsObjectOf(n) : undefined;
}

/** Bytes of an event as read(2) returns it: 16 + its name NUL-padded to a multiple of 16. */
export function eventSize(e: InotifyEvent): number {
  return 16 + (e.name === undefined ? 0 : Math.ceil((e.name.length + 1) / 16) * 16);
}

/** The open inotify files of a kernel (runtime index over the graph, rebuilt on first use after a restore). */
const instances = new WeakMap<Kernel, Set<number>>();
function inotifyFiles(k: Kernel): Set<number> {
  let s = instances.get(k);
  if (!s) {
    s = new Set();
    for (const f of Object.values(k.state.openFiles)) if (f.kind === 'inotify') s.add(f.id);
    instances.set(k, s);
  }
  return s;
}

/** Whether watch `w` is on `o` (a lower-layer watch found copied up moves onto the inode). */
function watches(k: Kernel, f: InotifyFile, w: InotifyWatch, o: FsObject): boolean {
  if (w.inodeId !== undefined) return w.inodeId === o.inodeId;
  if (w.path !== o.path) return false;
  if (o.inodeId !== undefined) k.emit({ type: 'inotify.watch', fileId: f.id, wd: w.wd }, [['set', ['openFiles', f.id, 'inotify', 'watches', f.inotify.watches.indexOf(w), 'inodeId'], o.inodeId]]);
  return true;
}

/** Queue an event on an inotify file: merged with an identical last one; IN_Q_OVERFLOW once the queue is full. */
function queueEvent(k: Kernel, f: InotifyFile, e: InotifyEvent): void {
  const q = f.inotify.queue;
  const last = q[q.length - 1];
  const push = (ev: InotifyEvent) => k.emit({ type: 'inotify.queue', fileId: f.id, mask: ev.mask }, [['splice', ['openFiles', f.id, 'inotify', 'queue'], q.length, 0, ev]]);
  if (q.length >= MAX_QUEUED_EVENTS) {
    if (last?.mask !== IN_Q_OVERFLOW) push({ wd: -1, mask: IN_Q_OVERFLOW, cookie: 0 });
  } else if (last && last.wd === e.wd && last.mask === e.mask && last.cookie === e.cookie && last.name === e.name) {
    return;
  } else {
    push(e);
  }
  k.pipes.changed$.next(f.id);
}

/** Remove a watch and queue its IN_IGNORED (fsnotify_destroy_mark → inotify_freeing_mark). */
function dropWatch(k: Kernel, f: InotifyFile, w: InotifyWatch): void {
  const i = f.inotify.watches.indexOf(w);
  if (i < 0) return;
  k.emit({ type: 'inotify.watch', fileId: f.id, wd: w.wd }, [['splice', ['openFiles', f.id, 'inotify', 'watches'], i, 1]]);
  queueEvent(k, f, { wd: w.wd, mask: IN_IGNORED, cookie: 0 });
}

/**
 * Deliver event `mask` (one IN_* event bit) about object `o`: `name` set for a directory's
 * watches about its child. IN_ISDIR is added for a directory; a watch with IN_ONESHOT goes after
 * its first event; `unlinked` (an event through an open file whose name is gone) skips watches
 * with IN_EXCL_UNLINK.
 */
function deliver(k: Kernel, o: FsObject, mask: number, name: string | undefined, cookie: number, isDirObj: boolean, unlinked: boolean): void {
  for (const id of inotifyFiles(k)) {
    const f = k.state.openFiles[id] as InotifyFile | undefined;
    if (!f) continue;
    for (const w of [...f.inotify.watches]) {
      if (!(w.mask & mask) || !watches(k, f, w, o)) continue;
      if (unlinked && (w.mask & IN_EXCL_UNLINK)) continue;
      queueEvent(k, f, { wd: w.wd, mask: (mask | (isDirObj ? IN_ISDIR : 0)) >>> 0, cookie, ...(name === undefined ? {} : { name }) });
      if (w.mask & IN_ONESHOT) dropWatch(k, f, w);
    }
  }
}

/** Whether any inotify watch exists at all (every hook returns at once otherwise). */
function anyWatch(k: Kernel): boolean {
  for (const id of inotifyFiles(k)) if ((k.state.openFiles[id] as InotifyFile | undefined)?.inotify.watches.length) return true;
  return false;
}

/**
 * An event on object `o` (IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_OPEN, IN_CLOSE_*): to its parent
 * directory's watches with its name, then to its own (fsnotify_parent + fsnotify_inode).
 * `selfOnly`: to its own watches only (IN_ATTRIB of a link count change, fsnotify_link_count).
 */
export function fsnotify(k: Kernel, o: FsObject, mask: number, opts: { selfOnly?: boolean; unlinked?: boolean } = {}): void {
  if (!anyWatch(k)) return;
  if (!opts.selfOnly && o.path !== '/') {
    const parent = objectAt(k, parentOf(o.path));
    if (parent) deliver(k, parent, mask, baseOf(o.path), 0, o.dir, !!opts.unlinked);
  }
  deliver(k, o, mask, undefined, 0, o.dir, !!opts.unlinked);
}

/** The object behind an open file (its inode when upper), or undefined for kinds without one. */
function objectOfFile(k: Kernel, f: OpenFileState): { o: FsObject; unlinked: boolean } | undefined {
  if (f.kind === 'upper') {
    const ino = k.state.fs.inodes[f.inodeId];
    if (!ino) return undefined;
    return { o: { path: f.path, inodeId: f.inodeId, dir: isDir(ino.mode) }, unlinked: ino.nlink === 0 };
  }
  if (f.kind === 'host' || f.kind === 'dir') {
    const n = k.vfs.lookup(f.path);
    return { o: n ? fsObjectOf(n) : { path: f.path, dir: f.kind === 'dir' }, unlinked: !n };
  }
  return undefined;
}

/** An event through an open file (read → IN_ACCESS, write → IN_MODIFY, open, close): nothing for pipes, sockets and the like. */
export function fsnotifyFile(k: Kernel, f: OpenFileState, mask: number): void {
  if (!anyWatch(k) || (f.flags & O_PATH)) return;
  const of = objectOfFile(k, f);
  if (of) fsnotify(k, of.o, mask, { unlinked: of.unlinked });
}

/** The last reference to an open file is gone (__fput → fsnotify_close): IN_CLOSE_WRITE if it was open for writing, else IN_CLOSE_NOWRITE. */
export function fsnotifyClose(k: Kernel, f: OpenFileState): void {
  fsnotifyFile(k, f, (f.flags & O_ACCMODE) === O_RDONLY ? IN_CLOSE_NOWRITE : IN_CLOSE_WRITE);
}

/**
 * exec of the file at `path` (open_exec, kernel_read): IN_OPEN, `reads` IN_ACCESS (the ELF
 * header, the program headers, the PT_INTERP name) and, here at once rather than when the
 * mapping goes away, IN_CLOSE_NOWRITE.
 */
export function fsnotifyExec(k: Kernel, path: string, step: { open?: boolean; reads?: number; close?: boolean }): void {
  if (!anyWatch(k)) return;
  const n = k.vfs.lookup(path);
  if (!n) return;
  const o = fsObjectOf(n);
  if (step.open) fsnotify(k, o, IN_OPEN);
  for (let i = 0; i < (step.reads ?? 0); i++) fsnotify(k, o, IN_ACCESS);
  if (step.close) fsnotify(k, o, IN_CLOSE_NOWRITE);
}

/** A directory entry changed (IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO with `cookie`): to the watches of the directory at `dirPath`. */
export function fsnotifyDirent(k: Kernel, dirPath: string, mask: number, name: string, childIsDir: boolean, cookie = 0): void {
  if (!anyWatch(k)) return;
  const d = objectAt(k, dirPath);
  if (d) deliver(k, d, mask, name, cookie, childIsDir, false);
}

/**
 * Object `o` is gone: an upper-layer inode freed (no link left and no open file: at the unlink or
 * rename that removed its last name, else at its last close, as Linux evicts it), or a lower-layer
 * object removed. IN_DELETE_SELF to its watches, then each watch is removed with IN_IGNORED.
 */
export function fsnotifyGone(k: Kernel, o: FsObject): void {
  if (!anyWatch(k)) return;
  deliver(k, o, IN_DELETE_SELF, undefined, 0, false, false);
  for (const id of inotifyFiles(k)) {
    const f = k.state.openFiles[id] as InotifyFile | undefined;
    if (!f) continue;
    for (const w of [...f.inotify.watches]) if (watches(k, f, w, o)) dropWatch(k, f, w);
  }
}

/** A fresh cookie tying an IN_MOVED_FROM to its IN_MOVED_TO (fsnotify_get_cookie): a graph id, never 0. */
export function moveCookie(k: Kernel): number {
  return anyWatch(k) ? k.newId() >>> 0 || 1 : 0;
}

// ---- the inotify file itself ----

/** A new inotify instance (inotify_init1): the caller installs it; EMFILE past MAX_INSTANCES. */
export function newInotify(k: Kernel, flags: number): InotifyFile | number {
  if (inotifyFiles(k).size >= MAX_INSTANCES) return -E.EMFILE;
  const f = k.newOpenFile({ kind: 'inotify', path: 'anon_inode:inotify', flags: O_RDONLY | (flags & O_NONBLOCK), inotify: { nextWd: 1, watches: [], queue: [] } });
  inotifyFiles(k).add(f.id);
  return f;
}

/** Forget an instance that was never installed (the fd table was full). */
export function dropInotify(k: Kernel, f: InotifyFile): void {
  inotifyFiles(k).delete(f.id);
  k.discardFile(f.id);
}

/**
 * inotify_add_watch on object `o` (the path already resolved and checked): an existing watch
 * on it gets the new mask (ORed with IN_MASK_ADD; EEXIST with IN_MASK_CREATE), else a new wd.
 */
export function addWatch(k: Kernel, f: InotifyFile, o: FsObject, mask: number): number {
  const keep = (mask & (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK)) >>> 0;
  const existing = f.inotify.watches.find((w) => (o.inodeId !== undefined ? w.inodeId === o.inodeId || (w.inodeId === undefined && w.path === o.path) : w.inodeId === undefined && w.path === o.path));
  if (existing) {
    if (mask & IN_MASK_CREATE) return -E.EEXIST;
    const at = ['openFiles', f.id, 'inotify', 'watches', f.inotify.watches.indexOf(existing)];
    k.emit({ type: 'inotify.watch', fileId: f.id, wd: existing.wd }, [
      ['set', [...at, 'mask'], ((mask & IN_MASK_ADD) ? existing.mask | keep : keep) >>> 0],
      ...(o.inodeId !== undefined ? [['set', [...at, 'inodeId'], o.inodeId] as GraphOp] : []),
    ]);
    return existing.wd;
  }
  const wd = f.inotify.nextWd;
  k.emit({ type: 'inotify.watch', fileId: f.id, wd }, [
    ['set', ['openFiles', f.id, 'inotify', 'nextWd'], wd + 1],
    ['splice', ['openFiles', f.id, 'inotify', 'watches'], f.inotify.watches.length, 0, { wd, mask: keep, path: o.path, ...(o.inodeId === undefined ? {} : { inodeId: o.inodeId }) }],
  ]);
  return wd;
}

/** inotify_rm_watch: IN_IGNORED is queued; EINVAL for a wd this instance does not have. */
export function rmWatch(k: Kernel, f: InotifyFile, wd: number): number {
  const w = f.inotify.watches.find((x) => x.wd === wd);
  if (!w) return -E.EINVAL;
  dropWatch(k, f, w);
  return 0;
}

/** Encode queued events from the head of the queue into at most `count` bytes (whole events only), removing them. */
function takeEvents(f: InotifyFile, count: number): Uint8Array {
  const q = f.inotify.queue;
  let n = 0, bytes = 0;
  while (n < q.length && bytes + eventSize(q[n]) <= count) bytes += eventSize(q[n++]);
  const out = new Uint8Array(bytes);
  const v = new DataView(out.buffer);
  let at = 0;
  for (const e of q.slice(0, n)) {
    const size = eventSize(e);
    v.setInt32(at, e.wd, true);
    v.setUint32(at + 4, e.mask >>> 0, true);
    v.setUint32(at + 8, e.cookie >>> 0, true);
    v.setUint32(at + 12, size - 16, true);
    if (e.name !== undefined) out.set(Buffer.from(e.name, 'latin1'), at + 16);
    at += size;
  }
  return out;
}

/** read(2) (inotify_read): whole events; EINVAL if the first does not fit; EAGAIN when none and nonblocking, else block. */
function inotifyRead(t: Task, f: InotifyFile, buf: number, count: number): SyscallResult {
  const k = t.kernel;
  const attempt = (): number | undefined => {
    const q = f.inotify.queue;
    if (!q.length) return undefined;
    if (eventSize(q[0]) > count) return -E.EINVAL;
    const bytes = takeEvents(f, count);
    // A bad buffer is EFAULT and consumes nothing.
    if (copyToGuest(t, buf, bytes) < bytes.length) throw new SyscallError(E.EFAULT);
    let taken = 0, sum = 0;
    while (sum < bytes.length) sum += eventSize(q[taken++]);
    k.emit({ type: 'inotify.read', fileId: f.id, count: taken }, [['splice', ['openFiles', f.id, 'inotify', 'queue'], 0, taken]]);
    k.pipes.changed$.next(f.id);
    return bytes.length;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (f.flags & O_NONBLOCK) return -E.EAGAIN;
  return {
    waiter: { kind: 'inotify-read', fileId: f.id, interruptible: true, restartable: true },
    result$: k.whenRunnable(k.pipes.changed$.pipe(filter((id) => id === f.id)), attempt),
  };
}

export const inotifyFileOps: FileOps<InotifyFile> = {
  read: (t, f, buf, count) => inotifyRead(t, f, buf, count),
  write: () => -E.EINVAL,
  readiness: (t, f) => (f.inotify.queue.length ? POLLIN | POLLRDNORM : 0),
  /** The shared anon inode: mode 0600, no file type, owned by root. */
  stat: () => anonInodeStat(),
  anonInode: true,
  seek: (t, f) => f.offset, // noop_llseek
  /** FIONREAD: the bytes of all queued events. */
  ioctl(t, f, req, arg) {
    if (req !== FIONREAD) return -E.ENOTTY;
    t.mm.writeU32(arg, f.inotify.queue.reduce((n, e) => n + eventSize(e), 0));
    return 0;
  },
  release: (k, f) => { inotifyFiles(k).delete(f.id); },
  syncable: false,
};
