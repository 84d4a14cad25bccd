/**
 * Known differences between Linux and snapvisor found by the differential tests: each has a
 * name, the reason, who is to fix it, a matcher for the first differing step it causes, and a
 * named regression program that shows it today. The vitest property checks the table is
 * accurate: every regression program must still differ in exactly that way (a fixed one
 * fails the test until its entry is removed), and a difference no entry explains fails it.
 *
 * A program's comparison stops at its first difference (what follows may only be its
 * consequence), so a known difference can hide a later one in the same program; the
 * regression programs keep each difference visible on its own.
 */
import type { Difference } from './trace.js';
import { fieldOf } from './trace.js';

export interface KnownDifference {
  name: string;
  /** Why snapvisor differs, and what Linux does. */
  reason: string;
  /** Who fixes it (an issue, a helper's area), or "by design". */
  owner: string;
  /** Whether a first difference is this one; `step` is the program's step in executor text form (`op arg…`), '' for the end line. */
  matches(d: Difference, step: string): boolean;
  /** A program (executor text form, steps only) whose first difference is this one. */
  regression: string;
}

const e = (line: string) => fieldOf(line, 'e');
const r = (line: string) => fieldOf(line, 'r');
const isDirStat = (line: string) => /^mode=04/.test(line.split(' ').find((f) => f.startsWith('mode=')) ?? '');

export const KNOWN_DIFFERENCES: KnownDifference[] = [
  {
    name: 'directory-nlink',
    reason: 'a directory\'s st_nlink stays 2 when subdirectories are made in it; Linux counts each subdirectory\'s ".." (2 + subdirectories)',
    owner: 'issue 9 (filesystem layer, src/vfs)',
    matches: (d) => ['stat', 'lstat', 'fstat'].includes(d.op) && isDirStat(d.native) && fieldOf(d.native, 'nlink') !== fieldOf(d.sandbox, 'nlink'),
    regression: "mkdir 'd 493\nstat '.",
  },
  {
    name: 'symlink-blocks',
    reason: 'a symlink reports allocated blocks for its target text; Linux keeps short targets in the inode (fast symlinks: st_blocks 0)',
    owner: 'issue 9 (filesystem layer, src/vfs)',
    matches: (d) => ['stat', 'lstat', 'fstat'].includes(d.op) && fieldOf(d.native, 'mode') === '0120777' && fieldOf(d.native, 'blocks') !== fieldOf(d.sandbox, 'blocks'),
    regression: "symlink 'a 'l\nlstat 'l",
  },
  {
    name: 'mmap-below-mmap-min-addr',
    reason: 'a MAP_FIXED mapping below 64 KiB (mmap_min_addr) gives EPERM: the sandbox never grants CAP_SYS_RAWIO; natively the test runs as root, which may map page 0',
    owner: 'by design (as gVisor)',
    matches: (d) => d.op === 'mmap' && e(d.sandbox) === 'EPERM' && r(d.native) === '0',
    regression: 'mmap 4096 3 1048610 -1 0 0 0',
  },
  {
    name: 'directory-seek-data',
    reason: 'lseek(SEEK_DATA/SEEK_HOLE) on a directory answers from the directory\'s size, which is each filesystem\'s own (4096 on ext4, where the native run works, so offset 0 is data; tmpfs gives EINVAL; the sandbox\'s directories have size 0: ENXIO), as directory sizes are normalized',
    owner: 'by design (a filesystem-specific size)',
    matches: (d, step) => d.op === 'lseek' && / [34]$/.test(step) && r(d.native) === '0' && e(d.sandbox) === 'ENXIO',
    regression: "open '. 0 0\nlseek @0 0 3",
  },
  {
    name: 'directory-seek-end',
    reason: 'lseek(SEEK_END) on a directory is filesystem-specific: ext4 (where the native run\'s scratch directory lives) answers with its hash-order end of file, 2^63-1 plus the offset (ext4_dir_llseek); the sandbox\'s directories are its own',
    owner: 'by design (a filesystem-specific offset, as tmpfs and overlayfs give EINVAL)',
    matches: (d, step) => d.op === 'lseek' && / 2$/.test(step) && BigInt(r(d.native) ?? '0') >= 2n ** 62n,
    regression: "open '. 0 0\nlseek @0 0 2",
  },
];
