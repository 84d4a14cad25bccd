/*
 * The differential executor: runs generated syscall programs and prints a trace of each
 * step, the same way natively and under snapvisor (property-tests/difftest/README.md).
 *
 *   executor PROGRAMS-FILE [CUT-PROGRAM CUT-STEP]
 *
 * PROGRAMS-FILE holds programs, each a line `P <id>` followed by step lines `op arg…`.
 * An argument is a decimal integer, `@k` (the first result of step k of this program: an
 * fd, an address, a pid, a timer id), `#k` (the second result of step k: pipe and
 * socketpair's second fd), or `'text` (a path; `'` alone is the empty path).
 *
 * Each program runs in a child process, in a fresh directory `p<id>` (mode 0777) under the
 * current directory, with fds 0-2 closed, umask 022 and default signal dispositions (SIGSEGV
 * and SIGBUS are caught to report faults of memory steps). The trace goes to stdout:
 *
 *   P <id>
 *   S <step> <op> r=<ret> e=<ERRNO NAME or 0> [key=value]…     one line per step
 *   E exit=<code> | E signal=<n> | E timeout                   how the program process ended
 *
 * Values that legitimately differ between runs are printed under their own keys (addr=,
 * pid=, ino=, dev=, *time=) so the comparer can normalize them by name. Steps that would
 * block forever in a single-threaded program are not attempted: they print `block=1`
 * (pipe and socket reads and writes are checked with poll() first; FIFOs are opened with
 * O_NONBLOCK; locks are taken without waiting).
 *
 * With CUT-PROGRAM and CUT-STEP, the program with that id prints `C` after that step and
 * waits (at most 60 s) until a file `go` appears in the current directory: the checkpoint
 * property checkpoints the sandbox meanwhile, then makes the file (on the host, which the
 * sandbox sees through its lower layer) and restores.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <grp.h>

#define TRACE_FD 900
#define MAX_STEPS 256
#define MAX_ARGS 8

static char line[8192];
static int linelen;
static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + linelen, sizeof line - linelen, fmt, ap);
  va_end(ap);
  if (n > 0) linelen += n;
  if (linelen > (int)sizeof line - 1) linelen = sizeof line - 1;
}
static void flush_line(void) {
  line[linelen++] = '\n';
  int off = 0;
  while (off < linelen) {
    ssize_t w = write(TRACE_FD, line + off, linelen - off);
    if (w <= 0) { if (w < 0 && errno == EINTR) continue; break; }
    off += w;
  }
  linelen = 0;
}

/* ---- programs ---- */
struct arg { int kind; long v; char *s; }; /* kind: 0 int, 1 @ref, 2 #ref, 3 path */
struct step { char *op; int nargs; struct arg a[MAX_ARGS]; };
struct program { long id; int nsteps; struct step steps[MAX_STEPS]; };

static long res1[MAX_STEPS], res2[MAX_STEPS];
static int cur;          /* index of the running step */
static struct step *st;  /* the running step */

static long I(int i) {
  struct arg *a = &st->a[i];
  if (i >= st->nargs) return 0;
  long v = a->kind == 1 ? (a->v >= 0 && a->v < cur ? res1[a->v] : -1) : a->kind == 2 ? (a->v >= 0 && a->v < cur ? res2[a->v] : -1) : a->v;
  return v == TRACE_FD ? TRACE_FD + 1 : v; /* the trace's own fd is never touched */
}
static const char *PATH(int i) { return i < st->nargs && st->a[i].kind == 3 ? st->a[i].s : ""; }

