/**
 * `snapvisor inspect ID [--store DIR] [--json]`: what a checkpoint holds (snapshots/inspect.ts),
 * as JSON (the InspectReport, stable) or as readable tables (cli-table3, borderless).
 */
import Table from 'cli-table3';
import type { InspectReport } from '../snapshots/inspect.js';
import { byteSize } from './sizes.js';

/** A size in bytes as B, KiB, MiB or GiB. */
const size = byteSize;

/** A duration in ns, readable. */
function ns(n: number | null): string {
  if (n === null) return 'disarmed';
  if (n === 0) return '0';
  const s = n / 1e9;
  return s >= 1 ? `${s.toFixed(3)} s` : `${(n / 1e6).toFixed(3)} ms`;
}

/** A command line on one line: newlines and tabs escaped, cut at `max` characters. */
function cmd(p: { cmdline: string[]; exe: string }, max = Infinity): string {
  const line = (p.cmdline.join(' ') || p.exe).replace(/\n/g, '\\n').replace(/\t/g, '\\t');
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

/** A borderless table, indented by `indent` spaces. */
function table(head: string[], rows: Array<Array<string | number>>, indent = 2): string {
  const none = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '' };
  const t = new Table({ head, chars: none, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 2 } });
  for (const r of rows) t.push(r.map(String));
  return t.toString().split('\n').map((l) => ' '.repeat(indent) + l.trimEnd()).join('\n');
}

/** The readable form of an InspectReport. */
export function renderInspect(r: InspectReport): string {
  const c = r.checkpoint, s = r.sizes;
  const out: string[] = [];
  out.push(`checkpoint ${c.id}${c.name ? ` (${c.name})` : ''}, created ${c.created}, parent: ${c.parent ?? 'none'}${c.note ? `, note: ${c.note}` : ''}`);
  if (c.inheritsFrom.length) out.push(`incremental: its unchanged pages are in the page files of ${c.inheritsFrom.join(', ')}`);
  out.push(`rootfs ${c.rootfs}, hostname ${c.hostname}, generation ${c.generation}, format ${c.formatVersion}, taken on ${Object.values(c.host).join(' ')}`);
  out.push(`CPU features the restoring host needs: ${c.cpuFeatures ? c.cpuFeatures.join(' ') : 'not recorded'}`);
  // An incremental checkpoint holds more pages than it added: both counts, and the bytes of the new ones only.
  const pages = s.inheritedPages
    ? `${s.pages} pages: ${s.newPages} new in this checkpoint (${size(s.storedPageBytes)}), ${s.inheritedPages} in the page files it inherits from`
    : `${s.pages} pages, all new in this checkpoint (${size(s.storedPageBytes)})`;
  out.push(`sizes: graph ${size(s.graphBytes)}; memory file ${size(s.memoryBytes)}; ${pages}; ${s.zeroPages} zero pages; ${size(s.onDiskBytes)} on disk (its page file or pack, and its restore record)`);
  out.push('', 'processes');
  out.push(table(['PID', 'PPID', 'STATE', 'THREADS', 'FDS', 'MAPPED', 'STORED', 'COMMAND'],
    r.processes.map((p) => [p.pid, p.ppid, p.state, p.threads.length, p.files.length, size(p.memory.mappedBytes), size(p.memory.storedBytes), cmd(p, 80)])));
  for (const p of r.processes) {
    out.push('', `process ${p.pid}: ${cmd(p)} (state ${p.state}, uid ${p.uid}, gid ${p.gid}, pgid ${p.pgid}, sid ${p.sid}, cwd ${p.cwd})`);
    if (p.threads.length) {
      out.push('  threads');
      out.push(table(['TID', 'COMM', 'STATE', 'WAITING IN'], p.threads.map((t) => [t.tid, t.comm, t.state, t.waiting ?? '']), 4));
    }
    if (p.files.length) {
      out.push('  open files');
      out.push(table(['FD', 'ACCESS', 'OFFSET', 'KIND', 'FILE'], p.files.map((f) => [f.fd + (f.cloexec ? ' (cloexec)' : ''), f.access, f.offset, f.kind, f.what]), 4));
    }
    if (p.mappings.length) {
      out.push('  mappings');
      out.push(table(['START', 'END', 'SIZE', 'STORED', 'PERMS', 'NAME'], p.mappings.map((m) => [m.start, m.end, size(m.sizeBytes), size(m.storedBytes), m.perms, m.name]), 4));
    }
    if (p.timers.length) {
      out.push('  timers');
      out.push(table(['KIND', 'ID', 'SIGNAL', 'REMAINING', 'INTERVAL'], p.timers.map((t) => [t.kind, t.id ?? '', t.signal ?? '', ns(t.remainingNs), ns(t.intervalNs)]), 4));
    }
  }
  out.push('', 'pipes');
  out.push(r.pipes.length ? table(['ID', 'IN FLIGHT', 'READERS', 'WRITERS', 'ENDS', 'FIFO'],
    r.pipes.map((p) => [p.id, size(p.bytesInFlight), p.readers, p.writers, p.ends.map((e) => `${e.pid}:${e.fd} ${e.end}`).join(', '), p.fifo ?? ''])) : '  none');
  out.push('', 'sockets');
  out.push(r.sockets.length ? table(['ID', 'DOMAIN', 'TYPE', 'STATE', 'LOCAL', 'PEER', 'IN FLIGHT', 'QUEUED', 'HELD BY'],
    r.sockets.map((k) => [k.fileId, k.domain, k.type, k.state, k.local ?? '', k.peer ?? '', size(k.bytesInFlight), k.datagramsQueued || k.pendingConnections || '', k.holders.map((h) => `${h.pid}:${h.fd}`).join(', ')])) : '  none');
  out.push('', 'mounts');
  out.push(r.mounts.length ? table(['ID', 'MOUNT POINT', 'TYPE', 'SOURCE', 'OPTIONS', 'USED'],
    r.mounts.map((m) => [m.id, m.mountpoint, m.fstype, m.source, m.options, m.usedBytes === null ? '' : size(m.usedBytes) + (m.sizeLimitBytes === null ? '' : ` of ${size(m.sizeLimitBytes)}`)])) : '  none besides the root, /proc, /dev and /sys');
  out.push('', 'host files');
  out.push(table(['ROLE', 'PATH', 'SIZE', 'MODIFIED'], r.hostFiles.map((h) => [h.role, h.path, h.sizeBytes === null ? '' : size(h.sizeBytes), h.mtimeMs === null ? '' : new Date(h.mtimeMs).toISOString()])));
  return out.join('\n') + '\n';
}
