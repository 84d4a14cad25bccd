/**
 * The mount table (Linux fs/namespace.c, fs/proc_namespace.c): the mounts of the sandbox's
 * one mount namespace besides its root overlay. The table is plain data in the graph
 * (FilesystemState.mounts and .superblocks, src/kernel/state.ts); every change is an event
 * through the kernel's door (the Vfs emits `mount.add`, `mount.remove`, `mount.remount`).
 *
 * A path walk crosses mount points as Linux's does (src/vfs/vfs.ts `locate`): of the mounts
 * whose mount point is the path or one of its ancestors, the one with the longest mount point
 * wins, and among mounts stacked on one point the newest; the path below the mount point is
 * looked up in the mount's superblock from the mount's root. `..` is a guest path operation,
 * so it leaves a mount at its root for the directory the mount sits on (follow_dotdot).
 *
 * The root overlay and its synthetic mounts have fixed ids (ROOT_MOUNT_ID…); /proc/self/mountinfo
 * and /proc/mounts list them first, then the table's mounts by id (`mountLines`).
 */
import type { FilesystemState, MountState, SuperblockState } from '../kernel/state.js';
import { byId, persisted } from '../kernel/persist.js';
import { major, minor } from './stat.js';
import { MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME, MS_STRICTATIME } from '../abi/linux.js';

/** Mount ids of the root and its synthetic mounts (mountinfo); the table's mounts start at FIRST_MOUNT_ID. */
export const ROOT_MOUNT_ID = 20, PROC_MOUNT_ID = 21, DEV_MOUNT_ID = 22, PTS_MOUNT_ID = 23, SHM_MOUNT_ID = 24, SYS_MOUNT_ID = 25;
export const FIRST_MOUNT_ID = 30;
/**
 * st_dev of what the sandbox itself holds in the root overlay (its upper layer: 0:43) and of
 * each synthetic mount, one device each as Linux gives every mount of proc, devtmpfs, devpts,
 * sysfs and shm a superblock of its own (so python's os.path.ismount, which compares st_dev
 * with the parent's, finds /dev/pts and /dev/shm as natively); a superblock N gets 0:(64 + N).
 * Files of the rootfs keep their host st_dev (as overlayfs reports a lower layer's on another
 * filesystem), so the root's mountinfo line gives the device `stat /` gives (mountLines).
 */
export const UPPER_DEV = 0x2b, PROC_DEV = 0x2c, DEV_DEV = 0x2d, PTS_DEV = 0x2e, SHM_DEV = 0x2f, SYS_DEV = 0x30;
export const superblockDev = (sb: number): number => 0x40 + sb;

/** The key of a tmpfs superblock's root in FilesystemState.upper ("\0ID"; no guest path can name it). */
export const tmpfsRootKey = (sb: number): string => `\0${sb}`;

/** The synthetic mounts of the root (fixed), with the mount each belongs to. */
const IMPLICIT: ReadonlyArray<{ id: number; parent: number; mountpoint: string; fstype: string; source: string; mntOpts: string; sbOpts: string; dev: number }> = [
  { id: ROOT_MOUNT_ID, parent: ROOT_MOUNT_ID - 1, mountpoint: '/', fstype: 'overlay', source: 'none', mntOpts: 'rw,relatime', sbOpts: 'rw', dev: UPPER_DEV },
  { id: PROC_MOUNT_ID, parent: ROOT_MOUNT_ID, mountpoint: '/proc', fstype: 'proc', source: 'proc', mntOpts: 'rw,nosuid,nodev,noexec,relatime', sbOpts: 'rw', dev: PROC_DEV },
  { id: DEV_MOUNT_ID, parent: ROOT_MOUNT_ID, mountpoint: '/dev', fstype: 'tmpfs', source: 'tmpfs', mntOpts: 'rw,nosuid', sbOpts: 'rw,mode=755', dev: DEV_DEV },
  { id: PTS_MOUNT_ID, parent: DEV_MOUNT_ID, mountpoint: '/dev/pts', fstype: 'devpts', source: 'devpts', mntOpts: 'rw,nosuid,noexec,relatime', sbOpts: 'rw,gid=5,mode=620,ptmxmode=666', dev: PTS_DEV },
  { id: SHM_MOUNT_ID, parent: DEV_MOUNT_ID, mountpoint: '/dev/shm', fstype: 'tmpfs', source: 'shm', mntOpts: 'rw,nosuid,nodev', sbOpts: 'rw', dev: SHM_DEV },
  { id: SYS_MOUNT_ID, parent: ROOT_MOUNT_ID, mountpoint: '/sys', fstype: 'sysfs', source: 'sysfs', mntOpts: 'ro,nosuid,nodev,noexec,relatime', sbOpts: 'ro', dev: SYS_DEV },
];

/** The implicit mount a root-overlay guest path is in (the longest implicit mount point). */
function implicitOf(p: string): (typeof IMPLICIT)[number] {
  let best = IMPLICIT[0];
  for (const m of IMPLICIT) if ((p === m.mountpoint || p.startsWith(m.mountpoint + '/')) && m.mountpoint.length > best.mountpoint.length) best = m;
  return best;
}

/** The id of the implicit mount a root-overlay guest path is in (the longest implicit mount point). */
export const implicitMountOf = (p: string): number => implicitOf(p).id;

/**
 * st_dev of a synthetic or upper-layer file at root-overlay path `p` (its key in the root
 * overlay, not in a tmpfs or volume): its implicit mount's device (0:43 for the root's upper layer).
 */
