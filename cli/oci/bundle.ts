/**
 * OCI bundles (runtime-spec config.json, https://github.com/opencontainers/runtime-spec/blob/main/config.md):
 * read, check and reduce to what snapvisor's kernel honours. Checks follow runc's
 * (libcontainer/specconv): a missing `process`, empty `args`, relative `cwd`, unknown rlimit
 * types, a missing root or bind-mount source are refused with one line; fields the kernel
 * does not model are accepted and listed in docs/cli.md ("What config.json honours").
 */
import fs from 'node:fs';
import path from 'node:path';
import type { MountSpec } from '../../src/sandbox/mounts.js';
import { flagsOf } from '../../src/vfs/mount-options.js';
import { MS_RDONLY } from '../../src/abi/linux.js';
import type { GuestProcessSpec } from '../../src/sandbox/spawn.js';

/** A process as config.json's `process` (or `exec --process FILE`) describes it. */
export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user?: { uid?: number; gid?: number; umask?: number; additionalGids?: number[] };
  args?: string[];
  env?: string[];
  cwd?: string;
  rlimits?: Array<{ type: string; hard: number; soft: number }>;
  noNewPrivileges?: boolean;
  capabilities?: unknown;
}

export interface OciMount { destination: string; type?: string; source?: string; options?: string[] }

export interface OciConfig {
  ociVersion?: string;
  process?: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: OciMount[];
  annotations?: Record<string, string>;
  linux?: { resources?: OciResources; [k: string]: unknown };
  [k: string]: unknown;
}

export interface OciResources {
  memory?: { limit?: number };
  pids?: { limit?: number };
  cpu?: unknown;
  [k: string]: unknown;
}

/** The process to start, reduced to what the kernel takes, plus its terminal (config.json `process.terminal`, `consoleSize`). */
export interface ProcessSpec extends GuestProcessSpec {
  terminal: boolean;
  consoleSize?: { rows: number; cols: number };
}

/** Everything `create` needs from a bundle. */
export interface BundleSpec {
  bundle: string;
  /** Absolute host path of the root filesystem. */
  rootfs: string;
  readonlyRoot: boolean;
  hostname?: string;
  process: ProcessSpec;
  annotations: Record<string, string>;
  /** linux.resources.pids.limit (most tasks alive at once), when set. */
  pidsLimit?: number;
  /** linux.resources.memory.limit in bytes, when set: the sandbox's memory limit (0 or -1: the default). */
  memoryLimit?: number;
  config: OciConfig;
}

export class BundleError extends Error {}

const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5, RLIMIT_NPROC: 6, RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10, RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12, RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

/** Mount types the sandbox provides itself at their usual places (its own /proc, /dev, /dev/pts…). */
const VIRTUAL_MOUNTS = new Set(['proc', 'sysfs', 'devpts', 'tmpfs', 'mqueue', 'cgroup', 'cgroup2', 'shm']);

/**
 * Read and check `bundle`/config.json. Throws BundleError with one line (runc's wording where
 * there is one) for a missing bundle or config, malformed JSON, or a spec runc would refuse.
 */
