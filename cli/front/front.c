/*
 * The `snapvisor` bin's native front (docs/cli.md, "How the bin starts"): a static x86-64 ELF
 * with no libc (raw syscalls) that runs three commands without starting node, and execs node
 * with dist/bundle/main.js (cli/launcher.ts) for everything else:
 *
 *  - `[--root DIR] pool take SOCKET`: the take of docs/pools.md ("The socket protocol"): fds
 *    0-2 passed with SCM_RIGHTS, the relayed signals (blocked, read from a signalfd) written as
 *    `{"op":"signal","signal":N}` lines once the clone runs, the clone's exit status; as
 *    cli/pool-client.ts poolTake. Before the clone runs (the take waits in the pool) a signal
 *    whose default action ends a process ends it, by that signal.
 *  - `[--root DIR] restore ID [--store DIR]` with ID a full id (16 hex digits) and a pool of it
 *    published as STORE/pools/ID.sock (cli/pool-registry.ts): a take with `"checkpoint":ID,
 *    "ifReady":true` as cli/pool-client.ts restoreFromPool; else, the same take on the store's
 *    any-pool, STORE/pools/any.sock (cli/restorer.ts: a warm restorer restores ID for it);
 *    SIGTERM/SIGHUP that come before the guest runs are held and given to it once it runs.
 *  - `[--root DIR] checkpoint NAME [options]` (the shapes of cli/checkpoint-client.ts
 *    parseLightCheckpoint) with stderr no terminal: one `{"op":"front",...}` request on the
 *    sandbox's control socket (cli/control.ts), whose answer says what to print where.
 *
 * Whatever it does not handle, and any failure before a guest ran (no socket, a refusal, a
 * connection closed before `started`), goes to node: execve(NODE, [NODE, DIR/main.js, argv
 * [1..]], envp), DIR the directory of /proc/self/exe, NODE the node the build ran with
 * (written into node_path by scripts/bundle.mjs), else `node` found in PATH. A restore that
 * falls back passes the SIGTERM/SIGHUP it held in SNAPVISOR_FRONT_HELD (cli/launcher.ts holds
 * them on); a ^C meanwhile ends it, as it ends a restore still loading. NODE_EXTRA_CA_CERTS is
 * passed as SNAPVISOR_NODE_EXTRA_CA_CERTS (node would load that CA bundle as it starts).
 *
 * Source of truth for cli/front/front.S (gcc -S of this file) and cli/front/front-elf.ts (its
 * bytes): scripts/assemble-front.mjs makes both; the build needs neither gcc nor as.
 */

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;

enum {
  SYS_read = 0, SYS_write = 1, SYS_close = 3, SYS_poll = 7, SYS_rt_sigaction = 13, SYS_rt_sigprocmask = 14,
  SYS_ioctl = 16, SYS_getpid = 39, SYS_socket = 41, SYS_connect = 42, SYS_sendto = 44, SYS_sendmsg = 46,
  SYS_execve = 59, SYS_kill = 62, SYS_getcwd = 79, SYS_readlink = 89, SYS_getuid = 102, SYS_exit_group = 231,
  SYS_signalfd4 = 289, SYS_clock_gettime = 228,
};

__asm__(".text\n.globl _start\n_start:\n\txor %ebp, %ebp\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall front_main\n\thlt\n");

static inline i64 sys6(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e, i64 f) {
  register i64 r10 __asm__("r10") = d;
  register i64 r8 __asm__("r8") = e;
  register i64 r9 __asm__("r9") = f;
  i64 ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
}
#define sys(n, a, b, c) sys6(n, (i64)(a), (i64)(b), (i64)(c), 0, 0, 0)

/* gcc may call these for struct copies and zeroing even when freestanding. */
void *memcpy(void *d, const void *s, u64 n) { char *o = d; const char *i = s; while (n--) *o++ = *i++; return d; }
void *memset(void *d, int c, u64 n) { char *o = d; while (n--) *o++ = (char)c; return d; }

