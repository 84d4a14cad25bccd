/**
 * Creating a sandbox: a fresh state graph with one thread group (pid 1 in the sandbox's
 * pid namespace), stdio attached to the caller's fds 0–2, and the program loaded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execProgram } from '../loader/exec.js';
import { Kernel } from '../kernel/kernel.js';
import type { Writable } from '../kernel/events.js';
import type { SandboxConfig } from '../kernel/state.js';
import { DEFAULT_MEMORY_FRACTION } from '../kernel/memory-limit.js';
import { RLIMIT_NPROC } from '../abi/linux.js';
import { AssembleOptions, assembleKernel } from './compose.js';
import { newCredentials } from '../kernel/creds.js';
import { isDir } from '../vfs/stat.js';
import { modeOf } from '../vfs/vfs.js';
import { O_RDONLY, O_RDWR, O_WRONLY } from '../abi/linux.js';
import { hostFdAccessMode } from '../files/hostfd.js';
import { addProcessRecords, findProgram } from './spawn.js';
import { type MountSpec, setupMounts } from './mounts.js';
import { hostCpuFeatures } from '../../platforms/host/cpu-features.js';

export interface SandboxSpec extends AssembleOptions {
  /** Host directory shown read-only as `/` (default `/`). */
  rootfs: string;
  /** Working directory inside the sandbox (default `/`). */
  cwd: string;
  /** When `cwd` is not a directory in the sandbox, start in `/` instead of failing (for a default cwd, e.g. the caller's). */
  cwdOrRoot?: boolean;
  /** Program (absolute, relative to cwd, or searched in the environment's PATH) and its argv. */
  argv: string[];
  /** Environment as K=V strings. */
  env: string[];
  /** Guest uid and gid of the first process (default: the caller's). Non-zero uids start with no capabilities. */
  user?: { uid: number; gid: number };
  /** Bytes the upper layer's file data may hold (ENOSPC past it); unlimited when absent. */
  diskLimit?: number;
  /** Bytes the sandbox's memory may use (src/kernel/memory-limit.ts); default defaultMemoryLimit(). */
  memoryLimit?: number;
  /** Host TCP ports forwarded to guest ports (run --publish; the runtime listens, src/net/publish.ts connects). */
  publish?: Array<{ hostIp: string; hostPort: number; guestPort: number; protocol?: 'udp' }>;
  /** run --tcp-close-on-checkpoint: checkpoints go ahead with published connections open (a restore closes them). */
  tcpCloseOnCheckpoint?: boolean;
  /** run --network: 'host' backs the guest's TCP and UDP sockets with host sockets (default 'sandbox': its own loopback network). */
  network?: 'sandbox' | 'host';
  /** Volumes and tmpfs mounts (run --volume, --tmpfs; an OCI bundle's mounts), made in this order. */
  mounts?: readonly MountSpec[];
  /** The root mount is read-only (OCI `root.readonly`): writes on it give EROFS, other mounts (volumes, tmpfs, /dev/shm) are apart. */
  readonlyRoot?: boolean;
}

/** The memory limit of a sandbox created without one: DEFAULT_MEMORY_FRACTION of the host's memory, whole MiB (bytes). */
export function defaultMemoryLimit(): number {
  return Math.floor(os.totalmem() * DEFAULT_MEMORY_FRACTION / 1048576) * 1048576;
}

