/**
 * The event stream: the one door through which the state graph changes.
 *
 * Every change to the graph is an event: a typed record saying what happened (for
 * operators: `task.fork`, `fd.install`, `file.write`, …) plus the typed patch (`ops`)
 * that is the change. The live kernel applies a change only by emitting its event
 * (`Kernel.emit`), which applies `ops` with `applyOps` — the same function a replayer
 * applies — so replaying a run's events, in order, on the graph captured at its start
 * gives the graph at its end (property-tests/event-replay.test.ts).
 *
 * What is outside the graph, and so never an event: guest memory pages (they live in the
 * memory file; a `file.write` to a MAP_SHARED-mapped upper file changes memory-file bytes
 * and carries only its metadata ops), the CPU state of running tasks (registers and FP
 * state live in the platform between checkpoints; `capture` copies them in), and the
 * runtime (stubs, host fds, subscriptions).
 *
 * Cost: an event is one small object appended to a chunked array (EventLog); nothing is
 * scheduled per event. Subscribers are drained from a setImmediate once per batch.
 */
import type { InodeState, KernelState } from './state.js';

/**
 * The graph's types (src/kernel/state.ts, the file kinds' records in src/files/) are readonly:
 * code outside this module cannot assign a graph field by accident, the compiler refuses it.
 * `Writable<T>` lifts that for the few places that may: applyOps below, a graph no kernel runs
 * yet (Kernel.emptyState, a checkpoint's copy being prepared), and CPU state the platform owns
 * (registers, run state at a trap, CPU time), which is never an event. Every use is grep-able:
 * `grep -rn 'Writable<' src cli snapshots`.
 */
export type Writable<T> = { -readonly [K in keyof T]: T[K] };
/** Writable all the way down (a graph copy being prepared, e.g. a checkpoint's). */
export type DeepWritable<T> = T extends Uint8Array | bigint | string | number | boolean | undefined | null ? T
  : T extends ReadonlyArray<infer U> ? DeepWritable<U>[]
  : T extends object ? { -readonly [K in keyof T]: DeepWritable<T[K]> } : T;

/** A path into the graph from its root, e.g. ['fdTables', 7, 'fds', 3]. */
export type GraphPath = ReadonlyArray<string | number>;

/**
 * One typed graph change; each is a deterministic function of (graph, args):
 * - `set`: put a value at a path (objects are copied in, so the event keeps its own copy);
 * - `del`: delete the key at a path;
 * - `splice`: Array.prototype.splice on the array at a path (start, delete count, items copied in):
 *   a VMA list, a lock list, a queue changes by a few entries, not by a copy of the whole;
 * - `bytes`: a byte queue at a path (an object with `buf: Uint8Array` and `len`) consumes `n` bytes
 *   from its front (`['bytes', path, n, 0, empty]`) or appends bytes (`['bytes', path, 0, 0, data]`):
 *   a pipe's buffer changes by the bytes read or written, never by a copy of the buffer;
 * - `write`: write bytes (a copy) at a byte offset of an upper-layer inode's chunks;
 * - `trunc`: set an upper-layer inode's size, zeroing/dropping chunk bytes past it;
 * - `zero`: zero bytes [from, to) of an upper-layer inode's chunks (whole chunks become holes).
 */
export type GraphOp =
  | readonly ['set', GraphPath, unknown]
  | readonly ['del', GraphPath]
  | readonly ['splice', GraphPath, number, number, ...unknown[]]
  | readonly ['bytes', GraphPath, number, number, Uint8Array]
  | readonly ['write', number, number, Uint8Array]
  | readonly ['trunc', number, number]
  | readonly ['zero', number, number, number];

/** What every event carries: a sequence number (1, 2, …), guest CLOCK_MONOTONIC time (ns) and its ops. */
export interface EventBase { seq: number; timeNs: bigint; ops: readonly GraphOp[] }

/**
 * The events, by type. Fields name guest ids: `tid`/`tgid` (virtual pids), `fd` (guest fd
 * number), `fileId` (open file description id), `inode` (upper-layer inode id), paths are
 * guest paths, sizes and offsets are bytes.
 */
