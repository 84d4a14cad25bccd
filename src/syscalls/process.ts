/**
 * Process syscalls: identity, exit, execve, uname, resource limits, arch_prctl,
 * set_tid_address, prctl (man 2 getpid, exit_group, execve, uname, prlimit, arch_prctl).
 * fork/clone/wait come with the processes issue; until then wait4 has no children.
 */
import { NO_USAGE, addUsage } from '../kernel/cputime.js';
import { encodeRusage } from './time.js';
import { map } from 'rxjs';
import { E } from '../errno.js';
import { REG } from '../../platforms/platform.js';
import type { Task, SyscallResult } from '../kernel/task.js';
import type { ThreadGroupState } from '../kernel/state.js';
import { CloneArgs } from '../kernel/processes.js';
import { encodeSiginfo } from '../kernel/signals.js';
import { ExitGroup, ExitThread } from '../kernel/task.js';
import { ExecError, execProgram } from '../loader/exec.js';
import { kernelRelease } from '../vfs/proc.js';
import { baseDir } from '../kernel/dirfd.js';
import { syscall } from './entry.js';
import { ARCH_GET_CPUID, ARCH_GET_FS, ARCH_GET_GS, ARCH_SET_CPUID, ARCH_SET_FS, ARCH_SET_GS, AT_EMPTY_PATH, CLD_CONTINUED, CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLD_STOPPED, CLONE_PIDFD, CLONE_THREAD, CLONE_VFORK, CLONE_VM, PR_GET_CHILD_SUBREAPER, PR_SET_CHILD_SUBREAPER, PR_GET_DUMPABLE, PR_GET_NAME, PR_GET_PDEATHSIG, PR_GET_SECCOMP, PR_SET_DUMPABLE, PR_SET_NAME, PR_SET_PDEATHSIG, PR_SET_VMA, PR_GET_TIMERSLACK, PR_SET_TIMERSLACK, P_ALL, CAP_SYS_RESOURCE, RLIMIT_NOFILE, P_PGID, P_PID, P_PIDFD, RLIM_INFINITY, SIGCHLD, SI_USER, WCONTINUED, WEXITED, WNOHANG, WNOWAIT, WUNTRACED, __WALL, __WCLONE, __WNOTHREAD } from '../abi/linux.js';
import { prctlCreds } from './creds.js';
import { DEFAULT_TIMER_SLACK_NS, realtimeOrDeadline, schedOf, timerSlackOf } from '../kernel/sched.js';
import { groupSendSigInfo } from './signal.js';
import { capable, credsOf } from '../kernel/creds.js';
import type { PidFdFile } from '../files/pidfd.js';

/** Default limits (as a Debian login shell has them): resource -> [soft, hard]. */
const DEFAULT_RLIMITS: Record<number, [bigint, bigint]> = {
  0: [RLIM_INFINITY, RLIM_INFINITY],   // CPU
  1: [RLIM_INFINITY, RLIM_INFINITY],   // FSIZE
  2: [RLIM_INFINITY, RLIM_INFINITY],   // DATA
  3: [8n << 20n, RLIM_INFINITY],       // STACK
  4: [0n, RLIM_INFINITY],              // CORE
  5: [RLIM_INFINITY, RLIM_INFINITY],   // RSS
  6: [4096n, 4096n],                   // NPROC
  7: [1024n, 1048576n],                // NOFILE
  8: [8n << 20n, 8n << 20n],           // MEMLOCK
  9: [RLIM_INFINITY, RLIM_INFINITY],   // AS
  10: [RLIM_INFINITY, RLIM_INFINITY],  // LOCKS
  11: [4096n, 4096n],                  // SIGPENDING
  12: [819200n, 819200n],              // MSGQUEUE
  13: [0n, 0n],                        // NICE
  14: [0n, 0n],                        // RTPRIO
  15: [RLIM_INFINITY, RLIM_INFINITY],  // RTTIME
};

function rlimit(tg: ThreadGroupState, res: number): [bigint, bigint] {
  return tg.rlimits[res] ?? DEFAULT_RLIMITS[res];
}