export function loadBundle(bundleArg: string): BundleSpec {
  const bundle = path.resolve(bundleArg);
  if (!fs.statSync(bundle, { throwIfNoEntry: false })?.isDirectory()) throw new BundleError(`bundle ${bundleArg} does not exist or is not a directory`);
  const file = path.join(bundle, 'config.json');
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch { throw new BundleError(`JSON specification file ${file} not found`); }
  let config: OciConfig;
  try { config = JSON.parse(text); } catch (e) { throw new BundleError(`${file}: malformed JSON: ${(e as Error).message}`); }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw new BundleError(`${file}: not a JSON object`);
  if (!config.root || typeof config.root.path !== 'string' || !config.root.path) throw new BundleError('root must be specified');
  const rootfs = path.resolve(bundle, config.root.path);
  if (!fs.statSync(rootfs, { throwIfNoEntry: false })?.isDirectory()) throw new BundleError(`rootfs (${rootfs}) does not exist`);
  if (!config.process) throw new BundleError('process property must not be empty');
  const proc = processSpec(config.process, {});
  for (const m of config.mounts ?? []) checkMount(m, bundle);
  const res = config.linux?.resources;
  const num = (v: unknown, what: string) => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new BundleError(`${what} must be a number`);
    return v;
  };
  if (config.annotations !== undefined && (typeof config.annotations !== 'object' || config.annotations === null)) throw new BundleError('annotations must be an object of strings');
  if (config.hostname !== undefined && typeof config.hostname !== 'string') throw new BundleError('hostname must be a string');
  return {
    bundle, rootfs, readonlyRoot: !!config.root.readonly, hostname: config.hostname, process: proc,
    annotations: config.annotations ?? {}, pidsLimit: num(res?.pids?.limit, 'linux.resources.pids.limit'),
    memoryLimit: num(res?.memory?.limit, 'linux.resources.memory.limit'), config,
  };
}

/**
 * Check a `process` object (config.json's, or exec's --process) and fill defaults from `base`
 * (exec inherits the container's env, cwd and user). Throws BundleError.
 */
export function processSpec(p: OciProcess, base: Partial<ProcessSpec>): ProcessSpec {
  if (typeof p !== 'object' || p === null) throw new BundleError('process must be an object');
  const args = p.args ?? base.args;
  if (!Array.isArray(args) || args.length === 0 || args.some((a) => typeof a !== 'string')) throw new BundleError('args must not be empty');
  const cwd = p.cwd ?? base.cwd ?? '/';
  if (typeof cwd !== 'string' || !cwd) throw new BundleError('cwd property must not be empty');
  if (!cwd.startsWith('/')) throw new BundleError(`cwd must be an absolute path: ${cwd}`);
  const env = p.env ?? base.env ?? [];
  if (!Array.isArray(env) || env.some((e) => typeof e !== 'string')) throw new BundleError('env must be an array of strings');
  for (const e of env) if (!e.includes('=')) throw new BundleError(`invalid environment variable ${JSON.stringify(e)}: expected KEY=VALUE`);
  const u = p.user ?? {};
  const id = (v: unknown, what: string, dflt: number) => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xfffffffe) throw new BundleError(`${what} must be a non-negative integer`);
    return v;
  };
  const rlimits: Record<number, [bigint, bigint]> = { ...(base.rlimits ?? {}) };
  for (const r of p.rlimits ?? []) {
    const res = RLIMITS[r?.type];
    if (res === undefined) throw new BundleError(`wrong rlimit value: ${r?.type}`);
    if (typeof r.soft !== 'number' || typeof r.hard !== 'number' || r.soft < 0 || r.hard < 0) throw new BundleError(`rlimit ${r.type}: soft and hard must be non-negative numbers`);
    const big = (v: number) => (v >= 2 ** 64 - 1 || !Number.isSafeInteger(v) ? 0xffffffffffffffffn : BigInt(v));
    if (big(r.soft) > big(r.hard)) throw new BundleError(`rlimit ${r.type}: soft limit is above the hard limit`);
    rlimits[res] = [big(r.soft), big(r.hard)];
  }
  const cs = p.consoleSize;
  return {
    args, env, cwd,
    uid: id(u.uid, 'user.uid', base.uid ?? 0), gid: id(u.gid, 'user.gid', base.gid ?? 0),
    additionalGids: (u.additionalGids ?? base.additionalGids ?? []).map((g) => id(g, 'user.additionalGids', 0)),
    umask: u.umask !== undefined ? id(u.umask, 'user.umask', 0o022) & 0o777 : base.umask,
    terminal: !!p.terminal,
    consoleSize: cs && typeof cs.height === 'number' && typeof cs.width === 'number' ? { rows: cs.height, cols: cs.width } : undefined,
    rlimits,
  };
}

