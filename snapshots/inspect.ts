/**
 * `snapvisor inspect`: what a checkpoint holds, as plain data (issue 7 point 6; as CRIU's
 * `crit` shows its images). Read from the checkpoint's restore record and page file only (no
 * LevelDB lock: works while the store is busy). The shape is `InspectReport`, documented in
 * docs/snapshot-format.md ("Inspect"); `inspectVersion` is bumped on any incompatible change.
 * Guest addresses are hex strings ("0x7f…"), sizes are bytes, times are ns unless named
 * otherwise; arrays are in a fixed order (pid, tid, fd, address, id) so the JSON is stable.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type HostFileRef, readPackTrailer } from './pack.js';
import type { AddressSpaceState, KernelState, OpenFileState, SockAddr } from '../src/kernel/state.js';
import { CLOCK_REALTIME, CLOCK_REALTIME_ALARM, O_PATH } from '../src/abi/linux.js';
import { type PagemapRun, runLayer } from './format.js';
import { mountFlagsText } from '../src/vfs/mounts.js';
import { mapsRuns } from '../src/mm/maps-merge.js';
import { type OpenedCheckpoint, openCheckpoint } from './store.js';
import type { SocketFile } from '../src/files/socket.js';

export const INSPECT_VERSION = 1;

export interface InspectReport {
  inspectVersion: number;
  checkpoint: {
    id: string; name: string | null; parent: string | null; note: string | null;
    createdMs: number; created: string; formatVersion: number;
    /** /proc/snapvisor/generation of the sandbox when captured. */
    generation: number;
    rootfs: string; hostname: string;
    host: Record<string, unknown>;
    /** CPU features the guest may have seen (Linux flag names); a restoring host needs them all. null: not recorded (older checkpoint). */
    cpuFeatures: string[] | null;
    /** Incremental checkpoints: ids of the checkpoints whose page files hold its unchanged pages (empty: all pages are its own). */
    inheritsFrom: string[];
  };
  sizes: {
    /** CBOR graph, bytes. */ graphBytes: number;
    /** Memory file size (the page file's logical size), bytes. */ memoryBytes: number;
    /**
     * Non-zero pages the checkpoint holds (what a restore maps), wherever they are: `newPages` in
     * its own page file plus `inheritedPages` in the page files of `checkpoint.inheritsFrom`.
     */
    pages: number;
    /** Pages this checkpoint added to the store (its own page file; for a pack, those named in host files too). */
    newPages: number;
    /** Pages named in the page files of the checkpoints it inherits from (0 for a full checkpoint): pages − newPages. */
    inheritedPages: number;
    /** Bytes of the pages this checkpoint added (newPages × 4096), uncompressed; not those it inherits. */
    storedPageBytes: number;
    /** Pages found all zero (not stored). */ zeroPages: number;
    /** Bytes the page file and restore record take on disk. */ onDiskBytes: number;
  };
  processes: InspectProcess[];
  pipes: InspectPipe[];
  sockets: InspectSocket[];
  hostFiles: InspectHostFile[];
  /** The mount table besides the root and its synthetic mounts (volumes, tmpfs, guest mounts), by mount id. */
  mounts: InspectMount[];
}

export interface InspectMount {
  id: number; mountpoint: string; fstype: string; source: string;
  /** Per-mount options as /proc/mounts shows them (ro/rw, nosuid…). */
  options: string;
  /** A tmpfs's file data in bytes and its size= limit (null: none); null for other kinds. */
  usedBytes: number | null; sizeLimitBytes: number | null;
}

export interface InspectProcess {
  pid: number; ppid: number; pgid: number; sid: number; uid: number; gid: number;
  /** R running, S blocked in a syscall, T stopped, Z zombie (as ps). */
  state: 'R' | 'S' | 'T' | 'Z';
  /** argv as read from the process's memory in the checkpoint ([] for a zombie). */
  cmdline: string[];
  exe: string; cwd: string;
  threads: Array<{ tid: number; comm: string; state: 'running' | 'blocked'; waiting: string | null }>;
  files: InspectFile[];
  mappings: Array<{ start: string; end: string; sizeBytes: number; storedBytes: number; perms: string; name: string }>;
  /** Sums over `mappings`: address space size, and bytes of it that are non-zero pages in the checkpoint. */
  memory: { mappedBytes: number; storedBytes: number };
  /** Interval timers, POSIX timers (id: the timer id) and timerfds (id: the lowest fd holding it; CLOCK_REALTIME ones measured from the checkpoint's creation time). */
  timers: Array<{ kind: 'ITIMER_REAL' | 'ITIMER_VIRTUAL' | 'ITIMER_PROF' | 'posix' | 'timerfd'; id: number | null; signal: number | null;
    /** Time left at the checkpoint (guest monotonic or process CPU time, ns); null when disarmed. */ remainingNs: number | null; intervalNs: number }>;
}

