/**
 * I/O multiplexing (man 2 poll, ppoll, select, pselect6, epoll_create1, epoll_ctl,
 * epoll_wait): readiness of each open file kind, and blocking until a pipe changes, a
 * host stream becomes ready (checked every few ms), a signal arrives, or the deadline.
 * epoll interest lists are data in the graph (level- and edge-triggered, EPOLLONESHOT).
 */
import { interval, merge, map } from 'rxjs';
import { untilDeadline } from '../kernel/deadline.js';
import { E } from '../errno.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { OpenFileState, PollWaiter } from '../kernel/state.js';
import { syscall } from './entry.js';
import { epollReady } from '../files/epoll.js';
import { whenTimersDue } from '../files/file-ops.js';
import { readTimespec } from './time.js';
import { EPOLLET, EPOLLRDHUP, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, POLLPRI } from '../abi/linux.js';

/** How often host streams (the caller's stdin, a pipe or terminal) are re-checked while blocked, ms. */
const HOST_POLL_MS = 5;

/** Current readiness (POLL* bits) of an open file: its kind's `readiness`. */
export function readiness(t: Task, f: OpenFileState): number {
  return t.kernel.fileOps(f).readiness(t, f);
}

/** Whether waiting on these files needs the host polled (the caller's stdio is among them). */
function involvesHost(t: Task, files: (OpenFileState | undefined)[]): boolean {
  return files.some((f) => !!f && !!t.kernel.fileOps(f).hostReadiness?.(t, f));
}

/**
 * Block until `attempt` gives a result: re-tried when a pipe changes, a signal is queued (a
 * signalfd's readiness), one of `files()` is due by its `readyAt` (a timerfd expiring), every few
 * ms for host streams, and at the deadline (ms from now; undefined = none) when `onTimeout` answers.
 */
function blockUntil(t: Task, kind: PollWaiter['kind'], timeoutMs: number | undefined, host: boolean, attempt: () => number | undefined, onTimeout: () => number, files: () => Iterable<OpenFileState | undefined>): SyscallResult {
  const k = t.kernel;
  const deadlineNs = timeoutMs === undefined ? undefined : k.clock.monotonicNs() + BigInt(Math.round(timeoutMs * 1e6));
  const restored = t.resumed(kind);
  const deadline = restored ? restored.deadlineNs : deadlineNs;
  const triggers = [k.pipes.changed$, k.processes.childEvent$, k.signals.queued$] as import('rxjs').Observable<unknown>[];
  triggers.push(whenTimersDue(t, files, k.pipes.changed$));
  if (host) triggers.push(interval(HOST_POLL_MS));
  let timedOut = false;
  if (deadline !== undefined) triggers.push(untilDeadline(t, deadline).pipe(map(() => { timedOut = true; })));
  return {
    waiter: { kind, deadlineNs: deadline, interruptible: true },
    result$: k.whenRunnable(merge(...triggers), () => { const r = attempt(); return r !== undefined ? r : timedOut ? onTimeout() : undefined; }),
  };
}

function readTimespecMs(t: Task, addr: number): number | undefined {
  return addr ? Number(readTimespec(t, addr)) / 1e6 : undefined;
}

function doPoll(t: Task, fdsAddr: number, nfds: number, timeoutMs: number | undefined): SyscallResult {
  if (nfds > t.kernel.fdLimit(t)) return -E.EINVAL;
  const raw = new Uint8Array(t.mm.read(fdsAddr, nfds * 8));
  const v = new DataView(raw.buffer);
  const entries = Array.from({ length: nfds }, (_, i) => ({ fd: v.getInt32(i * 8, true), events: v.getInt16(i * 8 + 4, true) & 0xffff }));
  const files = entries.map((e) => (e.fd >= 0 && t.fdTable.fds[e.fd] ? t.kernel.state.openFiles[t.fdTable.fds[e.fd].fileId] : undefined));
  const scan = (): number => {
    let n = 0;
    entries.forEach((e, i) => {
      let rev = 0;
      if (e.fd >= 0) {
        const f = files[i];
        rev = f ? readiness(t, f) & (e.events | POLLERR | POLLHUP) : POLLNVAL;
      }
      v.setInt16(i * 8 + 6, rev, true);
      if (rev) n++;
    });
    return n;
  };
  const attempt = () => { const n = scan(); if (n > 0) { t.mm.write(fdsAddr, raw); return n; } return undefined; };
  const now = attempt();
  if (now !== undefined) return now;
  if (timeoutMs === 0) { t.mm.write(fdsAddr, raw); return 0; }
  return blockUntil(t, 'poll', timeoutMs, involvesHost(t, files), attempt, () => { t.mm.write(fdsAddr, raw); return 0; }, () => files);
}

