/**
 * /proc: generated from the state graph at open time (like seq_file), so what a guest
 * reads is a copy held by its open file and survives checkpoint/restore unchanged.
 * Covers what libc, python and coreutils read: self, <pid>/{exe,cwd,root,cmdline,
 * environ,maps,stat,status,fd/,auxv,comm,mounts,mountinfo}, cpuinfo, meminfo, uptime, version,
 * filesystems, mounts, sys/kernel/{hostname,osrelease,ostype}.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import type { Kernel } from '../kernel/kernel.js';
import type { Vma } from '../kernel/state.js';
import { credsOf, ptraceMayAccess } from '../kernel/creds.js';
import type { SyntheticMount, SyntheticNode } from './vfs.js';
import { S_IFDIR, S_IFLNK, S_IFREG } from '../abi/linux.js';
import { memoryCounts, procStatus } from './proc-status.js';
import { mapsRuns } from '../mm/maps-merge.js';
import { mountLines } from './mounts.js';
import { PROC_NET_FILES, type ProcNetFile, procNetText } from './proc-net.js';
import { NO_USAGE, groupUsage } from '../kernel/cputime.js';
import { niceOf, schedOf } from '../kernel/sched.js';
import { SCHED_DEADLINE, SCHED_FIFO, SCHED_RR } from '../abi/linux.js';

const enc = new TextEncoder();
const text = (s: string) => enc.encode(s);
const file = (ino: number, gen: () => string | Uint8Array, perm = 0o444): SyntheticNode => ({
  mode: S_IFREG | perm, ino, content: () => { const v = gen(); return typeof v === 'string' ? text(v) : v; },
});
const dir = (ino: number, list: () => string[]): SyntheticNode => ({ mode: S_IFDIR | 0o555, ino, list });
const link = (ino: number, target: () => string): SyntheticNode => ({ mode: S_IFLNK | 0o777, ino, target });

function hostFile(p: string): string {
  try { return fs.readFileSync(p, 'utf8'); } catch { return ''; }
}

let release: string | undefined;
/**
 * The kernel release the guest sees (uname, /proc): the host's, so version checks pass as natively.
 * Read on first use, not at module evaluation (the CLI's startup snapshot is built once, used on a later boot).
 */
export const kernelRelease = (): string => release ??= os.release();

