/**
 * Extended attributes (man 2 getxattr, setxattr, listxattr, removexattr and their l*, f*
 * variants; man 7 xattr; Linux fs/xattr.c, mm/shmem.c's simple_xattrs, net/socket.c's sockfs).
 * The upper layer answers as tmpfs does: user.*, trusted.* and security.* attributes of regular
 * files and directories live in the inode's graph record (`InodeState.xattrs`, saved with it),
 * listed in tmpfs's order; a lower-layer file is copied up by the first change (its own host
 * attributes are not shown). Checks in fs/xattr.c's order: flags (EINVAL), the name's length
 * (ERANGE), the value's size (E2BIG), the path, xattr_permission (trusted.* needs CAP_SYS_ADMIN:
 * EPERM to change, ENODATA to read; user.* only on regular files and directories: EPERM/ENODATA;
 * a sticky directory's owner; EACCES from the mode), security.* changes need CAP_SYS_ADMIN
 * (cap_inode_setxattr), then the filesystem: EOPNOTSUPP where it has no attributes (/proc, pipes,
 * anonymous files) or for another namespace, EINVAL for an empty name in a namespace.
 */
import { E, SyscallError } from '../errno.js';
import type { Task } from '../kernel/task.js';
import type { InodeState, OpenFileState } from '../kernel/state.js';
import type { GraphOp } from '../kernel/events.js';
import { Node, modeOf } from '../vfs/vfs.js';
import { MAY_READ, MAY_WRITE, capable, ownerOrCapable } from '../kernel/creds.js';
import { AF_INET6, AF_UNIX, CAP_SYS_ADMIN, O_PATH, S_IFDIR, S_IFMT, S_IFREG } from '../abi/linux.js';
import { baseDir } from '../kernel/dirfd.js';
import { cred } from './creds.js';
import { nodeOfFile } from './file.js';
import { IN_ATTRIB, fsObjectOf, fsnotify } from '../files/inotify.js';
import { syscall } from './entry.js';

const XATTR_CREATE = 1, XATTR_REPLACE = 2;
/** Longest name (bytes) and value (bytes) and list (bytes), include/uapi/linux/limits.h. */
const XATTR_NAME_MAX = 255, XATTR_SIZE_MAX = 65536, XATTR_LIST_MAX = 65536;
const NAMESPACES = ['user.', 'trusted.', 'security.'];
const SOCKPROTONAME = 'system.sockprotoname';

/** What a call acts on: a filesystem node, or an open file with no node (pipe, socket, anonymous file, the caller's stdio). */
type Target = { node: Node; mode: number } | { file: OpenFileState; mode: number };

/** Whether the target keeps attributes: upper- and lower-layer files and directories do; /proc, /sys, /dev and nodeless files do not. */
const keepsXattrs = (x: Target): x is { node: Node; mode: number } => 'node' in x && x.node.kind !== 'synthetic';

function targetOfPath(t: Task, pathAddr: number, follow: boolean): Target {
  const path = t.mm.readCString(pathAddr);
  const node = t.kernel.vfs.resolve(path, baseDir(t, -100, path), follow);
  return { node, mode: modeOf(node) };
}

function targetOfFd(t: Task, fd: number): Target {
  const f = t.kernel.file(t, fd);
  if (f.flags & O_PATH) throw new SyscallError(E.EBADF); // fdget skips O_PATH files
  const node = f.kind === 'upper' || f.kind === 'host' || f.kind === 'dir' ? nodeOfFile(t, f) : undefined;
  if (node) return { node, mode: modeOf(node) };
  return { file: f, mode: t.kernel.fileOps(f).stat(t, f).mode };
}

/** xattr_permission + inode_permission (fs/xattr.c), with `write` for MAY_WRITE: 0 or -errno. */
function permission(t: Task, x: Target, name: string, write: boolean): number {
  if (name.startsWith('security.') || name.startsWith('system.')) return 0;
  const c = cred(t);
  if (name.startsWith('trusted.')) return capable(c, CAP_SYS_ADMIN) ? 0 : write ? -E.EPERM : -E.ENODATA;
  const type = x.mode & S_IFMT;
  if (name.startsWith('user.')) {
    if (type !== S_IFREG && type !== S_IFDIR) return write ? -E.EPERM : -E.ENODATA;
    if (type === S_IFDIR && (x.mode & 0o1000) && write && 'node' in x && !ownerOrCapable(c, t.kernel.vfs.owner(x.node).uid)) return -E.EPERM;
  }
  if ('node' in x && !t.kernel.vfs.permits(c, x.node, write ? MAY_WRITE : MAY_READ)) return -E.EACCES;
  return 0;
}

