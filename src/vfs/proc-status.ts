/**
 * /proc/PID/status and /proc/PID/task/TID/status (Linux fs/proc/array.c proc_pid_status,
 * fs/proc/task_mmu.c task_mem): every line the host's own status file has, in its order, with
 * the sandbox's values — state, ids, namespaces' pids (one pid namespace: the same numbers),
 * memory (from the VMAs and the memory file: resident means charged or still in a restored page
 * file, 64 KiB at a time), signals (SigQ, SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt), capabilities,
 * CPUs, context switches (voluntary: blocking syscalls; involuntary: the host's preemptions of the
 * thread's stub). Lines about the host machine rather than the process (THP_enabled, untag_mask,
 * Speculation*, Mems_allowed*, x86_Thread_features*) are the host's; other lines the host has and
 * this file does not know are left out.
 */
import fs from 'node:fs';
import type { Kernel } from '../kernel/kernel.js';
import type { AddressSpaceState, TaskState, ThreadGroupState } from '../kernel/state.js';
import { hostCpuCount } from '../kernel/host-cpus.js';
import { credsOf } from '../kernel/creds.js';
import { groupUsage } from '../kernel/cputime.js';
import { PieceKind } from '../mm/memory-file.js';
import { MAP_SHARED, PROT_WRITE } from '../abi/linux.js';

const PROT_EXEC = 4;
/** Lines that describe the host machine (kept as the host's). */
const HOST_LINES = /^(THP_enabled|untag_mask|Speculation.*|Mems_allowed|Mems_allowed_list|x86_Thread_features.*)$/;
/** RLIMIT_SIGPENDING. */
const RLIMIT_SIGPENDING = 11;

const hex16 = (x: bigint) => BigInt.asUintN(64, x).toString(16).padStart(16, '0');
const kB = (bytes: number) => `${String(Math.ceil(bytes / 1024)).padStart(8)} kB`;
const popcount = (x: bigint) => { let n = 0; for (let v = BigInt.asUintN(64, x); v; v &= v - 1n) n++; return n; };

/** Signals whose disposition is SIG_IGN (handler 1) or a handler (> 1), as a mask (signal n at bit n-1). */
function dispositions(tg: ThreadGroupState): { ign: bigint; cgt: bigint } {
  let ign = 0n, cgt = 0n;
  for (const [n, a] of Object.entries(tg.sigactions)) {
    const bit = 1n << BigInt(Number(n) - 1);
    if (a.handler === 1) ign |= bit; else if (a.handler > 1) cgt |= bit;
  }
  return { ign, cgt };
}

/** A CPU mask as Linux prints it (%*pb: 32-bit hex groups, comma-separated) and as a list (%*pbl: ranges). */
function cpuMask(cpus: number[], ncpu: number): { mask: string; list: string } {
  const groups: string[] = [];
  for (let g = Math.ceil(ncpu / 32) - 1; g >= 0; g--) {
    let w = 0;
    for (const c of cpus) if (c >= g * 32 && c < g * 32 + 32) w |= 1 << (c - g * 32);
    groups.push((w >>> 0).toString(16).padStart(groups.length ? 8 : 1, '0'));
  }
  const ranges: string[] = [];
  const sorted = [...cpus].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return { mask: groups.join(','), list: ranges.join(',') };
}

/** The fd table's size as Linux grows it: 64 slots, then 128 · a power of two (expand_fdtable). */
function fdSize(maxFd: number): number {
  if (maxFd < 64) return 64;
  let n = Math.floor(maxFd / 128) + 1, p = 1;
  while (p < n) p *= 2;
  return p * 128;
}

/**
 * An address space's memory as /proc/PID/status counts it, in bytes: `size` (VmSize) and
 * `data`, `execVm` (VmData, VmExe + VmLib) from the VMAs' lengths; `exe` of the executable's own
 * mappings; `stack`, `anon`, `file` and `shmem` resident (charged in the memory file or still in
 * a restored page file, 64 KiB at a time). /proc/PID/stat's rss is anon + file + shmem.
 */
export interface MemoryCounts { size: number; data: number; stack: number; exe: number; execVm: number; anon: number; file: number; shmem: number }

/** The MemoryCounts of address space `as` (undefined: all zero). */
export function memoryCounts(k: Kernel, as: AddressSpaceState | undefined): MemoryCounts {
  let size = 0, data = 0, stack = 0, exe = 0, execVm = 0, anon = 0, file = 0, shmem = 0;
  for (const v of as?.vmas ?? []) {
    const len = v.end - v.start;
    let resident = 0;
    k.mf.pieces(v.fileOffset, len, (_o, n, kind) => { if (kind !== PieceKind.None) resident += n; });
    size += len;
    const isStack = v.name === '[stack]';
    if (isStack) stack += resident;
    if ((v.prot & PROT_WRITE) && !(v.flags & MAP_SHARED) && !isStack) data += len;
    if ((v.prot & PROT_EXEC) && !(v.prot & PROT_WRITE) && !isStack) { execVm += len; if (v.name === as!.exe) exe += len; }
    const shared = (v.flags & MAP_SHARED) && (!v.name.startsWith('/') || v.name.startsWith('/dev/shm/') || v.name.startsWith('/memfd:'));
    if (shared) shmem += resident; else if (v.name.startsWith('/')) file += resident; else anon += resident;
  }
  return { size, data, stack, exe, execVm, anon, file, shmem };
}

