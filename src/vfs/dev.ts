/**
 * /dev: the character devices a sandbox sees (drivers/char/mem.c semantics for null,
 * zero, full, random/urandom) and the /proc/self/fd links. Reads and writes of these
 * devices are served in src/syscalls/file.ts by device name.
 */
import type { SyntheticMount, SyntheticNode } from './vfs.js';
import type { Kernel } from '../kernel/kernel.js';
import { S_IFCHR, S_IFDIR, S_IFLNK } from '../abi/linux.js';

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