export interface InspectFile {
  fd: number; cloexec: boolean;
  /** Open file description id (shared by dup'd fds and across fork). */
  fileId: number;
  kind: OpenFileState['kind'];
  /** 'r', 'w', 'rw' or '-' (O_PATH / neither). */
  access: string;
  offset: number;
  /** Guest path, or pipe:[id], socket:[id], the caller's stdio. */
  what: string;
}

export interface InspectPipe {
  id: number;
  /** Bytes written and not yet read. */
  bytesInFlight: number;
  readers: number; writers: number;
  /** Who holds which end: process, fd, 'read' or 'write'. */
  ends: Array<{ pid: number; fd: number; end: 'read' | 'write' }>;
  /** Guest path of a FIFO, or null for pipe(2). */
  fifo: string | null;
}

export interface InspectSocket {
  fileId: number; domain: string; type: string; state: string;
  local: string | null; peer: string | null;
  /** Bytes queued for this socket to read (streams), datagrams queued, connections waiting for accept. */
  bytesInFlight: number; datagramsQueued: number; pendingConnections: number;
  holders: Array<{ pid: number; fd: number }>;
}

export interface InspectHostFile {
  path: string;
  /**
   * 'rootfs' (the sandbox's /), 'volume' (a host directory bound with --volume or a bundle's bind
   * mount; refused on restore if changed), 'open' (a lower-layer file held open; refused on
   * restore if changed), 'stdio' (the caller's fd N).
   */
  /** rootfs, a volume, a file open in the sandbox, a caller's stdio, or a file whose bytes are pages of the checkpoint (formats 4 to 6: read back at restore). */
  role: 'rootfs' | 'volume' | 'open' | 'stdio' | 'pages';
  sizeBytes: number | null; mtimeMs: number | null;
}

const hex = (n: number) => '0x' + n.toString(16);
const DOMAINS: Record<number, string> = { 1: 'AF_UNIX', 2: 'AF_INET', 10: 'AF_INET6', 16: 'AF_NETLINK' };
const TYPES: Record<number, string> = { 1: 'stream', 2: 'dgram', 3: 'raw', 5: 'seqpacket' };

function addr(a: SockAddr | undefined): string | null {
  if (!a) return null;
  if (a.family === 16 /* AF_NETLINK */) return `netlink:${a.port ?? 0}`;
  if (a.path !== undefined) return a.path.startsWith('\0') ? '@' + a.path.slice(1) : a.path;
  if (a.ip !== undefined) return a.ip.includes(':') ? `[${a.ip}]:${a.port ?? 0}` : `${a.ip}:${a.port ?? 0}`;
  return null;
}

/** Bytes of [off, off+len) of the memory file that are non-zero pages in the pagemap. */
function storedIn(runs: PagemapRun[], off: number, len: number): number {
  let lo = 0, hi = runs.length;
  // First run that ends after `off`.
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const [o, c] = runs[mid];
    if (o + (c.length / 4) * 4096 <= off) lo = mid + 1; else hi = mid;
  }
  let total = 0;
  for (let i = lo; i < runs.length && runs[i][0] < off + len; i++) {
    const s = Math.max(off, runs[i][0]), e = Math.min(off + len, runs[i][0] + (runs[i][1].length / 4) * 4096);
    if (e > s) total += e - s;
  }
  return total;
}

/**
 * `n` bytes of the memory file at byte `off`, read from the page file holding each page: the
 * checkpoint's own, or (incremental checkpoints) the inherited layer its run names. A pack's
 * restore cache is filled first where it is read (its piece, every page checked; throws
 * PageSourceError on damage).
 */
function readMemory(opened: OpenedCheckpoint, off: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let done = 0; done < n;) {
    const at = off + done;
    const take = Math.min(n - done, 4096 - (at % 4096));
    const run = opened.runs.find(([o, c]) => o <= at && at < o + (c.length / 4) * 4096);
    const layer = run && runLayer(run) ? opened.layers[runLayer(run) - 1] : undefined;
    const lazy = run ? (layer ? layer.lazy : opened.lazy) : undefined;
    if (lazy) {
      const piece = Math.floor(at / lazy.pieceBytes);
      if (!lazy.isReady(piece)) lazy.fill(piece);
    }
    if (run) fs.readSync(layer ? layer.fd : opened.pageFd, b, done, take, at);
    done += take;
  }
  return b;
}