export type KernelEventBody =
  | { type: 'task.fork'; tid: number; parent: number }
  | { type: 'task.spawn'; tid: number }
  | { type: 'task.clone'; tid: number; parent: number }
  | { type: 'task.exec'; tid: number; path: string }
  | { type: 'task.exit'; tid: number; code?: number; signal?: number; core?: boolean }
  | { type: 'task.release'; tid: number }
  | { type: 'task.zombie'; tid: number; waitStatus: number; code?: number; signal?: number; core?: boolean }
  | { type: 'task.reparent'; tid: number; parent: number }
  | { type: 'task.reap'; tid: number; by: number }
  | { type: 'task.update'; tid: number; what: string }
  | { type: 'task.block'; tid: number; kind: string }
  | { type: 'task.wake'; tid: number }
  | { type: 'task.progress'; tid: number; progress: number }
  | { type: 'task.stop'; tid: number; sig: number }
  | { type: 'task.continue'; tid: number }
  | { type: 'fd.install'; tid: number; fd: number; fileId: number; cloexec: boolean }
  | { type: 'fd.dup'; tid: number; fd: number; fileId: number; cloexec: boolean }
  | { type: 'fd.close'; tid: number; fd: number; fileId: number }
  | { type: 'fd.cloexec'; tid: number; fd: number; cloexec: boolean }
  | { type: 'fd.table.release'; fdTable: number }
  | { type: 'mm.release'; addressSpace: number }
  | { type: 'mm.change'; tid: number; cause: string }
  | { type: 'file.open'; fileId: number; kind: string; path: string }
  | { type: 'file.unref'; fileId: number; refs: number }
  | { type: 'file.release'; fileId: number }
  | { type: 'file.seek'; fileId: number; offset: number }
  | { type: 'file.setfl'; fileId: number; flags: number }
  | { type: 'file.update'; fileId: number; what: string }
  | { type: 'file.dirents'; fileId: number; count: number }
  | { type: 'file.create'; path: string; inode: number; mode: number }
  | { type: 'file.copyup'; path: string; inode: number }
  | { type: 'file.unlink'; path: string; inode: number }
  | { type: 'file.link'; path: string; inode: number }
  | { type: 'file.rename'; from: string; to: string; inode: number }
  | { type: 'mount.add'; id: number; mountpoint: string; fstype: string }
  | { type: 'mount.remove'; id: number; mountpoint: string }
  | { type: 'mount.remount'; id: number; flags: number }
  | { type: 'mount.identity'; sb: number }
  | { type: 'file.follow'; from: string; to: string }
  | { type: 'file.write'; inode: number; offset: number; len: number }
  | { type: 'file.truncate'; inode: number; size: number }
  | { type: 'file.zero'; inode: number; offset: number; len: number }
  | { type: 'file.share'; inode: number; capacity: number }
  | { type: 'file.chmod'; inode: number; mode: number }
  | { type: 'file.chown'; inode: number; uid: number; gid: number }
  | { type: 'file.utimes'; inode: number }
  | { type: 'inode.release'; inode: number }
  | { type: 'inode.update'; inode: number; what: string }
  | { type: 'pipe.create'; pipe: number }
  | { type: 'pipe.setattr'; pipe: number; uid: number; gid: number; mode: number }
  | { type: 'pipe.release'; pipe: number }
  | { type: 'pipe.ends'; pipe: number; readers: number; writers: number }
  | { type: 'pipe.read'; pipe: number; len: number }
  | { type: 'pipe.write'; pipe: number; len: number }
  | { type: 'pipe.resize'; pipe: number; size: number }
  | { type: 'proc.cwd'; tgid: number; cwd: string }
  | { type: 'proc.umask'; tgid: number; umask: number }
  | { type: 'proc.rlimit'; tgid: number; resource: number }
  | { type: 'proc.pgid'; tgid: number; pgid: number }
  | { type: 'proc.setsid'; tgid: number }
  | { type: 'proc.update'; tgid: number; what: string }
  | { type: 'timer.arm'; tgid: number; timer: 'real' | 'virtual' | 'prof' | 'posix' | 'timerfd'; id?: number; valueNs?: bigint; intervalNs?: bigint }
  | { type: 'timer.fire'; tgid: number; timer: 'real' | 'virtual' | 'prof' | 'posix' | 'timerfd'; id?: number }
  | { type: 'eventfd.read'; fileId: number; value: bigint }
  | { type: 'eventfd.write'; fileId: number; value: bigint }
  | { type: 'timer.delete'; tgid: number; id: number }
  | { type: 'timer.create'; tgid: number; id: number }
  | { type: 'epoll.ctl'; fileId: number; fd: number; op: number }
  | { type: 'epoll.report'; fileId: number; fd: number }
  | { type: 'lock.change'; key: string; count: number }
  | { type: 'net.init' }
  | { type: 'inotify.watch'; fileId: number; wd: number }
  | { type: 'inotify.queue'; fileId: number; mask: number }
  | { type: 'inotify.read'; fileId: number; count: number }
  | { type: 'pty.init' }
  | { type: 'pty.create'; pty: number; index: number }
  | { type: 'pty.update'; pty: number; what: string }
  | { type: 'pty.release'; pty: number }
  | { type: 'socket.update'; fileId: number; what: string }
  | { type: 'socket.bind'; fileId: number; addr: string }
  | { type: 'socket.unbind'; fileId: number }
  | { type: 'socket.connect'; fileId: number; listener: number; server: number }
  | { type: 'socket.accept'; fileId: number; conn: number }
  | { type: 'socket.setattr'; fileId: number; uid: number; gid: number; mode: number }
  | { type: 'socket.queue'; fileId: number; len: number }
  | { type: 'socket.dequeue'; fileId: number; len: number }
  | { type: 'socket.rights'; fileId: number; count: number }
  | { type: 'socket.cred'; pipe: number }
  | { type: 'config.set'; what: string }
  | { type: 'signal.send'; tid: number; sig: number; shared?: boolean }
  | { type: 'signal.deliver'; tid: number; sig: number; shared?: boolean }
  | { type: 'signal.dequeue'; tid: number; sig: number; shared?: boolean }
  | { type: 'signal.discard'; tid: number; sig: number; shared?: boolean }
  | { type: 'signal.handle'; tid: number; sig: number; handler: number }
  | { type: 'signal.mask'; tid: number; mask: bigint }
  | { type: 'signal.action'; tgid: number; sig: number; handler: number }
  | { type: 'signal.altstack'; tid: number }
  | { type: 'signal.return'; tid: number }
  | { type: 'creds.change'; tgid: number; uid: number; euid: number; gid: number; egid: number }
  | { type: 'checkpoint.taken' }
  | { type: 'checkpoint.restored' };

