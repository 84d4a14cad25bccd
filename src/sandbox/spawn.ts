/**
 * Processes added to a running sandbox from outside (an OCI runtime's `exec`): a new thread
 * group with no parent in the sandbox, as runc's exec'd process has none in the container's pid
 * namespace, and its own session and process group. Also the identity (ids, groups, umask,
 * rlimits) a container's process spec gives a thread group.
 */
import path from 'node:path';
import type { Kernel } from '../kernel/kernel.js';
import { AddressSpace } from '../mm/address-space.js';
import { ExecError, execProgram } from '../loader/exec.js';
import { E } from '../errno.js';
import { O_RDONLY, O_RDWR } from '../abi/linux.js';
import { hostFdAccessMode } from '../files/hostfd.js';
import { isDir } from '../vfs/stat.js';
import { modeOf } from '../vfs/vfs.js';
import type { ThreadGroupState } from '../kernel/state.js';
import { newCredentials } from '../kernel/creds.js';
import type { GraphOp } from '../kernel/events.js';

/** A process to start: argv, K=V environment, guest cwd, real/effective ids, supplementary groups, umask, rlimits (resource -> [soft, hard]). */
export interface GuestProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  umask?: number;
  rlimits: Record<number, [bigint, bigint]>;
}

const latin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

/** A thread group record with the process spec's identity and limits (uid/gid, supplementary groups, umask, rlimits): a new record, `tg` is not changed. */
export function withIdentity(tg: ThreadGroupState, p: GuestProcessSpec): ThreadGroupState {
  const rlimits = { ...tg.rlimits };
  for (const [res, lim] of Object.entries(p.rlimits)) rlimits[Number(res)] = [lim[0], lim[1]];
  return { ...tg, uid: p.uid, gid: p.gid, cred: newCredentials(p.uid, p.gid, [...p.additionalGids]), umask: p.umask ?? tg.umask, rlimits };
}

/**
 * Add process `p` to running `kernel`, its stdio on host fds `stdio` (0, 1, 2 of the guest).
 * Returns the guest pid. The process is in its own session and process group, with no parent
 * in the sandbox (it is reaped by the kernel at exit; its status comes on kernel.events as
 * 'task.zombie' with tid = the pid, its exit code or signal). Throws ExecError (ENOENT, EACCES…) or Error (bad cwd)
 * before anything is added.
 */
export function spawnProcess(kernel: Kernel, p: GuestProcessSpec, stdio: [number, number, number]): number {
  const state = kernel.state;
  const cwdNode = kernel.vfs.walk(latin1(p.cwd || '/'), '/', true);
  if (!cwdNode.node || !isDir(modeOf(cwdNode.node))) throw new Error(`working directory ${p.cwd} does not exist in the container`);
  const program = findProgram(kernel, latin1(p.args[0]), p.env.map(latin1), cwdNode.path);
  const init = state.threadGroups[1];
  const tgid = kernel.newPid();
  addProcessRecords(kernel, withIdentity({
    tgid, ppid: 0, pgid: tgid, sid: tgid, tids: [tgid], sigactions: {}, cwd: cwdNode.path, umask: init?.umask ?? 0o022,
    rlimits: structuredClone(init?.rlimits ?? {}), pendingSignals: 0n, uid: 0, gid: 0, cpuTimeNs: 0n, exitSignal: 17,
  }, p), program);
  const tg = state.threadGroups[tgid];
  let task;
  try {
    task = kernel.attachTask(state.tasks[tgid], false);
    for (const fd of [0, 1, 2] as const) {
      const f = kernel.newOpenFile({ kind: 'hostfd', path: `/dev/stdio/${fd}`, flags: hostFdAccessMode(kernel.host, stdio[fd], fd === 0 ? O_RDONLY : O_RDWR), hostFd: stdio[fd] });
      kernel.installFdAt(task, fd, f.id, false);
    }
    const enc = new TextEncoder();
    execProgram(task, program, p.args.map((a) => enc.encode(a)), p.env.map((e) => enc.encode(e)));
  } catch (e) {
    // Undo: nothing of the half-made process stays in the graph.
    if (task) kernel.processes.exitThreadGroup(tg, { code: 127 });
    const t = state.tasks[tgid];
    kernel.emit({ type: 'task.reap', tid: tgid, by: 0 }, [
      ...(t ? [['del', ['tasks', tgid]], ['del', ['fdTables', t.fdTableId]], ['del', ['addressSpaces', t.addressSpaceId]]] as GraphOp[] : []),
      ['del', ['threadGroups', tgid]],
    ]);
    throw e;
  }
  kernel.startTask(task);
  return tgid;
}

/**
 * Add the graph records of a new process: thread group `tg`, an empty address space, an empty fd
 * table and its first task (tid = tgid; no registers yet, run state 'user'): event task.spawn.
 * The task is named after `program` (a guest path; its basename, as exec will name it) from the
 * start, so that anything reporting it before its exec is done (an OOM kill while the program's
 * pages are read) names it as gVisor names a new container process. Returns the new ids.
 */
export function addProcessRecords(kernel: Kernel, tg: ThreadGroupState, program: string): { asId: number; fdTableId: number } {
  const tgid = tg.tgid;
  const asId = kernel.newId();
  const fdTableId = kernel.newId();
  kernel.emit({ type: 'task.spawn', tid: tgid }, [
    ['set', ['threadGroups', tgid], tg],
    ['set', ['addressSpaces', asId], AddressSpace.emptyState(asId)],
    ['set', ['fdTables', fdTableId], { id: fdTableId, fds: {} }],
    ['set', ['tasks', tgid], {
      tid: tgid, tgid, addressSpaceId: asId, fdTableId, regs: new Uint8Array(216), fpState: new Uint8Array(0), runState: 'user',
      sigmask: 0n, clearChildTid: 0, robustList: 0, comm: program.slice(program.lastIndexOf('/') + 1).slice(0, 15), pendingSignals: 0n, pendingInfo: {},
    }],
  ]);
  return { asId, fdTableId };
}

/**
 * Resolve a command as execvp does, inside the sandbox: names without '/' are searched in PATH
 * (default /usr/local/bin:/usr/bin:/bin), relative names are taken from `cwd` (guest path).
 * Throws ExecError(ENOENT) with `notFound(name)` as its message when no search finds it.
 */
export function findProgram(kernel: Kernel, name: string, env: string[], cwd: string,
  notFound: (name: string) => string = (n) => `exec: "${n}": executable file not found in $PATH`): string {
  if (!name) throw new ExecError(E.ENOENT, 'no program given');
  if (name.includes('/')) return name.startsWith('/') ? name : path.posix.join(cwd, name);
  const pathVar = env.find((e) => e.startsWith('PATH='))?.slice(5) ?? '/usr/local/bin:/usr/bin:/bin';
  for (const dir of pathVar.split(':')) {
    const candidate = path.posix.join(dir || '.', name);
    try {
      const r = kernel.vfs.walk(candidate, cwd, true);
      if (r.node && !isDir(modeOf(r.node))) return candidate;
    } catch { /* not there: keep searching */ }
  }
  throw new ExecError(E.ENOENT, notFound(name));
}
