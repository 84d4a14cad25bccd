/**
 * Differences the differential tests found and that were fixed in the kernel, each kept as a
 * named regression program (executor text form, steps only): the vitest property runs them all
 * and fails if any of them differs from Linux again. docs/differential-testing.md lists them
 * with the campaign (seed and path) that found them.
 */
export interface FixedDifference {
  name: string;
  /** What differed, and what Linux does. */
  what: string;
  /** Where it was found: a campaign's seed and path, or the CI seed. */
  found: string;
  /** A program whose trace differed before the fix. */
  program: string;
}

export const FIXED_DIFFERENCES: FixedDifference[] = [
  {
    name: 'zero-length-socket-recv',
    what: 'a 0-byte recv on an empty unix stream socket returned 0 at once; Linux waits for data like any receive (EAGAIN with MSG_DONTWAIT); read(2) of 0 bytes still returns 0 at once (sock_read_iter)',
    found: 'seed 1 path 226',
    program: 'socketpair 1\nrecv @0 0\nsend #0 1\nrecv @0 0\nrecv @0 1\nrecv @0 0',
  },
  {
    name: 'cpu-itimer-tick',
    what: 'an ITIMER_VIRTUAL/PROF value read back right after setitimer was at most what was set; Linux arms it one tick (TICK_NSEC, 4 ms at HZ=250) late, so 100 s reads back as 100.004 s (kernel/time/itimer.c set_cpu_itimer)',
    found: 'seed 1 path 1192',
    program: 'setitimer 1 100\nsetitimer 1 100\ngetitimer 1\nsetitimer 2 5\ngetitimer 2\nsetitimer 2 0',
  },
  {
    name: 'mkdir-drops-setgid',
    what: 'mkdir with mode 02755 made a set-group-ID directory; Linux keeps only S_IRWXUGO|S_ISVTX of the mode (vfs_mkdir): S_ISGID comes only from the parent',
    found: 'seed 1 path 1356',
    program: "mkdir 'd 1517\nstat 'd\nmkdir 'b 3583\nstat 'b",
  },
  {
    name: 'open-o-directory-non-directory',
    what: 'open of a FIFO with O_DIRECTORY succeeded, and of a plain file with O_PATH|O_DIRECTORY too; Linux: ENOTDIR for anything but a directory, before the permission checks (do_open, path_lookupat)',
    found: 'seed 1 path 1041',
    program: "mkfifo 'b 0\nopen 'b 65536 0\nopen 'a 65 384\nopen 'a 2162688 0\nchmod 'a 0\nsetresuid 1000 1000 1000\nopen 'a 65536 0",
  },
  {
    name: 'rename-trailing-slash-non-directory',
    what: 'rename of a symlink to a new name with a trailing slash succeeded; Linux: ENOTDIR when the old name is not a directory and either name ends in a slash (do_renameat2)',
    found: 'seed 1 path 1246',
    program: "symlink 'a 'p\nrename 'p 'd/\nopen 'a 65 384\nrename 'a/ 'b",
  },
  {
    name: 'link-trailing-slash',
    what: 'link to a new name with a trailing slash gave EPERM (directory source) or made the link; Linux: ENOENT, as filename_create does not create a name ending in a slash unless asked for a directory',
    found: 'seed 1 path 1334',
    program: "link '. 'd/\nopen 'a 65 384\nlink 'a 'b/",
  },
  {
    name: 'rename-empty-path',
    what: 'rename of an empty path to "." gave EBUSY; Linux: ENOENT for the empty path before the last components are looked at',
    found: 'seed 1 path 1957',
    program: "rename ' '.\nrename '. '",
  },
  {
    name: 'mmap-fixed-error-address',
    what: 'a MAP_FIXED_NOREPLACE hint of -1 gave EINVAL (unaligned); Linux: the arch returns the fixed address unchanged and __get_unmapped_area reads one in the last 4095 bytes as an error value: EPERM for -1',
    found: 'seed 1 path 2055',
    program: 'mmap 1048576 0 1048610 -1 0 -1 0\nmmap 4096 3 1048610 -1 0 -12 0\nmmap 4096 3 50 -1 0 -1 0',
  },
];