/**
 * The host's own /proc/self/status, read once, as its lines' values by key in the host's order (a
 * Map keeps it): the order, the host-machine lines (HOST_LINES) and SigQ's limit do not change
 * while the kernel runs. Empty without /proc.
 */
let hostStatus: Map<string, string> | undefined;
function hostStatusLines(): Map<string, string> {
  if (hostStatus) return hostStatus;
  let text = '';
  try { text = fs.readFileSync('/proc/self/status', 'latin1'); } catch { /* no /proc: Linux's order below */ }
  hostStatus = new Map();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) hostStatus.set(line.slice(0, colon), line.slice(colon + 1).replace(/^\s*/, ''));
  }
  return hostStatus;
}

/** The text of /proc/<tg>/status as thread `ts` sees it. */
export function procStatus(k: Kernel, tg: ThreadGroupState, ts: TaskState): string {
  const c = credsOf(tg);
  const as = k.state.addressSpaces[ts.addressSpaceId];
  const fds = Object.keys(k.state.fdTables[ts.fdTableId]?.fds ?? {}).map(Number);
  // Memory, from the VMAs.
  const { size, data, stack, exe, execVm, anon, file, shmem } = memoryCounts(k, as);
  const rss = anon + file + shmem;
  if (as && size > (as.vmPeak ?? 0)) k.emit({ type: 'mm.change', tid: ts.tid, cause: 'vmpeak' }, [['set', ['addressSpaces', as.id, 'vmPeak'], size]]);
  const usage = groupUsage(k, tg);
  const hwm = Math.max(rss, usage.maxrssKb * 1024);
  const { ign, cgt } = dispositions(tg);
  const ncpu = hostCpuCount();
  const allowed = tg.affinity ? [...Array(tg.affinity.length * 8).keys()].filter((i) => i < ncpu && (tg.affinity![i >> 3] >> (i & 7)) & 1) : [...Array(ncpu).keys()];
  const cpus = cpuMask(allowed, ncpu);
  const host = hostStatusLines();
  const hostValue = (key: string) => host.get(key) ?? '';
  const sigLimit = tg.rlimits[RLIMIT_SIGPENDING]?.[0] ?? BigInt(hostValue('SigQ').split('/')[1] || 0);
  const live = k.tasks.get(ts.tid);
  const state = tg.zombie ? 'Z (zombie)' : tg.stopped ? 'T (stopped)' : ts.waiter ? 'S (sleeping)' : 'R (running)';
  const values: Record<string, string> = {
    Name: ts.comm, Umask: tg.umask.toString(8).padStart(4, '0'), State: state,
    Tgid: `${tg.tgid}`, Ngid: '0', Pid: `${ts.tid}`, PPid: `${tg.ppid}`, TracerPid: '0',
    Uid: `${c.ruid}\t${c.euid}\t${c.suid}\t${c.fsuid}`, Gid: `${c.rgid}\t${c.egid}\t${c.sgid}\t${c.fsgid}`,
    FDSize: `${fdSize(fds.length ? Math.max(...fds) : 0)}`, Groups: c.groups.join(' ') + ' ', // task_state: the ids, then one space
    NStgid: `${tg.tgid}`, NSpid: `${ts.tid}`, NSpgid: `${tg.pgid}`, NSsid: `${tg.sid}`, Kthread: '0',
    VmPeak: kB(as?.vmPeak ?? size), VmSize: kB(size), VmLck: kB(0), VmPin: kB(0), VmHWM: kB(hwm), VmRSS: kB(rss),
    RssAnon: kB(anon), RssFile: kB(file), RssShmem: kB(shmem), VmData: kB(data), VmStk: kB(stack), VmExe: kB(exe),
    VmLib: kB(execVm - exe), VmPTE: kB(Math.ceil(rss / (2 << 20)) * 4096 + 12288), VmSwap: kB(0), HugetlbPages: kB(0),
    CoreDumping: '0', Threads: `${tg.tids.length}`,
    SigQ: `${popcount(ts.pendingSignals) + popcount(tg.pendingSignals)}/${sigLimit}`,
    SigPnd: hex16(ts.pendingSignals), ShdPnd: hex16(tg.pendingSignals), SigBlk: hex16(ts.sigmask), SigIgn: hex16(ign), SigCgt: hex16(cgt),
    CapInh: hex16(c.capInh), CapPrm: hex16(c.capPrm), CapEff: hex16(c.capEff), CapBnd: hex16(c.capBnd), CapAmb: hex16(c.capAmb),
    NoNewPrivs: c.noNewPrivs ? '1' : '0', Seccomp: '0', Seccomp_filters: '0',
    Cpus_allowed: cpus.mask, Cpus_allowed_list: cpus.list,
    voluntary_ctxt_switches: `${ts.nvcsw ?? 0}`, nonvoluntary_ctxt_switches: `${live ? live.platform.usage().nivcsw : 0}`,
  };
  const keys = [...host.keys()].filter((key) => key in values || HOST_LINES.test(key));
  // Without a host template (no /proc): the lines this file knows, in Linux's order.
  const order = keys.length ? keys : Object.keys(values);
  return order.map((key) => `${key}:\t${key in values ? values[key] : hostValue(key)}`).join('\n') + '\n';
}
