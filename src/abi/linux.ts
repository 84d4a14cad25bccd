/**
 * The Linux x86-64 ABI as the guest sees it: flag values, signal numbers, request codes and
 * struct sizes, declared once and imported by every layer (errno values are in src/errno.ts,
 * syscall numbers in ./syscall-numbers.ts). Values are those of the Linux UAPI headers
 * (include/uapi/asm-generic/*.h, arch/x86/include/uapi/asm/*.h) and the man pages named
 * beside each group; nothing here is snapvisor's own choice.
 */

// ---- open(2), fcntl(2) (asm-generic/fcntl.h) ----
export const O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2;
export const O_CREAT = 0o100, O_EXCL = 0o200, O_NOCTTY = 0o400, O_TRUNC = 0o1000, O_APPEND = 0o2000, O_NONBLOCK = 0o4000;
export const O_DIRECT = 0o40000;
export const O_DIRECTORY = 0o200000, O_NOFOLLOW = 0o400000, O_CLOEXEC = 0o2000000, O_PATH = 0o10000000, O_TMPFILE = 0o20000000;
export const FD_CLOEXEC = 1;
export const F_DUPFD = 0, F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, F_GETLK = 5, F_SETLK = 6, F_SETLKW = 7;
export const F_SETOWN = 8, F_GETOWN = 9, F_DUPFD_CLOEXEC = 1030, F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032, F_OFD_GETLK = 36, F_OFD_SETLK = 37, F_OFD_SETLKW = 38;
/** lseek(2) whence. */
export const SEEK_SET = 0, SEEK_CUR = 1, SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;
/** Largest count one read/write moves (MAX_RW_COUNT, include/linux/fs.h), bytes. */
export const MAX_RW = 0x7ffff000;

// ---- *at(2) (linux/fcntl.h) ----
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_SYMLINK_FOLLOW = 0x400, AT_EMPTY_PATH = 0x1000;
/** utimensat(2) special nanosecond values. */
export const UTIME_NOW = (1 << 30) - 1, UTIME_OMIT = (1 << 30) - 2;

// ---- inode modes and directory entry types (linux/stat.h, dirent.h) ----
export const S_IFMT = 0o170000, S_IFSOCK = 0o140000, S_IFLNK = 0o120000, S_IFREG = 0o100000;
export const S_IFBLK = 0o060000, S_IFDIR = 0o040000, S_IFCHR = 0o020000, S_IFIFO = 0o010000;
export const DT_UNKNOWN = 0, DT_FIFO = 1, DT_CHR = 2, DT_DIR = 4, DT_BLK = 6, DT_REG = 8, DT_LNK = 10, DT_SOCK = 12;
export const STATX_BASIC_STATS = 0x7ff;
/** sizeof(struct stat) on x86-64 and sizeof(struct statx), bytes (man 2 stat, man 2 statx). */
export const STAT_SIZE = 144, STATX_SIZE = 256;

// ---- terminals (asm-generic/ioctls.h, termbits.h; man 2 ioctl_tty) ----
export const TCGETS = 0x5401, TCSETS = 0x5402, TCSETSW = 0x5403, TCSETSF = 0x5404, TIOCGPGRP = 0x540f, TIOCSPGRP = 0x5410;
export const TIOCGWINSZ = 0x5413, TIOCSWINSZ = 0x5414, FIONREAD = 0x541b, FIONBIO = 0x5421, FIONCLEX = 0x5450, FIOCLEX = 0x5451;
export const TIOCGSID = 0x5429;
/** sizeof(struct termios) as TCGETS fills it (kernel termios, 36 bytes) and of struct winsize (8 bytes). */
export const TERMIOS_SIZE = 36, WINSIZE_SIZE = 8;
/** c_iflag, c_oflag, c_lflag bits. */
export const ICRNL = 0o400, IXON = 0o2000, OPOST = 1, ONLCR = 4;
export const ISIG = 1, ICANON = 2, ECHO = 0o10, ECHOE = 0o20, ECHOK = 0o40, ECHONL = 0o100, ECHOCTL = 0o1000, ECHOKE = 0o4000, IEXTEN = 0o100000;
/** c_cc indices. */
export const VINTR = 0, VQUIT = 1, VERASE = 2, VKILL = 3, VEOF = 4, VMIN = 6, VSUSP = 10, VEOL = 11;
/** Major number of /dev/pts/N (Documentation/admin-guide/devices.txt). */
export const PTS_MAJOR = 136;