export type KernelEvent = KernelEventBody & EventBase;
export type KernelEventType = KernelEvent['type'];

// ---------------------------------------------------------------------------- applying ops

/** Object kinds of the dirty set, by the graph collection they live in. */
const KIND_OF: Record<string, string> = {
  tasks: 'task', threadGroups: 'threadGroup', addressSpaces: 'addressSpace', fdTables: 'fdTable',
  openFiles: 'openFile', pipes: 'pipe', ptys: 'pty',
};

/** A graph object an op touched: kind ('task', 'fdTable', 'inode', 'dentry', …) and id (number, or a path for dentries; 0 for singletons). */
export type DirtyMark = (kind: string, id: number | string) => void;

function markPath(path: GraphPath, mark: DirtyMark): void {
  const top = path[0] as string;
  const kind = KIND_OF[top];
  if (kind) { mark(kind, path.length > 1 ? path[1] : 0); return; }
  if (top === 'fs') {
    if (path[1] === 'inodes') mark('inode', path.length > 2 ? path[2] : 0);
    else if (path[1] === 'mounts') mark('mount', path.length > 2 ? path[2] : 0);
    else if (path[1] === 'superblocks') mark('superblock', path.length > 2 ? path[2] : 0);
    else mark('dentry', path.length > 2 ? path[2] : '');
    return;
  }
  mark(top, 0);
}