/**
 * prlimit64(2) (kernel/sys.c prlimit64, do_prlimit): limits of the caller (pid 0) or of any task
 * by tid. Errors: EFAULT (bad new-limit pointer), ESRCH (no such task), EPERM (another process
 * whose real, effective and saved ids are not all the caller's, without CAP_SYS_RESOURCE; raising
 * a hard limit without CAP_SYS_RESOURCE; RLIMIT_NOFILE above nr_open), EINVAL (bad resource,
 * soft > hard). Limits are in bytes or counts, RLIM_INFINITY = 2^64-1.
 */
function prlimit(t: Task, pid: number, res: number, newAddr: number, oldAddr: number): number {
  let next: [bigint, bigint] | undefined;
  if (newAddr) {
    const b = t.mm.read(newAddr, 16);
    const v = new DataView(b.buffer, b.byteOffset, 16);
    next = [v.getBigUint64(0, true), v.getBigUint64(8, true)];
  }
  const s = t.kernel.state;
  const target = pid === 0 ? t.tg : s.tasks[pid] && s.threadGroups[s.tasks[pid].tgid];
  if (!target || target.zombie) return -E.ESRCH;
  const me = credsOf(t.tg);
  if (target !== t.tg) {
    const c = credsOf(target);
    const idMatch = me.ruid === c.euid && me.ruid === c.suid && me.ruid === c.ruid && me.rgid === c.egid && me.rgid === c.sgid && me.rgid === c.rgid;
    if (!idMatch && !capable(me, CAP_SYS_RESOURCE)) return -E.EPERM;
  }
  if (!(res in DEFAULT_RLIMITS)) return -E.EINVAL;
  if (next) {
    if (next[0] > next[1]) return -E.EINVAL;
    if (res === RLIMIT_NOFILE && next[1] > 1048576n) return -E.EPERM;
  }
  const old = rlimit(target, res);
  if (next && next[1] > old[1] && !capable(me, CAP_SYS_RESOURCE)) return -E.EPERM;
  if (oldAddr) {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, old[0], true); v.setBigUint64(8, old[1], true);
    t.mm.write(oldAddr, b);
  }
  if (next) t.kernel.emit({ type: 'proc.rlimit', tgid: target.tgid, resource: res }, [['set', ['threadGroups', target.tgid, 'rlimits', res], next]]);
  return 0;
}

function uname(t: Task): number {
  const b = new Uint8Array(65 * 6);
  const enc = new TextEncoder();
  ['Linux', t.kernel.state.config.hostname, kernelRelease(), '#1 SMP snapvisor', 'x86_64', '(none)'].forEach((s, i) => b.set(enc.encode(s).subarray(0, 64), i * 65));
  t.mm.write(t.arg(0), b);
  return 0;
}

function archPrctl(t: Task): number {
  const code = t.argInt(0), addr = t.arg(1);
  const r = t.platform.regs;
  switch (code) {
    case ARCH_SET_FS: case ARCH_SET_GS:
      if (addr >= 0x8000_0000_0000) return -E.EPERM;
      r[code === ARCH_SET_FS ? REG.fs_base : REG.gs_base] = BigInt(addr);
      return 0;
    case ARCH_GET_FS: t.mm.writeU64(addr, r[REG.fs_base]); return 0;
    case ARCH_GET_GS: t.mm.writeU64(addr, r[REG.gs_base]); return 0;
    case ARCH_GET_CPUID: return 1;
    case ARCH_SET_CPUID: return 0;
    default: return -E.EINVAL;
  }
}

/** The process `pid` names (0: the caller), if it exists; zombies count, as in Linux's pid lookup. */
function liveProcess(t: Task, pid: number): ThreadGroupState | undefined {
  if (pid === 0) return t.tg;
  if (pid < 0) return undefined;
  return t.kernel.state.threadGroups[pid];
}

/**
 * setpgid(2), after kernel/sys.c: the caller or one of its children (ESRCH otherwise); a child in
 * another session (EPERM) or that has exec'd (EACCES); never a session leader (EPERM); the target
 * group must be the process's own id or an existing group of the caller's session (EPERM).
 * EINVAL for a negative pgid.
 */
