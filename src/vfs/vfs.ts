/**
 * The sandbox filesystem: path walking (fs/namei.c) across the mount table (src/vfs/mounts.ts:
 * the mount with the longest mount point that is the path or an ancestor of it wins). The root
 * overlay looks a path up in three sources, first match wins:
 *   1. synthetic mounts: /proc (src/vfs/proc.ts) and /dev (src/vfs/dev.ts);
 *   2. the upper layer: files the guest wrote, as inodes in the state graph;
 *   3. the lower layer: the host rootfs directory, read-only (never written).
 * Writing to a lower file copies it up first, as overlayfs does; deleting one leaves a
 * whiteout. Renaming a lower directory gives EXDEV, as overlayfs without redirect_dir.
 * A tmpfs mount's files are upper-layer inodes of its own superblock; a volume is a host
 * tree reached beneath its own handle, as the rootfs is. A node carries its guest path and,
 * where they differ, its key inside its superblock (`key`) and its mount (`mnt`).
 */
import { byId, persisted } from '../kernel/persist.js';
import { E, SyscallError } from '../errno.js';
import { HostError, type HostTree, type HostStat } from '../../platforms/host-services.js';
import type { Credentials, FilesystemState, InodeState, DirEntry, MountState, SuperblockState } from '../kernel/state.js';
import { ROOT_MOUNT_ID, implicitDev, implicitMountOf, newMountId, newSuperblockId, superblockDev, tmpfsRootKey } from './mounts.js';
import { CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, MAY_EXEC, MAY_WRITE, capable, permits } from '../kernel/creds.js';
import { Stat, dtypeOfMode, isDir, isLnk, isReg } from './stat.js';
import { DataStore, inodeSetContents } from './inode-data.js';
import { moveLocksOnCopyUp } from './locks.js';
import type { GraphOp, KernelEventBody, Writable } from '../kernel/events.js';
import { MS_RDONLY, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../abi/linux.js';

/** A synthetic file or directory (/proc, /dev). */
export interface SyntheticNode {
  mode: number;
  /** Regular file: contents generated now (seq_file-like). */
  content?: () => Uint8Array;
  /** Symlink target. */
  target?: () => string;
  /** Directory: entry names. */
  list?: () => string[];
  /** Character device name served by src/vfs/dev.ts. */
  dev?: string;
  ino: number;
  rdev?: number;
  /** A /proc/<pid>/fd/N "magic link": opening it reaches this open file, whatever its path says. */
  magicFileId?: number;
  /** Owner and group (default root), as /proc/<pid> files belong to the process's euid/egid. */
  uid?: number;
  gid?: number;
  /**
   * A check beyond the mode (the ptrace access check of /proc/<pid>/environ, maps, fd/N, cwd…):
   * false makes open, readlink and following the link fail with EACCES; stat still works.
   */
  mayAccess?: () => boolean;
}

/**
 * A looked-up file: `path` is its canonical guest path; `key` its name inside its superblock
 * when that differs (a tmpfs's "\0ID/a", a volume's tree path, a bind's source path); `mnt`
 * its mount id when it is not in the root overlay; `sb` the volume superblock of a host node.
 */
export type Node =
  | { kind: 'upper'; path: string; inode: InodeState; key?: string; mnt?: number }
  | { kind: 'host'; path: string; st: HostStat; key?: string; mnt?: number; sb?: number }
  | { kind: 'synthetic'; path: string; node: SyntheticNode; key?: string; mnt?: number };

/** Where a guest path lives: its mount (none: the root overlay), superblock (0: the root overlay) and key there. */
export interface Location { m?: MountState; sb: number; key: string }

/** A node's name inside its superblock. */
export const keyOf = (n: Node): string => n.key ?? n.path;

/** A source of synthetic files mounted at a guest path prefix. */
export interface SyntheticMount {
  prefix: string;
  /** Look up a path under the mount (the prefix itself included); undefined = ENOENT. */
  lookup(guestPath: string): SyntheticNode | undefined;
  /** Paths under the mount that are ordinary writable directories of the upper layer (/dev/shm). */
  passthrough?: string[];
}

const MAX_SYMLINKS = 40;
const UPPER_INO_BASE = 0x4000_0000;

export interface WalkResult {
  /** Canonical guest path (symlinks of all but a not-followed last component resolved). */
  path: string;
  node?: Node;
}

export class Vfs {
  readonly mounts: SyntheticMount[] = [];
  /** Host trees of volume superblocks, by superblock id (runtime: opened when the kernel is made, from the graph). */
  readonly trees = new Map<number, HostTree>();
  /** The mount table sorted for `locate` (longest mount point first, newest first); rebuilt after a change. */
  private sorted?: MountState[];
  /**
   * The credentials permission checks are made with: the calling task's (set by the
   * kernel), or undefined for the kernel's own lookups (no checks).
   */
  creds: () => Credentials | undefined = () => undefined;
  /** Where upper-layer file data lives (the kernel's memory file; set by the kernel). */
  data?: DataStore;
  private credOverride?: Credentials;

  /**
   * `lower` is the host rootfs, reached only beneath its root handle (guest paths are
   * its tree paths: latin1 strings, one char per byte, so names that are not valid UTF-8
   * survive intact).
   */
  constructor(readonly state: FilesystemState, readonly lower: HostTree, private readonly newId: () => number, private readonly nowNs: () => bigint,
    /** The kernel's door (Kernel.emit): every change to `state` is an event whose ops start at the graph root ('fs', …). */
    private readonly emit: (body: KernelEventBody, ops: GraphOp[]) => void) {}

  /** The mount table changed (the Vfs's own mount operations call this). */
  mountsChanged(): void { this.sorted = undefined; }

  /**
   * Where canonical guest path `p` lives (lookup_mnt along the walk): the mount whose mount
   * point is `p` or its longest ancestor, the newest of mounts stacked on one point.
   */
  locate(p: string): Location {
    this.sorted ??= Object.values(this.state.mounts ?? {}).sort((a, b) => b.mountpoint.length - a.mountpoint.length || b.id - a.id);
    for (const m of this.sorted) {
      if (p === m.mountpoint || p.startsWith(m.mountpoint + '/')) {
        const rest = p.slice(m.mountpoint.length);
        return { m, sb: m.sb, key: m.root === '/' ? rest || '/' : m.root + rest };
      }
    }
    return { sb: 0, key: p };
  }

  /** The superblock record of a mounted tmpfs or volume. */
  superblock(sb: number): SuperblockState | undefined {
    return this.state.superblocks?.[sb];
  }

  /** Look up one canonical guest path, without following a final symlink. */
  lookup(p: string): Node | undefined {
    return this.lookupAt(p, this.locate(p));
  }

  /** Look up guest path `p` at its location. */
  lookupAt(p: string, loc: Location): Node | undefined {
    const key = loc.key;
    const extra = loc.m ? { ...(key !== p ? { key } : {}), mnt: loc.m.id } : {};
    if (loc.sb !== 0) {
      const sb = this.superblock(loc.sb);
      if (sb?.type === 'tmpfs') {
        const up = this.state.upper[key];
        return up ? { kind: 'upper', path: p, inode: this.state.inodes[up], ...extra } : undefined;
      }
      const tree = this.trees.get(loc.sb);
      const st = tree?.lstat(key);
      return st ? { kind: 'host', path: p, st, sb: loc.sb, ...extra } : undefined;
    }
    for (const m of this.mounts) {
      if (key === m.prefix || key.startsWith(m.prefix + '/')) {
        if (m.passthrough?.some((x) => key === x || key.startsWith(x + '/'))) break;
        const node = m.lookup(key);
        return node ? { kind: 'synthetic', path: p, node, ...extra } : undefined;
      }
    }
    const up = this.state.upper[key];
    if (up !== undefined) {
      if (up === 0) return undefined;
      return { kind: 'upper', path: p, inode: this.state.inodes[up], ...extra };
    }
    // A whiteout, a non-directory or an opaque directory of the upper layer above p hides the lower layer below it.
    if (this.hiddenByAncestor(key)) return undefined;
    const st = this.lower.lstat(key);
    return st ? { kind: 'host', path: p, st, ...extra } : undefined;
  }

  /** The host tree a host node is read from: its volume's, or the rootfs. */
  treeOf(n: { sb?: number }): HostTree {
    if (!n.sb) return this.lower;
    const t = this.trees.get(n.sb);
    if (!t) throw new SyscallError(E.EIO);
    return t;
  }

  /** Make the root mount read-only (OCI `root.readonly`, as runc remounts the rootfs MS_RDONLY): EROFS for writes on it. */
  setRootReadonly(): void {
    this.emit({ type: 'mount.remount', id: ROOT_MOUNT_ID, flags: MS_RDONLY }, [['set', ['fs', 'rootReadonly'], true]]);
  }

  /** Whether guest path `p` is a mount point of the table (unlink, rmdir, rename: EBUSY). */
  isMountpoint(p: string): boolean {
    return Object.values(this.state.mounts ?? {}).some((m) => m.mountpoint === p);
  }

  /** The mount a guest path is on is read-only (its flags, or a read-only volume): EROFS. */
  checkWritable(loc: Location): void {
    if (!loc.m) {
      if (this.state.rootReadonly && implicitMountOf(loc.key) === ROOT_MOUNT_ID) throw new SyscallError(E.EROFS);
      return;
    }
    const sb = loc.sb ? this.superblock(loc.sb) : undefined;
    if ((loc.m.flags & MS_RDONLY) || (sb?.type === 'volume' && sb.readonly)) throw new SyscallError(E.EROFS);
  }

  /** Open a regular host file behind guest path `p` (a lower or volume file) read-only: the caller owns the fd (HostTree.openFile). */
  openHostFile(p: string): { fd: number; st: HostStat } {
    const loc = this.locate(p);
    return (loc.sb ? this.treeOf({ sb: loc.sb }) : this.lower).openFile(loc.key);
  }

  /** Whether the lower layer's entry at p is hidden by the upper layer above it (overlayfs: whiteouts, opaque directories). */
  private hiddenByAncestor(p: string): boolean {
    let q = p;
    for (;;) {
      const i = q.lastIndexOf('/');
      if (i <= 0) return false;
      q = q.slice(0, i);
      const up = this.state.upper[q];
      if (up === undefined) continue;
      if (up === 0) return true;
      const ino = this.state.inodes[up];
      if (!isDir(ino.mode) || ino.opaque) return true;
    }
  }

  readlinkNode(n: Node): string {
    if (n.kind === 'upper') { if (n.inode.target === undefined) throw new SyscallError(E.EINVAL); return n.inode.target; }
    if (n.kind === 'host') {
      if (!isLnk(n.st.mode)) throw new SyscallError(E.EINVAL);
      try { return this.treeOf(n).readlink(keyOf(n)); } catch (e) { throw new SyscallError(e instanceof HostError ? E.ENOENT : E.EIO); }
    }
    if (!n.node.target) throw new SyscallError(E.EINVAL);
    if (n.node.mayAccess && !n.node.mayAccess()) throw new SyscallError(E.EACCES);
    return n.node.target();
  }

  /**
   * Walk `p` relative to `cwd` (absolute guest paths). Follows symlinks in every
   * component, and in the last one when `followLast`. Errors: ENOENT (missing
   * intermediate), ENOTDIR, ELOOP, ENAMETOOLONG. A missing last component gives a
   * result without `node` (for O_CREAT, mkdir…).
   */
  walk(p: string, cwd: string, followLast: boolean): WalkResult {
    if (p.length === 0) throw new SyscallError(E.ENOENT);
    if (p.length >= 4096) throw new SyscallError(E.ENAMETOOLONG);
    let rest = (p.startsWith('/') ? p : cwd + '/' + p).split('/');
    let cur = '';
    let links = 0;
    let node: Node | undefined = undefined;
    const trailingSlash = p.endsWith('/');
    const cred = this.currentCreds();
    // Search permission on every directory walked through (may_lookup), unless the caller may bypass it.
    const search = cred && !capable(cred, CAP_DAC_READ_SEARCH) && !capable(cred, CAP_DAC_OVERRIDE) ? cred : undefined;
    // A relative path starts at the working directory: the directories above it are not searched again (path_init).
    let unchecked = p.startsWith('/') ? 0 : cwd.split('/').length;
    for (let i = 0; i < rest.length; i++) {
      const c = rest[i];
      if (c === '') continue;
      if (search && i >= unchecked) {
        const d = node ?? (cur === '' ? this.lookup('/') ?? this.rootNode() : this.lookup(cur));
        if (d && !this.permits(search, d, MAY_EXEC)) throw new SyscallError(E.EACCES);
      }
      if (c === '.') continue;
      if (c === '..') { cur = cur.slice(0, Math.max(0, cur.lastIndexOf('/'))); node = undefined; continue; }
      if (c.length > 255) throw new SyscallError(E.ENAMETOOLONG);
      const next = cur + '/' + c;
      const isLast = rest.slice(i + 1).every((x) => x === '' || x === '.');
      const n = this.lookup(next);
      if (!n) {
        if (isLast) return { path: next };
        throw new SyscallError(E.ENOENT);
      }
      const mode = modeOf(n);
      if (n.kind === 'synthetic' && n.node.magicFileId !== undefined && isLast && followLast) {
        // Magic links resolve to the open file itself (pipes, deleted files), not to its name.
        return { path: next, node: n };
      }
      if (isLnk(mode) && (!isLast || followLast || trailingSlash)) {
        if (++links > MAX_SYMLINKS) throw new SyscallError(E.ELOOP);
        const target = this.readlinkNode(n);
        const remaining = rest.slice(i + 1);
        if (target.startsWith('/')) cur = '';
        rest = [...target.split('/'), ...remaining];
        i = -1;
        unchecked = 0;
        node = undefined;
        continue;
      }
      if (!isLast && !isDir(mode)) throw new SyscallError(E.ENOTDIR);
      cur = next;
      node = n;
    }
    if (cur === '') return { path: '/', node: this.lookup('/') ?? this.rootNode() };
    if (!node) node = this.lookup(cur); // the walk ended on '..'
    if (trailingSlash && node && !isDir(modeOf(node))) throw new SyscallError(E.ENOTDIR);
    return { path: cur, node };
  }

  private rootNode(): Node {
    return { kind: 'host', path: '/', st: this.lower.lstat('/')! };
  }

  /** The credentials checks are made with now (an override from withCreds first). */
  currentCreds(): Credentials | undefined {
    return this.credOverride ?? this.creds();
  }

  /** Run `fn` with permission checks made as `c` (access(2) checks with the real ids). */
  withCreds<T>(c: Credentials, fn: () => T): T {
    const saved = this.credOverride;
    this.credOverride = c;
    try { return fn(); } finally { this.credOverride = saved; }
  }

  /** Owner, group and mode of a node (synthetic files belong to root). */
  owner(n: Node): { mode: number; uid: number; gid: number } {
    if (n.kind === 'host') return n.st;
    if (n.kind === 'upper') return n.inode;
    return { mode: n.node.mode, uid: n.node.uid ?? 0, gid: n.node.gid ?? 0 };
  }

  /** generic_permission of `mask` (MAY_READ | MAY_WRITE | MAY_EXEC) on a node for `c`. */
  permits(c: Credentials, n: Node, mask: number): boolean {
    const o = this.owner(n);
    return permits(c, o.mode, o.uid, o.gid, mask, isDir(o.mode));
  }

  /** EACCES unless the caller (if any) may access node `n` for `mask`. */
  checkAccess(n: Node, mask: number): void {
    const c = this.currentCreds();
    if (c && !this.permits(c, n, mask)) throw new SyscallError(E.EACCES);
  }

  /** may_create: write and search permission on the parent directory of `p` (EACCES). */
  checkCreate(p: string): void {
    const parent = this.lookup(p.slice(0, p.lastIndexOf('/')) || '/');
    if (parent) this.checkAccess(parent, MAY_WRITE | MAY_EXEC);
  }

  /**
   * may_delete: write and search permission on the parent of `p` (EACCES), and in a sticky
   * directory only the owner of the file or of the directory, or CAP_FOWNER (EPERM).
   */
  checkDelete(p: string, n: Node): void {
    const c = this.currentCreds();
    if (!c) return;
    const parent = this.lookup(p.slice(0, p.lastIndexOf('/')) || '/');
    if (!parent) return;
    if (!this.permits(c, parent, MAY_WRITE | MAY_EXEC)) throw new SyscallError(E.EACCES);
    const d = this.owner(parent);
    if ((d.mode & 0o1000) && c.fsuid !== this.owner(n).uid && c.fsuid !== d.uid && !capable(c, CAP_FOWNER)) throw new SyscallError(E.EPERM);
  }

  /** Resolve to an existing node or throw ENOENT. */
  resolve(p: string, cwd: string, followLast = true): Node {
    const r = this.walk(p, cwd, followLast);
    if (!r.node) throw new SyscallError(E.ENOENT);
    return r.node;
  }

  stat(n: Node): Stat {
    if (n.kind === 'host') return n.sb ? { ...n.st, dev: superblockDev(n.sb) } : { ...n.st };
    if (n.kind === 'upper') {
      const i = n.inode;
      return {
        dev: i.sb ? superblockDev(i.sb) : implicitDev(keyOf(n)), ino: UPPER_INO_BASE + i.id, nlink: i.nlink, mode: i.mode, uid: i.uid, gid: i.gid, rdev: 0,
        size: i.size, blksize: 4096, blocks: Math.ceil(i.size / 512), atimeNs: i.atimeNs, mtimeNs: i.mtimeNs, ctimeNs: i.ctimeNs,
      };
    }
    const s = n.node;
    const t = this.nowNs();
    const size = (s.mode & S_IFMT) === S_IFLNK && s.target && (!s.mayAccess || s.mayAccess()) ? s.target().length : 0;
    return { dev: implicitDev(keyOf(n)), ino: s.ino, nlink: isDir(s.mode) ? 2 : 1, mode: s.mode, uid: s.uid ?? 0, gid: s.gid ?? 0, rdev: s.rdev ?? 0, size, blksize: 4096, blocks: 0, atimeNs: t, mtimeNs: t, ctimeNs: t };
  }

  /**
   * st_dev of the root of mount `m` (undefined: the root overlay), as stat(2) of its mount point
   * gives it while `m` is on top: mountinfo's major:minor (src/vfs/mounts.ts mountLines).
   * Undefined if the mount's root is gone (a bind of a path since removed).
   */
  mountRootDev(m?: MountState): number | undefined {
    const n = m ? this.lookupAt(m.mountpoint, { m, sb: m.sb, key: m.root }) : this.lookupAt('/', { sb: 0, key: '/' });
    return n ? this.stat(n).dev : undefined;
  }

  /** Directory entries of a directory node (without "." and ".."), merged across layers. */
  listDir(n: Node): DirEntry[] {
    const key = keyOf(n);
    if (n.kind === 'synthetic') {
      const names = new Set(n.node.list?.() ?? []);
      for (const p of Object.keys(this.state.upper)) {
        if (p.startsWith(key + '/') && p.indexOf('/', key.length + 1) < 0 && this.state.upper[p]) names.add(p.slice(key.length + 1));
      }
      return [...names].map((name) => {
        const c = this.lookup(n.path === '/' ? '/' + name : n.path + '/' + name);
        return { name, ino: c ? this.stat(c).ino : 1, type: c ? dtypeOfMode(modeOf(c)) : 0 };
      });
    }
    const out = new Map<string, DirEntry>();
    const base = key === '/' ? '' : key;
    const tmpfs = n.kind === 'upper' && n.inode.sb !== undefined;
    if (n.kind === 'host' || (n.kind === 'upper' && !tmpfs && !n.inode.opaque && !this.hiddenByAncestor(key) && this.lowerIsDir(key))) {
      try {
        for (const d of (n.kind === 'host' ? this.treeOf(n) : this.lower).readdir(key)) out.set(d.name, d);
      } catch { /* unreadable lower dir: show the upper part only */ }
    }
    if (n.kind === 'host' && n.sb) return [...out.values()];
    if (!tmpfs) {
      for (const m of this.mounts) {
        const parent = m.prefix.slice(0, m.prefix.lastIndexOf('/')) || '/';
        if (parent === key) out.set(m.prefix.slice(parent.length === 1 ? 1 : parent.length + 1), { name: m.prefix.slice(m.prefix.lastIndexOf('/') + 1), ino: 1, type: 4 });
      }
    }
    const prefix = base + '/';
    for (const [p, id] of Object.entries(this.state.upper)) {
      if (!p.startsWith(prefix) || p.length === prefix.length || p.indexOf('/', prefix.length) >= 0) continue;
      const name = p.slice(prefix.length);
      if (id === 0) out.delete(name);
      else out.set(name, { name, ino: UPPER_INO_BASE + id, type: dtypeOfMode(this.state.inodes[id].mode) });
    }
    return [...out.values()];
  }

  private lowerExists(p: string): boolean {
    return this.lower.lstat(p) !== undefined;
  }

  private lowerIsDir(p: string): boolean {
    const st = this.lower.lstat(p);
    return st !== undefined && isDir(st.mode);
  }

  /**
   * Create an upper-layer inode at `p` (the parent must exist and be a directory). A new
   * directory is opaque (overlayfs's trusted.overlay.opaque): nothing of the lower layer
   * at or below its path shows through it, whatever was there (a whiteout, a symlink).
   */
  create(p: string, mode: number, extra: Partial<InodeState> = {}): InodeState {
    const n = this.createNode(p, mode, extra);
    if (n.kind !== 'upper') throw new SyscallError(E.EIO); // createNode refuses what only an upper inode can be first
    return n.inode;
  }

  /**
   * Create a node at guest path `p` as `create` does, on whatever filesystem `p` is on: an
   * upper-layer inode (the root, a tmpfs), or a host file, directory or symlink of a read-write
   * volume (other types there: EPERM, as on a filesystem without them). Returns the new node.
   */
  createNode(p: string, mode: number, extra: Partial<InodeState> = {}): Node {
    const parent = this.checkParentDir(p);
    const loc = this.locate(p);
    this.checkWritable(loc); // EROFS before EACCES (filename_create's mnt_want_write)
    const tree = this.volumeTree(loc);
    if (tree && !isReg(mode) && !isDir(mode) && !isLnk(mode)) throw new SyscallError(E.EPERM);
    const c = this.currentCreds();
    let uid = 0, gid = 0;
    if (c) {
      if (!this.permits(c, parent, MAY_WRITE | MAY_EXEC)) throw new SyscallError(E.EACCES);
      // New files belong to the fsuid; a set-group-ID directory gives its group (and, to directories, its bit).
      const po = this.owner(parent);
      uid = c.fsuid;
      gid = (po.mode & 0o2000) ? po.gid : c.fsgid;
      if ((po.mode & 0o2000) && isDir(mode)) mode |= 0o2000;
    }
    if (tree) {
      const kind = isReg(mode) ? 'file' : isDir(mode) ? 'dir' : 'symlink';
      hostCall(() => tree.create!(loc.key, kind, mode & 0o7777, uid, gid, extra.target));
      const n = this.lookupAt(p, loc);
      if (!n) throw new SyscallError(E.ENOENT);
      return n;
    }
    const inode = this.insert(p, loc, mode, uid, gid, extra);
    return { kind: 'upper', path: p, inode, ...(loc.m ? { mnt: loc.m.id, ...(loc.key !== p ? { key: loc.key } : {}) } : {}) };
  }

  /** The host tree of the read-write volume `loc` is on (undefined: not a volume). EROFS for a read-only volume. */
  volumeTree(loc: Location): HostTree | undefined {
    if (!loc.sb || this.superblock(loc.sb)?.type !== 'volume') return undefined;
    this.checkWritable(loc);
    return this.treeOf({ sb: loc.sb });
  }

  /**
   * A change to a host node of a read-write volume (`fn` gets its tree and key): chmod, chown,
   * utimes, truncate. EROFS on a read-only volume; the host's errno otherwise.
   */
  hostChange(n: Node & { kind: 'host' }, fn: (tree: HostTree, key: string) => void): void {
    const tree = this.volumeTree(this.locate(n.path));
    if (!tree) throw new SyscallError(E.EROFS);
    hostCall(() => fn(tree, keyOf(n)));
  }

  /** Whether a host node is a file of a read-write volume (written in place, never copied up). */
  isVolumeNode(n: Node): n is Node & { kind: 'host'; sb: number } {
    return n.kind === 'host' && !!n.sb;
  }

  /**
   * An unnamed upper-layer regular file "in" directory `dir` (O_TMPFILE, vfs_tmpfile): owned as
   * `create` would own it, with no link (nlink 0) and `linkable` unless O_EXCL was given. EACCES
   * without write and search permission on the directory; EOPNOTSUPP in a synthetic directory
   * (/proc, /sys, /dev: no tmpfile operation). Any other directory qualifies, lower ones too: the file
   * has no name until linkat gives it one, and that copies the directory up.
   */
  createTmpfile(dir: Node, mode: number, linkable: boolean): InodeState {
    if (dir.kind === 'synthetic') throw new SyscallError(E.EOPNOTSUPP);
    this.checkWritable(this.locate(dir.path));
    if (dir.kind === 'host' && dir.sb) throw new SyscallError(E.EOPNOTSUPP);
    const sb = dir.kind === 'upper' ? dir.inode.sb : undefined;
    const c = this.currentCreds();
    let uid = 0, gid = 0;
    if (c) {
      if (!this.permits(c, dir, MAY_WRITE | MAY_EXEC)) throw new SyscallError(E.EACCES);
      const po = this.owner(dir);
      uid = c.fsuid;
      gid = (po.mode & 0o2000) ? po.gid : c.fsgid;
    }
    const id = this.newId();
    const t = this.nowNs();
    const inode: InodeState = { id, mode, uid, gid, nlink: 0, size: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, ...(linkable ? { linkable: true } : {}), ...(sb ? { sb } : {}) };
    this.emit({ type: 'file.create', path: dir.path, inode: id, mode }, [['set', ['fs', 'inodes', id], inode]]);
    return this.state.inodes[id];
  }

  /**
   * Put a new inode at guest path `p` (at `loc`: the root's upper layer or a tmpfs) with no
   * permission check (copy-up, the kernel's own files).
   */
  private insert(p: string, loc: Location, mode: number, uid: number, gid: number, extra: Partial<InodeState> = {}, copyUp = false): InodeState {
    this.checkParentDir(p);
    const id = this.newId();
    const t = this.nowNs();
    const sb = loc.sb ? { sb: loc.sb } : {};
    const inode: InodeState = { id, mode, uid, gid, nlink: isDir(mode) ? 2 : 1, size: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, ...(isDir(mode) && !loc.sb ? { opaque: true } : {}), ...extra, ...sb };
    const ops: GraphOp[] = [['set', ['fs', 'inodes', id], inode], ['set', ['fs', 'upper', loc.key], id]];
    if (copyUp) this.emit({ type: 'file.copyup', path: p, inode: id }, ops);
    else this.emit({ type: 'file.create', path: p, inode: id, mode }, ops);
    return this.state.inodes[id];
  }

  private checkParentDir(p: string): Node {
    const parent = p.slice(0, p.lastIndexOf('/')) || '/';
    const n = this.lookup(parent);
    if (!n) throw new SyscallError(E.ENOENT);
    if (!isDir(modeOf(n))) throw new SyscallError(E.ENOTDIR);
    if (n.kind === 'synthetic') throw new SyscallError(E.EACCES);
    return n;
  }

  /**
   * Copy a lower file up into the upper layer so it can be written (overlayfs copy_up).
   * Directories are copied as empty, non-opaque upper directories (their lower entries
   * stay visible). A regular file is read through one fd, data range by data range
   * (SEEK_DATA/SEEK_HOLE), so holes stay holes. EIO if the host file cannot be read.
   */
  copyUp(n: Node): InodeState {
    if (n.kind !== 'synthetic') this.checkWritable(this.locate(n.path));
    if (n.kind === 'upper') return n.inode;
    if (n.kind === 'synthetic') throw new SyscallError(E.EACCES);
    if (n.sb) throw new SyscallError(E.EOPNOTSUPP); // a read-write volume's files change in place (hostChange), never copied up
    const s = this.stat(n);
    const extra: Writable<Partial<InodeState>> = { atimeNs: s.atimeNs, mtimeNs: s.mtimeNs, ctimeNs: s.ctimeNs, opaque: false };
    if (isLnk(n.st.mode)) extra.target = this.readlinkNode(n);
    let src: { fd: number; size: number } | undefined;
    if (isReg(n.st.mode)) {
      try { const o = this.lower.openFile(keyOf(n)); src = { fd: o.fd, size: o.st.size }; } catch { throw new SyscallError(E.EIO); }
    }
    try {
      const inode = this.insert(n.path, this.locate(n.path), s.mode, s.uid, s.gid, extra, true);
      const moved = moveLocksOnCopyUp(this.state, n.path, inode.id);
      if (moved.length) this.emit({ type: 'lock.change', key: `i${inode.id}`, count: -1 }, moved);
      if (src) inodeSetContents(this.data!, inode, src.size, this.lower.dataRanges(src.fd, src.size), (buf, off) => this.lower.pread(src!.fd, buf, off));
      return inode;
    } finally {
      if (src) this.lower.closeFile(src.fd);
    }
  }

  /** Remove a name (unlink/rmdir): drop the upper entry, whiteout the lower one. */
  remove(p: string): void {
    const loc = this.locate(p);
    this.checkWritable(loc);
    const tree = this.volumeTree(loc);
    if (tree) {
      const n = this.lookupAt(p, loc);
      hostCall(() => tree.unlink!(loc.key, !!n && isDir(modeOf(n))));
      this.emit({ type: 'file.unlink', path: p, inode: 0 }, []);
      return;
    }
    const key = loc.key;
    const id = this.state.upper[key];
    const ops: GraphOp[] = [];
    // The inode itself stays while open files may refer to it (Linux frees it on last close).
    if (id) ops.push(['set', ['fs', 'inodes', id, 'nlink'], Math.max(0, this.state.inodes[id].nlink - (isDir(this.state.inodes[id].mode) ? 2 : 1))]);
    if (loc.sb === 0 && this.lowerExists(key) && !this.hiddenByAncestor(key)) ops.push(['set', ['fs', 'upper', key], 0]);
    else ops.push(['del', ['fs', 'upper', key]]);
    this.emit({ type: 'file.unlink', path: p, inode: id ?? 0 }, ops);
  }

  /**
   * rename(2) within the sandbox. EXDEV for a lower directory (overlayfs without
   * redirect_dir). Returns the id of an upper inode the new name replaced (it lost a link), if any.
   */
  rename(from: Node, toPath: string): number | undefined {
    const fromLoc = this.locate(from.path), toLoc = this.locate(toPath);
    if (fromLoc.m?.id !== toLoc.m?.id) throw new SyscallError(E.EXDEV); // another mount (do_renameat2)
    if (from.kind === 'synthetic') throw new SyscallError(E.EXDEV);
    this.checkWritable(fromLoc);
    if (from.kind === 'host' && from.sb) {
      const tree = this.volumeTree(fromLoc)!;
      hostCall(() => tree.rename!(fromLoc.key, toLoc.key));
      this.emit({ type: 'file.rename', from: from.path, to: toPath, inode: 0 }, []);
      return undefined;
    }
    if (from.kind === 'host' && isDir(from.st.mode)) throw new SyscallError(E.EXDEV);
    // A merged directory (copied up, lower entries showing through) cannot move either.
    if (from.kind === 'upper' && isDir(from.inode.mode) && !from.inode.opaque && !from.inode.sb && this.lowerIsDir(keyOf(from))) throw new SyscallError(E.EXDEV);
    const inode = this.copyUp(from);
    const fromPath = fromLoc.key;
    toPath = toLoc.key;
    const ops: GraphOp[] = [];
    if (isDir(inode.mode)) {
      ops.push(['set', ['fs', 'inodes', inode.id, 'opaque'], true]); // a moved directory shows nothing of the lower layer at its new path
      // Move the upper subtree.
      for (const key of Object.keys(this.state.upper)) {
        if (key.startsWith(fromPath + '/')) {
          ops.push(['set', ['fs', 'upper', toPath + key.slice(fromPath.length)], this.state.upper[key]], ['del', ['fs', 'upper', key]]);
        }
      }
    }
    const replaced = this.state.upper[toPath];
    ops.push(['set', ['fs', 'upper', toPath], inode.id], ['del', ['fs', 'upper', fromPath]]);
    if (fromLoc.sb === 0 && this.lowerExists(fromPath)) ops.push(['set', ['fs', 'upper', fromPath], 0]);
    ops.push(['set', ['fs', 'inodes', inode.id, 'ctimeNs'], this.nowNs()]);
    const old = replaced && replaced !== inode.id ? this.state.inodes[replaced] : undefined;
    if (old) ops.push(['set', ['fs', 'inodes', replaced, 'nlink'], Math.max(0, old.nlink - (isDir(old.mode) ? 2 : 1))]);
    this.emit({ type: 'file.rename', from: fromPath, to: toPath, inode: inode.id }, ops);
    return old ? replaced : undefined;
  }

  /**
   * Give upper inode `inode` (already copied up) the new name `toPath` (link(2)). EXDEV when
   * `from` (the source's node) is on another mount than `toPath`; EROFS on a read-only mount.
   */
  link(from: Node, toPath: string): InodeState | undefined {
    const toLoc = this.locate(toPath);
    this.checkWritable(toLoc);
    const fromLoc = this.locate(from.path);
    if (fromLoc.m?.id !== toLoc.m?.id) throw new SyscallError(E.EXDEV);
    const tree = this.volumeTree(toLoc);
    if (tree) {
      hostCall(() => tree.link!(fromLoc.key, toLoc.key));
      this.emit({ type: 'file.link', path: toPath, inode: 0 }, []);
      return undefined;
    }
    return this.copyUp(from);
  }

  // ------------------------------------------------------------------ the mount table (src/vfs/mounts.ts)

  /** The parent mount id of a new mount at canonical guest path `target` (the mount it lies in now). */
  private parentMountOf(target: string): number {
    const loc = this.locate(target);
    return loc.m?.id ?? implicitMountOf(loc.key);
  }

  /** The ops and record of a new mount; `sb` a new superblock record to add with it. */
  private addMount(m: Omit<MountState, 'id' | 'parent'>, extraOps: GraphOp[] = [], sb?: SuperblockState): MountState {
    if (m.mountpoint === '/') throw new SyscallError(E.EBUSY); // the root is the overlay's, never covered
    const id = newMountId(this.state);
    const rec: MountState = { id, parent: this.parentMountOf(m.mountpoint), ...m };
    const ops: GraphOp[] = [];
    if (!this.state.mounts) ops.push(['set', ['fs', 'mounts'], {}]);
    if (sb && !this.state.superblocks) ops.push(['set', ['fs', 'superblocks'], {}]);
    if (sb) ops.push(['set', ['fs', 'superblocks', sb.id], sb]);
    ops.push(...extraOps, ['set', ['fs', 'mounts', id], rec]);
    this.emit({ type: 'mount.add', id, mountpoint: m.mountpoint, fstype: m.fstype }, ops);
    this.mountsChanged();
    return this.state.mounts![id];
  }

  /**
   * Mount a new tmpfs on canonical guest path `target` (an existing directory: the caller
   * checks), its root directory `mode` (S_IFDIR added) owned by uid/gid; file data past
   * `sizeLimit` bytes gives ENOSPC (mm/shmem.c). Returns the mount.
   */
  mountTmpfs(target: string, o: { sizeLimit?: number; mode: number; uid: number; gid: number; flags: number; options: string; source: string }): MountState {
    const sbId = newSuperblockId(this.state);
    const root = tmpfsRootKey(sbId);
    const ino = this.newId();
    const t = this.nowNs();
    const inode: InodeState = { id: ino, mode: S_IFDIR | (o.mode & 0o7777), uid: o.uid, gid: o.gid, nlink: 2, size: 0, atimeNs: t, mtimeNs: t, ctimeNs: t, sb: sbId };
    const sb: SuperblockState = { id: sbId, type: 'tmpfs', usedBytes: 0, ...(o.sizeLimit ? { sizeLimit: o.sizeLimit } : {}) };
    return this.addMount({ mountpoint: target, sb: sbId, root, fstype: 'tmpfs', source: o.source, flags: o.flags, ...(o.options ? { options: o.options } : {}) },
      [['set', ['fs', 'inodes', ino], inode], ['set', ['fs', 'upper', root], ino]], sb);
  }

  /**
   * Mount host tree `tree` (opened by the caller on `hostPath`) on canonical guest path
   * `target`: its root is `root` ('/' for a directory, '/NAME' for a bound file, the tree
   * being its directory). `readonly`: the volume is read-only (EROFS, whatever the flags).
   */
  mountVolume(target: string, tree: HostTree, hostPath: string, root: string, readonly: boolean, flags = 0): MountState {
    const sbId = newSuperblockId(this.state);
    this.trees.set(sbId, tree);
    const sb: SuperblockState = { id: sbId, type: 'volume', hostPath, readonly };
    return this.addMount({ mountpoint: target, sb: sbId, root, fstype: 'hostfs', source: root === '/' ? hostPath : hostPath + root, flags: flags | (readonly ? MS_RDONLY : 0) }, [], sb);
  }

  /**
   * Bind `source` (a walked node: the guest path it was reached by decides its mount and key)
   * on canonical guest path `target` (MS_BIND): a second view of the same files, on a mount
   * of its own (rename/link across it is EXDEV). Non-recursive: mounts below the source are not
   * carried (MS_REC is accepted and treated the same).
   */
  mountBind(source: Node, target: string, flags: number): MountState {
    const loc = this.locate(source.path);
    const m = loc.m;
    const fstype = m ? m.fstype : loc.key === '/proc' || loc.key.startsWith('/proc/') ? 'proc' : loc.key === '/sys' || loc.key.startsWith('/sys/') ? 'sysfs' : 'overlay';
    const src = m ? m.source : fstype === 'overlay' ? 'none' : fstype;
    return this.addMount({ mountpoint: target, sb: loc.sb, root: loc.key, fstype, source: src, flags, ...(m?.options ? { options: m.options } : {}) });
  }

  /** Mount proc on canonical guest path `target`: the sandbox's one /proc, seen there too. */
  mountProc(target: string, flags: number, source: string): MountState {
    return this.addMount({ mountpoint: target, sb: 0, root: '/proc', fstype: 'proc', source, flags });
  }

  /**
   * Move mount `m` and the mounts below it to canonical guest path `target` (MS_MOVE; the
   * caller checked that `target` is a directory outside `m`).
   */
  moveMount(m: MountState, target: string): void {
    if (target === '/') throw new SyscallError(E.EBUSY);
    const from = m.mountpoint;
    const parent = this.parentMountOf(target);
    const ops: GraphOp[] = [];
    for (const o of Object.values(this.state.mounts ?? {})) {
      if (o.id === m.id) ops.push(['set', ['fs', 'mounts', o.id, 'mountpoint'], target], ['set', ['fs', 'mounts', o.id, 'parent'], parent]);
      else if (o.mountpoint.startsWith(from + '/')) ops.push(['set', ['fs', 'mounts', o.id, 'mountpoint'], target + o.mountpoint.slice(from.length)]);
    }
    this.emit({ type: 'mount.add', id: m.id, mountpoint: target, fstype: m.fstype }, ops);
    this.mountsChanged();
  }

  /**
   * Ops that make the mounts below guest directory `from` follow it to `to` (a rename of a
   * directory holding mount points: Linux's mounts hang on the dentries, which move).
   */
  mountsFollow(from: string, to: string): GraphOp[] {
    const ops: GraphOp[] = [];
    for (const o of Object.values(this.state.mounts ?? {})) {
      if (o.mountpoint.startsWith(from + '/')) ops.push(['set', ['fs', 'mounts', o.id, 'mountpoint'], to + o.mountpoint.slice(from.length)]);
    }
    return ops;
  }

  /** Change the per-mount flags of mount `m` (MS_REMOUNT | MS_BIND, or a remount of the superblock's options). */
  remount(m: MountState, flags: number): void {
    this.emit({ type: 'mount.remount', id: m.id, flags }, [['set', ['fs', 'mounts', m.id, 'flags'], flags]]);
    this.mountsChanged();
  }

  /**
   * Take mount `m` out of the table (umount). When it was the last mount of its superblock,
   * the superblock goes: a tmpfs's names are dropped (returns its inode ids: the caller frees
   * those no open file holds) and a volume's tree is closed.
   */
  unmount(m: MountState): number[] {
    const ops: GraphOp[] = [['del', ['fs', 'mounts', m.id]]];
    const freed: number[] = [];
    let tree: HostTree | undefined;
    if (m.sb && !Object.values(this.state.mounts ?? {}).some((o) => o.id !== m.id && o.sb === m.sb)) {
      const sb = this.superblock(m.sb);
      if (sb?.type === 'tmpfs') {
        const root = tmpfsRootKey(sb.id);
        for (const [k, id] of Object.entries(this.state.upper)) {
          if (k !== root && !k.startsWith(root + '/')) continue;
          ops.push(['del', ['fs', 'upper', k]]);
          if (id) { ops.push(['set', ['fs', 'inodes', id, 'nlink'], 0]); freed.push(id); }
        }
      } else if (sb?.type === 'volume') tree = this.trees.get(sb.id);
      ops.push(['del', ['fs', 'superblocks', m.sb]]);
    }
    this.emit({ type: 'mount.remove', id: m.id, mountpoint: m.mountpoint }, ops);
    this.mountsChanged();
    if (tree) { this.trees.delete(m.sb); tree.close(); }
    return freed;
  }

  /** The mounts on or below canonical guest path `p`, newest first. */
  mountsAtOrBelow(p: string): MountState[] {
    return Object.values(this.state.mounts ?? {}).filter((m) => m.mountpoint === p || p === '/' || m.mountpoint.startsWith(p + '/')).sort((a, b) => b.id - a.id);
  }

  /** The upper-map key a new name at guest path `p` goes under. */
  keyFor(p: string): string {
    return this.locate(p).key;
  }
}

/** Run a host tree call, its HostError as the guest's errno. */
function hostCall<T>(fn: () => T): T {
  try { return fn(); } catch (e) {
    if (e instanceof HostError) throw new SyscallError(e.errno);
    throw e;
  }
}

/** The inode number stat reports for upper-layer inode `id`. */
export const upperIno = (id: number): number => UPPER_INO_BASE + id;

export function modeOf(n: Node): number {
  if (n.kind === 'host') return n.st.mode;
  if (n.kind === 'upper') return n.inode.mode;
  return n.node.mode;
}

export { S_IFDIR, S_IFREG, S_IFLNK };

/** Persistence: upper-layer inodes (contents as chunks, or a memory-file block once shared) and the path map are data. */
export const inodePersist = persisted<InodeState>({
  kind: 'inode',
  records: (g) => byId(g.fs.inodes),
  rebuilds: 'nothing: plain data (shared contents come back with the memory file)',
});

/** Persistence: the upper layer's path -> inode map (0 = whiteout). */
export const upperPathsPersist = persisted<Record<string, number>>({
  kind: 'upper-paths',
  records: (g) => [['upper', g.fs.upper]],
  rebuilds: 'the lower layer (host rootfs) is opened again beneath its root handle when the kernel is made',
});
