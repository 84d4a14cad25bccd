/**
 * AF_UNIX datagram and seqpacket sockets by name, and credentials and files passed on every unix
 * socket type (src/net/unix.ts, src/net/cmsg.ts; man 7 unix): bind to a path, an abstract name
 * or an autobound one, sendto/recvfrom with addresses, connect to a path, ENOENT/ECONNREFUSED/
 * EPROTOTYPE/EPERM as Linux, a bound socket found by its inode after unlink and rebind, the
 * max_dgram_qlen limit and a blocked sender; seqpacket listen/accept with message boundaries,
 * truncation and end of file; SO_PASSCRED/SCM_CREDENTIALS (explicit, default, truncated,
 * autobind), SO_PEERCRED for pairs, listeners, clients and accepted sockets, SCM_RIGHTS on
 * datagram and seqpacket sockets (peek, truncation, files dropped by a plain recv), EACCES without
 * write permission on a socket file. Each against
 * the same program natively, and queued messages with their files and credentials, a listener
 * with a pending connection and a stream's writers across checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native, PY_WAIT_FOR_GATE } from './helpers.js';

const NAMED = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static socklen_t mk(struct sockaddr_un *a, const char *p, int abstract) {
  memset(a, 0, sizeof *a); a->sun_family = AF_UNIX;
  if (abstract) { memcpy(a->sun_path + 1, p, strlen(p)); return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(p); }
  strcpy(a->sun_path, p); return sizeof *a;
}
static void show(const char *what, struct sockaddr_un *a, socklen_t l) {
  char n[120] = ""; int k = 0;
  for (int i = 0; i < (int)l - 2 && i < 108; i++) { char c = a->sun_path[i]; if (c == 0) n[k++] = '@'; else if (c >= 32 && c < 127) n[k++] = c; else n[k++] = '?'; }
  char *dash = strrchr(n, '-'); if (dash && n[0] == '@') *dash = 0; /* the abstract names end in -PID */
  n[k] = 0;
  SAY("%s: len %d '%s'\n", what, (int)l, n);
}
static void name(const char *what, int fd, int peer) {
  struct sockaddr_un a; socklen_t l = sizeof a; memset(&a, 0, sizeof a);
  long r = R(peer ? getpeername(fd, (struct sockaddr *)&a, &l) : getsockname(fd, (struct sockaddr *)&a, &l));
  if (r < 0) { SAY("%s: %ld\n", what, r); return; }
  if (l == 8 && a.sun_path[0] == 0) { int hex = 1; for (int i = 1; i < 6; i++) if (!strchr("0123456789abcdef", a.sun_path[i])) hex = 0; SAY("%s: autobound %d\n", what, hex); return; }
  show(what, &a, l);
}
static long rcvfrom(const char *what, int fd, int len, int flags) {
  char b[256]; struct sockaddr_un a; socklen_t l = sizeof a; memset(&a, 0, sizeof a);
  struct iovec io = { b, len }; struct msghdr m = { &a, l, &io, 1, 0, 0, 0 };
  long n = R(recvmsg(fd, &m, flags));
  if (n < 0) { SAY("%s: %ld\n", what, n); return n; }
  SAY("%s: %ld '%.*s' flags %x ", what, n, (int)(n < len ? n : len), b, m.msg_flags);
  if (m.msg_namelen == 8 && a.sun_path[0] == 0) SAY("from autobound\n"); else show("from", &a, m.msg_namelen);
  return n;
}
int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1]) != 0) { perror("chdir"); return 2; }
  signal(SIGPIPE, SIG_IGN);
  char abs_dgram[64], abs_seq[64];
  snprintf(abs_dgram, sizeof abs_dgram, "snapvisor-abs-dgram-%08d", getpid());
  snprintf(abs_seq, sizeof abs_seq, "snapvisor-abs-seq-%08d", getpid());
  struct sockaddr_un a, b2; socklen_t al;
  /* ---- datagram by path ---- */
  int d1 = socket(AF_UNIX, SOCK_DGRAM, 0);
  SAY("bind d1: %ld\n", R(bind(d1, (struct sockaddr *)&a, mk(&a, "d1.sock", 0))));
  name("d1 name", d1, 0); name("d1 peer", d1, 1);
  SAY("bind d1 again: %ld\n", R(bind(d1, (struct sockaddr *)&a, mk(&a, "other.sock", 0))));
  int x = socket(AF_UNIX, SOCK_DGRAM, 0);
  SAY("bind existing: %ld\n", R(bind(x, (struct sockaddr *)&a, mk(&a, "d1.sock", 0))));
  int c = socket(AF_UNIX, SOCK_DGRAM, 0);
  name("c unbound name", c, 0);
  SAY("send unconnected: %ld\n", R(send(c, "x", 1, 0)));
  al = mk(&a, "d1.sock", 0);
  SAY("sendto d1: %ld\n", R(sendto(c, "hello", 5, 0, (struct sockaddr *)&a, al)));
  name("c name after sendto", c, 0);
  rcvfrom("d1 recv", d1, 100, 0);
  SAY("sendto missing: %ld\n", R(sendto(c, "x", 1, 0, (struct sockaddr *)&b2, mk(&b2, "missing.sock", 0))));
  close(open("plain", O_CREAT | O_WRONLY, 0644));
  SAY("sendto plain file: %ld\n", R(sendto(c, "x", 1, 0, (struct sockaddr *)&b2, mk(&b2, "plain", 0))));
  SAY("bind c: %ld\n", R(bind(c, (struct sockaddr *)&b2, mk(&b2, "c.sock", 0))));
  sendto(c, "named", 5, 0, (struct sockaddr *)&a, al);
  rcvfrom("d1 recv from named", d1, 100, 0);
  sendto(c, "truncated message", 17, 0, (struct sockaddr *)&a, al);
  rcvfrom("d1 recv truncated", d1, 4, 0);
  SAY("connect c to d1: %ld\n", R(connect(c, (struct sockaddr *)&a, al)));
  name("c peer", c, 1);
  SAY("send connected: %ld\n", R(send(c, "conn", 4, 0)));
  rcvfrom("d1 recv conn", d1, 100, 0);
  SAY("d1 connect to c: %ld\n", R(connect(d1, (struct sockaddr *)&b2, mk(&b2, "c.sock", 0))));
  int e = socket(AF_UNIX, SOCK_DGRAM, 0);
  SAY("e sendto d1 (connected to c): %ld\n", R(sendto(e, "x", 1, 0, (struct sockaddr *)&a, al)));
  SAY("e sendto c (connected to d1): %ld\n", R(sendto(e, "x", 1, 0, (struct sockaddr *)&b2, mk(&b2, "c.sock", 0))));
  SAY("connect missing: %ld\n", R(connect(e, (struct sockaddr *)&b2, mk(&b2, "missing.sock", 0))));
  SAY("connect plain: %ld\n", R(connect(e, (struct sockaddr *)&b2, mk(&b2, "plain", 0))));
  int st = socket(AF_UNIX, SOCK_STREAM, 0); bind(st, (struct sockaddr *)&b2, mk(&b2, "st.sock", 0)); listen(st, 1);
  SAY("dgram connect to stream: %ld\n", R(connect(e, (struct sockaddr *)&b2, mk(&b2, "st.sock", 0))));
  SAY("dgram sendto stream: %ld\n", R(sendto(e, "x", 1, 0, (struct sockaddr *)&b2, mk(&b2, "st.sock", 0))));
  SAY("listen dgram: %ld\n", R(listen(d1, 1)));
  SAY("accept dgram: %ld\n", R(accept(d1, 0, 0)));
  SAY("shutdown unconnected dgram: %ld\n", R(shutdown(e, SHUT_RDWR)));
  int st2 = socket(AF_UNIX, SOCK_STREAM, 0);
  SAY("shutdown unconnected stream: %ld\n", R(shutdown(st2, SHUT_RDWR)));
  /* the connected peer goes away */
  SAY("unlink d1.sock: %ld\n", R(unlink("d1.sock")));
  SAY("send to unlinked but bound: %ld\n", R(send(c, "still", 5, 0)));
  rcvfrom("d1 recv after unlink", d1, 100, 0);
  int d1b = socket(AF_UNIX, SOCK_DGRAM, 0);
  SAY("rebind d1.sock: %ld\n", R(bind(d1b, (struct sockaddr *)&a, al)));
  close(d1);
  SAY("send after peer closed: %ld\n", R(send(c, "x", 1, 0)));
  SAY("send again: %ld\n", R(send(c, "x", 1, 0)));
  name("c peer after", c, 1);
  SAY("sendto new d1: %ld\n", R(sendto(c, "new", 3, 0, (struct sockaddr *)&a, al)));
  rcvfrom("d1b recv", d1b, 100, MSG_DONTWAIT);
  /* autobind and abstract */
  int ab = socket(AF_UNIX, SOCK_DGRAM, 0);
  SAY("autobind: %ld\n", R(bind(ab, (struct sockaddr *)&a, 2)));
  name("autobound name", ab, 0);
  int abs1 = socket(AF_UNIX, SOCK_DGRAM, 0);
  socklen_t absl = mk(&b2, abs_dgram, 1);
  SAY("bind abstract: %ld\n", R(bind(abs1, (struct sockaddr *)&b2, absl)));
  name("abstract name", abs1, 0);
  SAY("autobound sendto abstract: %ld\n", R(sendto(ab, "abs", 3, 0, (struct sockaddr *)&b2, absl)));
  rcvfrom("abstract recv", abs1, 100, 0);
  SAY("sendto abstract missing: %ld\n", R(sendto(ab, "x", 1, 0, (struct sockaddr *)&b2, mk(&b2, "snapvisor-nothing-here", 1))));
  SAY("bind abstract in use by stream? %ld\n", R(bind(st2, (struct sockaddr *)&b2, absl)));
  /* queue limit for an unconnected receiver (max_dgram_qlen), nonblocking */
  int q = socket(AF_UNIX, SOCK_DGRAM, 0); bind(q, (struct sockaddr *)&b2, mk(&b2, "q.sock", 0));
  int qs = socket(AF_UNIX, SOCK_DGRAM, 0); int n = 0;
  while (n < 100000 && sendto(qs, "m", 1, MSG_DONTWAIT, (struct sockaddr *)&b2, mk(&b2, "q.sock", 0)) == 1) n++;
  SAY("queued before EAGAIN: %d %d\n", n, errno);
  struct pollfd p = { qs, POLLOUT, 0 }; poll(&p, 1, 0); SAY("sender poll %x\n", p.revents);
  /* blocking sendto to a full queue: woken by a receive in a child */
  pid_t k = fork();
  if (k == 0) { usleep(200000); char bb[8]; recv(q, bb, 8, 0); _exit(0); }
  SAY("blocking sendto when full: %ld\n", R(sendto(qs, "m", 1, 0, (struct sockaddr *)&b2, mk(&b2, "q.sock", 0))));
  waitpid(k, 0, 0);

  /* ---- seqpacket by path ---- */
  int ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  socklen_t sl = mk(&a, "sp.sock", 0);
  SAY("seqpacket bind: %ld\n", R(bind(ls, (struct sockaddr *)&a, sl)));
  SAY("seqpacket listen: %ld\n", R(listen(ls, 4)));
  int cl = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  SAY("send before connect: %ld\n", R(send(cl, "x", 1, 0)));
  SAY("recv before connect: %ld\n", R(recv(cl, a.sun_path, 1, MSG_DONTWAIT)));
  { struct pollfd pp = { ls, POLLIN, 0 }; poll(&pp, 1, 0); SAY("listener poll idle %x\n", pp.revents); }
  SAY("connect: %ld\n", R(connect(cl, (struct sockaddr *)&a, sl)));
  { struct pollfd pp = { ls, POLLIN, 0 }; poll(&pp, 1, 0); SAY("listener poll pending %x\n", pp.revents); }
  SAY("connect again: %ld\n", R(connect(cl, (struct sockaddr *)&a, sl)));
  struct sockaddr_un pa; socklen_t pl = sizeof pa;
  int sv = accept(ls, (struct sockaddr *)&pa, &pl);
  SAY("accept: %d addrlen %d\n", sv >= 0, (int)pl);
  name("client name", cl, 0); name("client peer", cl, 1); name("server name", sv, 0); name("server peer", sv, 1);
  int ty; socklen_t tl = 4; getsockopt(sv, SOL_SOCKET, SO_TYPE, &ty, &tl); SAY("accepted type %d\n", ty);
  send(cl, "one", 3, 0); send(cl, "second", 6, 0); send(cl, "", 0, 0); send(cl, "third", 5, 0);
  rcvfrom("seq recv 2", sv, 2, 0);
  rcvfrom("seq recv", sv, 100, 0);
  rcvfrom("seq recv empty", sv, 100, 0);
  rcvfrom("seq peek", sv, 100, MSG_PEEK);
  rcvfrom("seq recv", sv, 100, 0);
  SAY("sendto ignored address: %ld\n", R(sendto(sv, "back", 4, 0, (struct sockaddr *)&b2, mk(&b2, "missing.sock", 0))));
  rcvfrom("client recv", cl, 100, 0);
  fcntl(ls, F_SETFL, O_NONBLOCK); SAY("nonblocking accept: %ld\n", R(accept(ls, 0, 0))); fcntl(ls, F_SETFL, 0);
  SAY("seq connect missing: %ld\n", R(connect(socket(AF_UNIX, SOCK_SEQPACKET, 0), (struct sockaddr *)&b2, mk(&b2, "missing.sock", 0))));
  SAY("seq connect to stream: %ld\n", R(connect(socket(AF_UNIX, SOCK_SEQPACKET, 0), (struct sockaddr *)&b2, mk(&b2, "st.sock", 0))));
  SAY("stream connect to seqpacket: %ld\n", R(connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&a, sl)));
  int nl = socket(AF_UNIX, SOCK_SEQPACKET, 0); bind(nl, (struct sockaddr *)&b2, mk(&b2, "nl.sock", 0));
  SAY("connect to non-listening: %ld\n", R(connect(socket(AF_UNIX, SOCK_SEQPACKET, 0), (struct sockaddr *)&b2, mk(&b2, "nl.sock", 0))));
  SAY("shutdown WR: %ld\n", R(shutdown(cl, SHUT_WR)));
  rcvfrom("server recv after client SHUT_WR", sv, 100, 0);
  SAY("client send after SHUT_WR: %ld\n", R(send(cl, "x", 1, 0)));
  send(sv, "last", 4, 0);
  close(sv);
  { struct pollfd pp = { cl, POLLIN | POLLOUT | POLLRDHUP, 0 }; poll(&pp, 1, 0); SAY("client poll after server close %x\n", pp.revents); }
  rcvfrom("client recv queued", cl, 100, 0);
  rcvfrom("client recv eof", cl, 100, 0);
  /* abstract seqpacket, blocking accept woken by a child's connect */
  int al2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
  socklen_t asl = mk(&b2, abs_seq, 1);
  bind(al2, (struct sockaddr *)&b2, asl); listen(al2, 1);
  k = fork();
  if (k == 0) { usleep(200000); int z = socket(AF_UNIX, SOCK_SEQPACKET, 0); connect(z, (struct sockaddr *)&b2, asl); send(z, "from child", 10, 0); close(z); _exit(0); }
  int acc = accept(al2, 0, 0);
  rcvfrom("abstract seq recv", acc, 100, 0);
  rcvfrom("abstract seq eof", acc, 100, 0);
  name("abstract accepted name", acc, 0);
  waitpid(k, 0, 0);
  return 0;
}
`;

const CREDS = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/stat.h>
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static long R(long v) { return v < 0 ? -errno : v; }
static pid_t me;
static int nfds(void) { int n = 0; for (int fd = 0; fd < 256; fd++) if (fcntl(fd, F_GETFD) >= 0) n++; return n; }
static const char *who(pid_t p) { static char b[32]; if (p == me) return "parent"; if (p == 0) return "0"; if (p > 0) { snprintf(b, sizeof b, "other"); return b; } return "?"; }
static void peercred(const char *what, int fd) {
  struct ucred c; socklen_t l = sizeof c; memset(&c, 0x55, sizeof c);
  long r = R(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l));
  if (r < 0) { SAY("%s SO_PEERCRED: %ld\n", what, r); return; }
  SAY("%s SO_PEERCRED: len %d pid %s uid %d gid %d\n", what, (int)l, who(c.pid), (int)c.uid, (int)c.gid);
}
static pid_t child;
/* receive one message, print data, cmsgs, flags; read from any passed fd */
static void rcv(const char *what, int fd, size_t ctlroom, int flags) {
  char data[64] = ""; char ctl[512]; memset(ctl, 0, sizeof ctl);
  struct iovec io = { data, sizeof data - 1 };
  struct msghdr m = { 0 }; m.msg_iov = &io; m.msg_iovlen = 1; m.msg_control = ctlroom ? ctl : NULL; m.msg_controllen = ctlroom;
  long n = R(recvmsg(fd, &m, flags));
  if (n < 0) { SAY("%s: %ld\n", what, n); return; }
  SAY("%s: %ld '%.*s' flags %x controllen %d\n", what, n, (int)n, data, m.msg_flags, (int)m.msg_controllen);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      struct ucred u; memcpy(&u, CMSG_DATA(c), sizeof u);
      SAY("  SCM_CREDENTIALS len %d pid %s uid %d gid %d\n", (int)c->cmsg_len, u.pid == child ? "child" : who(u.pid), (int)u.uid, (int)u.gid);
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int k = (c->cmsg_len - CMSG_LEN(0)) / 4;
      SAY("  SCM_RIGHTS len %d fds %d:", (int)c->cmsg_len, k);
      for (int i = 0; i < k; i++) { int f; memcpy(&f, CMSG_DATA(c) + i * 4, 4); char b[32] = ""; long r = R(read(f, b, sizeof b - 1)); SAY(" read %ld '%s'", r, r > 0 ? b : ""); close(f); }
      SAY("\n");
    } else SAY("  cmsg %d/%d len %d\n", c->cmsg_level, c->cmsg_type, (int)c->cmsg_len);
  }
}
static long sendfds(int s, const char *msg, int *fds, int n, struct ucred *cred, struct sockaddr_un *to, socklen_t tl) {
  char ctl[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))]; memset(ctl, 0, sizeof ctl);
  struct iovec io = { (void *)msg, strlen(msg) };
  struct msghdr m = { 0 }; m.msg_iov = &io; m.msg_iovlen = 1; m.msg_name = to; m.msg_namelen = tl;
  m.msg_control = ctl; m.msg_controllen = 0;
  struct cmsghdr *c = (struct cmsghdr *)ctl;
  if (n) { c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(n * sizeof(int)); memcpy(CMSG_DATA(c), fds, n * sizeof(int)); m.msg_controllen += CMSG_SPACE(n * sizeof(int)); c = (struct cmsghdr *)(ctl + m.msg_controllen); }
  if (cred) { c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_CREDENTIALS; c->cmsg_len = CMSG_LEN(sizeof *cred); memcpy(CMSG_DATA(c), cred, sizeof *cred); m.msg_controllen += CMSG_SPACE(sizeof *cred); }
  if (!m.msg_controllen) m.msg_control = NULL;
  return R(sendmsg(s, &m, MSG_NOSIGNAL));
}
static int piped(const char *text) { int p[2]; pipe(p); write(p[1], text, strlen(text)); close(p[1]); return p[0]; }
int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1]) != 0) { perror("chdir"); return 2; }
  me = getpid();
  signal(SIGPIPE, SIG_IGN);
  int one = 1;
  int types[] = { SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM };
  const char *names[] = { "dgram", "seqpacket", "stream" };
  for (int i = 0; i < 3; i++) {
    int sv[2]; socketpair(AF_UNIX, types[i], 0, sv);
    SAY("== %s pair\n", names[i]);
    peercred("pair", sv[0]);
    int v = 0; socklen_t vl = 4; getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &vl); SAY("SO_PASSCRED default %d\n", v);
    setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
    v = 0; getsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, &vl); SAY("SO_PASSCRED set %d\n", v);
    child = fork();
    if (child == 0) { send(sv[0], "from child", 10, 0); _exit(0); }
    waitpid(child, 0, 0);
    rcv("passcred recv", sv[1], 512, 0);
    send(sv[0], "own", 3, 0);
    rcv("passcred recv, no room", sv[1], 0, 0);
    send(sv[0], "small", 5, 0);
    rcv("passcred recv, 20 bytes of room", sv[1], 20, 0);
    struct ucred c = { getpid(), getuid(), getgid() };
    SAY("explicit creds: %ld\n", sendfds(sv[0], "explicit", 0, 0, &c, 0, 0));
    rcv("explicit recv", sv[1], 512, 0);
    struct ucred bad = { getpid(), (uid_t)-1, getgid() };
    SAY("uid -1: %ld\n", sendfds(sv[0], "x", 0, 0, &bad, 0, 0));
    struct ucred gone = { 999999, getuid(), getgid() };
    SAY("no such pid: %ld\n", sendfds(sv[0], "x", 0, 0, &gone, 0, 0));
    int one2 = 0; setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one2, sizeof one2);
    int p1 = piped("first pipe"), p2 = piped("second pipe");
    int fds[2] = { p1, p2 };
    int before = nfds();
    SAY("send 2 fds: %ld\n", sendfds(sv[0], "fds", fds, 2, 0, 0, 0));
    close(p1); close(p2);
    if (types[i] != SOCK_STREAM) rcv("peek with fds", sv[1], 512, MSG_PEEK);
    rcv("recv with fds", sv[1], 512, 0);
    SAY("fds balanced: %d\n", nfds() == before - 2);
    p1 = piped("a"); p2 = piped("b"); fds[0] = p1; fds[1] = p2;
    sendfds(sv[0], "trunc", fds, 2, 0, 0, 0); close(p1); close(p2);
    rcv("recv, room for one fd", sv[1], CMSG_LEN(4), 0);
    p1 = piped("c"); fds[0] = p1;
    sendfds(sv[0], "drop", fds, 1, 0, 0, 0); close(p1);
    char b[16]; SAY("plain recv drops fds: %ld, fds balanced %d\n", R(recv(sv[1], b, sizeof b, 0)), nfds() == before - 2);
    fds[0] = 999;
    SAY("bad fd: %ld\n", sendfds(sv[0], "x", fds, 1, 0, 0, 0));
    close(sv[0]); close(sv[1]);
  }
  /* by path */
  SAY("== by path\n");
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX; strcpy(a.sun_path, "creds.sock");
  int d = socket(AF_UNIX, SOCK_DGRAM, 0); bind(d, (struct sockaddr *)&a, sizeof a);
  peercred("unconnected dgram", d);
  setsockopt(d, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  int p1 = piped("by path");
  int fds[1] = { p1 };
  SAY("sendto with fd: %ld\n", sendfds(s, "to path", fds, 1, 0, &a, sizeof a)); close(p1);
  rcv("recv by path", d, 512, 0);
  struct sockaddr_un ga; socklen_t gl = sizeof ga; getsockname(s, (struct sockaddr *)&ga, &gl); SAY("sender name len %d\n", (int)gl);
  setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  sendto(s, "passcred sender", 15, 0, (struct sockaddr *)&a, sizeof a);
  gl = sizeof ga; getsockname(s, (struct sockaddr *)&ga, &gl); SAY("passcred sender autobound: len %d abstract %d\n", (int)gl, ga.sun_path[0] == 0);
  rcv("recv from passcred sender", d, 512, 0);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0); strcpy(a.sun_path, "creds-st.sock"); bind(ls, (struct sockaddr *)&a, sizeof a);
  peercred("bound, not listening", ls);
  listen(ls, 1);
  peercred("listener", ls);
  int go[2]; pipe(go); // the client writes only once the accepted end has SO_PASSCRED (else it races the setsockopt)
  child = fork();
  if (child == 0) {
    int c = socket(AF_UNIX, SOCK_STREAM, 0); connect(c, (struct sockaddr *)&a, sizeof a);
    struct ucred u; socklen_t ul = sizeof u; getsockopt(c, SOL_SOCKET, SO_PEERCRED, &u, &ul);
    char msg[64]; snprintf(msg, sizeof msg, "client sees parent %d", u.pid == getppid());
    char b; read(go[0], &b, 1);
    write(c, msg, strlen(msg)); _exit(0);
  }
  int acc = accept(ls, 0, 0);
  struct ucred u; socklen_t ul = sizeof u; getsockopt(acc, SOL_SOCKET, SO_PEERCRED, &u, &ul);
  SAY("accepted SO_PEERCRED pid is child %d\n", u.pid == child);
  setsockopt(acc, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  write(go[1], "g", 1);
  waitpid(child, 0, 0);
  rcv("stream recv", acc, 512, 0);
  int sp[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
  setsockopt(sp[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
  child = fork();
  if (child == 0) { write(sp[0], "child", 5); _exit(0); }
  waitpid(child, 0, 0);
  write(sp[0], "parent", 6);
  rcv("stream: child's bytes", sp[1], 512, 0);
  rcv("stream: parent's bytes", sp[1], 512, 0);
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  peercred("tcp", tcp);
  /* connecting and sending need write permission on the socket file */
  umask(022); chmod(".", 0711); /* nobody may search the working directory (relative names walk only it) */
  struct sockaddr_un pa; memset(&pa, 0, sizeof pa); pa.sun_family = AF_UNIX; strcpy(pa.sun_path, "perm.sock");
  int ps = socket(AF_UNIX, SOCK_DGRAM, 0); bind(ps, (struct sockaddr *)&pa, sizeof pa);
  struct sockaddr_un pl; memset(&pl, 0, sizeof pl); pl.sun_family = AF_UNIX; strcpy(pl.sun_path, "perm-st.sock");
  int pls = socket(AF_UNIX, SOCK_STREAM, 0); bind(pls, (struct sockaddr *)&pl, sizeof pl); listen(pls, 1);
  child = fork();
  if (child == 0) {
    SAY("setuid nobody: %ld\n", R(setgid(65534) || setuid(65534)));
    SAY("nobody sendto 0755 socket: %ld\n", R(sendto(socket(AF_UNIX, SOCK_DGRAM, 0), "x", 1, 0, (struct sockaddr *)&pa, sizeof pa)));
    SAY("nobody connect 0755 socket: %ld\n", R(connect(socket(AF_UNIX, SOCK_STREAM, 0), (struct sockaddr *)&pl, sizeof pl)));
    _exit(0);
  }
  waitpid(child, 0, 0);
  chmod("perm.sock", 0777);
  child = fork();
  if (child == 0) {
    setgid(65534); setuid(65534);
    SAY("nobody sendto 0777 socket: %ld\n", R(sendto(socket(AF_UNIX, SOCK_DGRAM, 0), "x", 1, 0, (struct sockaddr *)&pa, sizeof pa)));
    _exit(0);
  }
  waitpid(child, 0, 0);
  return 0;
}
`;