/* ---- signals ---- */
static const int SIGS[] = { SIGHUP, SIGINT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGCHLD, SIGCONT, SIGURG, SIGWINCH, 40 };
#define NSIGS (int)(sizeof SIGS / sizeof *SIGS)
static volatile sig_atomic_t caught[65];
static volatile sig_atomic_t caught_order[64];
static volatile sig_atomic_t ncaught;
static void on_signal(int sig) {
  if (sig > 0 && sig < 65) caught[sig]++;
  if (ncaught < 64) caught_order[ncaught++] = sig;
}
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t in_mem_step;
static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (in_mem_step) {
    in_mem_step = 0;
    siglongjmp(fault_jmp, sig * 256 + (si->si_code & 0xff));
  }
  _exit(99); /* a fault outside a memory step: the executor itself is broken */
}
static void reset_signals(void) {
  struct sigaction sa = { 0 };
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < 65; s++) if (s != SIGKILL && s != SIGSTOP && s != 32 && s != 33) sigaction(s, &sa, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, 0);
}
static void catch_faults(void) {
  struct sigaction sa = { 0 };
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, 0);
  sigaction(SIGBUS, &sa, 0);
}
/* A signal set over SIGS as a bit mask (bit i = SIGS[i]), as steps give and print it. */
static void bits_to_set(long bits, sigset_t *set) {
  sigemptyset(set);
  for (int i = 0; i < NSIGS; i++) if (bits & (1L << i)) sigaddset(set, SIGS[i]);
}
static long set_to_bits(sigset_t *set) {
  long b = 0;
  for (int i = 0; i < NSIGS; i++) if (sigismember(set, SIGS[i]) == 1) b |= 1L << i;
  return b;
}

/* ---- children ---- */
static pid_t spawned[MAX_STEPS];
static int nspawned;
static int spawned_fatal[MAX_STEPS]; /* killed by a signal whose default action ends it */
static int fatal_default(int sig) {
  return sig == SIGHUP || sig == SIGINT || sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGPIPE || sig == SIGALRM ||
         sig == SIGTERM || sig == SIGKILL || sig == 40;
}
static void status_out(int status) {
  if (WIFEXITED(status)) out(" exit=%d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status)) out(" signal=%d", WTERMSIG(status));
  else out(" status=0x%x", status);
}

/* Deterministic data for writes: byte j of step i's data. */
static char data_buf[65536];
static void fill(long n) {
  for (long j = 0; j < n && j < (long)sizeof data_buf; j++) data_buf[j] = 'a' + (cur * 7 + j) % 26;
}
static void data_out(const char *key, const char *buf, long n) {
  out(" %s=", key);
  if (n > 256) { /* long data: length and a checksum */
    unsigned long h = 5381;
    for (long j = 0; j < n; j++) h = h * 33 + (unsigned char)buf[j];
    out("len%ld:%lx", n, h);
    return;
  }
  out("\"");
  for (long j = 0; j < n; j++) {
    unsigned char c = buf[j];
    if (c >= 0x21 && c < 0x7f && c != '"' && c != '\\') out("%c", c);
    else out("\\x%02x", c);
  }
  out("\"");
}
static void stat_out(struct stat *s) {
  out(" mode=0%o nlink=%lu uid=%u gid=%u size=%ld blocks=%ld ino=%lu dev=%lu rdev=%lu atime=%ld mtime=%ld ctime=%ld",
      s->st_mode, (unsigned long)s->st_nlink, s->st_uid, s->st_gid, (long)s->st_size, (long)s->st_blocks,
      (unsigned long)s->st_ino, (unsigned long)s->st_dev, (unsigned long)s->st_rdev, (long)s->st_atime, (long)s->st_mtime, (long)s->st_ctime);
}
static void creds_out(void) {
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  gid_t groups[32];
  int n = getgroups(32, groups);
  out(" uids=%u,%u,%u gids=%u,%u,%u groups=", r, e, s, gr, ge, gs);
  for (int i = 0; i < n; i++) out("%s%u", i ? "," : "", groups[i]);
}
/* Whether a read (events POLLIN) or write (POLLOUT) on fd would block; only pipes, FIFOs and sockets are checked. */
static int would_block(int fd, short events) {
  struct stat s;
  if (fstat(fd, &s) != 0 || !(S_ISFIFO(s.st_mode) || S_ISSOCK(s.st_mode))) return 0;
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) return 0;
  struct pollfd p = { fd, events, 0 };
  if (poll(&p, 1, 0) < 0) return 0;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return 0;
  return !(p.revents & events);
}
static long rounded_up_secs(struct timeval *tv) { return tv->tv_sec + (tv->tv_usec > 0); }
static long rounded_up_secs_ts(struct timespec *ts) { return ts->tv_sec + (ts->tv_nsec > 0); }

static int child_action(void);
char program_root[4096];