static u64 slen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }
static int streq(const char *a, const char *b) { while (*a && *a == *b) a++, b++; return *a == *b; }
/* The rest of `s` after `p`, or 0 if `s` does not start with `p`. */
static const char *after(const char *s, const char *p) { while (*p) if (*s++ != *p++) return 0; return s; }

static __attribute__((noreturn)) void die(int status) { for (;;) sys(SYS_exit_group, status, 0, 0); }
static void put(int fd, const char *s, u64 n) {
  while (n) { i64 w = sys(SYS_write, fd, s, n); if (w == -4) continue; if (w <= 0) return; s += w; n -= (u64)w; }
}
static void puts2(const char *s) { put(2, s, slen(s)); }

/* A bounded string builder: `ok` drops to 0 when something did not fit. */
struct buf { char *p; u64 len, cap; int ok; };
static void add(struct buf *b, const char *s, u64 n) {
  if (b->len + n + 1 > b->cap) { b->ok = 0; return; }
  memcpy(b->p + b->len, s, n); b->len += n; b->p[b->len] = 0;
}
static void adds(struct buf *b, const char *s) { add(b, s, slen(s)); }
static void addu(struct buf *b, u64 v) {
  char t[24]; int i = 24;
  do t[--i] = (char)('0' + v % 10); while (v /= 10);
  add(b, t + i, (u64)(24 - i));
}
/* `s` as a JSON string (quotes, backslashes and control characters escaped). */
static void addjson(struct buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  adds(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { char e[2] = { '\\', (char)c }; add(b, e, 2); }
    else if (c < 0x20) { char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] }; add(b, e, 6); }
    else add(b, (const char *)&c, 1);
  }
  adds(b, "\"");
}

static char **environ_;
static int argc_;
static char **argv_;

static const char *getenv_(const char *name) {
  for (char **e = environ_; *e; e++) { const char *v = after(*e, name); if (v && *v == '=') return v + 1; }
  return 0;
}

/* Written by scripts/bundle.mjs: the absolute path of the node that built the bundle, NUL-terminated. */
__attribute__((used, aligned(16))) char node_path[512] = "@@SNAPVISOR_FRONT_NODE_PATH@@";

/* The signals a take relays (cli/pool-client.ts RELAYED): INT QUIT TSTP WINCH TERM HUP USR1 USR2 CONT. */
#define BIT(s) (1UL << ((s) - 1))
static const u64 RELAYED = BIT(2) | BIT(3) | BIT(20) | BIT(28) | BIT(15) | BIT(1) | BIT(10) | BIT(12) | BIT(18);
/* Of those, the ones whose default action ends a process (cli/pool-client.ts FATAL_BEFORE_START): INT QUIT TERM HUP USR1 USR2. */
static const u64 FATAL = BIT(2) | BIT(3) | BIT(15) | BIT(1) | BIT(10) | BIT(12);
static u64 old_mask;
static int blocked;

static void block_relayed(void) {
  u64 m = RELAYED;
  if (!blocked && sys6(SYS_rt_sigprocmask, 0 /* SIG_BLOCK */, (i64)&m, (i64)&old_mask, 8, 0, 0) == 0) blocked = 1;
}
static void unblock(void) {
  if (blocked) sys6(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, (i64)&old_mask, 0, 8, 0, 0);
  blocked = 0;
}

/*
 * Run the command with node: cli/launcher.ts beside this file's real path. `extra`: one more
 * environment entry (SNAPVISOR_FRONT_HELD=…) or 0. Does not return: exit 127 with one line if
 * no node starts.
 */
