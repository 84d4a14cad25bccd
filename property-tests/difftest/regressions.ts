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
  {
    name: 'ofd-getlk-unlck',
    what: 'F_OFD_GETLK of F_UNLCK gave EINVAL; since Linux 6.7 it reports the open file description\'s own overlapping lock (or F_UNLCK), on any file a lock can be asked of, pipes included; F_GETLK of F_UNLCK stays EINVAL',
    found: 'seed 2 path 447',
    program: "pipe 0\nopen 'a 66 384\nfcntl @1 37 1 10 5\nfcntl @1 36 2 0 0\nopen 'a 2 0\nfcntl @4 36 2 0 0\nfcntl @1 5 2 0 0\nfcntl @0 36 2 0 0",
  },
  {
    name: 'socket-inode-per-socket',
    what: 'both ends of a seqpacket or datagram socketpair (and every unconnected socket) had one st_ino, and st_uid/st_gid were the caller\'s current ones; Linux: one sockfs inode per socket, owned by its creator (sock_alloc)',
    found: 'seed 2 path 2470',
    program: 'socketpair 5\nfstat #0\nfstat @0\nsetresgid -1 1001 -1\nfstat @0\nsocketpair 2\nfstat @5\nfstat #5',
  },
  {
    name: 'mmap-exec-noexec-pseudo-fs',
    what: 'mmap with PROT_EXEC of a pipe or socket gave ENODEV, and a shared writable mapping of a read-only directory ENODEV; Linux: pipefs, sockfs and anon_inodefs are noexec (EPERM before ENODEV), and the access-mode checks come first (EACCES)',
    found: 'seed 2 path 2485',
    program: "pipe 0\nmmap 4096 5 2 @0 0 0 0\nmmap 4096 5 2 #0 0 0 0\nsocketpair 1\nmmap 4096 5 2 @3 0 0 0\nmmap 4096 1 2 @3 0 0 0\nmkdir 'd 493\nopen 'd 0 0\nmmap 4096 7 1 @7 0 0 0\nmmap 4096 5 2 @7 0 0 0",
  },
  {
    name: 'open-directory-for-writing',
    what: 'opening a directory the caller may not write for writing (or with O_TRUNC) gave EACCES; Linux: EISDIR before the permission check (may_open)',
    found: 'seed 2 path 830',
    program: "mkdir 'b 0\nsetresuid 0 1000 0\nopen 'b 3 0\nopen 'b 512 0\nopen 'b 1 0",
  },
  {
    name: 'create-over-symlink-with-trailing-slash',
    what: 'mkfifo, symlink or link of a new name "d/" where d is a dangling (or looping) symlink gave ENOENT or ELOOP; Linux looks the last component up unfollowed, slashes or not: EEXIST (filename_create)',
    found: 'seed 3 path 1113',
    program: "symlink 'a 'd\nmkfifo 'd/ 0\nsymlink 'b 'd/\nlink '. 'd/\nsymlink 'l 'l\nmkfifo 'l/ 0\nmkdir 'l/ 493",
  },
  {
    name: 'access-mode-3-locks',
    what: 'flock and F_SETLK read or write locks on a file opened with access mode 3 succeeded; Linux: such a description has neither FMODE_READ nor FMODE_WRITE, so only unlocking works (EBADF)',
    found: 'seed 3 path 1659',
    program: "open 'a 67 0\nflock @0 1\nflock @0 2\nflock @0 8\nfcntl @0 6 0 0 0\nfcntl @0 6 1 0 0\nfcntl @0 6 2 0 0",
  },
  {
    name: 'getfl-o-largefile',
    what: 'F_GETFL of a file opened by path lacked O_LARGEFILE; a 64-bit Linux opens every file with it (force_o_largefile), but not O_PATH ones, pipes or sockets',
    found: 'seed 3 path 3617',
    program: "open 'a 64 0\nfcntl @0 3 0\nopen '. 0 0\nfcntl @2 3 0\npipe 0\nfcntl @4 3 0\nopen 'a 2097152 0\nfcntl @6 3 0",
  },
  {
    name: 'fchmod-fchown-pipes-sockets',
    what: 'fchmod/fchown of a pipe or socket gave EPERM (a known difference until then); Linux changes the pipefs/sockfs inode, which both ends of a pipe share, for its owner or CAP_FOWNER/CAP_CHOWN (notify_change)',
    found: 'every campaign since seed 1 (known difference fchmod-fchown-pipes-sockets)',
    program: "pipe 0\nfchmod @0 1517\nfstat #1\nfchown @2 1000 1001\nfstat @3\nsocketpair 1\nfchmod @0 2541\nfstat #1\nfchown @2 -1 -1\nfstat @3\nsetresuid 1000 1000 1000\nfchmod @10 511\nfstat @11\nfchmod #7 511\nfchown @13 0 -1",
  },
  {
    name: 'chown-drops-setuid',
    what: 'chown with both ids -1 kept a regular file\'s set-user-ID bit, and chown of a FIFO kept it; Linux drops it from anything but a directory, even for root (chown_common: ATTR_KILL_SUID), and set-group-ID when group-executable',
    found: 'writing fchown of pipes (checked natively)',
    program: "open 'a 65 420\nfchmod @0 3583\nfchown @1 -1 -1\nfstat @2\nmkfifo 'b 420\nchmod 'b 3583\nchown 'b 0 -1\nstat 'b\nmkdir 'd 493\nchmod 'd 3583\nchown 'd -1 -1\nstat 'd",
  },
  {
    name: 'fifo-fstat-fchmod',
    what: 'fstat of a FIFO opened by path showed an anonymous pipe (mode 0600, another inode), and fchmod of it did not reach the FIFO; Linux: the FIFO\'s own inode',
    found: 'writing fchown of pipes (checked natively)',
    program: "mkfifo 'p 420\nopen 'p 2048 0\nfstat @0\nstat 'p\nfchmod @2 384\nstat 'p\nfstat @4",
  },
  {
    name: 'seek-data-negative-offset',
    what: 'lseek(SEEK_DATA or SEEK_HOLE) with a negative offset gave EPERM (the offset was set to -1); Linux compares the offset unsigned against the size: ENXIO (generic_file_llseek_size, iomap_seek_data)',
    found: 'seed 5 path 1585',
    program: "open 'a 66 420\nlseek @0 -1 3\nlseek @1 -1 4\nwrite @2 5\nlseek @3 -1 3\nlseek @4 -1 4\nlseek @5 1 3\nlseek @6 1 4\nlseek @7 5 4",
  },
  {
    name: 'rename-dot-parent-not-directory',
    what: 'rename of "d/.." (or to it) where d is not a directory gave EBUSY; Linux looks both parents up first (filename_parentat): ENOTDIR, before the EBUSY of a "." or ".." last component',
    found: 'seed 5 path 1900',
    program: "mkfifo 'd 0\nrename 'd/.. 'a\nrename 'a 'd/..\nrename 'nonexistent/x/.. 'a\nrename 'd/.. 'nonexistent/x",
  },
  {
    name: 'upper-file-16-tib',
    what: 'a pwrite at 1 TiB gave EFBIG: upper-layer files stopped at 1 TiB; Linux\'s ext4 (where the native run writes) allows 16 TiB less 4 KiB (tmpfs more); the upper layer now does as ext4, sparse',
    found: 'seed 6 path 153',
    program: "open 'a 66 420\npwrite @0 4096 1099511627776\nfstat @1\nftruncate @2 0\nfstat @3",
  },
  {
    name: 'fifo-open-access-mode-3',
    what: 'open of a FIFO with access mode 3 (neither read nor write) succeeded; Linux: EINVAL (fifo_open)',
    found: 'seed 6 path 1467',
    program: "mkfifo 'a 0\nopen 'a 3 0\nmkfifo 'b 420\nopen 'b 2051 0\nopen 'b 2048 0",
  },
  {
    name: 'rename-looping-new-parent',
    what: 'rename of a missing name into "d/a", d a symlink to itself, gave ENOENT; Linux looks both parents up first (filename_parentat): ELOOP',
    found: 'seed 9 path 1737',
    program: "symlink 'd 'd\nrename 'a 'd/a\nrename 'd/a 'a\nmkfifo 'p 0\nrename 'a 'p/a",
  },
];