function setpgid(t: Task): number {
  const pid = t.argInt(0) || t.state.tgid, pgid = t.argInt(1) || pid;
  if (t.argInt(1) < 0) return -E.EINVAL;
  const p = t.kernel.state.threadGroups[pid];
  if (!p || p.zombie) return -E.ESRCH;
  if (p.ppid === t.state.tgid && p.tgid !== t.state.tgid) {
    if (p.sid !== t.tg.sid) return -E.EPERM;
    if (p.execed) return -E.EACCES;
  } else if (p.tgid !== t.state.tgid) return -E.ESRCH;
  if (p.sid === p.tgid) return -E.EPERM; // a session leader cannot change its group
  if (pgid !== pid && !Object.values(t.kernel.state.threadGroups).some((g) => g.pgid === pgid && g.sid === t.tg.sid && !g.zombie)) return -E.EPERM;
  t.kernel.emit({ type: 'proc.pgid', tgid: p.tgid, pgid }, t.kernel.tgOps(p.tgid, { pgid }));
  return 0;
}

function prctl(t: Task): number {
  const op = t.argInt(0);
  switch (op) {
    case PR_SET_NAME: t.kernel.emit({ type: 'task.update', tid: t.tid, what: 'comm' }, t.kernel.taskOps(t.tid, { comm: t.mm.readCString(t.arg(1), 4096).slice(0, 15) })); return 0;
    case PR_GET_NAME: {
      const b = new Uint8Array(16);
      b.set(new TextEncoder().encode(t.state.comm).subarray(0, 15));
      t.mm.write(t.arg(1), b);
      return 0;
    }
    case PR_SET_PDEATHSIG: {
      const sig = t.arg(1);
      if (sig > 64) return -E.EINVAL;
      t.kernel.emit({ type: 'proc.update', tgid: t.tgid, what: 'pdeathsig' }, t.kernel.tgOps(t.tgid, { parentDeathSignal: sig || undefined }));
      return 0;
    }
    case PR_GET_PDEATHSIG: t.mm.writeU32(t.arg(1), t.tg.parentDeathSignal ?? 0); return 0;
    case PR_SET_CHILD_SUBREAPER: t.kernel.emit({ type: 'proc.update', tgid: t.tgid, what: 'subreaper' }, t.kernel.tgOps(t.tgid, { childSubreaper: t.arg(1) !== 0 || undefined })); return 0;
    case PR_GET_CHILD_SUBREAPER: t.mm.writeU32(t.arg(1), t.tg.childSubreaper ? 1 : 0); return 0;
    case PR_GET_TIMERSLACK: return Number(timerSlackOf(t.state, t.tg));
    case PR_SET_TIMERSLACK: {
      // Ignored (0 returned) while the thread is realtime; 0 brings back the default the creating thread gave.
      if (realtimeOrDeadline(schedOf(t.state, t.tg).policy)) return 0;
      const ns = t.argBig(1);
      t.kernel.emit({ type: 'task.update', tid: t.tid, what: 'timerslack' }, t.kernel.taskOps(t.tid, { timerSlackNs: ns === 0n ? t.state.defaultTimerSlackNs ?? DEFAULT_TIMER_SLACK_NS : ns }));
      return 0;
    }
    case PR_GET_DUMPABLE: return 1;
    case PR_SET_DUMPABLE: return 0;
    case PR_GET_SECCOMP: return 0;
    case PR_SET_VMA: return 0;
    default: return prctlCreds(t, op) ?? -E.EINVAL;
  }
}

/** execve(2)/execveat(2): errors before the point of no return come back as -errno. */
function execve(t: Task, dirfd: number, pathAddr: number, argvAddr: number, envpAddr: number, flags: number): number {
  let path = t.mm.readCString(pathAddr);
  const argv = t.mm.readStringArray(argvAddr);
  const envp = t.mm.readStringArray(envpAddr);
  if (path === '' && (flags & AT_EMPTY_PATH)) path = t.kernel.file(t, dirfd).path;
  else if (!path.startsWith('/')) path = baseDir(t, dirfd, path) + '/' + path;
  if (argv.length === 0) argv.push(new Uint8Array(0));
  try {
    execProgram(t, path, argv, envp);
    if (!t.tg.execed) t.kernel.emit({ type: 'proc.update', tgid: t.tgid, what: 'execed' }, t.kernel.tgOps(t.tgid, { execed: true }));
  } catch (e) {
    if (e instanceof ExecError) return -e.errno;
    throw e;
  }
  return 0;
}

