/**
 * Scheduling syscalls (man 7 sched; man 2 sched_setscheduler, sched_setattr, sched_getaffinity,
 * setpriority). The host schedules the stubs; these calls keep each thread's guest-visible
 * settings in the graph (TaskState.sched and .nice, src/kernel/sched.ts) and validate arguments
 * and permissions as Linux does (kernel/sched/syscalls.c __sched_setscheduler,
 * user_check_sched_setscheduler, check_same_owner; kernel/sys.c setpriority, set_one_prio).
 */
import { hostCpuCount } from '../kernel/host-cpus.js';
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { SchedAttrs, TaskState, ThreadGroupState } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import { capable, credsOf } from '../kernel/creds.js';
import { DEFAULT_TIMER_SLACK_NS, niceOf, realtimeOrDeadline, schedOf } from '../kernel/sched.js';
import { syscall } from './entry.js';
import {
  CAP_SYS_NICE, PRIO_PGRP, PRIO_PROCESS, PRIO_USER, RLIMIT_NICE, RLIMIT_RTPRIO, RLIM_INFINITY, SCHED_BATCH, SCHED_DEADLINE, SCHED_FIFO, SCHED_FLAG_ALL,
  SCHED_FLAG_DL_OVERRUN, SCHED_FLAG_KEEP_PARAMS, SCHED_FLAG_KEEP_POLICY, SCHED_FLAG_RECLAIM, SCHED_FLAG_RESET_ON_FORK, SCHED_FLAG_SUGOV, SCHED_FLAG_UTIL_CLAMP,
  SCHED_IDLE, SCHED_OTHER, SCHED_RESET_ON_FORK, SCHED_RR,
} from '../abi/linux.js';

const SCHED_EXT = 7;
const POLICIES = [SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE];
const realtime = (p: number) => p === SCHED_FIFO || p === SCHED_RR;
const fair = (p: number) => p === SCHED_OTHER || p === SCHED_BATCH;
/** sched_setparam's policy: keep the thread's (SETPARAM_POLICY). */
const SETPARAM_POLICY = -1;
/** struct sched_attr sizes: SCHED_ATTR_SIZE_VER0 (48 bytes) and the kernel's (VER1, 56). */
const ATTR_VER0 = 48, ATTR_SIZE = 56;
/** SCHED_DEADLINE period bounds (sysctl sched_deadline_period_min_us/max_us defaults, in ns) and DL_SCALE. */
const DL_PERIOD_MIN = 100_000n, DL_PERIOD_MAX = (1n << 22n) * 1000n, DL_MIN_RUNTIME = 1n << 10n;
const U63 = 1n << 63n;

/**
 * The base time slice of a fair thread (ns; sysctl_sched_base_slice): 0.7 ms scaled by
 * 1 + log2 of the CPUs (at most 8), as the kernel's default SCHED_TUNABLESCALING_LOG does.
 */
function baseSliceNs(): number {
  const n = Math.min(hostCpuCount(), 8);
  return 700_000 * (1 + Math.floor(Math.log2(n)));
}

/** A thread a sched_* pid argument names: its record (absent for a zombie process's leader, found as Linux finds it) and its thread group. */
interface Target { readonly tid: number; readonly ts?: TaskState; readonly tg: ThreadGroupState }

/** find_process_by_pid: the caller (0) or the task with that tid; undefined for ESRCH. The caller checks pid < 0 first. */
function findTask(t: Task, pid: number): Target | undefined {
  if (pid === 0) return { tid: t.tid, ts: t.state, tg: t.tg };
  const s = t.kernel.state;
  const ts = s.tasks[pid];
  if (ts) { const tg = s.threadGroups[ts.tgid]; return tg ? { tid: pid, ts, tg } : undefined; }
  const zombie = s.threadGroups[pid];
  return zombie?.zombie ? { tid: pid, tg: zombie } : undefined;
}

const attrsOf = (p: Target): SchedAttrs => (p.ts ? schedOf(p.ts, p.tg) : p.tg.sched ?? { policy: SCHED_OTHER, priority: 0 });
const niceOfTarget = (p: Target): number => (p.ts ? niceOf(p.ts, p.tg) : p.tg.nice ?? 0);