export function procMount(k: Kernel): SyntheticMount {
  /** The caller's pid (the task whose syscall is being served), else init's. */
  const selfTgid = () => k.current?.tgid ?? Math.min(...Object.keys(k.state.threadGroups).map(Number));
  const selfTid = () => k.current?.tid ?? selfTgid();
  const pidDir = (pid: number, p: string, tid?: number): SyntheticNode | undefined => {
    const tg = k.state.threadGroups[pid];
    if (!tg || !k.state.tasks[tg.tids[0]]) return undefined;
    const parts = p.split('/');
    const rest = parts.slice(3).join('/');
    const c = () => credsOf(tg);
    const node = pidNode(pid, rest, parts, tid);
    if (!node) return undefined;
    // Files of /proc/<pid> belong to the process's euid/egid (task_dump_owner); the ones that show
    // its memory, files or paths are refused to a caller that may not ptrace it (EACCES).
    const guarded = ['environ', 'auxv', 'maps', 'exe', 'cwd', 'root'].includes(rest) || rest.startsWith('fd/');
    const mayAccess = () => { const caller = k.current?.tg; return !caller || ptraceMayAccess(caller, tg); };
    return { ...node, uid: c().euid, gid: c().egid, ...(guarded ? { mayAccess } : {}) };
  };
  /**
   * The node at /proc/<pid>/<rest> (`parts`: the whole path split at '/'), before its owner and
   * access check; with `tid`, /proc/<pid>/task/<tid>/<rest>, whose stat, status and comm are that
   * thread's (its tid, name and scheduling attributes).
   */
  const pidNode = (pid: number, rest: string, parts: string[], tid?: number): SyntheticNode | undefined => {
    const tg = k.state.threadGroups[pid];
    const task = k.tasks.get(tg.tids[0]);
    const ts = k.state.tasks[tid ?? tg.tids[0]] ?? k.state.tasks[tg.tids[0]];
    const as = k.state.addressSpaces[ts.addressSpaceId];
    const base = 0x10000 * (pid + 1);
    const mem = (from: number, to: number): Uint8Array => {
      try { return task ? new Uint8Array(task.mm.read(from, to - from)) : new Uint8Array(0); } catch { return new Uint8Array(0); }
    };
    const fds = k.state.fdTables[ts.fdTableId].fds;
    const fdTarget = (fd: number): string => {
      const f = k.state.openFiles[fds[fd].fileId];
      if (f.kind === 'hostfd') return k.host.fdPath(f.hostFd) ?? '/dev/null';
      // A file whose last name is gone reads "PATH (deleted)" (d_path of an unlinked dentry).
      if (f.kind === 'upper' && k.state.fs.inodes[f.inodeId]?.nlink === 0 && !f.path.endsWith(' (deleted)')) return `${f.path} (deleted)`;
      return f.path;
    };
    switch (rest) {
      case '': return dir(base, () => ['exe', 'cwd', 'root', 'cmdline', 'environ', 'maps', 'stat', 'status', 'fd', 'auxv', 'comm', 'mounts', 'mountinfo', 'net', 'task']);
      case 'exe': return link(base + 1, () => as.exe);
      case 'cwd': return link(base + 2, () => tg.cwd);
      case 'root': return link(base + 3, () => '/');
      case 'cmdline': return file(base + 4, () => mem(as.argStart, as.argEnd));
      case 'environ': return file(base + 5, () => mem(as.envStart, as.envEnd), 0o400);
      case 'maps': return file(base + 6, () => guestVisibleVmas(as.vmas).map((v) => {
        const perms = (v.prot & 1 ? 'r' : '-') + (v.prot & 2 ? 'w' : '-') + (v.prot & 4 ? 'x' : '-') + (v.flags & 1 ? 's' : 'p');
        const head = `${v.start.toString(16).padStart(8, '0')}-${v.end.toString(16).padStart(8, '0')} ${perms} ${v.pgoff.toString(16).padStart(8, '0')} 00:00 0`;
        return v.name ? head.padEnd(73) + v.name : head;
      }).join('\n') + '\n');
      case 'stat': return file(base + 7, () => {
        const comm = ts.comm;
        // Faults and CPU time (clock ticks of 10 ms) of the process and of its waited-for children, size and resident pages.
        const u = groupUsage(k, tg, true), cu = tg.childUsage ?? NO_USAGE, tick = (ns: bigint) => ns / 10_000_000n;
        // Size and resident pages from the VMAs, as /proc/PID/status counts them (VmSize; VmRSS, in pages).
        const m = memoryCounts(k, as);
        const vsize = m.size;
        const rss = Math.ceil(Math.ceil((m.anon + m.file + m.shmem) / 1024) / 4);
        const state = tg.zombie ? 'Z' : tg.stopped ? 'T' : ts.waiter ? 'S' : 'R';
        // priority (task_prio: 20 + nice, -1 - rt_priority for SCHED_FIFO/RR, -101 for SCHED_DEADLINE), nice, rt_priority, policy.
        const sched = schedOf(ts, tg), nice = niceOf(ts, tg);
        const prio = sched.policy === SCHED_DEADLINE ? -101 : sched.policy === SCHED_FIFO || sched.policy === SCHED_RR ? -1 - sched.priority : 20 + nice;
        return `${ts.tid} (${comm}) ${state} ${tg.ppid} ${tg.pgid} ${tg.sid} 0 -1 4194304 ${u.minflt} ${cu.minflt} ${u.majflt} ${cu.majflt} ` +
          `${tick(u.utimeNs)} ${tick(u.stimeNs)} ${tick(cu.utimeNs)} ${tick(cu.stimeNs)} ${prio} ${nice} ${tg.tids.length} 0 0 ${vsize} ${rss} ` +
          `18446744073709551615 0 0 ${as.envEnd} 0 0 0 0 0 0 0 0 0 17 0 ${sched.priority} ${sched.policy} 0 0 0 0 0 0 ${as.argStart} ${as.argEnd} ${as.envStart} ${as.envEnd} 0\n`;
      });
      case 'status': return file(base + 8, () => procStatus(k, tg, ts));
      case 'fd': return { ...dir(base + 9, () => Object.keys(fds)), mode: S_IFDIR | 0o500 };
      case 'auxv': return file(base + 10, () => {
        const b = new Uint8Array((as.auxv.length + 1) * 16);
        const v = new DataView(b.buffer);
        as.auxv.forEach(([t, val], i) => { v.setBigUint64(i * 16, BigInt(t), true); v.setBigUint64(i * 16 + 8, BigInt(val), true); });
        return b;
      }, 0o400);
      case 'comm': return file(base + 11, () => ts.comm + '\n');
      case 'mounts': return file(base + 12, () => mountsText());
      case 'mountinfo': return file(base + 16, () => mountLines(k.state.fs, true, (m) => k.vfs.mountRootDev(m)));
      case 'task': return dir(base + 13, () => tg.tids.map(String));
      // The sandbox's one network namespace (src/vfs/proc-net.ts).
      case 'net': return dir(base + 17, () => [...PROC_NET_FILES]);
    }
    if (rest.startsWith('net/')) {
      const i = PROC_NET_FILES.indexOf(rest.slice(4) as ProcNetFile);
      return i < 0 ? undefined : file(base + 18 + i, () => procNetText(k, PROC_NET_FILES[i]));
    }
    if (rest.startsWith('fd/')) {
      const fd = Number(rest.slice(3));
      if (!Number.isInteger(fd) || !fds[fd]) return undefined;
      return { ...link(base + 0x100 + fd, () => fdTarget(fd)), magicFileId: fds[fd].fileId };
    }
    if (rest.startsWith('task/')) {
      const tid = Number(parts[4]);
      if (!tg.tids.includes(tid)) return undefined;
      if (parts.length === 5) return dir(base + 14, () => ['stat', 'status', 'comm']);
      return pidDir(pid, `/proc/${pid}/${parts.slice(5).join('/')}`, tid);
    }
    return undefined;
  };
  /** The host's /proc/meminfo with MemTotal, MemFree and MemAvailable from the sandbox's memory limit (kB). */
  const meminfo = (host: string): string => {
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(host)?.[1] ?? 0) * 1024;
    const view = k.memoryLimit?.guestView(field('MemTotal'), field('MemAvailable'));
    if (!view) return host;
    const kb = (n: number) => `${Math.floor(n / 1024)} kB`;
    return host
      .replace(/^MemTotal:.*$/m, `MemTotal:       ${kb(view.total).padStart(11)}`)
      .replace(/^MemFree:.*$/m, `MemFree:        ${kb(view.free).padStart(11)}`)
      .replace(/^MemAvailable:.*$/m, `MemAvailable:   ${kb(view.free).padStart(11)}`);
  };
  /** /proc/mounts: the one mount namespace's table (src/vfs/mounts.ts). */
  const mountsText = () => mountLines(k.state.fs, false);

  return {
    prefix: '/proc',
    lookup(p: string): SyntheticNode | undefined {
      if (p === '/proc') return dir(1, () => ['self', 'thread-self', 'cpuinfo', 'meminfo', 'uptime', 'version', 'filesystems', 'mounts', 'stat', 'loadavg', 'sys', 'snapvisor', 'net', ...Object.keys(k.state.threadGroups)]);
      const parts = p.split('/');
      const top = parts[2];
      if (top === 'self' && parts.length === 3) return link(2, () => String(selfTgid()));
      if (top === 'net' && parts.length === 3) return link(33, () => 'self/net');
      if (top === 'thread-self' && parts.length === 3) return link(3, () => `${selfTgid()}/task/${selfTid()}`);
      if (top === 'self') return pidDir(selfTgid(), `/proc/${selfTgid()}/${parts.slice(3).join('/')}`);
      if (/^\d+$/.test(top)) return pidDir(Number(top), p);
      switch (p) {
        case '/proc/cpuinfo': return file(10, () => hostFile('/proc/cpuinfo'));
        case '/proc/meminfo': return file(11, () => meminfo(hostFile('/proc/meminfo')));
        case '/proc/stat': return file(12, () => hostFile('/proc/stat'));
        case '/proc/loadavg': return file(13, () => '0.00 0.00 0.00 1/1 1\n');
        case '/proc/uptime': return file(14, () => { const s = Number(k.clock.monotonicNs()) / 1e9; return `${s.toFixed(2)} ${s.toFixed(2)}\n`; });
        case '/proc/version': return file(15, () => `Linux version ${kernelRelease()} (snapvisor) #1 SMP\n`);
        case '/proc/filesystems': return file(16, () => 'nodev\tproc\nnodev\ttmpfs\nnodev\toverlay\n');
        case '/proc/mounts': return file(17, mountsText);
        case '/proc/sys': return dir(18, () => ['kernel', 'vm']);
        case '/proc/sys/kernel': return dir(19, () => ['hostname', 'osrelease', 'ostype', 'pid_max', 'ngroups_max', 'random']);
        case '/proc/sys/kernel/random': return dir(27, () => ['boot_id', 'uuid']);
        // A UUID per sandbox, as per boot on Linux: a restored clone is a new sandbox and gets a new one.
        case '/proc/sys/kernel/random/boot_id': return file(28, () => {
          if (!k.state.config.bootId) k.emit({ type: 'config.set', what: 'bootId' }, [['set', ['config', 'bootId'], randomUUID()]]);
          return k.state.config.bootId + '\n';
        });
        case '/proc/sys/kernel/random/uuid': return file(29, () => randomUUID() + '\n');
        case '/proc/snapvisor': return dir(30, () => ['generation', 'checkpoint']);
        // How many restores this sandbox's state went through (docs/snapshot-format.md, "Clones").
        case '/proc/snapvisor/generation': return file(31, () => `${k.state.config.generation ?? 0}\n`);
        // Write: checkpoint the sandbox here; read: original / restored / none (src/kernel/guest-checkpoint.ts).
        case '/proc/snapvisor/checkpoint': return { mode: S_IFREG | 0o666, dev: 'snapvisor-checkpoint', ino: 32 };
        case '/proc/sys/kernel/hostname': return file(20, () => k.state.config.hostname + '\n');
        case '/proc/sys/kernel/osrelease': return file(21, () => kernelRelease() + '\n');
        case '/proc/sys/kernel/ostype': return file(22, () => 'Linux\n');
        case '/proc/sys/kernel/pid_max': return file(23, () => '4194304\n');
        case '/proc/sys/kernel/ngroups_max': return file(24, () => '65536\n');
        case '/proc/sys/vm': return dir(25, () => ['overcommit_memory']);
        case '/proc/sys/vm/overcommit_memory': return file(26, () => '0\n');
      }
      return undefined;
    },
  };
}

/** VMAs as Linux would show them in /proc/PID/maps: each run that vma_merge would have kept as one VMA is one line. */
function guestVisibleVmas(vmas: readonly Vma[]): Vma[] {
  return mapsRuns(vmas).map((run) => ({ ...run[0], end: run[run.length - 1].end }));
}