/** A pidfd for process `tgid` (man 2 pidfd_open): pollable, readable once the process has exited. */
export function newPidfd(t: Task, tgid: number, cloexec = true): number {
  const f = t.kernel.newOpenFile({ kind: 'pidfd', path: 'anon_inode:[pidfd]', flags: 2, pidfdTgid: tgid });
  const fd = t.kernel.installFd(t, f.id, cloexec);
  if (fd < 0) t.kernel.discardFile(f.id);
  return fd;
}

/** fork/vfork/clone: the child's pid in the parent; a vfork parent blocks until the child execs or exits. */
function cloneProcess(t: Task, a: CloneArgs, pidfdAddr = 0): SyscallResult {
  if ((a.flags & CLONE_PIDFD) && (a.flags & CLONE_THREAD)) return -E.EINVAL;
  const restored = t.resumed('vfork')?.pid;
  if (restored !== undefined) {
    // Restored while suspended in vfork: the child exists already; keep waiting for it.
    const k = t.kernel;
    if (t.state.vforkChild === undefined) return restored;
    return { waiter: { kind: 'vfork', pid: restored }, result$: k.whenRunnable(k.processes.childEvent$, () => (t.state.vforkChild === undefined ? restored : undefined)) };
  }
  const pid = t.kernel.processes.clone(t, a);
  if (a.flags & CLONE_PIDFD) {
    const fd = newPidfd(t, pid);
    if (fd >= 0) t.mm.writeU32(pidfdAddr || a.parentTid, fd);
  }
  if (!(a.flags & CLONE_VFORK)) return pid;
  const k = t.kernel;
  return {
    waiter: { kind: 'vfork', pid },
    result$: k.whenRunnable(k.processes.childEvent$, () => (t.state.vforkChild === undefined ? pid : undefined)),
  };
}

function clone3(t: Task): SyscallResult {
  const size = t.arg(1);
  if (size < 64) return -E.EINVAL;
  const b = t.mm.read(t.arg(0), 64);
  const v = new DataView(b.buffer, b.byteOffset, 64);
  const u = (i: number) => Number(v.getBigUint64(i * 8, true));
  const flags = u(0), stack = u(5), stackSize = u(6);
  return cloneProcess(t, { flags, childTid: u(2), parentTid: u(3), exitSignal: u(4), stack: stack ? stack + stackSize : 0, tls: u(7) }, u(1));
}

/** wait4(2): reap a zombie child matching pid (>0 that pid, 0 own group, -1 any, < -1 group -pid); WUNTRACED/WCONTINUED report job-control changes. */
function wait4(t: Task, pid: number, statusAddr: number, options: number, rusage: number): SyscallResult {
  if (options & ~(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WALL | __WCLONE)) return -E.EINVAL;
  const match = (c: ThreadGroupState) => (pid > 0 ? c.tgid === pid : pid === 0 ? c.pgid === t.tg.pgid : pid === -1 ? true : c.pgid === -pid);
  const report = (c: ThreadGroupState, status: number) => {
    if (statusAddr) t.mm.writeU32(statusAddr, status);
    // The child's use and its waited-for children's (wait_task_zombie); nothing yet for a stopped or continued one.
    if (rusage) t.mm.write(rusage, c.zombie ? encodeRusage(addUsage(c.exitUsage ?? NO_USAGE, c.childUsage ?? NO_USAGE)) : new Uint8Array(144));
  };
  return waitFor(t, match, false, !!(options & WNOHANG), report, { exited: true, stopped: !!(options & WUNTRACED), continued: !!(options & WCONTINUED) });
}

function waitFor(t: Task, match: (c: ThreadGroupState) => boolean, noWait: boolean, noHang: boolean, report: (c: ThreadGroupState, status: number) => void, opts: { exited: boolean; stopped: boolean; continued: boolean }): SyscallResult {
  const k = t.kernel;
  const attempt = () => {
    const r = k.processes.tryWait(t, match, noWait, report, opts);
    return r === 0 && !noHang ? undefined : r;
  };
  const now = attempt();
  if (now !== undefined) return now;
  return { waiter: { kind: 'wait', interruptible: true, restartable: true }, result$: k.whenRunnable(k.processes.childEvent$, attempt) };
}