/** Create a sandbox ready to run. Throws ExecError (errno + one-line message) if the program can't start. */
export function createSandbox(spec: SandboxSpec): Kernel {
  const rootfs = path.resolve(spec.rootfs);
  const st = fs.statSync(rootfs, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new Error(`rootfs ${spec.rootfs} ${st ? 'is not a directory' : 'does not exist'}`);
  const state = Kernel.emptyState(rootfs);
  // A graph no kernel runs yet: set up directly (Writable, src/kernel/events.ts).
  const config = state.config as Writable<SandboxConfig>;
  if (spec.diskLimit !== undefined) config.diskLimit = spec.diskLimit;
  config.memoryLimit = spec.memoryLimit ?? defaultMemoryLimit();
  // Without CPUID faulting the guest sees every feature of this host (run --cpu-features).
  config.cpuFeatures = hostCpuFeatures();
  if (spec.publish?.length) config.publish = spec.publish;
  if (spec.tcpCloseOnCheckpoint) config.tcpCloseOnCheckpoint = true;
  if (spec.network === 'host') config.network = 'host';
  const kernel = assembleKernel(state, spec);
  try {
    if (spec.mounts?.length) setupMounts(kernel, spec.mounts);
    // After the mounts, whose mount points may have to be made on the root (as runc remounts the rootfs read-only last).
    if (spec.readonlyRoot) kernel.vfs.setRootReadonly();
    // Command-line strings are UTF-8; the kernel keeps paths as latin1 byte strings.
    const latin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
    let cwdNode = kernel.vfs.walk(latin1(spec.cwd || '/'), '/', true);
    if (spec.cwdOrRoot && (!cwdNode.node || !isDir(modeOf(cwdNode.node)))) cwdNode = kernel.vfs.walk('/', '/', true);
    if (!cwdNode.node || !isDir(modeOf(cwdNode.node))) throw new Error(`working directory ${spec.cwd} does not exist in the sandbox`);
    const tgid = kernel.newPid();
    const uid = spec.user?.uid ?? process.getuid?.() ?? 0, gid = spec.user?.gid ?? process.getgid?.() ?? 0;
    addProcessRecords(kernel, {
      tgid, ppid: 0, pgid: tgid, sid: tgid, tids: [tgid], sigactions: {}, cwd: cwdNode.path, umask: 0o022, rlimits: callerRlimits(kernel),
      pendingSignals: 0n, uid, gid, cred: newCredentials(uid, gid), cpuTimeNs: 0n, exitSignal: 17,
    }, latin1(spec.argv[0] ?? ''));
    const task = kernel.attachTask(state.tasks[tgid], false);
    // POSIX shared memory and semaphores (shm_open, sem_open) live in a writable /dev/shm.
    const shm = kernel.newId();
    const now = kernel.clock.realtimeNs();
    kernel.emit({ type: 'file.create', path: '/dev/shm', inode: shm, mode: 0o041777 }, [
      ['set', ['fs', 'inodes', shm], { id: shm, mode: 0o041777, uid: 0, gid: 0, nlink: 2, size: 0, atimeNs: now, mtimeNs: now, ctimeNs: now, opaque: true }],
      ['set', ['fs', 'upper', '/dev/shm'], shm],
    ]);
    const modes = [O_RDONLY, O_WRONLY, O_WRONLY];
    for (const fd of [0, 1, 2]) {
      // The host fd's own access mode (a stdout redirected to a file is write-only); the old default if it is closed.
      const flags = hostFdAccessMode(kernel.host, fd, fd > 0 ? O_RDWR : modes[fd]);
      const f = kernel.newOpenFile({ kind: 'hostfd', path: `/dev/stdio/${fd}`, flags, hostFd: fd });
      kernel.installFdAt(task, fd, f.id, false);
    }
    const program = findProgram(kernel, latin1(spec.argv[0]), spec.env.map(latin1), cwdNode.path, (n) => `${n}: command not found`);
    const enc = new TextEncoder();
    execProgram(task, program, spec.argv.map((a) => enc.encode(a)), spec.env.map((e) => enc.encode(e)));
    return kernel;
  } catch (e) {
    kernel.destroy();
    throw e;
  }
}

/**
 * The caller's resource limits, as a process started by the caller would inherit them
 * (RLIMIT_NOFILE, STACK, CORE, …), except RLIMIT_NPROC, which the sandbox keeps at its own
 * default (its pids are its own).
 */
function callerRlimits(kernel: Kernel): Record<number, [bigint, bigint]> {
  const out: Record<number, [bigint, bigint]> = {};
  for (let res = 0; res <= 15; res++) {
    if (res === RLIMIT_NPROC) continue;
    const lim = kernel.host.getrlimit(res);
    if (lim) out[res] = lim;
  }
  return out;
}