/** task_rlimit: the target's soft limit of RLIMIT_NICE or RLIMIT_RTPRIO (both 0 unless set, as init's). */
function rlimitCur(tg: ThreadGroupState, res: number): number {
  const l = tg.rlimits[res];
  if (!l) return 0;
  return l[0] === RLIM_INFINITY || l[0] > 0xffffffffn ? Infinity : Number(l[0]);
}

/** is_nice_reduction: may the target go to `nice` under its RLIMIT_NICE (rlimit style: 20 - nice)? */
const niceAllowed = (tg: ThreadGroupState, nice: number) => 20 - nice <= rlimitCur(tg, RLIMIT_NICE);

/** check_same_owner: the caller's euid is the target's real or effective uid. */
function sameOwner(t: Task, p: Target): boolean {
  const me = credsOf(t.tg), them = credsOf(p.tg);
  return me.euid === them.euid || me.euid === them.ruid;
}

/**
 * cap_safe_nice (security/commoncap.c; security_task_setscheduler, security_task_setnice): a
 * target whose permitted capabilities are not all the caller's may only be changed with
 * CAP_SYS_NICE.
 */
function capSafeNice(t: Task, p: Target): boolean {
  const me = credsOf(t.tg), them = credsOf(p.tg);
  return (them.capPrm & ~me.capPrm) === 0n || capable(me, CAP_SYS_NICE);
}

/** A requested change (struct sched_attr, decoded; `policy` already resolved from SETPARAM_POLICY). */
interface Request {
  policy: number;
  priority: number;
  nice: number;
  flags: number;
  runtime: bigint;
  deadline: bigint;
  period: bigint;
  resetOnFork: boolean;
}

/**
 * user_check_sched_setscheduler: whether an unprivileged caller may make this change, else
 * whether it holds CAP_SYS_NICE. Raising a fair thread's priority past RLIMIT_NICE, entering a
 * realtime policy without RLIMIT_RTPRIO or above it, SCHED_DEADLINE at all, leaving SCHED_IDLE
 * when RLIMIT_NICE would not allow the thread's nice, another user's thread, and clearing the
 * reset-on-fork flag all need the capability.
 */
function mayChange(t: Task, p: Target, r: Request): boolean {
  const cur = attrsOf(p);
  const needsPriv = (() => {
    if (fair(r.policy) && r.nice < niceOfTarget(p) && !niceAllowed(p.tg, r.nice)) return true;
    if (realtime(r.policy)) {
      const lim = rlimitCur(p.tg, RLIMIT_RTPRIO);
      if (r.policy !== cur.policy && !lim) return true;
      if (r.priority > cur.priority && r.priority > lim) return true;
    }
    if (r.policy === SCHED_DEADLINE) return true;
    if (cur.policy === SCHED_IDLE && r.policy !== SCHED_IDLE && !niceAllowed(p.tg, niceOfTarget(p))) return true;
    if (!sameOwner(t, p)) return true;
    if (cur.resetOnFork && !r.resetOnFork) return true;
    return false;
  })();
  return !needsPriv || capable(credsOf(t.tg), CAP_SYS_NICE);
}

/** __checkparam_dl: deadline set, runtime ≥ 1024 ns, runtime ≤ deadline ≤ period (0: the deadline), period within the sysctl bounds. */
function validDeadline(r: Request): boolean {
  if (r.flags & SCHED_FLAG_SUGOV) return true;
  if (r.deadline === 0n || r.runtime < DL_MIN_RUNTIME) return false;
  if (r.deadline & U63 || r.period & U63) return false;
  const period = r.period || r.deadline;
  if (period < r.deadline || r.deadline < r.runtime) return false;
  return period >= DL_PERIOD_MIN && period <= DL_PERIOD_MAX;
}

/**
 * __sched_setscheduler for a user caller: EINVAL for a bad policy, flags or priority (1..99 for
 * SCHED_FIFO/RR, 0 otherwise; SCHED_DEADLINE's parameters per __checkparam_dl), EPERM as
 * mayChange says, EINVAL for SCHED_FLAG_SUGOV, EPERM as capSafeNice says, EOPNOTSUPP for utilization clamps (the kernel
 * this follows is built without CONFIG_UCLAMP_TASK). `r.policy` may be SETPARAM_POLICY.
 * A thread entering a realtime or deadline policy loses its timer slack; one leaving them gets
 * its default slack back (__setscheduler_params). A zombie's settings are checked, then dropped.
 */