/** ppoll/pselect6 sigmask argument: applied while waiting, restored afterwards. */
function applyWaitMask(t: Task, maskAddr: number): void {
  if (!maskAddr) return;
  t.kernel.setSigmask(t, t.mm.readU64(maskAddr) & ~((1n << 8n) | (1n << 18n)), t.state.sigmask);
}

function doSelect(t: Task, nfds: number, rAddr: number, wAddr: number, eAddr: number, timeoutMs: number | undefined): SyscallResult {
  if (nfds < 0 || nfds > t.kernel.fdLimit(t)) return -E.EINVAL;
  const bytes = Math.ceil(nfds / 64) * 8;
  const sets = [rAddr, wAddr, eAddr].map((a) => (a ? new Uint8Array(t.mm.read(a, bytes)) : undefined));
  const want = sets.map((s) => s && new Uint8Array(s));
  const out = sets.map((s) => s && new Uint8Array(s.length));
  for (let fd = 0; fd < nfds; fd++) {
    const asked = want.some((w) => w && w[fd >> 3] & (1 << (fd & 7)));
    if (asked && !t.fdTable.fds[fd]) return -E.EBADF;
  }
  const files: (OpenFileState | undefined)[] = [];
  const attempt = (): number | undefined => {
    let n = 0;
    out.forEach((o) => o?.fill(0));
    for (let fd = 0; fd < nfds; fd++) {
      const asked = want.map((w) => !!w && !!(w[fd >> 3] & (1 << (fd & 7))));
      if (!asked.some(Boolean)) continue;
      const f = t.kernel.state.openFiles[t.fdTable.fds[fd]?.fileId];
      files[fd] = f;
      const r = f ? readiness(t, f) : POLLERR;
      const hits = [r & (POLLIN | POLLHUP | POLLERR), r & (POLLOUT | POLLERR), r & POLLPRI];
      hits.forEach((h, i) => { if (asked[i] && h) { out[i]![fd >> 3] |= 1 << (fd & 7); n++; } });
    }
    if (n === 0) return undefined;
    [rAddr, wAddr, eAddr].forEach((a, i) => { if (a) t.mm.write(a, out[i]!); });
    return n;
  };
  const now = attempt();
  if (now !== undefined) return now;
  const zero = () => { [rAddr, wAddr, eAddr].forEach((a) => { if (a) t.mm.write(a, new Uint8Array(bytes)); }); return 0; };
  if (timeoutMs === 0) return zero();
  return blockUntil(t, 'select', timeoutMs, involvesHost(t, files), attempt, zero, () => files);
}

// ---- epoll ----

function epollCreate(t: Task, flags: number): number {
  if (flags & ~0o2000000) return -E.EINVAL;
  const f = t.kernel.newOpenFile({ kind: 'epoll', path: 'anon_inode:[eventpoll]', flags: 2, epollInterest: {} });
  const fd = t.kernel.installFd(t, f.id, !!(flags & 0o2000000));
  if (fd < 0) t.kernel.discardFile(f.id);
  return fd;
}

function epollCtl(t: Task): number {
  const epfd = t.argInt(0), op = t.argInt(1), fd = t.argInt(2), evAddr = t.arg(3);
  const ep = t.kernel.file(t, epfd);
  const target = t.kernel.file(t, fd);
  if (ep.kind !== 'epoll' || epfd === fd) return -E.EINVAL;
  if (t.kernel.fileOps(target).pollable === false) return -E.EPERM; // regular files and directories can't be polled
  const interest = ep.epollInterest;
  let events = 0, data = 0n;
  if (op !== EPOLL_CTL_DEL) {
    const b = t.mm.read(evAddr, 12);
    const v = new DataView(b.buffer, b.byteOffset, 12);
    events = v.getUint32(0, true); data = v.getBigUint64(4, true);
    void EPOLLRDHUP;
  }
  switch (op) {
    case EPOLL_CTL_ADD: case EPOLL_CTL_MOD: {
      if (op === EPOLL_CTL_ADD ? interest[fd] : !interest[fd]) return op === EPOLL_CTL_ADD ? -E.EEXIST : -E.ENOENT;
      t.kernel.emit({ type: 'epoll.ctl', fileId: ep.id, fd, op }, [['set', ['openFiles', ep.id, 'epollInterest', fd], { fileId: target.id, events: events & ~EPOLLET, data, edge: !!(events & EPOLLET) }]]);
      return 0;
    }
    case EPOLL_CTL_DEL: if (!interest[fd]) return -E.ENOENT; t.kernel.emit({ type: 'epoll.ctl', fileId: ep.id, fd, op }, [['del', ['openFiles', ep.id, 'epollInterest', fd]]]); return 0;
    default: return -E.EINVAL;
  }
}