/** The filesystem's check of a name it keeps: EOPNOTSUPP outside user./trusted./security., EINVAL for nothing after the prefix. */
function checkNamespace(name: string): number {
  const ns = NAMESPACES.find((p) => name.startsWith(p));
  if (!ns) return -E.EOPNOTSUPP;
  return name.length === ns.length ? -E.EINVAL : 0;
}

/** The name argument (latin1, as guest paths): ERANGE when empty or longer than 255 bytes. */
function readName(t: Task, addr: number): string | number {
  const name = t.mm.readCString(addr, XATTR_NAME_MAX + 1);
  return name.length === 0 || name.length > XATTR_NAME_MAX ? -E.ERANGE : name;
}

/** The protocol name sockfs reports as system.sockprotoname (struct proto's name). */
function sockProtoName(f: OpenFileState): string | undefined {
  if (f.kind !== 'socket') return undefined;
  const { domain, type } = f.socket;
  if (domain === AF_UNIX) return type === 1 ? 'UNIX-STREAM' : 'UNIX';
  const v6 = domain === AF_INET6 ? 'v6' : '';
  return type === 2 ? `UDP${v6}` : type === 1 ? `TCP${v6}` : undefined;
}

/** Copy `bytes` out with getxattr's size rules: the length for size 0, ERANGE when it does not fit. */
function answer(t: Task, buf: number, size: number, bytes: Uint8Array): number {
  if (size === 0) return bytes.length;
  if (bytes.length > size) return -E.ERANGE;
  if (bytes.length) t.mm.write(buf, bytes);
  return bytes.length;
}

function getxattr(t: Task, target: () => Target, nameAddr: number, buf: number, size: number): number {
  const name = readName(t, nameAddr);
  if (typeof name === 'number') return name;
  const x = target();
  const p = permission(t, x, name, false);
  if (p) return p;
  if ('file' in x) {
    const proto = sockProtoName(x.file);
    if (proto !== undefined && name === SOCKPROTONAME) return answer(t, buf, Math.min(size, XATTR_SIZE_MAX), Buffer.from(proto + '\0', 'latin1'));
  }
  if (!keepsXattrs(x)) return -E.EOPNOTSUPP;
  const ns = checkNamespace(name);
  if (ns) return ns;
  const value = x.node.kind === 'upper' ? x.node.inode.xattrs?.[name] : undefined;
  if (value === undefined) return -E.ENODATA;
  return answer(t, buf, Math.min(size, XATTR_SIZE_MAX), value);
}

/** Names in tmpfs's order (its tree of names, walked from the greatest), trusted.* only for CAP_SYS_ADMIN. */
function listxattr(t: Task, x: Target, buf: number, size: number): number {
  let names: string[] = [];
  if (keepsXattrs(x) && x.node.kind === 'upper') {
    const privileged = capable(cred(t), CAP_SYS_ADMIN);
    names = Object.keys(x.node.inode.xattrs ?? {}).filter((n) => privileged || !n.startsWith('trusted.'));
    names.sort((a, b) => Buffer.compare(Buffer.from(b, 'latin1'), Buffer.from(a, 'latin1')));
  } else if ('file' in x && sockProtoName(x.file) !== undefined) {
    names = [SOCKPROTONAME];
  }
  return answer(t, buf, Math.min(size, XATTR_LIST_MAX), Buffer.from(names.map((n) => n + '\0').join(''), 'latin1'));
}

/** The inode to change (a lower-layer node is copied up), after every check passed. */
function changeInode(t: Task, x: { node: Node }): InodeState {
  return t.kernel.vfs.copyUp(x.node);
}

/** Set (undefined: remove) extended attribute `name` of `ino`, and its ctime: event inode.update. */
function setXattr(t: Task, ino: InodeState, name: string, value: Uint8Array | undefined): void {
  const path = ['fs', 'inodes', ino.id, 'xattrs'];
  const last = value === undefined && Object.keys(ino.xattrs ?? {}).length === 1;
  t.kernel.emit({ type: 'inode.update', inode: ino.id, what: 'xattr' }, [
    ...(ino.xattrs ? [] : [['set', path, {}] as GraphOp]),
    last ? ['del', path] : value === undefined ? ['del', [...path, name]] : ['set', [...path, name], value],
    ['set', ['fs', 'inodes', ino.id, 'ctimeNs'], t.kernel.clock.realtimeNs()],
  ]);
}

