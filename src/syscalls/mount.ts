/**
 * mount(2) and umount2(2) (man 2 mount, man 2 umount; Linux fs/namespace.c path_mount,
 * path_umount) on the sandbox's one mount namespace (src/vfs/mounts.ts): new tmpfs and proc
 * mounts, bind mounts whose source is a path in the sandbox (resolved in the sandbox's own
 * namespace: a host path that is not visible inside cannot be named), remounts (MS_REMOUNT,
 * MS_REMOUNT | MS_BIND: MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, atime flags; a tmpfs's size),
 * propagation changes (accepted: one namespace, no peers), lazy unmounts (MNT_DETACH).
 * Both need CAP_SYS_ADMIN (EPERM), checked after the target is looked up, as Linux does.
 * The root and its synthetic mounts (/, /proc, /dev, /dev/pts, /dev/shm, /sys) cannot be
 * remounted, moved or unmounted (EPERM), and nothing can be mounted over / (EBUSY). MS_MOVE
 * moves a mount with the mounts below it.
 */
import os from 'node:os';
import { E } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { MountState } from '../kernel/state.js';
import { syscall } from './entry.js';
import { cred } from './creds.js';
import { capable } from '../kernel/creds.js';
import { isDir, isLnk } from '../vfs/stat.js';
import { modeOf } from '../vfs/vfs.js';
import { parseTmpfsOptions } from '../vfs/mounts.js';
import {
  CAP_SYS_ADMIN, MNT_DETACH, MNT_EXPIRE, MNT_FORCE, MS_BIND, MS_MGC_MSK, MS_MGC_VAL, MS_MOVE, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC,
  MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SILENT, MS_SLAVE, MS_STRICTATIME, MS_UNBINDABLE, UMOUNT_NOFOLLOW,
} from '../abi/linux.js';

/** Per-mount flags a mount or remount sets (MNT_* of struct vfsmount, as MS_* bits). */
const MOUNT_FLAGS = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME;
const PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;
/** The synthetic mounts of the root: present, but not in the table (they cannot be changed). */
const IMPLICIT = new Set(['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/sys']);
/** Filesystem types the kernel knows (mount of another: ENODEV, as get_fs_type failing). */
const KNOWN_TYPES = new Set(['tmpfs', 'proc']);

/** A guest string argument, or undefined for NULL. */
const str = (t: Task, addr: number): string | undefined => (addr ? t.mm.readCString(addr) : undefined);

/** The newest mount whose root guest path `p` is (the one a walk to `p` ends in). */
function mountAt(t: Task, p: string): MountState | undefined {
  const loc = t.kernel.vfs.locate(p);
  return loc.m && loc.m.mountpoint === p ? loc.m : undefined;
}

/**
 * Whether mount `m` is busy for umount (propagate_mount_busy): a mount on or below it, an open
 * file or a working directory on it.
 */
function busy(t: Task, m: MountState): boolean {
  const k = t.kernel;
  if (Object.values(k.state.fs.mounts ?? {}).some((o) => o.id !== m.id && (o.mountpoint.startsWith(m.mountpoint + '/') || (o.mountpoint === m.mountpoint && o.id > m.id)))) return true;
  const on = (p: string) => k.vfs.locate(p).m?.id === m.id;
  if (Object.values(k.state.openFiles).some((f) => (f.kind === 'upper' || f.kind === 'host' || f.kind === 'dir') && on(f.path))) return true;
  return Object.values(k.state.threadGroups).some((g) => !g.zombie && on(g.cwd));
}