/* Our own mappings (successful mmap steps): MAP_FIXED, munmap, mprotect, madvise and pokes
 * relative to one of them must stay inside them, so a step never hits the executor's memory;
 * peeks too, since what lies next to a mapping is each kernel's own layout (seed 6 path 170
 * read a neighbour natively and faulted under snapvisor). */
static struct { unsigned long start, end; } regions[MAX_STEPS];
static int nregions;
static int is_region_start(unsigned long a) { for (int i = 0; i < nregions; i++) if (regions[i].start == a) return 1; return 0; }
static int inside_regions(unsigned long a, unsigned long len) {
  unsigned long end = a + (len ? len : 1);
  if (end < a) return 0;
  /* covered by the union of regions */
  for (int guard = 0; guard < MAX_STEPS && a < end; guard++) {
    int moved = 0;
    for (int i = 0; i < nregions; i++) if (regions[i].start <= a && a < regions[i].end) { a = regions[i].end; moved = 1; }
    if (!moved) return 0;
  }
  return a >= end;
}
/* Whether a memory step at base+off of len bytes may run: a base that is one of our mappings must keep to them. */
static int mem_allowed(unsigned long base, unsigned long off, unsigned long len) {
  if (!is_region_start(base)) return 1;
  unsigned long a = (base + off) & ~4095UL;
  return inside_regions(a, ((base + off + len + 4095) & ~4095UL) - a);
}