function setxattr(t: Task, target: () => Target, nameAddr: number, valueAddr: number, size: number, flags: number): number {
  if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) return -E.EINVAL;
  const name = readName(t, nameAddr);
  if (typeof name === 'number') return name;
  if (size > XATTR_SIZE_MAX) return -E.E2BIG;
  const value = size ? t.mm.read(valueAddr, size).slice() : new Uint8Array(0);
  const x = target();
  const p = permission(t, x, name, true);
  if (p) return p;
  if (name.startsWith('security.') && !capable(cred(t), CAP_SYS_ADMIN)) return -E.EPERM;
  if (!keepsXattrs(x)) return -E.EOPNOTSUPP;
  const ns = checkNamespace(name);
  if (ns) return ns;
  const exists = x.node.kind === 'upper' && x.node.inode.xattrs?.[name] !== undefined;
  if ((flags & XATTR_CREATE) && exists) return -E.EEXIST;
  if ((flags & XATTR_REPLACE) && !exists) return -E.ENODATA;
  const ino = changeInode(t, x);
  setXattr(t, ino, name, value);
  fsnotify(t.kernel, { ...fsObjectOf(x.node), inodeId: ino.id }, IN_ATTRIB);
  return 0;
}

function removexattr(t: Task, target: () => Target, nameAddr: number): number {
  const name = readName(t, nameAddr);
  if (typeof name === 'number') return name;
  const x = target();
  const p = permission(t, x, name, true);
  if (p) return p;
  if (name.startsWith('security.') && !capable(cred(t), CAP_SYS_ADMIN)) return -E.EPERM;
  if (!keepsXattrs(x)) return -E.EOPNOTSUPP;
  const ns = checkNamespace(name);
  if (ns) return ns;
  if (!(x.node.kind === 'upper' && x.node.inode.xattrs?.[name] !== undefined)) return -E.ENODATA;
  const ino = changeInode(t, x);
  setXattr(t, ino, name, undefined);
  fsnotify(t.kernel, { ...fsObjectOf(x.node), inodeId: ino.id }, IN_ATTRIB);
  return 0;
}

const NOTE = 'tmpfs semantics on the upper layer (user., trusted., security.); system.* (POSIX ACLs) gives EOPNOTSUPP; a lower-layer file\'s host attributes are not shown';

export const xattrSyscalls = [
  syscall('getxattr', 4, (t) => getxattr(t, () => targetOfPath(t, t.arg(0), true), t.arg(1), t.arg(2), t.arg(3)), 'partial', NOTE),
  syscall('lgetxattr', 4, (t) => getxattr(t, () => targetOfPath(t, t.arg(0), false), t.arg(1), t.arg(2), t.arg(3)), 'partial', NOTE),
  syscall('fgetxattr', 4, (t) => getxattr(t, () => targetOfFd(t, t.argInt(0)), t.arg(1), t.arg(2), t.arg(3)), 'partial', NOTE),
  syscall('listxattr', 3, (t) => listxattr(t, targetOfPath(t, t.arg(0), true), t.arg(1), t.arg(2)), 'partial', NOTE),
  syscall('llistxattr', 3, (t) => listxattr(t, targetOfPath(t, t.arg(0), false), t.arg(1), t.arg(2)), 'partial', NOTE),
  syscall('flistxattr', 3, (t) => listxattr(t, targetOfFd(t, t.argInt(0)), t.arg(1), t.arg(2)), 'partial', NOTE),
  syscall('setxattr', 5, (t) => setxattr(t, () => targetOfPath(t, t.arg(0), true), t.arg(1), t.arg(2), t.arg(3), t.argInt(4)), 'partial', NOTE),
  syscall('lsetxattr', 5, (t) => setxattr(t, () => targetOfPath(t, t.arg(0), false), t.arg(1), t.arg(2), t.arg(3), t.argInt(4)), 'partial', NOTE),
  syscall('fsetxattr', 5, (t) => setxattr(t, () => targetOfFd(t, t.argInt(0)), t.arg(1), t.arg(2), t.arg(3), t.argInt(4)), 'partial', NOTE),
  syscall('removexattr', 2, (t) => removexattr(t, () => targetOfPath(t, t.arg(0), true), t.arg(1)), 'partial', NOTE),
  syscall('lremovexattr', 2, (t) => removexattr(t, () => targetOfPath(t, t.arg(0), false), t.arg(1)), 'partial', NOTE),
  syscall('fremovexattr', 2, (t) => removexattr(t, () => targetOfFd(t, t.argInt(0)), t.arg(1)), 'partial', NOTE),
];