/** A mount entry: destination absolute; a bind mount's source must exist (as runc's mount fails). */
function checkMount(m: OciMount, bundle: string): void {
  if (!m || typeof m.destination !== 'string' || !m.destination) throw new BundleError('mount destination must not be empty');
  if (!m.destination.startsWith('/')) throw new BundleError(`mount destination ${m.destination} is not an absolute path`);
  const bind = m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
  if (bind) {
    if (typeof m.source !== 'string' || !m.source) throw new BundleError(`bind mount to ${m.destination} has no source`);
    const src = path.resolve(bundle, m.source);
    if (!fs.existsSync(src)) throw new BundleError(`mount source ${m.source} for ${m.destination} does not exist: no such file or directory`);
  } else if (m.type && !VIRTUAL_MOUNTS.has(m.type)) {
    throw new BundleError(`mount type ${m.type} at ${m.destination} is not supported (bind, proc, sysfs, devpts, tmpfs, mqueue, cgroup)`);
  }
}

/** The default config.json `spec` writes: runc's, with `sh` on a terminal. */
export function defaultSpec(): OciConfig {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: true, user: { uid: 0, gid: 0 }, args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'], cwd: '/',
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'snapvisor',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: { namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }] },
  };
}

/** Places the sandbox fills itself (its own /proc, /dev, /dev/pts, /dev/shm, /sys): a config.json mount there is not made again. */
const BUILT_IN_PLACES = new Set(['/proc', '/dev', '/dev/pts', '/dev/shm', '/sys', '/dev/mqueue', '/sys/fs/cgroup']);
/** Whether `dest` is one of the BUILT_IN_PLACES or inside /proc, /sys or /dev (synthetic trees: nothing is mounted in them). */
function onBuiltInPlace(dest: string): boolean {
  const d = path.posix.normalize(dest);
  return BUILT_IN_PLACES.has(d) || ['/proc/', '/sys/', '/dev/'].some((p) => d.startsWith(p));
}
/** tmpfs options a config.json may carry that are neither flags nor tmpfs's own (runc hands them to the kernel, which ignores these). */
const TMPFS_IGNORED = new Set(['newinstance', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'tmpcopyup']);

/**
 * The mounts of config.json that snapvisor makes (src/sandbox/mounts.ts), in config order:
 * bind mounts (type bind or option bind/rbind; source relative to the bundle) as volumes,
 * read-only with option ro; tmpfs mounts with their size/mode/uid/gid and flags. proc, sysfs,
 * devpts, mqueue and cgroup mounts, tmpfs at /dev and /dev/shm, and binds onto /dev/shm or
 * anywhere in /proc, /sys or /dev (podman binds its shm directory there) are the sandbox's own.
 */
export function ociMountSpecs(spec: BundleSpec): MountSpec[] {
  const out: MountSpec[] = [];
  for (const m of spec.config.mounts ?? []) {
    const opts = m.options ?? [];
    const bind = m.type === 'bind' || opts.some((o) => o === 'bind' || o === 'rbind');
    const { flags, rest } = flagsOf(opts);
    if (bind) {
      // A bind onto the sandbox's own trees (podman binds its shm directory on /dev/shm): the sandbox's own stays.
      if (onBuiltInPlace(m.destination)) continue;
      out.push({ type: 'volume', host: path.resolve(spec.bundle, m.source!), guest: m.destination, readonly: (flags & MS_RDONLY) !== 0, flags: flags & ~MS_RDONLY });
    } else if (m.type === 'tmpfs' && !BUILT_IN_PLACES.has(path.posix.normalize(m.destination))) {
      out.push({ type: 'tmpfs', guest: m.destination, options: rest.filter((o) => !TMPFS_IGNORED.has(o)).join(','), flags });
    }
  }
  return out;
}