const CHUNK = 65536;

/** Copy plain graph data (objects, arrays, typed arrays, bigints): what `set` puts in the graph. */
export function cloneValue<T>(v: T): T {
  if (typeof v !== 'object' || v === null) return v;
  if (ArrayBuffer.isView(v)) return (v as unknown as Uint8Array).slice() as unknown as T;
  if (Array.isArray(v)) return v.map(cloneValue) as unknown as T;
  const out: Record<string, unknown> = {};
  for (const k in v) out[k] = cloneValue((v as Record<string, unknown>)[k]);
  return out as T;
}

/** An op whose values are the event's own (a copy of object values and bytes, which may be live graph data or guest-memory views). */
export function ownOp(op: GraphOp): GraphOp {
  switch (op[0]) {
    case 'set': return typeof op[2] === 'object' && op[2] !== null ? ['set', op[1], cloneValue(op[2])] : op;
    case 'splice': return op.length > 4 ? (op.slice(0, 4).concat(op.slice(4).map(cloneValue)) as unknown as GraphOp) : op;
    case 'bytes': return op[4].length ? ['bytes', op[1], op[2], op[3], op[4].slice()] : op;
    case 'write': return ['write', op[1], op[2], op[3].slice()];
    default: return op;
  }
}

/** Write `data` at byte `at` of an inode's 64 KiB chunks (missing chunks are holes), growing `size`. */
export function chunksWrite(inode: InodeState, at: number, data: Uint8Array): void {
  const ino = inode as Writable<InodeState>;
  const chunks = (ino.chunks ??= {}) as Record<number, Uint8Array>;
  for (let p = 0; p < data.length;) {
    const pos = at + p, i = Math.floor(pos / CHUNK), off = pos - i * CHUNK, n = Math.min(CHUNK - off, data.length - p);
    (chunks[i] ??= new Uint8Array(CHUNK)).set(data.subarray(p, p + n), off);
    p += n;
  }
  if (at + data.length > ino.size) ino.size = at + data.length;
}

/** Zero bytes [from, to) (clipped to the size) of an inode's chunks; whole chunks become holes. */
export function chunksZero(ino: InodeState, from: number, to: number): void {
  to = Math.min(to, ino.size);
  const chunks = (ino.chunks ?? {}) as Record<number, Uint8Array>;
  for (let p = from; p < to;) {
    const i = Math.floor(p / CHUNK), at = p - i * CHUNK, n = Math.min(CHUNK - at, to - p);
    const c = chunks[i];
    if (c) { if (at === 0 && n === CHUNK) delete chunks[i]; else c.fill(0, at, at + n); }
    p += n;
  }
}

/** Set an inode's size; bytes past it are zeroed (partial chunk) or dropped (whole chunks). */
export function chunksTruncate(inode: InodeState, size: number): void {
  const ino = inode as Writable<InodeState>;
  const chunks = ino.chunks as Record<number, Uint8Array> | undefined;
  if (chunks) {
    for (const k of Object.keys(chunks)) {
      const i = Number(k);
      if (i * CHUNK >= size) delete chunks[i];
      else if ((i + 1) * CHUNK > size && size < ino.size) chunks[i].fill(0, size - i * CHUNK);
    }
  }
  ino.size = size;
}

function parentOf(root: KernelState, path: GraphPath): Record<string | number, unknown> {
  let o: unknown = root;
  for (let i = 0; i < path.length - 1; i++) {
    o = (o as Record<string | number, unknown>)[path[i]];
    if (o === undefined || o === null) throw new Error(`event op on a missing graph path ${path.slice(0, i + 1).join('.')}`);
  }
  return o as Record<string | number, unknown>;
}