static __attribute__((noreturn)) void exec_node(const char *extra) {
  unblock();
  static char script[4096];
  i64 n = sys(SYS_readlink, "/proc/self/exe", script, sizeof script - 16);
  while (n > 0 && script[n - 1] != '/') n--;
  if (n <= 0) { puts2("snapvisor: cannot find the bin's own path (/proc/self/exe)\n"); die(127); }
  memcpy(script + n, "main.js", 8);

  /*
   * NODE_EXTRA_CA_CERTS makes node read and parse that CA bundle while it starts (~35 ms here,
   * a third of a restore), for TLS that snapvisor never does: node gets it as
   * SNAPVISOR_NODE_EXTRA_CA_CERTS, which cli/launcher.ts puts back for what node starts (a guest's
   * environment). A value too long for the buffer is passed as it is.
   */
  static char ca[4200];
  u64 ne = 0;
  while (environ_[ne]) ne++;
  char *envx[ne + 2];
  for (u64 i = 0; i < ne; i++) {
    envx[i] = environ_[i];
    const char *v = after(environ_[i], "NODE_EXTRA_CA_CERTS=");
    if (v) {
      struct buf c = { ca, 0, sizeof ca, 1 };
      adds(&c, "SNAPVISOR_NODE_EXTRA_CA_CERTS=");
      adds(&c, v);
      if (c.ok) envx[i] = ca;
    }
  }
  envx[ne] = (char *)extra;
  envx[ne + 1] = 0;
  char **env = envx;
  char *args[argc_ + 2];
  args[1] = script;
  for (int i = 1; i < argc_; i++) args[i + 1] = argv_[i];
  args[argc_ + 1] = 0;

  if (node_path[0] == '/') { args[0] = node_path; sys(SYS_execve, node_path, args, env); }
  const char *path = getenv_("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  static char cand[4096];
  while (*path) {
    const char *end = path;
    while (*end && *end != ':') end++;
    struct buf b = { cand, 0, sizeof cand, 1 };
    if (end > path) add(&b, path, (u64)(end - path)); else adds(&b, ".");
    adds(&b, "/node");
    if (b.ok) { args[0] = cand; sys(SYS_execve, cand, args, env); }
    path = *end ? end + 1 : end;
  }
  puts2("snapvisor: cannot start node (not at the path the build recorded, nor in PATH)\n");
  die(127);
}

/* A unix stream socket connected to `path` (as given: the kernel resolves a relative one), or -1. */
static int connect_unix(const char *path) {
  struct { unsigned short family; char path[108]; } sa;
  u64 n = slen(path);
  if (n == 0 || n > 107) return -1;
  sa.family = 1; /* AF_UNIX */
  memcpy(sa.path, path, n + 1);
  int fd = (int)sys(SYS_socket, 1, 1 | 0x80000 /* SOCK_STREAM | SOCK_CLOEXEC */, 0);
  if (fd < 0) return -1;
  if (sys(SYS_connect, fd, &sa, 2 + n + 1) != 0) { sys(SYS_close, fd, 0, 0); return -1; }
  return fd;
}

static int send_text(int fd, const char *s, u64 n) {
  while (n) {
    i64 w = sys6(SYS_sendto, fd, (i64)s, (i64)n, 0x4000 /* MSG_NOSIGNAL */, 0, 0);
    if (w == -4) continue;
    if (w <= 0) return -1;
    s += w; n -= (u64)w;
  }
  return 0;
}

static void send_signal(int fd, int sig) {
  char t[64];
  struct buf b = { t, 0, sizeof t, 1 };
  adds(&b, "{\"op\":\"signal\",\"signal\":");
  addu(&b, (u64)sig);
  adds(&b, "}\n");
  send_text(fd, t, b.len);
}

/* Signals that came before the guest ran: in order, at most 32 kept. */
static int early[32], nearly;

/*
 * `sig` (read from the signalfd, still blocked) does now what its disposition says: unblocked and
 * sent to this process, it ends it by that signal (the shell reports 128+sig) unless it is
 * ignored (SIG_IGN inherited, as `nohup` or a script's `&` leave SIGINT): then it is blocked again
 * and this returns.
 */
static void die_by(int sig) {
  u64 m = BIT(sig);
  sys6(SYS_rt_sigprocmask, 1 /* SIG_UNBLOCK */, (i64)&m, 0, 8, 0, 0);
  sys(SYS_kill, sys(SYS_getpid, 0, 0, 0), sig, 0);
  sys6(SYS_rt_sigprocmask, 0 /* SIG_BLOCK */, (i64)&m, 0, 8, 0, 0);
}

/*
 * A take on the pool at `sockpath` (docs/pools.md): `restore` 0 for `pool take`, 1 for a restore's
 * take of checkpoint `id` (`ifReady`). Signals are relayed once `started` came (before it the
 * connection is the pool's, which does not read it); until then they are held, except that for
 * `pool take`, whose take may wait in the pool for a clone, one of FATAL ends this process (its
 * connection closes with it and the pool forgets the take). Exits with the clone's status once it
 * ran; returns if nothing ran (the caller goes to node).
 */
static void take(const char *sockpath, const char *id, int restore) {
  block_relayed();
  int fd = connect_unix(sockpath);
  if (fd < 0) return;
  char req[128];
  struct buf b = { req, 0, sizeof req, 1 };
  if (restore) { adds(&b, "{\"op\":\"take\",\"checkpoint\":\""); adds(&b, id); adds(&b, "\",\"ifReady\":true}\n"); }
  else adds(&b, "{\"op\":\"take\"}\n");
  struct { u64 base, len; } iov = { (u64)req, b.len };
  struct { u64 len; int level, type; int fds[3]; int pad; } cmsg = { 28, 1 /* SOL_SOCKET */, 1 /* SCM_RIGHTS */, { 0, 1, 2 }, 0 };
  struct { u64 name; u32 namelen, pad0; u64 iov, iovlen, control, controllen; int flags, pad1; } msg =
    { 0, 0, 0, (u64)&iov, 1, (u64)&cmsg, 32, 0, 0 };
  i64 r;
  do r = sys(SYS_sendmsg, fd, &msg, 0x4000 | 0x40 /* MSG_NOSIGNAL | MSG_DONTWAIT */); while (r == -4);
  if (r < 0) { sys(SYS_close, fd, 0, 0); return; }

  u64 mask = RELAYED;
  int sfd = (int)sys6(SYS_signalfd4, -1, (i64)&mask, 8, 0x80000 | 0x800 /* SFD_CLOEXEC | SFD_NONBLOCK */, 0, 0);
  static char line[4096];
  u64 len = 0;
  int skipping = 0, started = 0, status = -1;
  for (;;) {
    struct { int fd; short events, revents; } pfd[2] = { { fd, 1 /* POLLIN */, 0 }, { sfd, 1, 0 } };
    i64 p = sys(SYS_poll, pfd, sfd >= 0 ? 2 : 1, -1);
    if (p == -4) continue;
    if (p < 0) break;
    if (sfd >= 0 && pfd[1].revents) {
      unsigned char si[128];
      while (sys(SYS_read, sfd, si, sizeof si) == sizeof si) {
        int sig = (int)*(u32 *)si;
        if (started) send_signal(fd, sig);
        else if (!restore && (FATAL & BIT(sig))) die_by(sig);
        else if (nearly < 32) early[nearly++] = sig;
      }
    }
    if (!pfd[0].revents) continue;
    i64 n = sys(SYS_read, fd, line + len, sizeof line - len);
    if (n == -4 || n == -11) continue;
    if (n <= 0) break;
    len += (u64)n;
    for (;;) {
      u64 nl = 0;
      while (nl < len && line[nl] != '\n') nl++;
      if (nl == len) {
        if (len == sizeof line) { skipping = 1; len = 0; } /* a line longer than any the protocol has: ignored */
        break;
      }
      line[nl] = 0;
      if (!skipping) {
        const char *s;
        if (after(line, "{\"event\":\"started\"") && !started) {
          started = 1;
          /* The held SIGTERM/SIGHUP first, then the others, as restoreFromPool gives them. */
          for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nearly; i++)
              if ((early[i] == 15 || early[i] == 1) == (pass == 0)) send_signal(fd, early[i]);
          nearly = 0;
        } else if ((s = after(line, "{\"event\":\"exit\",\"status\":")) != 0) {
          int v = 0;
          while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
          status = v;
        }
      }
      skipping = 0;
      len -= nl + 1;
      for (u64 i = 0; i < len; i++) line[i] = line[nl + 1 + i];
    }
  }
  if (status >= 0) die(status & 255);
  if (started) {
    puts2(restore ? "snapvisor: the clone running this restore died before its sandbox ended\n"
                  : "snapvisor: the clone running this take died before its sandbox ended\n");
    die(125);
  }
  /* Nothing ran: whatever came meanwhile, read, for the caller. */
  if (sfd >= 0) {
    unsigned char si[128];
    while (sys(SYS_read, sfd, si, sizeof si) == sizeof si) if (nearly < 32) early[nearly++] = (int)*(u32 *)si;
    sys(SYS_close, sfd, 0, 0);
  }
  sys(SYS_close, fd, 0, 0);
}