/** Guest bytes [a, a+len) of address space `as`, read from the checkpoint's pages (unmapped parts are skipped). */
function readGuest(opened: OpenedCheckpoint, as: AddressSpaceState, a: number, len: number): Buffer {
  const out: Buffer[] = [];
  const end = a + Math.min(len, 1 << 20);
  while (a < end) {
    const v = as.vmas.find((m) => m.start <= a && a < m.end);
    if (!v) break;
    const n = Math.min(end, v.end) - a;
    out.push(readMemory(opened, v.fileOffset + (a - v.start), n));
    a += n;
  }
  return Buffer.concat(out);
}

/** What an open file is, in a few words. */
function describe(g: KernelState, f: OpenFileState): string {
  switch (f.kind) {
    case 'pipe': return `pipe:[${f.pipeId}]`;
    case 'socket': return `socket:[${f.id}]`;
    case 'hostfd': return `the caller's fd ${f.hostFd}`;
    case 'pty': return f.pty ? (f.pty.master ? '/dev/ptmx' : `/dev/pts/${g.ptys?.[f.pty.id]?.index ?? '?'}`) : f.path;
    case 'eventfd': return `anon_inode:[eventfd] ${f.eventfd?.count ?? 0n}`;
    case 'epoll': return `anon_inode:[eventpoll] ${Object.keys(f.epollInterest ?? {}).length} fds`;
    case 'pidfd': return `anon_inode:[pidfd] ${f.pidfdTgid}`;
    default: return f.path;
  }
}

/**
 * Describe checkpoint `id` of `storeDir` (see InspectReport). Throws SnapshotError as
 * openCheckpoint does (unknown id, damaged records).
 */