/** Queued datagrams with a passed pipe and credentials, an abstract name, seqpacket records and a pending connection, a stream written by two processes: checkpointed at `ready`. */
const CHECKPOINTED = String.raw`
import os, socket, struct, sys, time
os.chdir(sys.argv[1])
SOL, PASS = socket.SOL_SOCKET, socket.SO_PASSCRED
ABS = "\0snapvisor-cp-%d" % os.getpid()
me = os.getpid()
def anc(items, child=None):
    out = []
    for level, kind, data in items:
        if kind == socket.SCM_CREDENTIALS:
            pid, uid, gid = struct.unpack("iII", data)
            out.append("creds " + ("me" if pid == me else "child" if pid == child else "other"))
        elif kind == socket.SCM_RIGHTS:
            fds = struct.unpack("%di" % (len(data) // 4), data)
            out.append("rights " + " ".join(os.read(fd, 100).decode() for fd in fds))
    return out
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind("d.sock"); d.setsockopt(SOL, PASS, 1)
r, w = os.pipe(); os.write(w, b"through a passed pipe"); os.close(w)
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect("d.sock")
socket.send_fds(c, [b"queued datagram"], [r]); os.close(r)
ab = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ab.bind(ABS)
c.sendto(b"to abstract", ABS)
l = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); l.bind("l.sock"); l.listen(4)
k1 = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); k1.connect("l.sock")
a1, _ = l.accept()
k1.send(b"record one"); k1.send(b"record two")
k2 = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); k2.connect("l.sock"); k2.send(b"before accept")
s1, s2 = socket.socketpair(); s2.setsockopt(SOL, PASS, 1)
child = os.fork()
if child == 0:
    s1.send(b"child bytes"); os._exit(0)
os.waitpid(child, 0)
s1.send(b"parent bytes")
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
data, items, flags, addr = d.recvmsg(100, 256)
print("datagram", data, anc(items), flags, flush=True)
print("abstract", ab.recvfrom(100), flush=True)
print("seqpacket", a1.recv(100), a1.recv(3), flush=True)
a2, _ = l.accept(); print("accepted after restore", a2.recv(100), flush=True)
k3 = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); k3.connect("l.sock"); k3.send(b"new connection")
a3, _ = l.accept(); print("new", a3.recv(100), a3.getsockname(), k3.getpeername(), flush=True)
e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); e.sendto(b"new sender", "d.sock")
data, items, flags, addr = d.recvmsg(100, 256); print("datagram", data, anc(items), flush=True)
print("peer", c.getpeername(), flush=True)
data, items, _, _ = s2.recvmsg(100, 256); print("stream", data, anc(items, child), flush=True)
data, items, _, _ = s2.recvmsg(100, 256); print("stream", data, anc(items, child), flush=True)
k1.close(); print("eof", a1.recv(100), flush=True)
try: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect("l.sock")
except OSError as x: print("stream to seqpacket", x.errno, flush=True)
`;

describe('unix datagram and seqpacket sockets by name; credentials and passed files', () => {
  it('datagram and seqpacket sockets by path, abstract and autobound names answer as natively', async () => {
    const exe = compileStatic('unix-named', NAMED);
    const want = await native([exe, freshDir('unix-named-native')], { timeoutMs: 20_000 });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe, freshDir('unix-named-sandbox')], want.stdout.toString());
  }, 60_000);

  it('SO_PASSCRED, SCM_CREDENTIALS, SO_PEERCRED and SCM_RIGHTS on every unix type answer as natively', async () => {
    const exe = compileStatic('unix-creds', CREDS);
    const want = await native([exe, freshDir('unix-creds-native')], { timeoutMs: 20_000 });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe, freshDir('unix-creds-sandbox')], want.stdout.toString());
  }, 60_000);

  it('keep named sockets, queued messages with their files and credentials, and pending connections across checkpoint/restore', async () => {
    const gate = checkpointGate('unix-named-cp');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('unix-cp-native'), gate.native], { timeoutMs: 30_000 });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('unix-named-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('unix-cp-sandbox'), gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 150_000);
});