/* After a take that ran nothing: signals read meanwhile do now what they would have done, then node. */
static __attribute__((noreturn)) void fall_back(int restore) {
  static char held[64];
  struct buf h = { held, 0, sizeof held, 1 };
  int fatal = 0;
  for (int i = 0; i < nearly; i++) {
    int s = early[i];
    if (restore && (s == 15 || s == 1)) {
      adds(&h, h.len ? "," : "SNAPVISOR_FRONT_HELD=");
      adds(&h, s == 15 ? "SIGTERM" : "SIGHUP");
    } else if (FATAL & BIT(s)) {
      if (!fatal) fatal = s;
    }
  }
  if (fatal) {
    unblock();
    sys(SYS_kill, sys(SYS_getpid, 0, 0, 0), fatal, 0);
  }
  exec_node(h.len ? held : 0);
}

static const char *store_dir(const char *given, struct buf *b) {
  if (given) return given;
  const char *s = getenv_("SNAPVISOR_STORE");
  if (s && *s) return s;
  const char *data = getenv_("XDG_DATA_HOME");
  if (data && *data) { adds(b, data); adds(b, "/snapvisor/checkpoints"); return b->ok ? b->p : 0; }
  const char *home = getenv_("HOME");
  if (!home || !*home) return 0;
  adds(b, home); adds(b, "/.local/share/snapvisor/checkpoints");
  return b->ok ? b->p : 0;
}