/**
 * Apply ops to a graph, in order (the live kernel and the replayer both call this).
 * Throws an Error naming the path if an op's parent object is missing (a log that does
 * not fit the graph). `mark` is told each object touched (the dirty set).
 */
export function applyOps(root: KernelState, ops: readonly GraphOp[], mark?: DirtyMark): void {
  for (const op of ops) {
    switch (op[0]) {
      case 'set': {
        const p = op[1];
        parentOf(root, p)[p[p.length - 1]] = cloneValue(op[2]);
        if (mark) markPath(p, mark);
        break;
      }
      case 'del': {
        const p = op[1];
        delete parentOf(root, p)[p[p.length - 1]];
        if (mark) markPath(p, mark);
        break;
      }
      case 'splice': {
        const p = op[1];
        const arr = parentOf(root, p)[p[p.length - 1]];
        if (!Array.isArray(arr)) throw new Error(`event op splice on a non-array graph path ${p.join('.')}`);
        const items = op.slice(4).map(cloneValue);
        arr.splice(op[2], op[3], ...items);
        if (mark) markPath(p, mark);
        break;
      }
      case 'bytes': {
        const p = op[1];
        const q = parentOf(root, p)[p[p.length - 1]] as { buf: Uint8Array; len: number } | undefined;
        if (!q) throw new Error(`event op bytes on a missing graph path ${p.join('.')}`);
        const [, , consume, , data] = op;
        if (consume) { q.buf.copyWithin(0, consume, q.len); q.len -= consume; }
        if (data.length) { q.buf.set(data, q.len); q.len += data.length; }
        if (mark) markPath(p, mark);
        break;
      }
      case 'write': {
        const ino = root.fs.inodes[op[1]];
        if (!ino) throw new Error(`event op on a missing inode ${op[1]}`);
        chunksWrite(ino, op[2], op[3]);
        if (mark) mark('inode', op[1]);
        break;
      }
      case 'zero': {
        const ino = root.fs.inodes[op[1]];
        if (!ino) throw new Error(`event op on a missing inode ${op[1]}`);
        chunksZero(ino, op[2], op[3]);
        if (mark) mark('inode', op[1]);
        break;
      }
      case 'trunc': {
        const ino = root.fs.inodes[op[1]];
        if (!ino) throw new Error(`event op on a missing inode ${op[1]}`);
        chunksTruncate(ino, op[2]);
        if (mark) mark('inode', op[1]);
        break;
      }
    }
  }
}

/** Replay events, in order, on a graph (a copy of the graph the run started from). */
export function replay(root: KernelState, events: Iterable<KernelEvent>): KernelState {
  for (const ev of events) applyOps(root, ev.ops);
  return root;
}

// ---------------------------------------------------------------------------- the dirty set

/**
 * Which graph objects changed since the last checkpoint, by kind ('task', 'threadGroup',
 * 'addressSpace', 'fdTable', 'openFile', 'pipe', 'pty', 'inode', 'dentry' (upper-layer
 * path), and singletons such as 'nextId' with id 0) → ids. Filled from the events' ops;
 * reset when a checkpoint is taken, so a snapshot can write only these objects.
 */
export class DirtySet {
  readonly byKind = new Map<string, Set<number | string>>();
  readonly mark: DirtyMark = (kind, id) => {
    let s = this.byKind.get(kind);
    if (!s) { s = new Set(); this.byKind.set(kind, s); }
    s.add(id);
  };
  clear(): void { this.byKind.clear(); }
  has(kind: string, id: number | string): boolean { return !!this.byKind.get(kind)?.has(id); }
  /** Plain-data view: kind → sorted ids. */
  toJSON(): Record<string, Array<number | string>> {
    const out: Record<string, Array<number | string>> = {};
    for (const [k, s] of this.byKind) out[k] = [...s].sort((a, b) => (typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b))));
    return out;
  }
}

// ---------------------------------------------------------------------------- the buffer

const CHUNK_EVENTS = 1024;
/** Chunks kept for a subscriber that lags (then it is told how many it lost). */
const MAX_CHUNKS = 64;