function setScheduler(t: Task, p: Target, r: Request): number {
  const cur = attrsOf(p);
  if (r.policy === SETPARAM_POLICY) {
    r.resetOnFork = !!cur.resetOnFork;
    r.policy = cur.policy;
  } else if (!POLICIES.includes(r.policy)) return -E.EINVAL;
  if (r.flags & ~(SCHED_FLAG_ALL | SCHED_FLAG_SUGOV)) return -E.EINVAL;
  if (r.priority > 99 || r.priority < 0) return -E.EINVAL;
  if ((r.policy === SCHED_DEADLINE && !validDeadline(r)) || realtime(r.policy) !== (r.priority !== 0)) return -E.EINVAL;
  if (!mayChange(t, p, r)) return -E.EPERM;
  if (r.flags & SCHED_FLAG_SUGOV) return -E.EINVAL;
  if (!capSafeNice(t, p)) return -E.EPERM;
  if (r.flags & SCHED_FLAG_UTIL_CLAMP) return -E.EOPNOTSUPP;
  if (!p.ts) return 0;
  const { resetOnFork: _, ...kept } = cur;
  const ops: GraphOp[] = [];
  let next: { -readonly [K in keyof SchedAttrs]: SchedAttrs[K] };
  if (r.flags & SCHED_FLAG_KEEP_PARAMS) next = structuredClone(kept); // only the reset-on-fork flag changes
  else {
    next = { policy: r.policy, priority: r.priority };
    if (cur.sliceNs && !fair(r.policy)) next.sliceNs = cur.sliceNs;
    if (fair(r.policy)) {
      if (r.nice !== niceOfTarget(p) || p.tg.nice !== undefined) ops.push(['set', ['tasks', p.tid, 'nice'], r.nice]);
      if (r.runtime) next.sliceNs = Number(r.runtime < 100_000n ? 100_000n : r.runtime > 100_000_000n ? 100_000_000n : r.runtime);
    }
    if (r.policy === SCHED_DEADLINE) next.dl = { runtimeNs: r.runtime, deadlineNs: r.deadline, periodNs: r.period || r.deadline, flags: r.flags & (SCHED_FLAG_RECLAIM | SCHED_FLAG_DL_OVERRUN) };
    // Realtime and deadline threads have no timer slack; leaving them brings the default back.
    if (realtimeOrDeadline(next.policy)) ops.push(['set', ['tasks', p.tid, 'timerSlackNs'], 0n]);
    else if (p.ts.timerSlackNs === 0n || (p.ts.timerSlackNs === undefined && realtimeOrDeadline(cur.policy))) ops.push(['set', ['tasks', p.tid, 'timerSlackNs'], p.ts.defaultTimerSlackNs ?? DEFAULT_TIMER_SLACK_NS]);
  }
  if (r.resetOnFork) next.resetOnFork = true;
  ops.unshift(['set', ['tasks', p.tid, 'sched'], next]);
  t.kernel.emit({ type: 'task.update', tid: p.tid, what: 'sched' }, ops);
  return 0;
}

/** sched_setscheduler(2)/sched_setparam(2) (do_sched_setscheduler, _sched_setscheduler): EINVAL, EFAULT, ESRCH, then setScheduler's. */
function setSchedulerCall(t: Task, pid: number, policy: number, paramAddr: number): number {
  if (!paramAddr || pid < 0) return -E.EINVAL;
  const prio = t.mm.readU32(paramAddr) >>> 0; // sched_priority copied into the unsigned sched_attr field
  const p = findTask(t, pid);
  if (!p) return -E.ESRCH;
  const reset = policy !== SETPARAM_POLICY && (policy & SCHED_RESET_ON_FORK) !== 0;
  const pol = policy === SETPARAM_POLICY ? policy : policy & ~SCHED_RESET_ON_FORK;
  const cur = attrsOf(p);
  return setScheduler(t, p, {
    policy: pol, priority: prio, nice: niceOfTarget(p), flags: reset ? SCHED_FLAG_RESET_ON_FORK : 0,
    // A custom slice is kept (the legacy call passes it back as sched_runtime).
    runtime: BigInt(cur.sliceNs ?? 0), deadline: 0n, period: 0n, resetOnFork: reset,
  });
}