// ---- signals (asm/signal.h, asm-generic/siginfo.h; man 7 signal) ----
export const SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5, SIGABRT = 6, SIGBUS = 7, SIGFPE = 8, SIGKILL = 9;
export const SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18;
export const SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22, SIGURG = 23, SIGXCPU = 24, SIGXFSZ = 25, SIGWINCH = 28, SIGSYS = 31;
export const SIG_DFL = 0, SIG_IGN = 1;
export const SA_NOCLDSTOP = 1, SA_NOCLDWAIT = 2, SA_SIGINFO = 4, SA_ONSTACK = 0x08000000, SA_RESTART = 0x10000000;
export const SA_NODEFER = 0x40000000, SA_RESETHAND = 0x80000000, SA_RESTORER = 0x04000000;
export const SI_USER = 0, SI_KERNEL = 0x80, SI_TKILL = -6, SI_TIMER = -2;
export const CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3, CLD_STOPPED = 5, CLD_CONTINUED = 6;
/** sigaltstack(2) flags. */
export const SS_ONSTACK = 1, SS_DISABLE = 2;
/** uc_flags of the rt_sigframe's ucontext. */
export const UC_FP_XSTATE = 1, UC_SIGCONTEXT_SS = 2, UC_STRICT_RESTORE_SS = 4;
/** sizeof(struct ucontext) on x86-64 and sizeof(siginfo_t), bytes. */
export const UCONTEXT_SIZE = 304, SIGINFO_SIZE = 128;
/** setitimer(2) timers. */
export const ITIMER_REAL = 0, ITIMER_VIRTUAL = 1, ITIMER_PROF = 2;
/** struct sigevent notify values (man 7 sigevent). */
export const SIGEV_SIGNAL = 0, SIGEV_NONE = 1, SIGEV_THREAD_ID = 4;

// ---- processes (linux/sched.h, linux/wait.h, linux/prctl.h, asm/prctl.h) ----
export const CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400, CLONE_SIGHAND = 0x800, CLONE_PIDFD = 0x1000;
export const CLONE_PTRACE = 0x2000, CLONE_VFORK = 0x4000, CLONE_PARENT = 0x8000, CLONE_THREAD = 0x10000;
export const CLONE_NEWNS = 0x20000, CLONE_SYSVSEM = 0x40000, CLONE_SETTLS = 0x80000, CLONE_PARENT_SETTID = 0x100000;
export const CLONE_CHILD_CLEARTID = 0x200000, CLONE_DETACHED = 0x400000, CLONE_UNTRACED = 0x800000, CLONE_CHILD_SETTID = 0x1000000;
export const WNOHANG = 1, WUNTRACED = 2, WEXITED = 4, WCONTINUED = 8, WNOWAIT = 0x01000000, __WNOTHREAD = 0x20000000, __WALL = 0x40000000, __WCLONE = 0x80000000;
export const P_ALL = 0, P_PID = 1, P_PGID = 2, P_PIDFD = 3;
export const PR_SET_PDEATHSIG = 1, PR_GET_PDEATHSIG = 2, PR_GET_DUMPABLE = 3, PR_SET_DUMPABLE = 4, PR_SET_NAME = 15, PR_GET_NAME = 16;
export const PR_SET_CHILD_SUBREAPER = 36, PR_GET_CHILD_SUBREAPER = 37;
export const PR_SET_TIMERSLACK = 29, PR_GET_TIMERSLACK = 30;
export const PR_GET_SECCOMP = 21, PR_SET_NO_NEW_PRIVS = 38, PR_GET_NO_NEW_PRIVS = 39, PR_CAPBSET_READ = 23, PR_SET_VMA = 0x53564d41;
export const PR_GET_KEEPCAPS = 7, PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24, PR_GET_SECUREBITS = 27, PR_CAP_AMBIENT = 47;
export const PR_CAP_AMBIENT_IS_SET = 1, PR_CAP_AMBIENT_RAISE = 2, PR_CAP_AMBIENT_LOWER = 3, PR_CAP_AMBIENT_CLEAR_ALL = 4;