export const implicitDev = (p: string): number => implicitOf(p).dev;

/** The per-mount options (show_mnt_opts): ro/rw, nosuid, nodev, noexec, noatime, nodiratime, relatime. */
export function mountFlagsText(flags: number, sbReadonly = false): string {
  const out = [(flags & MS_RDONLY) || sbReadonly ? 'ro' : 'rw'];
  if (flags & MS_NOSUID) out.push('nosuid');
  if (flags & MS_NODEV) out.push('nodev');
  if (flags & MS_NOEXEC) out.push('noexec');
  if (flags & MS_NOATIME) out.push('noatime');
  if (flags & MS_NODIRATIME) out.push('nodiratime');
  if ((flags & MS_RELATIME) || !(flags & (MS_NOATIME | MS_STRICTATIME))) out.push('relatime');
  return out.join(',');
}

const sbReadonly = (sb: SuperblockState | undefined): boolean => sb?.type === 'volume' && sb.readonly;

/** Escape a path for /proc/mounts and mountinfo (mangle: space, tab, newline, backslash as octal). */
const mangle = (s: string): string => s.replace(/[ \t\n\\]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));

/** The table's mounts in the order /proc/mounts lists them (by id: mount order). */
export function tableMounts(fs: FilesystemState): MountState[] {
  return Object.values(fs.mounts ?? {}).sort((a, b) => a.id - b.id);
}

/** A dev_t as mountinfo prints it: "major:minor". */
const devText = (d: number): string => `${major(d)}:${minor(d)}`;

/**
 * /proc/PID/mountinfo (`info`) or /proc/mounts (man 5 proc_pid_mountinfo, fstab):
 * the root and its synthetic mounts, then the table's mounts. A mount hidden by one stacked
 * on the same point is still listed, as Linux lists it. `rootDev(m)`: st_dev of the root of
 * mount `m` (undefined: the root overlay's), as stat(2) gives it, for mountinfo's major:minor;
 * without it (or when it gives undefined) the mount's own device is printed.
 */
export function mountLines(fs: FilesystemState, info: boolean, rootDev?: (m?: MountState) => number | undefined): string {
  const lines: string[] = [];
  for (const implicit of IMPLICIT) {
    const m = implicit.id === ROOT_MOUNT_ID && fs.rootReadonly ? { ...implicit, mntOpts: implicit.mntOpts.replace(/^rw/, 'ro'), sbOpts: implicit.sbOpts.replace(/^rw/, 'ro') } : implicit;
    const dev = (m.id === ROOT_MOUNT_ID ? rootDev?.() : undefined) ?? m.dev;
    if (info) lines.push(`${m.id} ${m.parent} ${devText(dev)} / ${m.mountpoint} ${m.mntOpts} - ${m.fstype} ${m.source} ${m.sbOpts}`);
    else lines.push(`${m.source} ${m.mountpoint} ${m.fstype} ${m.mntOpts}${m.sbOpts.startsWith('r') ? m.sbOpts.slice(2) : ''} 0 0`);
  }
  for (const m of tableMounts(fs)) {
    const sb = m.sb ? fs.superblocks?.[m.sb] : undefined;
    const dev = rootDev?.(m) ?? (m.sb ? superblockDev(m.sb) : implicitDev(m.root));
    const root = sb?.type === 'tmpfs' ? m.root.slice(tmpfsRootKey(sb.id).length) || '/' : m.fstype === 'proc' ? m.root.slice('/proc'.length) || '/' : m.root;
    const mnt = mountFlagsText(m.flags, sbReadonly(sb));
    const sbOpts = (sbReadonly(sb) ? 'ro' : 'rw') + (m.options ? ',' + m.options : '');
    if (info) lines.push(`${m.id} ${m.parent} ${devText(dev)} ${mangle(root)} ${mangle(m.mountpoint)} ${mnt} - ${m.fstype} ${mangle(m.source)} ${sbOpts}`);
    else lines.push(`${mangle(m.source)} ${mangle(m.mountpoint)} ${m.fstype} ${mnt}${m.options ? ',' + m.options : ''} 0 0`);
  }
  return lines.join('\n') + '\n';
}

/** The next free mount id (mount ids are reused after umount, as Linux's IDA does). */
export function newMountId(fs: FilesystemState): number {
  const used = new Set(Object.keys(fs.mounts ?? {}).map(Number));
  let id = FIRST_MOUNT_ID;
  while (used.has(id)) id++;
  return id;
}

/** The next free superblock id (small, so st_dev stays small). */
export function newSuperblockId(fs: FilesystemState): number {
  const used = new Set(Object.keys(fs.superblocks ?? {}).map(Number));
  let id = 1;
  while (used.has(id)) id++;
  return id;
}

export { FLAG_OPTIONS, parseTmpfsOptions, type TmpfsOptions } from './mount-options.js';

/** Persistence: the mount table is plain data; a walk reads it. */
export const mountPersist = persisted<MountState>({
  kind: 'mount',
  records: (g) => byId(g.fs.mounts),
  rebuilds: 'nothing: plain data (a path walk reads the table)',
});

/** Persistence: superblocks. A tmpfs is data (its files are inodes); a volume's host tree is runtime. */
export const superblockPersist = persisted<SuperblockState>({
  kind: 'superblock',
  records: (g) => byId(g.fs.superblocks),
  rebuilds: "a volume's host tree is opened again beneath a handle of its host directory when the kernel is made (a missing one fails the restore, naming it); the restore first compares the volume's identity with the checkpoint's (docs/snapshot-format.md)",
});