/**
 * sched_setattr(2): EINVAL for a null attr, negative pid or nonzero flags; E2BIG (and the
 * kernel's size written back) for a size below 48 or above a page, or trailing nonzero bytes
 * past the kernel's struct; EINVAL for utilization clamps in a 48-byte struct; nice clamped to
 * -20..19; SCHED_FLAG_KEEP_POLICY/KEEP_PARAMS take the thread's; then as sched_setscheduler.
 */
function setAttr(t: Task): number {
  const pid = t.argInt(0), addr = t.arg(1), flags = t.argU32(2);
  if (!addr || pid < 0 || flags) return -E.EINVAL;
  let size = t.mm.readU32(addr);
  if (!size) size = ATTR_VER0;
  const tooBig = () => { t.mm.writeU32(addr, ATTR_SIZE); return -E.E2BIG; };
  if (size < ATTR_VER0 || size > 4096) return tooBig();
  const raw = t.mm.read(addr, size);
  for (let i = ATTR_SIZE; i < size; i++) if (raw[i]) return tooBig();
  const b = new Uint8Array(ATTR_SIZE);
  b.set(raw.subarray(0, Math.min(size, ATTR_SIZE)));
  const v = new DataView(b.buffer);
  const schedFlags = v.getBigUint64(8, true);
  if (schedFlags & BigInt(SCHED_FLAG_UTIL_CLAMP) && size < ATTR_SIZE) return -E.EINVAL;
  const policy = v.getUint32(4, true) | 0;
  if (policy < 0) return -E.EINVAL;
  // Flags past 32 bits are invalid; keep them visible to the validity check.
  const fl = schedFlags > 0xffffffffn ? 0x80000000 | Number(schedFlags & 0x7fffffffn) : Number(schedFlags);
  const p = findTask(t, pid);
  if (!p) return -E.ESRCH;
  const r: Request = {
    policy: fl & SCHED_FLAG_KEEP_POLICY ? SETPARAM_POLICY : policy,
    priority: v.getUint32(20, true), nice: Math.max(-20, Math.min(19, v.getInt32(16, true))), flags: fl,
    runtime: v.getBigUint64(24, true), deadline: v.getBigUint64(32, true), period: v.getBigUint64(40, true),
    resetOnFork: (fl & SCHED_FLAG_RESET_ON_FORK) !== 0,
  };
  if (fl & SCHED_FLAG_KEEP_PARAMS) { // get_params
    const cur = attrsOf(p);
    if (cur.policy === SCHED_DEADLINE && cur.dl) Object.assign(r, { runtime: cur.dl.runtimeNs, deadline: cur.dl.deadlineNs, period: cur.dl.periodNs });
    else if (realtime(cur.policy)) r.priority = cur.priority;
    else Object.assign(r, { nice: niceOfTarget(p), runtime: BigInt(cur.sliceNs ?? baseSliceNs()) });
  }
  return setScheduler(t, p, r);
}

/**
 * sched_getattr(2): EINVAL for a null attr, negative pid, size outside 48..4096 or nonzero
 * flags; ESRCH. Writes the policy, SCHED_FLAG_RESET_ON_FORK (and a deadline thread's flags),
 * and get_params' values: a deadline thread's runtime/deadline/period, a realtime one's
 * priority, else its nice and time slice (sched_runtime); utilization clamps 0. The struct's
 * size field is min(size, 56); bytes past 56 are zeroed.
 */