/** A reader of the stream: gets batches of events in order; `lost` counts events dropped because it lagged. */
export interface EventSubscriber { (events: KernelEvent[], lost: number): void }

interface Cursor { next: number; fn: EventSubscriber }

/**
 * The event buffer: events appended to 1024-event chunks; subscribers hold a cursor (the
 * next seq they want) and are drained in batches from one setImmediate per burst. Chunks
 * every subscriber has read are dropped; with no subscriber only the last chunk is kept.
 * A subscriber more than 64 chunks behind loses the oldest and is told how many.
 */
export class EventLog {
  private chunks: KernelEvent[][] = [[]];
  /** seq of chunks[0][0]. */
  private base = 1;
  /** Last seq handed out. */
  seq = 0;
  private readonly cursors = new Set<Cursor>();
  private scheduled = false;

  append(ev: KernelEvent): void {
    if (!this.cursors.size) return; // nobody reads the stream: nothing is kept (seq still counts)
    let c = this.chunks[this.chunks.length - 1];
    if (this.chunks.length === 1 && c.length === 0) this.base = ev.seq; // an empty log starts here
    if (c.length === CHUNK_EVENTS) {
      c = [];
      this.chunks.push(c);
      this.trim();
    }
    c.push(ev);
    if (this.cursors.size && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => { this.scheduled = false; this.flush(); });
    }
  }

  /** Events from `from` (a seq; default: the next one appended) on, to `fn`, until the returned close() is called. */
  subscribe(fn: EventSubscriber, from = this.seq + 1): { close(): void } {
    const cur: Cursor = { next: Math.max(from, 1), fn };
    this.cursors.add(cur);
    if (from <= this.seq && !this.scheduled) { this.scheduled = true; setImmediate(() => { this.scheduled = false; this.flush(); }); }
    return { close: () => { this.cursors.delete(cur); } };
  }

  /** Events still held with seq ≥ from (a copy). */
  since(from: number): KernelEvent[] {
    const out: KernelEvent[] = [];
    for (const c of this.chunks) for (const ev of c) if (ev.seq >= from) out.push(ev);
    return out;
  }

  /** Deliver every pending event to every subscriber now. */
  flush(): void {
    for (const cur of [...this.cursors]) {
      if (cur.next > this.seq) continue;
      let lost = 0;
      if (cur.next < this.base) { lost = this.base - cur.next; cur.next = this.base; }
      const batch = this.since(cur.next);
      cur.next = this.seq + 1;
      cur.fn(batch, lost);
    }
    this.trim();
  }

  private trim(): void {
    let min = this.seq + 1;
    for (const cur of this.cursors) min = Math.min(min, cur.next);
    while (this.chunks.length > 1 && (this.chunks.length > MAX_CHUNKS || this.base + this.chunks[0].length <= min)) {
      this.base += this.chunks[0].length;
      this.chunks.shift();
    }
  }
}

// ---------------------------------------------------------------------------- JSON lines

/** Whether `type` matches a filter of comma-separated patterns ('task.*,file.write'); empty matches all. */
export function typeFilter(spec: string | undefined): (type: string) => boolean {
  if (!spec) return () => true;
  const pats = spec.split(',').map((s) => s.trim()).filter(Boolean).map((p) => new RegExp('^' + p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*') + '$'));
  return (type) => pats.some((r) => r.test(type));
}

/** One JSON line for an event (without its ops): {"seq":…,"timeNs":…,"type":…, fields…}. timeNs is exact (a bigint's digits). */
export function eventJson(ev: KernelEvent): string {
  const { seq, timeNs, type, ops: _ops, ...rest } = ev as KernelEvent & Record<string, unknown>;
  const tail = JSON.stringify(rest, (_k, v) => (typeof v === 'bigint' ? Number(v) : v));
  return `{"seq":${seq},"timeNs":${timeNs},"type":${JSON.stringify(type)}${tail === '{}' ? '}' : ',' + tail.slice(1)}`;
}