function epollWait(t: Task, epfd: number, evAddr: number, max: number, timeout: number): SyscallResult {
  if (max <= 0 || max > 1_000_000) return -E.EINVAL;
  const ep = t.kernel.file(t, epfd);
  if (ep.kind !== 'epoll') return -E.EINVAL;
  t.mm.chunks(evAddr, max * 12, 2, () => undefined);
  const attempt = (): number | undefined => {
    const ready = epollReady(t, ep, true).slice(0, max);
    if (!ready.length) return undefined;
    const b = new Uint8Array(ready.length * 12);
    const v = new DataView(b.buffer);
    ready.forEach(([ev, data], i) => { v.setUint32(i * 12, ev, true); v.setBigUint64(i * 12 + 4, data, true); });
    t.mm.write(evAddr, b);
    return ready.length;
  };
  const now = attempt();
  if (now !== undefined) return now;
  if (timeout === 0) return 0;
  const files = Object.values(ep.epollInterest).map((i) => t.kernel.state.openFiles[i.fileId]);
  return blockUntil(t, 'epoll', timeout < 0 ? undefined : timeout, involvesHost(t, files), attempt, () => 0, () => [ep]);
}

export const pollSyscalls = [
  syscall('poll', 3, (t) => doPoll(t, t.arg(0), t.argU32(1), t.argInt(2) < 0 ? undefined : t.argInt(2))),
  syscall('ppoll', 5, (t) => {
    const ms = readTimespecMs(t, t.arg(2));
    if (t.arg(4) !== 8 && t.arg(3)) return -E.EINVAL;
    applyWaitMask(t, t.arg(3));
    return doPoll(t, t.arg(0), t.argU32(1), ms);
  }),
  syscall('select', 5, (t) => {
    let ms: number | undefined;
    if (t.arg(4)) {
      const b = t.mm.read(t.arg(4), 16);
      const v = new DataView(b.buffer, b.byteOffset, 16);
      const s = v.getBigInt64(0, true), us = v.getBigInt64(8, true);
      if (s < 0n || us < 0n) return -E.EINVAL;
      ms = Number(s) * 1000 + Number(us) / 1000;
    }
    return doSelect(t, t.argInt(0), t.arg(1), t.arg(2), t.arg(3), ms);
  }),
  syscall('pselect6', 6, (t) => {
    const ms = readTimespecMs(t, t.arg(4));
    if (t.arg(5)) {
      const b = t.mm.read(t.arg(5), 16);
      const maskPtr = Number(new DataView(b.buffer, b.byteOffset, 16).getBigUint64(0, true));
      applyWaitMask(t, maskPtr);
    }
    return doSelect(t, t.argInt(0), t.arg(1), t.arg(2), t.arg(3), ms);
  }),
  syscall('epoll_create', 1, (t) => (t.argInt(0) <= 0 ? -E.EINVAL : epollCreate(t, 0))),
  syscall('epoll_create1', 1, (t) => epollCreate(t, t.argInt(0))),
  syscall('epoll_ctl', 4, epollCtl, 'partial', 'EPOLLET reports when readiness grows since the last report; EPOLLEXCLUSIVE is ignored'),
  syscall('epoll_wait', 4, (t) => epollWait(t, t.argInt(0), t.arg(1), t.argInt(2), t.argInt(3))),
  syscall('epoll_pwait', 6, (t) => { applyWaitMask(t, t.arg(4)); return epollWait(t, t.argInt(0), t.arg(1), t.argInt(2), t.argInt(3)); }),
];