function getAttr(t: Task): number {
  const pid = t.argInt(0), addr = t.arg(1), usize = t.argU32(2), flags = t.argU32(3);
  if (!addr || pid < 0 || usize > 4096 || usize < ATTR_VER0 || flags) return -E.EINVAL;
  const p = findTask(t, pid);
  if (!p) return -E.ESRCH;
  const cur = attrsOf(p);
  const b = new Uint8Array(Math.max(usize, ATTR_SIZE));
  const v = new DataView(b.buffer);
  v.setUint32(0, Math.min(usize, ATTR_SIZE), true);
  v.setUint32(4, cur.policy, true);
  let fl = cur.resetOnFork ? SCHED_FLAG_RESET_ON_FORK : 0;
  if (cur.policy === SCHED_DEADLINE && cur.dl) {
    fl |= cur.dl.flags;
    v.setBigUint64(24, cur.dl.runtimeNs, true); v.setBigUint64(32, cur.dl.deadlineNs, true); v.setBigUint64(40, cur.dl.periodNs, true);
  } else if (realtime(cur.policy)) v.setUint32(20, cur.priority, true);
  else { v.setInt32(16, niceOfTarget(p), true); v.setBigUint64(24, BigInt(cur.sliceNs ?? baseSliceNs()), true); }
  v.setBigUint64(8, BigInt(fl & SCHED_FLAG_ALL), true);
  t.mm.write(addr, b.subarray(0, usize));
  return 0;
}

function cpuMask(): Uint8Array {
  const ncpu = hostCpuCount();
  const b = new Uint8Array(Math.ceil(ncpu / 64) * 8);
  for (let i = 0; i < ncpu; i++) b[i >> 3] |= 1 << (i & 7);
  return b;
}

/**
 * The threads a getpriority/setpriority (which, who) names: PRIO_PROCESS the task with tid `who`
 * (0: the caller), PRIO_PGRP every thread of the processes in group `who` (0: the caller's),
 * PRIO_USER every thread whose real uid is `who` (0: the caller's). null for a bad `which`.
 */
function priorityTargets(t: Task, which: number, who: number): Target[] | null {
  const s = t.kernel.state;
  const threads = (tgs: ThreadGroupState[]) => tgs.flatMap((g) => {
    const live = g.tids.map((tid) => s.tasks[tid]).filter((ts): ts is TaskState => !!ts).map((ts) => ({ tid: ts.tid, ts, tg: g }));
    return live.length ? live : g.zombie ? [{ tid: g.tgid, tg: g }] : [];
  });
  if (which === PRIO_PROCESS) { const p = findTask(t, who); return p ? [p] : []; }
  const tgs = Object.values(s.threadGroups);
  if (which === PRIO_PGRP) return threads(tgs.filter((g) => g.pgid === (who || t.tg.pgid)));
  if (which === PRIO_USER) return threads(tgs.filter((g) => credsOf(g).ruid === (who || credsOf(t.tg).ruid)));
  return null;
}

/**
 * setpriority(2) (kernel/sys.c): nice clamped to -20..19; for each target (set_one_prio) EPERM
 * unless the caller's euid is its real or effective uid or the caller holds CAP_SYS_NICE, then
 * EACCES for a lower nice than it has that its RLIMIT_NICE does not allow without CAP_SYS_NICE, then
 * EPERM as capSafeNice says.
 * Every target is tried; the call returns the last error, 0 if none, ESRCH for no target.
 */
function setPriority(t: Task): number {
  const targets = priorityTargets(t, t.argInt(0), t.argInt(1));
  if (targets === null) return -E.EINVAL;
  const nice = Math.max(-20, Math.min(19, t.argInt(2)));
  const privileged = capable(credsOf(t.tg), CAP_SYS_NICE);
  let err = -E.ESRCH;
  for (const p of targets) {
    if (!sameOwner(t, p) && !privileged) { err = -E.EPERM; continue; }
    if (nice < niceOfTarget(p) && !niceAllowed(p.tg, nice) && !privileged) { err = -E.EACCES; continue; }
    if (!capSafeNice(t, p)) { err = -E.EPERM; continue; }
    if (err === -E.ESRCH) err = 0;
    if (p.ts) t.kernel.emit({ type: 'task.update', tid: p.tid, what: 'nice' }, [['set', ['tasks', p.tid, 'nice'], nice]]);
  }
  return err;
}