/* `restore` args from index `i` (after the command): the fast path, or return for node. */
static void restore_cmd(int i) {
  const char *id = 0, *store = 0;
  for (; i < argc_; i++) {
    const char *a = argv_[i], *v;
    if (streq(a, "--store") && !store && i + 1 < argc_) store = argv_[++i];
    else if ((v = after(a, "--store=")) && !store) store = v;
    else if (a[0] != '-' && !id) id = a;
    else return;
  }
  if (!id || (store && !*store)) return;
  u64 n = 0;
  for (; id[n]; n++) if (!((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f'))) return;
  if (n != 16) return;
  static char sdir[4096], sock[4096];
  struct buf sb = { sdir, 0, sizeof sdir, 1 };
  const char *dir = store_dir(store, &sb);
  if (!dir) return;
  struct buf b = { sock, 0, sizeof sock, 1 };
  adds(&b, dir); adds(&b, "/pools/"); adds(&b, id); adds(&b, ".sock");
  if (!b.ok) return;
  take(sock, id, 1);
  /* Second choice: the store's any-pool, unless a signal that ends a restore still loading came
     meanwhile (as restoreFromPool stops trying pools). */
  for (int k = 0; k < nearly; k++)
    if ((FATAL & BIT(early[k])) && early[k] != 15 && early[k] != 1) fall_back(1);
  struct buf a = { sock, 0, sizeof sock, 1 };
  adds(&a, dir); adds(&a, "/pools/any.sock");
  if (a.ok) take(sock, id, 1);
  fall_back(1);
}

/*
 * `checkpoint` with `root` (0 if none) and args from index `i` (after the command), in the shapes
 * parseLightCheckpoint takes (the control server parses them again and may say to use node).
 */
static void checkpoint_cmd(const char *root, int i) {
  const char *name = 0, *tv = 0, *v;
  for (; i < argc_; i++) {
    const char *a = argv_[i];
    if (streq(a, "--leave-running") || streq(a, "--compress") || streq(a, "--no-compress")) continue;
    if (a[0] != '-') { if (name) return; name = a; continue; }
    if (streq(a, "--store")) { if (i + 1 >= argc_) return; i++; continue; }
    if (after(a, "--store=")) continue;
    if (streq(a, "--timeout")) { if (i + 1 >= argc_) return; tv = argv_[++i]; continue; }
    if ((v = after(a, "--timeout="))) { tv = v; continue; }
    return;
  }
  if (!name || !*name) return;
  /* The client's wait (cli/control-client.ts request): --timeout S in ms, else 300 s; S as
     digits with at most 3 after a point here (any other number: node). */
  i64 timeout_ms = 300000;
  if (tv) {
    i64 ms = 0;
    int digits = 0, frac = -1;
    for (const char *c = tv; *c; c++) {
      if (*c == '.' && frac < 0) { frac = 0; continue; }
      if (*c < '0' || *c > '9' || frac == 3 || digits > 9) return;
      ms = ms * 10 + (*c - '0');
      digits++;
      if (frac >= 0) frac++;
    }
    for (int f = frac < 0 ? 0 : frac; f < 3; f++) ms *= 10;
    if (!digits || ms <= 0) return;
    timeout_ms = ms;
  }
  char tio[64];
  if (sys(SYS_ioctl, 2, 0x5401 /* TCGETS */, tio) == 0) return; /* a terminal: the progress bar is node's */

  static char sock[4096];
  struct buf s = { sock, 0, sizeof sock, 1 };
  const char *x;
  if (root && *root) adds(&s, root);
  else if ((x = getenv_("XDG_RUNTIME_DIR")) && *x) { adds(&s, x); adds(&s, "/snapvisor"); }
  else {
    i64 uid = sys(SYS_getuid, 0, 0, 0);
    if (uid == 0) adds(&s, "/run/snapvisor");
    else {
      const char *t = getenv_("TMPDIR");
      if (!t || !*t) t = getenv_("TMP");
      if (!t || !*t) t = getenv_("TEMP");
      if (!t || !*t) t = "/tmp";
      u64 tl = slen(t);
      if (tl > 1 && t[tl - 1] == '/') tl--;
      add(&s, t, tl); adds(&s, "/snapvisor-"); addu(&s, (u64)uid);
    }
  }
  adds(&s, "/"); adds(&s, name); adds(&s, ".sock");
  if (!s.ok) return;
  int fd = connect_unix(sock);
  if (fd < 0) return;

  static char cwd[4096], req[65536];
  if (sys(SYS_getcwd, cwd, sizeof cwd, 0) <= 0) return;
  struct buf b = { req, 0, sizeof req, 1 };
  adds(&b, "{\"op\":\"front\",\"argv\":[");
  for (int k = 1; k < argc_; k++) { if (k > 1) adds(&b, ","); addjson(&b, argv_[k]); }
  adds(&b, "],\"cwd\":"); addjson(&b, cwd);
  adds(&b, ",\"sock\":"); addjson(&b, sock);
  adds(&b, ",\"env\":{");
  static const char *const vars[] = { "SNAPVISOR_STORE", "XDG_DATA_HOME", "HOME" };
  int first = 1;
  for (int k = 0; k < 3; k++) {
    if (!(x = getenv_(vars[k]))) continue;
    if (!first) adds(&b, ",");
    first = 0;
    addjson(&b, vars[k]); adds(&b, ":"); addjson(&b, x);
  }
  adds(&b, "}}\n");
  if (!b.ok || send_text(fd, req, b.len) != 0) { sys(SYS_close, fd, 0, 0); return; }

  /* The answer: `{"ok":true,"status":N,"fd":F}\n` then the text to write on fd F; anything else
     that is JSON (`{"fallback":true}`, an older sandbox's `unknown op`) means nothing was done. */
  static char ans[65536];
  u64 len = 0;
  struct { i64 sec, nsec; } t0, t1;
  sys(SYS_clock_gettime, 1 /* CLOCK_MONOTONIC */, &t0, 0);
  for (;;) {
    sys(SYS_clock_gettime, 1, &t1, 0);
    i64 left = timeout_ms - ((t1.sec - t0.sec) * 1000 + (t1.nsec - t0.nsec) / 1000000);
    struct { int fd; short events, revents; } pfd = { fd, 1 /* POLLIN */, 0 };
    i64 p = left > 0 ? sys(SYS_poll, &pfd, 1, left) : 0;
    if (p == -4) continue;
    if (p == 0) {
      /* As the node client says it (this connection closing stops the checkpoint: cli/control.ts). */
      static char msg[8192];
      struct buf m = { msg, 0, sizeof msg, 1 };
      adds(&m, "snapvisor: no answer from the sandbox to 'checkpoint' within ");
      addu(&m, (u64)(timeout_ms + 500) / 1000);
      adds(&m, " s (");
      if (sock[0] != '/') { adds(&m, cwd); adds(&m, "/"); }
      adds(&m, sock); adds(&m, ")\n");
      put(2, msg, m.len);
      die(1);
    }
    if (p < 0) break;
    i64 n = sys(SYS_read, fd, ans + len, sizeof ans - 1 - len);
    if (n == -4) continue;
    if (n <= 0) break;
    len += (u64)n;
  }
  sys(SYS_close, fd, 0, 0);
  ans[len] = 0;
  const char *p = after(ans, "{\"ok\":true,\"status\":");
  if (!p) {
    if (len && ans[0] == '{') return;
    puts2("snapvisor: the sandbox closed the control connection without an answer\n");
    die(1);
  }
  int status = 0, out = 0;
  while (*p >= '0' && *p <= '9') status = status * 10 + (*p++ - '0');
  if ((p = after(p, ",\"fd\":")) != 0) while (*p >= '0' && *p <= '9') out = out * 10 + (*p++ - '0');
  if (!p || (out != 1 && out != 2) || !(p = after(p, "}\n"))) {
    puts2("snapvisor: the sandbox closed the control connection without an answer\n");
    die(1);
  }
  struct { u64 handler, flags, restorer, mask; } ign = { 1 /* SIG_IGN */, 0, 0, 0 };
  sys6(SYS_rt_sigaction, 13 /* SIGPIPE */, (i64)&ign, 0, 8, 0, 0);
  put(out, p, (u64)(ans + len - p));
  die(status);
}

__attribute__((used, noreturn)) void front_main(long *sp) {
  argc_ = (int)sp[0];
  argv_ = (char **)(sp + 1);
  environ_ = argv_ + argc_ + 1;
  /* Traces and the build's code-cache run are node's. */
  for (char **e = environ_; *e; e++)
    if (after(*e, "SNAPVISOR_TRACE_") || after(*e, "SNAPVISOR_WRITE_CODE_CACHE=")) exec_node(0);
  int i = 1;
  const char *root = 0;
  if (i < argc_ && streq(argv_[i], "--root")) { root = i + 1 < argc_ ? argv_[i + 1] : 0; i += 2; }
  else if (i < argc_ && after(argv_[i], "--root=")) { root = argv_[i] + 7; i++; }
  if (argc_ == i + 3 && streq(argv_[i], "pool") && streq(argv_[i + 1], "take") && argv_[i + 2][0] && argv_[i + 2][0] != '-') {
    take(argv_[i + 2], 0, 0);
    fall_back(0);
  }
  if (i < argc_ && streq(argv_[i], "restore")) restore_cmd(i + 1);
  /* checkpoint: any number of --root before it, as parseLightCheckpoint. */
  int k = 1;
  root = 0;
  for (; k < argc_ && !streq(argv_[k], "checkpoint"); k++) {
    const char *v;
    if (streq(argv_[k], "--root")) { if (k + 1 >= argc_) break; root = argv_[++k]; }
    else if ((v = after(argv_[k], "--root="))) root = v;
    else break;
  }
  if (k < argc_ && streq(argv_[k], "checkpoint")) checkpoint_cmd(root, k + 1);
  exec_node(0);
}