/** waitid(2): like wait4 but reports a siginfo_t (si_code CLD_EXITED/KILLED/DUMPED/STOPPED/CONTINUED). */
function waitid(t: Task, idtype: number, id: number, infop: number, options: number): SyscallResult {
  if (!(options & (WEXITED | WUNTRACED | WCONTINUED))) return -E.EINVAL;
  if (idtype === P_PIDFD) {
    const f = t.kernel.file(t, id);
    if (f.kind !== 'pidfd') return -E.EINVAL;
    idtype = P_PID; id = f.pidfdTgid!;
  }
  if (idtype !== P_ALL && idtype !== P_PID && idtype !== P_PGID) return -E.EINVAL;
  const match = (c: ThreadGroupState) => (idtype === P_ALL ? true : idtype === P_PID ? c.tgid === id : c.pgid === (id || t.tg.pgid));
  const report = (c: ThreadGroupState, ws: number) => {
    if (!infop) return;
    let code: number, status: number;
    if (ws === 0xffff) { code = CLD_CONTINUED; status = 18; }
    else if ((ws & 0xff) === 0x7f) { code = CLD_STOPPED; status = (ws >> 8) & 0xff; }
    else if (ws & 0x7f) { code = ws & 0x80 ? CLD_DUMPED : CLD_KILLED; status = ws & 0x7f; }
    else { code = CLD_EXITED; status = (ws >> 8) & 0xff; }
    t.mm.write(infop, encodeSiginfo({ signo: SIGCHLD, code, pid: c.tgid, uid: c.uid, status }));
  };
  const r = waitFor(t, match, !!(options & WNOWAIT), !!(options & WNOHANG), report, { exited: !!(options & WEXITED), stopped: !!(options & WUNTRACED), continued: !!(options & WCONTINUED) });
  if (r === 0 && infop) t.mm.write(infop, new Uint8Array(128)); // WNOHANG and nothing yet: si_pid = 0
  if (typeof r !== 'number') return { waiter: r.waiter, result$: r.result$.pipe(map((v) => (v > 0 ? 0 : v))) };
  return r > 0 ? 0 : r;
}