export async function inspectCheckpoint(storeDir: string, id: string): Promise<InspectReport> {
  const opened = await openCheckpoint(storeDir, id);
  try {
    const g = opened.graph as KernelState;
    const m = opened.manifest as Record<string, unknown> & typeof opened.manifest;
    const atSave = g.clock.monotonicAtSaveNs;
    const socketPipes = new Set<number>();
    for (const f of Object.values(g.openFiles)) if (f.kind === 'socket') { socketPipes.add(f.socket.rx); socketPipes.add(f.socket.tx); }
    const pipeEnds = new Map<number, InspectPipe['ends']>();
    const holders = new Map<number, InspectSocket['holders']>();

    const processes: InspectProcess[] = Object.values(g.threadGroups).sort((a, b) => a.tgid - b.tgid).map((tg) => {
      const tasks = tg.tids.map((t) => g.tasks[t]).filter((t) => t && t.runState !== 'exited');
      const leader = g.tasks[tg.tids[0]] ?? tasks[0];
      const as = leader ? g.addressSpaces[leader.addressSpaceId] : undefined;
      const state = tg.zombie ? 'Z' : tg.stopped ? 'T' : leader?.waiter ? 'S' : 'R';
      let cmdline: string[] = [];
      if (as && !tg.zombie && as.argEnd > as.argStart) {
        cmdline = readGuest(opened, as, as.argStart, as.argEnd - as.argStart).toString('utf8').replace(/\0$/, '').split('\0');
      }
      const fdTable = leader ? g.fdTables[leader.fdTableId] : undefined;
      const files: InspectFile[] = Object.entries(fdTable?.fds ?? {}).map(([fd, e]) => ({ fd: Number(fd), e })).sort((a, b) => a.fd - b.fd).map(({ fd, e }) => {
        const f = g.openFiles[e.fileId];
        const acc = f.flags & 3;
        if (f.kind === 'pipe' && f.pipeId !== undefined) {
          const ends = pipeEnds.get(f.pipeId) ?? [];
          ends.push({ pid: tg.tgid, fd, end: acc === 0 ? 'read' : 'write' });
          pipeEnds.set(f.pipeId, ends);
        }
        if (f.kind === 'socket') {
          const h = holders.get(f.id) ?? [];
          h.push({ pid: tg.tgid, fd });
          holders.set(f.id, h);
        }
        return {
          fd, cloexec: e.cloexec, fileId: f.id, kind: f.kind,
          access: f.flags & O_PATH ? '-' : ['r', 'w', 'rw', '-'][acc],
          offset: f.offset, what: describe(g, f),
        };
      });
      // One row per line of the guest's /proc/PID/maps (a python heap is hundreds of our VMAs).
      const mappings = mapsRuns(as?.vmas ?? []).map((run) => {
        const v = run[0], end = run[run.length - 1].end;
        return {
          start: hex(v.start), end: hex(end), sizeBytes: end - v.start,
          storedBytes: run.reduce((n, w) => n + storedIn(opened.runs, w.fileOffset, w.end - w.start), 0),
          perms: (v.prot & 1 ? 'r' : '-') + (v.prot & 2 ? 'w' : '-') + (v.prot & 4 ? 'x' : '-') + (v.flags & 1 ? 's' : 'p'),
          name: v.name,
        };
      });
      const timers: InspectProcess['timers'] = [];
      if (tg.itimerReal) timers.push({ kind: 'ITIMER_REAL', id: null, signal: 14, remainingNs: Number(tg.itimerReal.deadlineNs - atSave), intervalNs: Number(tg.itimerReal.intervalNs) });
      for (const [which, t] of Object.entries(tg.itimerCpu ?? {})) {
        const used = tg.cpuTimeNs;
        timers.push({ kind: which === '1' ? 'ITIMER_VIRTUAL' : 'ITIMER_PROF', id: null, signal: which === '1' ? 26 : 27, remainingNs: Number(t.deadlineNs - used), intervalNs: Number(t.intervalNs) });
      }
      for (const t of Object.values(tg.posixTimers ?? {}).sort((a, b) => a.id - b.id)) {
        timers.push({ kind: 'posix', id: t.id, signal: t.notify === 1 ? null : t.signo, remainingNs: t.deadlineNs === undefined ? null : Number(t.deadlineNs - atSave), intervalNs: Number(t.intervalNs) });
      }
      const seenTimerfds = new Set<number>();
      for (const { fd, e } of Object.entries(fdTable?.fds ?? {}).map(([fd, e]) => ({ fd: Number(fd), e })).sort((a, b) => a.fd - b.fd)) {
        const f = g.openFiles[e.fileId];
        if (f?.kind !== 'timerfd' || seenTimerfds.has(f.id)) continue;
        seenTimerfds.add(f.id);
        const tf = f.timerfd;
        const now = tf.clock === CLOCK_REALTIME || tf.clock === CLOCK_REALTIME_ALARM ? BigInt(m.createdMs) * 1_000_000n : atSave; // wall-clock timers: from the checkpoint's creation
        const left = tf.deadlineNs === undefined ? null : tf.deadlineNs > now ? Number(tf.deadlineNs - now) : 0;
        timers.push({ kind: 'timerfd', id: fd, signal: null, remainingNs: left, intervalNs: Number(tf.intervalNs) });
      }
      return {
        pid: tg.tgid, ppid: tg.ppid, pgid: tg.pgid, sid: tg.sid, uid: tg.uid, gid: tg.gid, state, cmdline,
        exe: as?.exe ?? '', cwd: tg.cwd,
        threads: tasks.sort((a, b) => a.tid - b.tid).map((t) => ({ tid: t.tid, comm: t.comm, state: t.waiter ? 'blocked' as const : 'running' as const, waiting: t.waiter?.kind ?? null })),
        files, mappings,
        memory: { mappedBytes: mappings.reduce((s, v) => s + v.sizeBytes, 0), storedBytes: mappings.reduce((s, v) => s + v.storedBytes, 0) },
        timers,
      };
    });

    const fifoOf = new Map<number, string>();
    for (const [p, ino] of Object.entries(g.fs.upper)) { const i = g.fs.inodes[ino]; if (i?.fifoPipeId) fifoOf.set(i.fifoPipeId, p); }
    const pipes: InspectPipe[] = Object.values(g.pipes).filter((p) => !socketPipes.has(p.id)).sort((a, b) => a.id - b.id).map((p) => ({
      id: p.id, bytesInFlight: p.len, readers: p.readers, writers: p.writers,
      ends: (pipeEnds.get(p.id) ?? []).sort((a, b) => a.pid - b.pid || a.fd - b.fd), fifo: fifoOf.get(p.id) ?? null,
    }));
    const sockets: InspectSocket[] = Object.values(g.openFiles).filter((f): f is SocketFile => f.kind === 'socket').sort((a, b) => a.id - b.id).map((f) => {
      const s = f.socket;
      return {
        fileId: f.id, domain: DOMAINS[s.domain ?? 1] ?? String(s.domain), type: TYPES[s.type ?? 1] ?? String(s.type), state: s.state ?? 'connected',
        local: addr(s.local), peer: addr(s.peer),
        bytesInFlight: s.rx ? g.pipes[s.rx]?.len ?? 0 : 0, datagramsQueued: s.dgrams?.length ?? 0, pendingConnections: s.backlog?.length ?? 0,
        holders: (holders.get(f.id) ?? []).sort((a, b) => a.pid - b.pid || a.fd - b.fd),
      };
    });
    const hostFiles: InspectHostFile[] = [{ path: g.config.rootfs, role: 'rootfs', sizeBytes: null, mtimeMs: null }];
    const seen = new Set<string>();
    for (const sb of Object.values(g.fs.superblocks ?? {}).sort((a, b) => a.id - b.id)) {
      if (sb.type === 'volume') hostFiles.push({ path: sb.hostPath, role: 'volume', sizeBytes: null, mtimeMs: null });
    }
    const mounts: InspectMount[] = Object.values(g.fs.mounts ?? {}).sort((a, b) => a.id - b.id).map((m) => {
      const sb = m.sb ? g.fs.superblocks?.[m.sb] : undefined;
      const sbRo = sb?.type === 'volume' && sb.readonly;
      return {
        id: m.id, mountpoint: m.mountpoint, fstype: m.fstype, source: m.source, options: mountFlagsText(m.flags, sbRo),
        usedBytes: sb?.type === 'tmpfs' ? sb.usedBytes : null, sizeLimitBytes: sb?.type === 'tmpfs' ? sb.sizeLimit ?? null : null,
      };
    });
    for (const f of Object.values(g.openFiles).sort((a, b) => a.id - b.id)) {
      if (f.kind === 'host' && !seen.has('open:' + f.path)) {
        seen.add('open:' + f.path);
        hostFiles.push({ path: f.path, role: 'open', sizeBytes: f.hostIdentity?.size ?? null, mtimeMs: f.hostIdentity?.mtimeMs ?? null });
      }
      if (f.kind === 'hostfd' && !seen.has('stdio:' + f.hostFd)) {
        seen.add('stdio:' + f.hostFd);
        hostFiles.push({ path: `fd ${f.hostFd}`, role: 'stdio', sizeBytes: null, mtimeMs: null });
      }
    }
    // What the checkpoint itself takes in the store: its page file (flat) or pack, and its restore record (not a restore cache).
    let onDisk = 0;
    const dir = path.resolve(storeDir);
    for (const p of [path.join(dir, 'pages', opened.id), path.join(dir, 'pages', `${opened.id}.pack`), path.join(dir, 'meta', opened.id)]) {
      try { onDisk += fs.statSync(p).blocks * 512; } catch { /* counted as 0 */ }
    }
    // Pages that are bytes of host files (formats 4 to 6): the files a restore reads them from.
    for (const [p, size, mtimeMs] of packHostFiles(path.join(dir, 'pages', `${opened.id}.pack`))) {
      if (seen.has('pages:' + p)) continue;
      seen.add('pages:' + p);
      hostFiles.push({ path: p, role: 'pages', sizeBytes: size, mtimeMs });
    }
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    return {
      inspectVersion: INSPECT_VERSION,
      checkpoint: {
        id: opened.id, name: str(m.name), parent: str(m.parent), note: str(m.note),
        createdMs: m.createdMs, created: new Date(m.createdMs).toISOString(), formatVersion: Number(m.formatVersion),
        generation: g.config.generation ?? 0, rootfs: g.config.rootfs, hostname: g.config.hostname,
        host: (m.host ?? {}) as Record<string, unknown>,
        cpuFeatures: g.config.cpuFeatures ? [...g.config.cpuFeatures] : null,
        inheritsFrom: opened.layers.map((l) => l.id),
      },
      sizes: {
        graphBytes: m.graphBytes, memoryBytes: opened.memorySizeBytes, pages: m.pages, newPages: m.newPages, inheritedPages: m.pages - m.newPages, storedPageBytes: m.storedPageBytes,
        zeroPages: m.zeroPages, onDiskBytes: onDisk,
      },
      processes, pipes, sockets, hostFiles, mounts,
    };
  } finally {
    fs.closeSync(opened.pageFd);
    opened.lazy?.close();
    for (const l of opened.layers) { fs.closeSync(l.fd); l.lazy?.close(); }
  }
}

/** The host files a pack names pages of ([] for a flat checkpoint or an unreadable pack: restore reports that). */
function packHostFiles(pack: string): HostFileRef[] {
  let fd: number;
  try { fd = fs.openSync(pack, 'r'); } catch { return []; }
  try {
    const t = readPackTrailer(fd);
    return typeof t === 'string' ? [] : t.hostFiles;
  } finally {
    fs.closeSync(fd);
  }
}