/** mount(2). */
function mount(t: Task): number {
  const k = t.kernel, vfs = k.vfs;
  const source = str(t, t.arg(0)), type = str(t, t.arg(2)), data = t.arg(4) ? t.mm.readCString(t.arg(4), 4096) : '';
  let flags = t.argU32(3);
  const targetArg = t.mm.readCString(t.arg(1));
  const target = vfs.walk(targetArg, t.tg.cwd, true);
  if (!target.node) return -E.ENOENT;
  if ((flags & MS_MGC_MSK) === MS_MGC_VAL) flags &= ~MS_MGC_MSK;
  if (!capable(cred(t), CAP_SYS_ADMIN)) return -E.EPERM;
  const p = target.path;
  const mountFlags = flags & MOUNT_FLAGS;
  if ((flags & (MS_REMOUNT | MS_BIND)) === (MS_REMOUNT | MS_BIND) || (flags & MS_REMOUNT)) {
    const m = mountAt(t, p);
    if (!m) return IMPLICIT.has(p) ? -E.EPERM : -E.EINVAL;
    if (!(flags & MS_BIND) && m.sb) {
      // A superblock remount: a tmpfs's size (not below what it holds) and its other options.
      const sb = vfs.superblock(m.sb);
      if (sb?.type === 'tmpfs' && data) {
        const o = parseTmpfsOptions(data, os.totalmem());
        if (typeof o === 'string') return -E.EINVAL;
        if (o.sizeLimit !== undefined && o.sizeLimit < sb.usedBytes) return -E.EINVAL;
        // The options shown keep the ones not given again (size=… replaced, mode=… kept), as shmem_show_options shows the superblock's.
        const shown = new Map((m.options ?? '').split(',').filter(Boolean).map((kv) => [kv.split('=')[0], kv]));
        for (const kv of o.text.split(',').filter(Boolean)) shown.set(kv.split('=')[0], kv);
        const options = [...shown.values()].join(',');
        k.emit({ type: 'mount.remount', id: m.id, flags: mountFlags }, [
          ...(o.sizeLimit !== undefined ? [['set', ['fs', 'superblocks', sb.id, 'sizeLimit'], o.sizeLimit] as const] : []),
          ['set', ['fs', 'mounts', m.id, 'options'], options],
        ]);
      }
    }
    vfs.remount(m, mountFlags);
    return 0;
  }
  if (flags & MS_BIND) {
    if (!source) return -E.EINVAL;
    // The source is a path in the sandbox's own namespace: nothing of the host is reachable but what the sandbox sees.
    const src = vfs.walk(source, t.tg.cwd, true);
    if (!src.node) return -E.ENOENT;
    if (isDir(modeOf(src.node)) !== isDir(modeOf(target.node))) return -E.ENOTDIR;
    // Flags other than MS_REC are ignored by a bind (a read-only bind is a bind then a remount).
    vfs.mountBind(src.node, p, 0);
    return 0;
  }
  if (flags & PROPAGATION) {
    const kinds = flags & ~(MS_REC | MS_SILENT);
    if (kinds & (kinds - 1)) return -E.EINVAL; // more than one propagation type
    if (!mountAt(t, p) && !IMPLICIT.has(p)) return -E.EINVAL;
    return 0; // one mount namespace, no peers: every mount is private already
  }
  if (flags & MS_MOVE) {
    // do_move_mount_old: the source must be a mount's root (EINVAL), the target a directory not inside it (ELOOP).
    if (!source) return -E.EINVAL;
    const src = vfs.walk(source, t.tg.cwd, true);
    if (!src.node) return -E.ENOENT;
    const m = mountAt(t, src.path);
    if (!m) return IMPLICIT.has(src.path) ? -E.EPERM : -E.EINVAL;
    if (p === m.mountpoint || p.startsWith(m.mountpoint + '/')) return -E.ELOOP;
    if (isDir(modeOf(src.node)) !== isDir(modeOf(target.node))) return -E.ENOTDIR;
    vfs.moveMount(m, p);
    return 0;
  }
  if (!type) return -E.EINVAL;
  if (!KNOWN_TYPES.has(type)) return -E.ENODEV;
  if (isLnk(modeOf(target.node))) return -E.EINVAL;
  if (!isDir(modeOf(target.node))) return -E.ENOTDIR;
  if (type === 'tmpfs') {
    const o = parseTmpfsOptions(data, os.totalmem());
    if (typeof o === 'string') return -E.EINVAL;
    vfs.mountTmpfs(p, { sizeLimit: o.sizeLimit, mode: o.mode ?? 0o1777, uid: o.uid ?? 0, gid: o.gid ?? 0, flags: mountFlags | o.flags, options: o.text, source: source || 'none' });
    return 0;
  }
  vfs.mountProc(p, mountFlags, source || 'none');
  return 0;
}

/** umount2(2). */
function umount2(t: Task): number {
  const k = t.kernel, vfs = k.vfs;
  const flags = t.argInt(1);
  if (flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE | UMOUNT_NOFOLLOW)) return -E.EINVAL;
  const r = vfs.walk(t.mm.readCString(t.arg(0)), t.tg.cwd, !(flags & UMOUNT_NOFOLLOW));
  if (!r.node) return -E.ENOENT;
  if (!capable(cred(t), CAP_SYS_ADMIN)) return -E.EPERM;
  const m = mountAt(t, r.path);
  if (!m) return IMPLICIT.has(r.path) ? -E.EPERM : -E.EINVAL;
  if ((flags & MNT_EXPIRE) && (flags & (MNT_FORCE | MNT_DETACH))) return -E.EINVAL;
  if (flags & MNT_EXPIRE) return -E.EAGAIN; // the first MNT_EXPIRE only marks the mount (do_umount)
  const detach = (flags & MNT_DETACH) !== 0;
  if (!detach && busy(t, m)) return -E.EBUSY;
  // A lazy unmount takes the mounts below it along (umount_tree).
  const gone = detach ? vfs.mountsAtOrBelow(m.mountpoint).filter((o) => o.id === m.id || o.mountpoint !== m.mountpoint) : [m];
  for (const o of gone) for (const id of vfs.unmount(o)) k.releaseInodeIfUnused(id);
  return 0;
}

export const mountSyscalls = [
  syscall('mount', 5, mount, 'partial', 'tmpfs, proc and bind mounts of sandbox paths, MS_REMOUNT (with MS_BIND: per-mount flags; a tmpfs\'s size), MS_MOVE, propagation flags accepted; other types ENODEV; CAP_SYS_ADMIN'),
  syscall('umount2', 2, umount2, 'partial', 'MNT_DETACH (lazy, with the mounts below), UMOUNT_NOFOLLOW, MNT_EXPIRE (EAGAIN); EBUSY with open files, working directories or mounts below; the root\'s synthetic mounts are EPERM; CAP_SYS_ADMIN'),
];
