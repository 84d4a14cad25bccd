/**
 * /dev: the character devices a sandbox sees (drivers/char/mem.c semantics for null,
 * zero, full, random/urandom) and the /proc/self/fd links. Reads and writes of these
 * devices are served in src/syscalls/file.ts by device name. /dev/shm is an opaque
 * directory of the upper layer (a tmpfs of the sandbox's own: the host's never shows).
 */
import { hostCpuCount } from '../kernel/host-cpus.js';
import type { SyntheticMount, SyntheticNode } from './vfs.js';
import type { Kernel } from '../kernel/kernel.js';
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG } from '../abi/linux.js';

const mkdev = (major: number, minor: number) => (major << 8) | minor;

const DEVICES: Record<string, { rdev: number }> = {
  null: { rdev: mkdev(1, 3) }, zero: { rdev: mkdev(1, 5) }, full: { rdev: mkdev(1, 7) },
  random: { rdev: mkdev(1, 8) }, urandom: { rdev: mkdev(1, 9) }, tty: { rdev: mkdev(5, 0) }, ptmx: { rdev: mkdev(5, 2) },
};
const LINKS: Record<string, string> = {
  stdin: '/proc/self/fd/0', stdout: '/proc/self/fd/1', stderr: '/proc/self/fd/2', fd: '/proc/self/fd',
};

export function devMount(k: Kernel): SyntheticMount {
  const names = [...Object.keys(DEVICES), ...Object.keys(LINKS), 'pts'];
  return {
    prefix: '/dev',
    passthrough: ['/dev/shm'],
    lookup(p: string): SyntheticNode | undefined {
      if (p === '/dev') return { mode: S_IFDIR | 0o755, list: () => names, ino: 0x1000 };
      if (p === '/dev/pts') return { mode: S_IFDIR | 0o755, list: () => k.ptys.list().map(String), ino: 0x1100 };
      const pts = /^\/dev\/pts\/(\d+)$/.exec(p);
      if (pts) {
        const n = Number(pts[1]);
        return k.ptys.byIndex(n) ? { mode: S_IFCHR | 0o620, dev: `pts:${n}`, rdev: mkdev(136, n), ino: 0x1200 + n } : undefined;
      }
      const name = p.slice(5);
      const d = DEVICES[name];
      if (d) return { mode: S_IFCHR | 0o666, dev: name, rdev: d.rdev, ino: 0x1001 + names.indexOf(name) };
      const l = LINKS[name];
      if (l) return { mode: S_IFLNK | 0o777, target: () => l, ino: 0x1001 + names.indexOf(name) };
      return undefined;
    },
  };
}

/**
 * /sys: a minimal synthetic sysfs (nothing of the host's shows through): the CPU lists
 * glibc reads for get_nprocs/sysconf(_SC_NPROCESSORS_*), and empty class, fs and kernel
 * directories.
 */
export function sysMount(): SyntheticMount {
  const cpus = `0-${Math.max(0, hostCpuCount() - 1)}\n`;
  const dirs: Record<string, string[]> = {
    '/sys': ['devices', 'class', 'fs', 'kernel'],
    '/sys/devices': ['system'],
    '/sys/devices/system': ['cpu'],
    '/sys/devices/system/cpu': ['online', 'possible', 'present'],
    '/sys/class': [], '/sys/fs': [], '/sys/kernel': [],
  };
  const files: Record<string, string> = {
    '/sys/devices/system/cpu/online': cpus, '/sys/devices/system/cpu/possible': cpus, '/sys/devices/system/cpu/present': cpus,
  };
  const inos = [...Object.keys(dirs), ...Object.keys(files)];
  const enc = new TextEncoder();
  return {
    prefix: '/sys',
    lookup(p: string): SyntheticNode | undefined {
      const ino = 0x3000 + inos.indexOf(p);
      if (dirs[p]) return { mode: S_IFDIR | 0o555, list: () => dirs[p], ino };
      if (files[p] !== undefined) return { mode: S_IFREG | 0o444, content: () => enc.encode(files[p]), ino };
      return undefined;
    },
  };
}