export const processSyscalls = [
  syscall('getpid', 0, (t) => t.state.tgid),
  syscall('gettid', 0, (t) => t.tid),
  syscall('getppid', 0, (t) => t.tg.ppid),
  syscall('getpgrp', 0, (t) => t.tg.pgid),
  syscall('getpgid', 1, (t) => liveProcess(t, t.argInt(0))?.pgid ?? -E.ESRCH),
  syscall('getsid', 1, (t) => liveProcess(t, t.argInt(0))?.sid ?? -E.ESRCH),
  syscall('setpgid', 2, setpgid),
  syscall('setsid', 0, (t) => {
    // EPERM when any process group already has the caller's pid as its id (kernel/sys.c ksys_setsid).
    if (Object.values(t.kernel.state.threadGroups).some((g) => g.pgid === t.state.tgid)) return -E.EPERM;
    t.kernel.emit({ type: 'proc.setsid', tgid: t.tgid }, t.kernel.tgOps(t.tgid, { sid: t.tgid, pgid: t.tgid }));
    return t.state.tgid;
  }),
  syscall('exit', 1, (t) => { throw new ExitThread(t.argInt(0) & 0xff); }),
  syscall('exit_group', 1, (t) => { throw new ExitGroup({ code: t.argInt(0) & 0xff }); }),
  syscall('execve', 3, (t) => execve(t, -100, t.arg(0), t.arg(1), t.arg(2), 0), 'partial', 'single-threaded images'),
  syscall('execveat', 5, (t) => execve(t, t.argInt(0), t.arg(1), t.arg(2), t.arg(3), t.argInt(4)), 'partial', 'single-threaded images'),
  syscall('fork', 0, (t) => cloneProcess(t, { flags: 0, stack: 0, parentTid: 0, childTid: 0, tls: 0, exitSignal: SIGCHLD })),
  syscall('vfork', 0, (t) => cloneProcess(t, { flags: CLONE_VM | CLONE_VFORK, stack: 0, parentTid: 0, childTid: 0, tls: 0, exitSignal: SIGCHLD })),
  syscall('clone', 5, (t) => cloneProcess(t, { flags: t.argU32(0) & ~0xff, stack: t.arg(1), parentTid: t.arg(2), childTid: t.arg(3), tls: t.arg(4), exitSignal: t.argU32(0) & 0xff }), 'partial', 'namespaces and CLONE_PTRACE are not supported'),
  syscall('clone3', 2, clone3, 'partial', 'as clone; set_tid and cgroup are not supported'),
  syscall('wait4', 4, (t) => wait4(t, t.argInt(0), t.arg(1), t.argInt(2), t.arg(3)), 'partial', 'rusage of children is zero'),
  syscall('waitid', 5, (t) => waitid(t, t.argInt(0), t.argInt(1), t.arg(2), t.argInt(3)), 'partial', 'rusage of children is zero'),
  syscall('pidfd_open', 2, (t) => {
    const pid = t.argInt(0), flags = t.argU32(1);
    if (flags & ~0o4000 || pid <= 0) return -E.EINVAL;
    const g = t.kernel.state.threadGroups[pid];
    if (!g) return -E.ESRCH;
    return newPidfd(t, pid);
  }),
  syscall('pidfd_send_signal', 4, (t) => {
    const f = t.kernel.file(t, t.argInt(0));
    // A pidfd, or an fd of a /proc/<pid> directory (both name a process).
    const procPid = f.kind === 'dir' ? /^\/proc\/(\d+)$/.exec(f.path)?.[1] : undefined;
    if (f.kind !== 'pidfd' && !procPid) return -E.EBADF;
    const tgid = procPid ? Number(procPid) : (f as PidFdFile).pidfdTgid;
    if (t.argU32(3)) return -E.EINVAL;
    const sig = t.argInt(1);
    // kill_pid_info_type: the process until it is reaped (a zombie is checked and gets nothing), with kill's checks.
    const g = t.kernel.state.threadGroups[tgid];
    if (!g) return -E.ESRCH;
    return groupSendSigInfo(t, g, sig, { signo: sig, code: SI_USER, pid: t.tgid, uid: t.tg.uid });
  }, 'partial', 'a caller-supplied siginfo is not used'),
  syscall('uname', 1, uname),
  syscall('sethostname', 2, (t) => { const n = t.argInt(1); if (n < 0 || n > 64) return -E.EINVAL; t.kernel.emit({ type: 'config.set', what: 'hostname' }, [['set', ['config', 'hostname'], new TextDecoder().decode(t.mm.read(t.arg(0), n))]]); return 0; }),
  syscall('prlimit64', 4, (t) => prlimit(t, t.argInt(0), t.argInt(1), t.arg(2), t.arg(3))),
  syscall('getrlimit', 2, (t) => prlimit(t, 0, t.argInt(0), 0, t.arg(1))),
  syscall('setrlimit', 2, (t) => prlimit(t, 0, t.argInt(0), t.arg(1), 0)),
  syscall('arch_prctl', 2, archPrctl),
  syscall('set_tid_address', 1, (t) => { t.kernel.emit({ type: 'task.update', tid: t.tid, what: 'clear_child_tid' }, t.kernel.taskOps(t.tid, { clearChildTid: t.arg(0) })); return t.tid; }),
  syscall('set_robust_list', 2, (t) => { if (t.arg(1) !== 24) return -E.EINVAL; t.kernel.emit({ type: 'task.update', tid: t.tid, what: 'robust_list' }, t.kernel.taskOps(t.tid, { robustList: t.arg(0) })); return 0; }),
  syscall('get_robust_list', 3, (t) => { t.mm.writeU64(t.arg(1), t.state.robustList); t.mm.writeU64(t.arg(2), 24); return 0; }),
  syscall('prctl', 5, prctl, 'partial', 'names, dumpable, timer slack, no_new_privs, keepcaps, capability bounding and ambient sets; others EINVAL'),
];