// Capabilities (linux/capability.h): numbers and the capget/capset header versions.
export const CAP_CHOWN = 0, CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2, CAP_FOWNER = 3, CAP_FSETID = 4, CAP_KILL = 5;
export const CAP_SETGID = 6, CAP_SETUID = 7, CAP_SETPCAP = 8, CAP_LINUX_IMMUTABLE = 9, CAP_SYS_PTRACE = 19, CAP_SYS_ADMIN = 21, CAP_SYS_NICE = 23;
export const CAP_SYS_RESOURCE = 24, CAP_MKNOD = 27, CAP_MAC_OVERRIDE = 32, CAP_WAKE_ALARM = 35;
/** Highest capability number Linux 6.x knows (CAP_CHECKPOINT_RESTORE). */
export const CAP_LAST_CAP = 40;
export const LINUX_CAPABILITY_VERSION_1 = 0x19980330, LINUX_CAPABILITY_VERSION_2 = 0x20071026, LINUX_CAPABILITY_VERSION_3 = 0x20080522;
/** Access wanted (fs.h MAY_*). */
export const MAY_EXEC = 1, MAY_WRITE = 2, MAY_READ = 4;
export const AT_EACCESS = 0x200;
export const ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002, ARCH_GET_FS = 0x1003, ARCH_GET_GS = 0x1004, ARCH_GET_CPUID = 0x1011, ARCH_SET_CPUID = 0x1012;
export const RLIM_INFINITY = 0xffff_ffff_ffff_ffffn;
export const RLIMIT_FSIZE = 1, RLIMIT_DATA = 2, RLIMIT_NPROC = 6, RLIMIT_NOFILE = 7, RLIMIT_AS = 9, RLIMIT_NICE = 13, RLIMIT_RTPRIO = 14;
export const PRIO_PROCESS = 0, PRIO_PGRP = 1, PRIO_USER = 2;
export const SCHED_OTHER = 0, SCHED_FIFO = 1, SCHED_RR = 2, SCHED_BATCH = 3, SCHED_IDLE = 5, SCHED_DEADLINE = 6;
/** sched_setscheduler's policy flag; sched_getscheduler reports it (include/uapi/linux/sched.h). */
export const SCHED_RESET_ON_FORK = 0x40000000;
/** struct sched_attr's sched_flags (include/uapi/linux/sched.h). */
export const SCHED_FLAG_RESET_ON_FORK = 0x01, SCHED_FLAG_RECLAIM = 0x02, SCHED_FLAG_DL_OVERRUN = 0x04, SCHED_FLAG_KEEP_POLICY = 0x08, SCHED_FLAG_KEEP_PARAMS = 0x10, SCHED_FLAG_UTIL_CLAMP = 0x60, SCHED_FLAG_ALL = 0x7f, SCHED_FLAG_SUGOV = 0x10000000;

// ---- memory (asm-generic/mman-common.h) ----
export const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4, PROT_SEM = 8;
export const PROT_GROWSDOWN = 0x01000000, PROT_GROWSUP = 0x02000000;
export const MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_SHARED_VALIDATE = 0x03, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
export const MAP_GROWSDOWN = 0x100, MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000, MAP_FIXED_NOREPLACE = 0x100000;
export const MADV_DONTNEED = 4, MADV_FREE = 8, MADV_REMOVE = 9;
/** msync(2) flags and mlockall(2) flags. */
export const MS_ASYNC = 1, MS_INVALIDATE = 2, MS_SYNC = 4;
export const MCL_CURRENT = 1, MCL_FUTURE = 2, MCL_ONFAULT = 4;
/** Guest page size, bytes. */
export const PAGE_SIZE = 4096;

// ---- time (linux/time.h) ----
export const CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1, CLOCK_PROCESS_CPUTIME_ID = 2, CLOCK_THREAD_CPUTIME_ID = 3, CLOCK_MONOTONIC_RAW = 4;
export const CLOCK_REALTIME_COARSE = 5, CLOCK_MONOTONIC_COARSE = 6, CLOCK_BOOTTIME = 7, CLOCK_REALTIME_ALARM = 8, CLOCK_BOOTTIME_ALARM = 9, CLOCK_TAI = 11;
export const TIMER_ABSTIME = 1;

// ---- futex(2) (linux/futex.h) ----
export const FUTEX_WAIT = 0, FUTEX_WAKE = 1, FUTEX_REQUEUE = 3, FUTEX_CMP_REQUEUE = 4, FUTEX_WAKE_OP = 5, FUTEX_WAIT_BITSET = 9, FUTEX_WAKE_BITSET = 10;
export const FUTEX_PRIVATE_FLAG = 128, FUTEX_CLOCK_REALTIME = 256;
export const FUTEX_OWNER_DIED = 0x40000000, FUTEX_WAITERS = 0x80000000, FUTEX_TID_MASK = 0x3fffffff;
export const FUTEX_BITSET_MATCH_ANY = 0xffffffff;