/* ---- one step ---- */
static void run_step(void) {
  const char *op = st->op;
  long r = 0;
  int addr_result = 0, pid_result = 0;
  errno = 0;
  ncaught = 0;
  out("S %d %s", cur, op);
  char extra[4096];
  extra[0] = 0;
  int elen = 0;
#define EXTRA(...) (elen += snprintf(extra + elen, sizeof extra - elen > 0 ? sizeof extra - elen : 0, __VA_ARGS__))
  if (!strcmp(op, "open")) {
    const char *p = PATH(0);
    long flags = I(1);
    struct stat s;
    if (lstat(p, &s) == 0 && S_ISFIFO(s.st_mode) && !(flags & O_NONBLOCK)) flags |= O_NONBLOCK;
    r = open(p, flags, (mode_t)I(2));
  } else if (!strcmp(op, "close")) r = close(I(0));
  else if (!strcmp(op, "read") || !strcmp(op, "pread") || !strcmp(op, "recv")) {
    long n = I(1);
    if (n > (long)sizeof data_buf) n = sizeof data_buf;
    if (would_block(I(0), POLLIN) && strcmp(op, "recv")) { out(" block=1"); flush_line(); return; }
    if (!strcmp(op, "read")) r = read(I(0), data_buf, n);
    else if (!strcmp(op, "pread")) r = pread(I(0), data_buf, n, I(2));
    else r = recv(I(0), data_buf, n, MSG_DONTWAIT);
  } else if (!strcmp(op, "write") || !strcmp(op, "pwrite") || !strcmp(op, "send")) {
    long n = I(1);
    if (n > (long)sizeof data_buf) n = sizeof data_buf;
    fill(n);
    if (would_block(I(0), POLLOUT) && strcmp(op, "send")) { out(" block=1"); flush_line(); return; }
    if (!strcmp(op, "write")) r = write(I(0), data_buf, n);
    else if (!strcmp(op, "pwrite")) r = pwrite(I(0), data_buf, n, I(2));
    else r = send(I(0), data_buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  } else if (!strcmp(op, "lseek")) r = lseek(I(0), I(1), I(2));
  else if (!strcmp(op, "ftruncate")) r = ftruncate(I(0), I(1));
  else if (!strcmp(op, "truncate")) r = truncate(PATH(0), I(1));
  else if (!strcmp(op, "fsync")) r = fsync(I(0));
  else if (!strcmp(op, "fstat") || !strcmp(op, "stat") || !strcmp(op, "lstat")) {
    struct stat s;
    if (!strcmp(op, "fstat")) r = fstat(I(0), &s);
    else if (!strcmp(op, "stat")) r = stat(PATH(0), &s);
    else r = lstat(PATH(0), &s);
    int e = errno;
    out(" r=%ld e=%s", r, r < 0 ? strerrorname_np(e) : "0");
    if (r == 0) stat_out(&s);
    goto done_printed;
  } else if (!strcmp(op, "mkdir")) r = mkdir(PATH(0), I(1));
  else if (!strcmp(op, "rmdir")) r = rmdir(PATH(0));
  else if (!strcmp(op, "unlink")) r = unlink(PATH(0));
  else if (!strcmp(op, "rename")) r = rename(PATH(0), PATH(1));
  else if (!strcmp(op, "link")) r = link(PATH(0), PATH(1));
  else if (!strcmp(op, "symlink")) r = symlink(PATH(0), PATH(1));
  else if (!strcmp(op, "readlink")) {
    char buf[256];
    r = readlink(PATH(0), buf, I(1) > 0 && I(1) < 256 ? I(1) : 255);
    if (r >= 0) { int e = errno; out(" r=%ld e=0", r); data_out("target", buf, r); errno = e; goto done_printed; }
  } else if (!strcmp(op, "mkfifo")) r = mkfifo(PATH(0), I(1));
  else if (!strcmp(op, "chmod")) r = chmod(PATH(0), I(1));
  else if (!strcmp(op, "fchmod")) r = fchmod(I(0), I(1));
  else if (!strcmp(op, "chown")) r = chown(PATH(0), I(1), I(2));
  else if (!strcmp(op, "fchown")) r = fchown(I(0), I(1), I(2));
  else if (!strcmp(op, "access")) r = access(PATH(0), I(1));
  else if (!strcmp(op, "eaccess")) r = faccessat(AT_FDCWD, PATH(0), I(1), AT_EACCESS);
  else if (!strcmp(op, "umask")) r = umask(I(0));
  else if (!strcmp(op, "chdir")) r = chdir(PATH(0));
  else if (!strcmp(op, "getcwd")) {
    char buf[4096];
    char *c = getcwd(buf, sizeof buf);
    r = c ? 0 : -1;
    if (c) { /* relative to the program's directory */
      size_t lr = strlen(program_root);
      EXTRA(" cwd=%s", !strncmp(buf, program_root, lr) ? (buf[lr] ? buf + lr : "/") : "outside");
    }
  } else if (!strcmp(op, "listdir") || !strcmp(op, "getdents")) {
    int fd = !strcmp(op, "listdir") ? open(PATH(0), O_RDONLY | O_DIRECTORY) : (int)I(0);
    if (fd < 0) r = -1;
    else {
      char buf[4096];
      long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
      int e = errno;
      r = n < 0 ? -1 : n > 0 ? 1 : 0; /* the byte count depends on record padding: print entries instead */
      if (n > 0) {
        EXTRA(" ents=");
        for (long off = 0; off < n;) {
          struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
          EXTRA("%s%s:%d", off ? "," : "", d->name, d->type);
          off += d->reclen;
        }
      }
      if (!strcmp(op, "listdir")) close(fd);
      errno = e;
    }
  } else if (!strcmp(op, "dup")) r = dup(I(0));
  else if (!strcmp(op, "dup2")) r = dup2(I(0), I(1));
  else if (!strcmp(op, "fcntl")) {
    long cmd = I(1);
    if (cmd == F_SETLKW || cmd == F_OFD_SETLKW) cmd = F_SETLK; /* never wait */
    if (cmd == F_GETLK || cmd == F_SETLK || cmd == F_OFD_GETLK || cmd == F_OFD_SETLK) {
      struct flock fl = { .l_type = (short)I(2), .l_whence = SEEK_SET, .l_start = I(3), .l_len = I(4) };
      r = fcntl(I(0), cmd, &fl);
      if (r == 0 && (cmd == F_GETLK || cmd == F_OFD_GETLK))
        EXTRA(" l_type=%d l_start=%ld l_len=%ld pid=%d", fl.l_type, (long)fl.l_start, (long)fl.l_len, fl.l_pid);
    } else r = fcntl(I(0), cmd, I(2));
  } else if (!strcmp(op, "flock")) r = flock(I(0), I(1) | LOCK_NB);
  else if (!strcmp(op, "pipe") || !strcmp(op, "socketpair")) {
    int fds[2] = { -1, -1 };
    r = !strcmp(op, "pipe") ? pipe2(fds, I(0)) : socketpair(AF_UNIX, I(0), 0, fds);
    if (r == 0) { res1[cur] = fds[0]; res2[cur] = fds[1]; EXTRA(" fds=%d,%d", fds[0], fds[1]); }
  } else if (!strcmp(op, "shutdown")) r = shutdown(I(0), I(1));
  else if (!strcmp(op, "setresuid")) { r = setresuid(I(0), I(1), I(2)); }
  else if (!strcmp(op, "setresgid")) { r = setresgid(I(0), I(1), I(2)); }
  else if (!strcmp(op, "setuid")) r = setuid(I(0));
  else if (!strcmp(op, "setgid")) r = setgid(I(0));
  else if (!strcmp(op, "setgroups")) {
    gid_t g[3] = { (gid_t)I(1), (gid_t)I(2), (gid_t)I(3) };
    r = setgroups(I(0) > 3 ? 3 : I(0), g);
  } else if (!strcmp(op, "fork")) {
    pid_t p = fork();
    if (p == 0) _exit(child_action());
    if (p < 0) r = -1;
    else {
      int status;
      while (waitpid(p, &status, 0) < 0 && errno == EINTR) {}
      int e = errno;
      out(" r=0 e=0");
      status_out(status);
      errno = e;
      goto done_printed;
    }
  } else if (!strcmp(op, "spawn")) {
    pid_t p = fork();
    if (p == 0) {
      close(TRACE_FD);
      reset_signals();
      for (;;) pause();
    }
    r = p;
    if (p > 0) { spawned[nspawned] = p; spawned_fatal[nspawned++] = 0; pid_result = 1; }
  } else if (!strcmp(op, "kill")) {
    pid_t p = I(0);
    int sig = I(1);
    int known = -1;
    for (int i = 0; i < nspawned; i++) if (spawned[i] == p) known = i;
    /* Only our own children, or a pid no process can have (past PID_MAX_LIMIT): natively, any other
       pid is a host process (a reference to an earlier result such as umask's 18 once killed pid 18). */
    if (known < 0 && (p <= 0 || p <= 4194304)) { out(" r=0 e=0 skipped=1"); flush_line(); return; }
    r = kill(p, sig);
    int e = errno;
    if (r == 0 && known >= 0 && fatal_default(sig) && !spawned_fatal[known]) {
      spawned_fatal[known] = 1;
      siginfo_t si;
      while (waitid(P_PID, p, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {} /* settle: it is a zombie now */
    }
    errno = e;
  } else if (!strcmp(op, "reap")) {
    pid_t p = I(0);
    int known = -1;
    for (int i = 0; i < nspawned; i++) if (spawned[i] == p) known = i;
    int status = 0;
    if (p == -1 || p == 0) r = waitpid(p, &status, WNOHANG);
    else if (known >= 0 && spawned_fatal[known]) { while ((r = waitpid(p, &status, 0)) < 0 && errno == EINTR) {} }
    else r = waitpid(p, &status, WNOHANG);
    int e = errno;
    if (r > 0) {
      for (int i = 0; i < nspawned; i++) if (spawned[i] == r) spawned[i] = 0;
      out(" r=1 e=0 pid=%ld", r);
      status_out(status);
      errno = e;
      goto done_printed;
    }
    errno = e;
  } else if (!strcmp(op, "sigaction")) {
    struct sigaction sa = { 0 }, old;
    long kind = I(1);
    sa.sa_handler = kind == 0 ? SIG_DFL : kind == 1 ? SIG_IGN : on_signal;
    sa.sa_flags = kind == 3 ? SA_RESTART : kind == 4 ? SA_RESETHAND : 0;
    int sig = I(0);
    if (sig == SIGSEGV || sig == SIGBUS) sig = 65; /* reserved for fault reports: ask for an invalid signal instead */
    r = sigaction(sig, &sa, &old);
    if (r == 0) EXTRA(" old=%s", old.sa_handler == SIG_DFL ? "dfl" : old.sa_handler == SIG_IGN ? "ign" : "handler");
  } else if (!strcmp(op, "sigprocmask")) {
    sigset_t set, old;
    bits_to_set(I(1), &set);
    r = sigprocmask(I(0), &set, &old);
    if (r == 0) EXTRA(" old=%lx", set_to_bits(&old));
  } else if (!strcmp(op, "sigpending")) {
    sigset_t set;
    r = sigpending(&set);
    if (r == 0) EXTRA(" pending=%lx", set_to_bits(&set));
  } else if (!strcmp(op, "raise")) {
    int sig = I(0);
    if (sig == SIGSEGV || sig == SIGBUS) sig = SIGUSR1;
    r = kill(getpid(), sig);
  } else if (!strcmp(op, "mmap")) {
    long len = I(0), flags = I(2);
    void *hint = 0;
    if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) hint = (void *)(I(5) + I(6));
    /* MAP_FIXED (which replaces what is there) only inside our own earlier mappings */
    if ((flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE) && (!is_region_start(I(5)) || !inside_regions((unsigned long)hint, len))) {
      out(" r=0 e=0 skipped=1");
      flush_line();
      return;
    }
    void *p = mmap(hint, len, I(1), flags, I(3), I(4));
    r = p == MAP_FAILED ? -1 : (long)p;
    if (p != MAP_FAILED) {
      addr_result = 1;
      if (nregions < MAX_STEPS) { regions[nregions].start = r; regions[nregions++].end = r + ((len + 4095) & ~4095L); }
    }
  } else if ((!strcmp(op, "munmap") || !strcmp(op, "mprotect") || !strcmp(op, "madvise")) && !mem_allowed(I(0), I(1), I(2))) {
    out(" r=0 e=0 skipped=1");
    flush_line();
    return;
  } else if (!strcmp(op, "munmap")) r = munmap((void *)(I(0) + I(1)), I(2));
  else if (!strcmp(op, "mprotect")) r = mprotect((void *)(I(0) + I(1)), I(2), I(3));
  else if (!strcmp(op, "madvise")) r = madvise((void *)(I(0) + I(1)), I(2), I(3));
  else if (!strcmp(op, "peek") || !strcmp(op, "poke")) {
    volatile unsigned char *p = (volatile unsigned char *)(I(0) + I(1));
    if (!mem_allowed(I(0), I(1), 1)) { out(" r=0 e=0 skipped=1"); flush_line(); return; }
    int f = sigsetjmp(fault_jmp, 1);
    if (f == 0) {
      in_mem_step = 1;
      if (op[1] == 'e') r = *p;
      else { *p = (unsigned char)I(2); r = 0; }
      in_mem_step = 0;
    } else {
      out(" r=-1 e=0 fault=%d/%d", f >> 8, f & 0xff);
      goto done_printed;
    }
  } else if (!strcmp(op, "setitimer")) {
    struct itimerval v = { { 0, 0 }, { I(1), 0 } }, old;
    r = setitimer(I(0), &v, &old);
    if (r == 0) EXTRA(" old=%ld", rounded_up_secs(&old.it_value));
  } else if (!strcmp(op, "getitimer")) {
    struct itimerval v;
    r = getitimer(I(0), &v);
    if (r == 0) EXTRA(" value=%ld", rounded_up_secs(&v.it_value));
  } else if (!strcmp(op, "alarm")) r = alarm(I(0));
  else if (!strcmp(op, "tick")) {
    /* A short ITIMER_REAL, then wait for its SIGALRM unless it is ignored or blocked (or would kill us: then we die of it). */
    struct sigaction cur_sa;
    sigset_t mask;
    sigaction(SIGALRM, 0, &cur_sa);
    sigprocmask(SIG_BLOCK, 0, &mask);
    if (cur_sa.sa_handler == SIG_IGN || sigismember(&mask, SIGALRM)) { out(" r=0 e=0 skipped=1"); flush_line(); return; }
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &all, &mask);
    struct itimerval v = { { 0, 0 }, { 0, 20000 } };
    r = setitimer(ITIMER_REAL, &v, 0);
    if (r == 0) {
      caught[SIGALRM] = 0;
      while (!caught[SIGALRM]) { sigset_t w = mask; sigdelset(&w, SIGALRM); sigsuspend(&w); }
      errno = 0;
    }
    sigprocmask(SIG_SETMASK, &mask, 0);
  } else if (!strcmp(op, "timer_create")) {
    struct sigevent ev = { 0 };
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR2;
    timer_t id;
    r = syscall(SYS_timer_create, I(0), &ev, &id);
    if (r == 0) { res1[cur] = (long)(intptr_t)id; EXTRA(" id=%ld", (long)(intptr_t)id); }
  } else if (!strcmp(op, "timer_settime")) {
    struct itimerspec v = { { 0, 0 }, { I(1), 0 } }, old;
    r = syscall(SYS_timer_settime, I(0), 0, &v, &old);
    if (r == 0) EXTRA(" old=%ld", rounded_up_secs_ts(&old.it_value));
  } else if (!strcmp(op, "timer_gettime")) {
    struct itimerspec v;
    r = syscall(SYS_timer_gettime, I(0), &v);
    if (r == 0) EXTRA(" value=%ld", rounded_up_secs_ts(&v.it_value));
  } else if (!strcmp(op, "timer_delete")) r = syscall(SYS_timer_delete, I(0));
  else { out(" unknown-op"); flush_line(); return; }

  {
    int e = errno;
    if (addr_result) out(" r=0 e=0 addr=0x%lx", r);
    else if (pid_result && r > 0) out(" r=1 e=0 pid=%ld", r);
    else out(" r=%ld e=%s", r, r < 0 ? (strerrorname_np(e) ? strerrorname_np(e) : "?") : "0");
    if (r > 0 && (!strcmp(op, "read") || !strcmp(op, "pread") || !strcmp(op, "recv"))) data_out("data", data_buf, r);
  }
done_printed:
  if (!strcmp(op, "setresuid") || !strcmp(op, "setresgid") || !strcmp(op, "setuid") || !strcmp(op, "setgid") || !strcmp(op, "setgroups")) creds_out();
  out("%s", extra);
  if (ncaught) {
    out(" caught=");
    for (int i = 0; i < ncaught && i < 64; i++) out("%s%d", i ? "," : "", caught_order[i]);
  }
  if (res1[cur] == 0 && !(!strcmp(op, "pipe") || !strcmp(op, "socketpair") || !strcmp(op, "timer_create"))) res1[cur] = r;
  flush_line();
}

/* What a `fork` step's child does (its exit status is the step's result): arguments are the step's. */
static int child_action(void) {
  long what = I(0);
  switch (what) {
    case 0: return I(1) & 0xff;                              /* exit CODE */
    case 1: kill(getpid(), I(1)); return 0;                 /* raise SIG (dies if it is fatal) */
    case 2: fill(I(2)); return write(I(1), data_buf, I(2)) < 0 ? 100 + errno : 0; /* write FD N */
    case 3: {                                                /* F_SETLK FD TYPE START LEN: exit errno */
      struct flock fl = { .l_type = (short)I(2), .l_whence = SEEK_SET, .l_start = I(3), .l_len = I(4) };
      return fcntl(I(1), F_SETLK, &fl) < 0 ? errno : 0;
    }
    case 4: return flock(I(1), I(2) | LOCK_NB) < 0 ? errno : 0; /* flock FD OP */
    case 5: return access(PATH(1), I(2)) < 0 ? errno : 0;       /* access PATH MODE */
    case 6: { int fd = open(PATH(1), I(2), 0644); return fd < 0 ? errno : 0; } /* open PATH FLAGS */
    case 7: {                                                   /* poke ADDR OFF VAL */
      if (!mem_allowed(I(1), I(2), 1)) return 201;
      if (sigsetjmp(fault_jmp, 1) == 0) { in_mem_step = 1; *(volatile unsigned char *)(I(1) + I(2)) = (unsigned char)I(3); in_mem_step = 0; return 0; }
      return 200;
    }
    case 8: { /* F_GETLK FD TYPE START LEN: exit with the lock type seen (0 RD, 1 WR, 2 UN) or 100+errno */
      struct flock fl = { .l_type = (short)I(2), .l_whence = SEEK_SET, .l_start = I(3), .l_len = I(4) };
      return fcntl(I(1), F_GETLK, &fl) < 0 ? 100 + errno : fl.l_type;
    }
    default: return 0;
  }
}

static void run_program(struct program *p, long cut_step) {
  char dir[64];
  snprintf(dir, sizeof dir, "p%ld", p->id);
  setpgid(0, 0); /* the program and its children: one group, killed as a whole when it ends */
  if (mkdir(dir, 0777) != 0 || chmod(dir, 0777) != 0 || chdir(dir) != 0) { out("E setup-failed errno=%d", errno); flush_line(); _exit(1); }
  if (!getcwd(program_root, sizeof program_root)) _exit(1);
  umask(022);
  reset_signals();
  catch_faults();
  for (int fd = 0; fd < 3; fd++) close(fd);
  memset(res1, 0, sizeof res1);
  memset(res2, 0, sizeof res2);
  for (cur = 0; cur < p->nsteps; cur++) {
    st = &p->steps[cur];
    run_step();
    if (cur == cut_step) {
      /* Wait (at most 60 s) for the file ../go, which the test makes once it has checkpointed the sandbox. */
      out("C");
      flush_line();
      for (int i = 0; i < 1200 && access("../go", F_OK) != 0; i++) {
        struct timespec ts = { 0, 50000000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
      }
    }
  }
  for (int i = 0; i < nspawned; i++) if (spawned[i] > 0) { kill(spawned[i], SIGKILL); waitpid(spawned[i], 0, 0); }
  _exit(0);
}

static pid_t running_child;
static void on_watchdog(int sig) { (void)sig; if (running_child > 0) kill(running_child, SIGKILL); }

static char *next_token(char **s) {
  while (**s == ' ' || **s == '\t') (*s)++;
  if (!**s) return 0;
  char *t = *s;
  while (**s && **s != ' ' && **s != '\t') (*s)++;
  if (**s) *(*s)++ = 0;
  return t;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: executor PROGRAMS-FILE [CUT-PROGRAM CUT-STEP]\n"); return 2; }
  long cut_prog = argc > 3 ? atol(argv[2]) : -1, cut_step = argc > 3 ? atol(argv[3]) : -1;
  FILE *f = fopen(argv[1], "r");
  if (!f) { perror(argv[1]); return 2; }
  if (dup2(1, TRACE_FD) < 0) { perror("dup2"); return 2; }
  static struct program prog;
  static char buf[65536];
  int have = 0;
  struct sigaction sa = { 0 };
  sa.sa_handler = on_watchdog;
  sigaction(SIGALRM, &sa, 0);
  for (;;) {
    char *l = fgets(buf, sizeof buf, f);
    if (!l || !strncmp(l, "P ", 2)) {
      if (have) {
        fflush(0);
        out("P %ld", prog.id);
        flush_line();
        pid_t c = fork();
        if (c == 0) { fclose(f); run_program(&prog, prog.id == cut_prog ? cut_step : -1); }
        running_child = c;
        alarm(cut_prog >= 0 ? 90 : 20);
        int status;
        pid_t w;
        while ((w = waitpid(c, &status, 0)) < 0 && errno == EINTR) {}
        alarm(0);
        running_child = 0;
        kill(-c, SIGKILL); /* children it left behind */
        while (waitpid(-1, 0, WNOHANG) > 0) {}
        if (WIFEXITED(status)) out("E exit=%d", WEXITSTATUS(status));
        else out("E signal=%d", WTERMSIG(status));
        flush_line();
        for (int i = 0; i < prog.nsteps; i++) { free(prog.steps[i].op); for (int j = 0; j < prog.steps[i].nargs; j++) free(prog.steps[i].a[j].s); }
        have = 0;
      }
      if (!l) break;
      prog.id = atol(l + 2);
      prog.nsteps = 0;
      have = 1;
      continue;
    }
    l[strcspn(l, "\n")] = 0;
    char *s = l, *tok = next_token(&s);
    if (!tok || prog.nsteps >= MAX_STEPS) continue;
    struct step *stp = &prog.steps[prog.nsteps++];
    memset(stp, 0, sizeof *stp);
    stp->op = strdup(tok);
    while ((tok = next_token(&s)) && stp->nargs < MAX_ARGS) {
      struct arg *a = &stp->a[stp->nargs++];
      if (tok[0] == '@') { a->kind = 1; a->v = atol(tok + 1); }
      else if (tok[0] == '#') { a->kind = 2; a->v = atol(tok + 1); }
      else if (tok[0] == '\'') { a->kind = 3; a->s = strdup(tok + 1); }
      else { a->kind = 0; a->v = strtol(tok, 0, 0); }
    }
  }
  return 0;
}
