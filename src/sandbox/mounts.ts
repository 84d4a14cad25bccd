/**
 * Mounts a new sandbox starts with (run --volume, run --tmpfs, an OCI bundle's config.json
 * `mounts`): parsed from their one-line specs and mounted into the kernel's mount table
 * (src/vfs/mounts.ts) before the first program is loaded. A mount point missing in the
 * sandbox is made (directories, or an empty file for a bound file), as runc makes them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Kernel } from '../kernel/kernel.js';
import { SyscallError, strerror } from '../errno.js';
import { isDir, isReg } from '../vfs/stat.js';
import { modeOf, type Node } from '../vfs/vfs.js';
import { parseTmpfsOptions } from '../vfs/mounts.js';
import { S_IFDIR, S_IFREG } from '../abi/linux.js';

/** A mount to make at creation: a host directory or file (a volume), or a new tmpfs. `guest`: an absolute guest path. */
export type MountSpec =
  | { type: 'volume'; host: string; guest: string; readonly: boolean; flags?: number }
  | { type: 'tmpfs'; guest: string; options: string; flags?: number };

/** Command-line strings are UTF-8; the kernel keeps paths as latin1 byte strings. */
const latin1 = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

/**
 * The node at guest path `p`, made if missing (a directory, or an empty regular file when
 * `file`), with the parents it needs, owned by root; the kernel's own lookups (no permission
 * checks). Throws Error with one line.
 */
function mountpoint(k: Kernel, p: string, file: boolean, what: string): { path: string; node: Node } {
  const vfs = k.vfs;
  const fail = (e: unknown): never => {
    throw new Error(`${what}: cannot make the mount point ${p} in the sandbox: ${e instanceof SyscallError ? strerror(e.errno) : (e as Error).message}`);
  };
  try {
    const parts = p.split('/').filter(Boolean);
    let cur = '';
    for (let i = 0; i < parts.length; i++) {
      cur += '/' + parts[i];
      const w = vfs.walk(cur, '/', true);
      cur = w.path;
      if (w.node) continue;
      const last = i === parts.length - 1;
      vfs.create(cur, last && file ? S_IFREG | 0o644 : S_IFDIR | 0o755);
    }
    const w = vfs.walk(cur, '/', true);
    return { path: w.path, node: w.node! };
  } catch (e) {
    return fail(e);
  }
}

/** Mount every spec, in order. Throws Error with one line naming the mount that failed. */
export function setupMounts(k: Kernel, specs: readonly MountSpec[]): void {
  for (const s of specs) {
    const guest = latin1(path.posix.normalize(s.guest)).replace(/(.)\/+$/, '$1');
    if (guest === '/') throw new Error(`${s.type === 'tmpfs' ? 'tmpfs' : `volume ${s.host}`}: cannot be mounted over the sandbox's root (--rootfs chooses the root)`);
    if (s.type === 'tmpfs') {
      const o = parseTmpfsOptions(s.options, os.totalmem());
      if (typeof o === 'string') throw new Error(`tmpfs ${s.guest}: ${o}`);
      const mp = mountpoint(k, guest, false, `tmpfs ${s.guest}`);
      if (!isDir(modeOf(mp.node))) throw new Error(`tmpfs ${s.guest}: the mount point is not a directory`);
      k.vfs.mountTmpfs(mp.path, { sizeLimit: o.sizeLimit, mode: o.mode ?? 0o1777, uid: o.uid ?? 0, gid: o.gid ?? 0, flags: (s.flags ?? 0) | o.flags, options: o.text, source: 'tmpfs' });
      continue;
    }
    let real: string;
    try { real = fs.realpathSync(s.host); } catch { throw new Error(`volume ${s.host}: no such file or directory on the host`); }
    const st = fs.statSync(real);
    if (!st.isDirectory() && !st.isFile()) throw new Error(`volume ${s.host}: not a directory or regular file`);
    const mp = mountpoint(k, guest, st.isFile(), `volume ${s.host}`);
    if (st.isDirectory() !== isDir(modeOf(mp.node)) || (st.isFile() && !isReg(modeOf(mp.node)))) {
      throw new Error(`volume ${s.host}: the mount point ${s.guest} is ${isDir(modeOf(mp.node)) ? 'a directory' : 'not a directory'} in the sandbox`);
    }
    // A bound file is reached beneath its directory's handle; the mount's root is its one name there.
    const dir = st.isDirectory() ? real : path.dirname(real);
    const root = st.isDirectory() ? '/' : '/' + latin1(path.basename(real));
    let tree;
    try { tree = k.host.openTree(dir); } catch { throw new Error(`volume ${s.host}: cannot open ${dir}`); }
    k.vfs.mountVolume(mp.path, tree, dir, root, s.readonly, s.flags ?? 0);
  }
}