export const schedSyscalls = [
  syscall('sched_yield', 0, () => 0),
  syscall('sched_setscheduler', 3, (t) => (t.argInt(1) < 0 ? -E.EINVAL : setSchedulerCall(t, t.argInt(0), t.argInt(1), t.arg(2))), 'partial', 'recorded for the guest per thread, with Linux\'s permission checks; the host schedules the stubs'),
  syscall('sched_setparam', 2, (t) => setSchedulerCall(t, t.argInt(0), SETPARAM_POLICY, t.arg(1)), 'partial', 'recorded for the guest per thread, with Linux\'s permission checks; the host schedules the stubs'),
  syscall('sched_setattr', 3, setAttr, 'partial', 'recorded for the guest per thread, with Linux\'s permission checks; no SCHED_DEADLINE admission control; utilization clamps EOPNOTSUPP'),
  syscall('sched_getattr', 4, getAttr),
  syscall('sched_getscheduler', 1, (t) => {
    const pid = t.argInt(0);
    if (pid < 0) return -E.EINVAL;
    const p = findTask(t, pid);
    if (!p) return -E.ESRCH;
    const cur = attrsOf(p);
    return cur.policy | (cur.resetOnFork ? SCHED_RESET_ON_FORK : 0);
  }),
  syscall('sched_getparam', 2, (t) => {
    const pid = t.argInt(0);
    if (pid < 0 || !t.arg(1)) return -E.EINVAL;
    const p = findTask(t, pid);
    if (!p) return -E.ESRCH;
    const cur = attrsOf(p);
    t.mm.writeU32(t.arg(1), realtime(cur.policy) ? cur.priority : 0);
    return 0;
  }),
  // Linux lists SCHED_EXT (7) here whether or not it is built in (sched_setscheduler refuses it without).
  syscall('sched_get_priority_max', 1, (t) => (realtime(t.argInt(0)) ? 99 : POLICIES.includes(t.argInt(0)) || t.argInt(0) === SCHED_EXT ? 0 : -E.EINVAL)),
  syscall('sched_get_priority_min', 1, (t) => (realtime(t.argInt(0)) ? 1 : POLICIES.includes(t.argInt(0)) || t.argInt(0) === SCHED_EXT ? 0 : -E.EINVAL)),
  syscall('sched_rr_get_interval', 2, (t) => {
    const pid = t.argInt(0);
    if (pid < 0) return -E.EINVAL;
    const p = findTask(t, pid);
    if (!p) return -E.ESRCH;
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigInt64(8, attrsOf(p).policy === SCHED_RR ? 100_000_000n : 0n, true);
    t.mm.write(t.arg(1), b);
    return 0;
  }),
  syscall('sched_getaffinity', 3, (t) => {
    const pid = t.argInt(0);
    const p = pid < 0 ? undefined : findTask(t, pid);
    if (!p) return -E.ESRCH;
    const len = t.arg(1);
    const mask = p.tg.affinity ?? cpuMask();
    if (len < mask.length || len % 8) return -E.EINVAL;
    t.mm.write(t.arg(2), mask);
    return mask.length;
  }),
  syscall('sched_setaffinity', 3, (t) => {
    const pid = t.argInt(0);
    const p = pid < 0 ? undefined : findTask(t, pid);
    if (!p) return -E.ESRCH;
    // sched_setaffinity: another owner's process needs CAP_SYS_NICE (check_same_owner), then cap_safe_nice.
    if ((!sameOwner(t, p) && !capable(credsOf(t.tg), CAP_SYS_NICE)) || !capSafeNice(t, p)) return -E.EPERM;
    const all = cpuMask();
    const given = t.mm.read(t.arg(2), Math.min(t.arg(1), 128));
    const mask = new Uint8Array(all.length);
    for (let i = 0; i < all.length && i < given.length; i++) mask[i] = given[i] & all[i];
    if (mask.every((x) => x === 0)) return -E.EINVAL;
    t.kernel.emit({ type: 'proc.update', tgid: p.tg.tgid, what: 'affinity' }, [['set', ['threadGroups', p.tg.tgid, 'affinity'], mask]], true);
    return 0;
  }, 'partial', 'recorded for the guest per process; the host places the stubs'),
  syscall('getpriority', 2, (t) => {
    const targets = priorityTargets(t, t.argInt(0), t.argInt(1));
    if (targets === null) return -E.EINVAL;
    if (!targets.length) return -E.ESRCH;
    return 20 - Math.min(...targets.map(niceOfTarget)); // nice_to_rlimit: the syscall returns 20 - nice
  }),
  syscall('setpriority', 3, setPriority, 'partial', 'recorded for the guest per thread, with Linux\'s permission checks; the host schedules the stubs'),
];