// ---- poll, epoll, eventfd, pipes (asm-generic/poll.h, eventpoll.h, eventfd.h, limits.h) ----
export const POLLIN = 1, POLLPRI = 2, POLLOUT = 4, POLLERR = 8, POLLHUP = 0x10, POLLNVAL = 0x20, POLLRDNORM = 0x40, POLLWRNORM = 0x100, POLLRDHUP = 0x2000;
export const EPOLLRDHUP = 0x2000, EPOLLONESHOT = 1 << 30, EPOLLET = 1 << 31;
export const EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
export const EFD_SEMAPHORE = 1, EFD_NONBLOCK = 0o4000, EFD_CLOEXEC = 0o2000000;
/** timerfd_create(2) flags and timerfd_settime(2) flags (linux/timerfd.h); TFD_IOC_SET_TICKS = _IOW('T', 0, u64). */
export const TFD_NONBLOCK = 0o4000, TFD_CLOEXEC = 0o2000000, TFD_TIMER_ABSTIME = 1, TFD_TIMER_CANCEL_ON_SET = 2, TFD_IOC_SET_TICKS = 0x40085400;
/** signalfd4(2) flags (linux/signalfd.h) and the size of struct signalfd_siginfo, bytes. */
export const SFD_NONBLOCK = 0o4000, SFD_CLOEXEC = 0o2000000, SIGNALFD_SIGINFO_SIZE = 128;
/** Writes up to this many bytes to a pipe are atomic (man 7 pipe), bytes. */
export const PIPE_BUF = 4096;

// ---- sockets (linux/socket.h, asm-generic/socket.h, linux/in.h) ----
export const AF_UNSPEC = 0, AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10, AF_NETLINK = 16;
/** SOL_NETLINK: the level of netlink socket options (linux/socket.h). */
export const SOL_NETLINK = 270;
export const SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_SEQPACKET = 5, SOCK_TYPE_MASK = 0xf, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
export const MSG_OOB = 1, MSG_PEEK = 2, MSG_CTRUNC = 8, MSG_TRUNC = 0x20, MSG_DONTWAIT = 0x40, MSG_EOR = 0x80, MSG_WAITALL = 0x100, MSG_NOSIGNAL = 0x4000, MSG_WAITFORONE = 0x10000, MSG_CMSG_CLOEXEC = 0x40000000;
export const SOL_SOCKET = 1, SO_TYPE = 3, SO_ERROR = 4, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_PASSCRED = 16, SO_PEERCRED = 17, SO_ACCEPTCONN = 30, SO_PROTOCOL = 38, SO_DOMAIN = 39;
export const IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_UDPLITE = 136;
export const SCM_RIGHTS = 1, SCM_CREDENTIALS = 2;
/** IPPROTO_IPV6 options (linux/in6.h). */
export const IPPROTO_IPV6 = 41, IPV6_UNICAST_HOPS = 16, IPV6_V6ONLY = 26, IPV6_RECVHOPLIMIT = 51, IPV6_HOPLIMIT = 52, IPV6_RECVTCLASS = 66, IPV6_TCLASS = 67;

// mount(2), umount2(2) (include/uapi/linux/mount.h)
export const MS_RDONLY = 1, MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_SYNCHRONOUS = 16, MS_REMOUNT = 32;
export const MS_MANDLOCK = 64, MS_DIRSYNC = 128, MS_NOSYMFOLLOW = 256, MS_NOATIME = 1024, MS_NODIRATIME = 2048;
export const MS_BIND = 4096, MS_MOVE = 8192, MS_REC = 16384, MS_SILENT = 32768;
export const MS_UNBINDABLE = 1 << 17, MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19, MS_SHARED = 1 << 20;
export const MS_RELATIME = 1 << 21, MS_STRICTATIME = 1 << 24, MS_LAZYTIME = 1 << 25;
export const MS_MGC_VAL = 0xc0ed0000, MS_MGC_MSK = 0xffff0000;
export const MNT_FORCE = 1, MNT_DETACH = 2, MNT_EXPIRE = 4, UMOUNT_NOFOLLOW = 8;
/** statfs f_type values (include/uapi/linux/magic.h). */
export const TMPFS_MAGIC = 0x01021994, PROC_SUPER_MAGIC = 0x9fa0, OVERLAYFS_SUPER_MAGIC = 0x794c7630;
