/**
 * Scheduling syscalls (man 2 sched_setscheduler, sched_getaffinity, getpriority, …).
 * The host schedules the stubs; these calls keep the guest-visible settings in the
 * graph and validate arguments as Linux does (kernel/sched/core.c, kernel/sys.c).
 */
import os from 'node:os';
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import { syscall } from './entry.js';
import { PRIO_PGRP, PRIO_PROCESS, PRIO_USER, SCHED_BATCH, SCHED_FIFO, SCHED_IDLE, SCHED_OTHER, SCHED_RR } from '../abi/linux.js';

const POLICIES = [SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE];
const realtime = (p: number) => p === SCHED_FIFO || p === SCHED_RR;

/** The thread group a sched_* pid argument names (0 = caller); undefined for ESRCH, null for EINVAL. */
function target(t: Task, pid: number) {
  if (pid < 0) return null;
  if (pid === 0) return t.tg;
  const ts = t.kernel.state.tasks[pid];
  return ts ? t.kernel.state.threadGroups[ts.tgid] : undefined;
}

function setScheduler(t: Task, pid: number, policy: number, paramAddr: number): number {
  if (!paramAddr) return -E.EINVAL;
  const tg = target(t, pid);
  if (tg === null) return -E.EINVAL;
  if (!tg) return -E.ESRCH;
  const prio = t.mm.readU32(paramAddr) | 0;
  const p = policy === -1 ? (tg.sched?.policy ?? SCHED_OTHER) : policy & ~0x40000000; // SCHED_RESET_ON_FORK
  if (!POLICIES.includes(p)) return -E.EINVAL;
  if (realtime(p) ? prio < 1 || prio > 99 : prio !== 0) return -E.EINVAL;
  t.kernel.emit({ type: 'proc.update', tgid: tg.tgid, what: 'sched' }, [['set', ['threadGroups', tg.tgid, 'sched'], { policy: p, priority: prio }]]);
  return 0;
}

function cpuMask(): Uint8Array {
  const ncpu = os.cpus().length;
  const b = new Uint8Array(Math.ceil(ncpu / 64) * 8);
  for (let i = 0; i < ncpu; i++) b[i >> 3] |= 1 << (i & 7);
  return b;
}

function priorityTargets(t: Task, which: number, who: number) {
  const tgs = Object.values(t.kernel.state.threadGroups).filter((g) => !g.zombie);
  if (which === PRIO_PROCESS) return who === 0 ? [t.tg] : tgs.filter((g) => g.tgid === who || g.tids.includes(who));
  if (which === PRIO_PGRP) return tgs.filter((g) => g.pgid === (who || t.tg.pgid));
  if (which === PRIO_USER) return tgs.filter((g) => g.uid === (who || t.tg.uid));
  return null;
}

export const schedSyscalls = [
  syscall('sched_yield', 0, () => 0),
  syscall('sched_setscheduler', 3, (t) => setScheduler(t, t.argInt(0), t.argInt(1), t.arg(2)), 'partial', 'recorded for the guest; the host schedules the stubs'),
  syscall('sched_setparam', 2, (t) => setScheduler(t, t.argInt(0), -1, t.arg(1)), 'partial', 'recorded for the guest; the host schedules the stubs'),
  syscall('sched_getscheduler', 1, (t) => { const tg = target(t, t.argInt(0)); return tg === null ? -E.EINVAL : !tg ? -E.ESRCH : tg.sched?.policy ?? SCHED_OTHER; }),
  syscall('sched_getparam', 2, (t) => {
    const tg = target(t, t.argInt(0));
    if (tg === null || !t.arg(1)) return -E.EINVAL;
    if (!tg) return -E.ESRCH;
    t.mm.writeU32(t.arg(1), tg.sched?.priority ?? 0);
    return 0;
  }),
  syscall('sched_get_priority_max', 1, (t) => (realtime(t.argInt(0)) ? 99 : POLICIES.includes(t.argInt(0)) ? 0 : -E.EINVAL)),
  syscall('sched_get_priority_min', 1, (t) => (realtime(t.argInt(0)) ? 1 : POLICIES.includes(t.argInt(0)) ? 0 : -E.EINVAL)),
  syscall('sched_rr_get_interval', 2, (t) => {
    const tg = target(t, t.argInt(0));
    if (tg === null) return -E.EINVAL;
    if (!tg) return -E.ESRCH;
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigInt64(8, tg.sched?.policy === SCHED_RR ? 100_000_000n : 0n, true);
    t.mm.write(t.arg(1), b);
    return 0;
  }),
  syscall('sched_getaffinity', 3, (t) => {
    const tg = target(t, t.argInt(0));
    if (tg === null) return -E.ESRCH;
    if (!tg) return -E.ESRCH;
    const len = t.arg(1);
    const saved = tg.affinity;
    const mask = saved ?? cpuMask();
    if (len < mask.length || len % 8) return -E.EINVAL;
    t.mm.write(t.arg(2), mask);
    return mask.length;
  }),
  syscall('sched_setaffinity', 3, (t) => {
    const tg = target(t, t.argInt(0));
    if (tg === null || !tg) return -E.ESRCH;
    const all = cpuMask();
    const given = t.mm.read(t.arg(2), Math.min(t.arg(1), 128));
    const mask = new Uint8Array(all.length);
    for (let i = 0; i < all.length && i < given.length; i++) mask[i] = given[i] & all[i];
    if (mask.every((b) => b === 0)) return -E.EINVAL;
    t.kernel.emit({ type: 'proc.update', tgid: tg.tgid, what: 'affinity' }, [['set', ['threadGroups', tg.tgid, 'affinity'], mask]], true);
    return 0;
  }, 'partial', 'recorded for the guest; the host places the stubs'),
  syscall('getpriority', 2, (t) => {
    const tgs = priorityTargets(t, t.argInt(0), t.argInt(1));
    if (tgs === null) return -E.EINVAL;
    if (!tgs.length) return -E.ESRCH;
    return 20 - Math.min(...tgs.map((g) => g.nice ?? 0)); // the syscall returns 20 - nice
  }),
  syscall('setpriority', 3, (t) => {
    const tgs = priorityTargets(t, t.argInt(0), t.argInt(1));
    if (tgs === null) return -E.EINVAL;
    if (!tgs.length) return -E.ESRCH;
    const nice = Math.max(-20, Math.min(19, t.argInt(2)));
    for (const g of tgs) {
      if (nice < (g.nice ?? 0) && (g.cred?.euid ?? g.uid) !== 0) return -E.EACCES;
      t.kernel.emit({ type: 'proc.update', tgid: g.tgid, what: 'nice' }, [['set', ['threadGroups', g.tgid, 'nice'], nice]]);
    }
    return 0;
  }, 'partial', 'recorded for the guest; the host schedules the stubs'),
];
