/**
 * Extended attributes (issue 10 point 2): one C program runs natively (in a scratch directory on
 * the host's filesystem) and in the sandbox (the upper layer, which answers as tmpfs) and must print
 * the same lines: get/set/list/remove and their l*, f* variants, XATTR_CREATE/REPLACE, ENODATA,
 * ERANGE (small buffers, empty and 256-byte names), E2BIG, EOPNOTSUPP for other namespaces and for
 * /proc, EINVAL for an empty name after the prefix, the errno of symlinks, FIFOs, pipes, sockets
 * (and their system.sockprotoname), eventfds and /dev/null, and trusted./security./user. as an
 * unprivileged user sees them (lists are printed sorted: filesystems list in their own order).
 * Then attributes set before a checkpoint are read and replaced after the restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <sys/xattr.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>

static void report(const char *what, long r) { if (r < 0) printf("%-28s %s\n", what, strerrorname_np(errno)); else printf("%-28s %ld\n", what, r); fflush(stdout); }
static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }
/* A name list, sorted (filesystems list in their own order). */
static void list(const char *what, ssize_t n, char *buf) {
  if (n < 0) { report(what, n); return; }
  char *names[64]; int k = 0;
  for (char *p = buf; p < buf + n; p += strlen(p) + 1) names[k++] = p;
  qsort(names, k, sizeof *names, cmp);
  printf("%-28s %zd [", what, n);
  for (int i = 0; i < k; i++) printf("%s%s", i ? " " : "", names[i]);
  printf("]\n"); fflush(stdout);
}

static void checks(int privileged) {
  char buf[4096], lbuf[4096];
  report("get user.a", getxattr("f", "user.a", buf, sizeof buf));
  report("get user.e", getxattr("f", "user.e", buf, sizeof buf));
  report("get trusted.a", getxattr("f", "trusted.a", buf, sizeof buf));
  report("get security.a", getxattr("f", "security.a", buf, sizeof buf));
  list("list f", listxattr("f", lbuf, sizeof lbuf), lbuf);
  report("set user.n", setxattr("f", "user.n", "1", 1, 0));
  report("set trusted.b", setxattr("f", "trusted.b", "1", 1, 0));
  report("set security.b", setxattr("f", "security.b", "1", 1, 0));
  report("remove user.a", removexattr("f", "user.a"));
  report("set user on sticky dir", setxattr("sticky", "user.s", "1", 1, 0));
  report("get user on own file", getxattr("mine", "user.m", buf, sizeof buf));
  (void)privileged;
}

int main(int argc, char **argv) {
  if (chdir(argv[1])) return 1;
  chmod(".", 0755); /* the unprivileged part works in here */
  char buf[4096], lbuf[4096];
  close(open("f", O_CREAT | O_WRONLY, 0644)); mkdir("d", 0755); symlink("f", "l"); mkfifo("fifo", 0644);
  if (argc > 2) {
    /* checkpoint guest: goes on once the gate (argv[2]) exists, made after the checkpoint */
    setxattr("f", "user.kept", "across", 6, 0); setxattr("d", "trusted.dir", "t", 1, 0);
    printf("ready\n"); fflush(stdout);
    struct timespec ts = { 0, 20000000 };
    while (access(argv[2], F_OK)) nanosleep(&ts, 0);
    report("get user.kept", getxattr("f", "user.kept", buf, sizeof buf)); printf("value %.6s\n", buf);
    report("get trusted.dir", getxattr("d", "trusted.dir", buf, sizeof buf));
    list("list f", listxattr("f", lbuf, sizeof lbuf), lbuf);
    report("replace", setxattr("f", "user.kept", "new", 3, XATTR_REPLACE));
    report("get new", getxattr("f", "user.kept", buf, sizeof buf));
    return 0;
  }
  report("set user.a", setxattr("f", "user.a", "1", 1, 0));
  report("get user.a", getxattr("f", "user.a", buf, sizeof buf));
  report("get size 0", getxattr("f", "user.a", 0, 0));
  report("set user.long", setxattr("f", "user.long", "0123456789", 10, 0));
  report("get too small", getxattr("f", "user.long", buf, 4));
  report("set dir", setxattr("d", "user.a", "1", 1, 0));
  report("set trusted", setxattr("f", "trusted.a", "2", 1, 0));
  report("set security", setxattr("f", "security.a", "3", 1, 0));
  report("set system", setxattr("f", "system.a", "3", 1, 0));
  report("set other ns", setxattr("f", "other.a", "3", 1, 0));
  report("set no prefix", setxattr("f", "a", "3", 1, 0));
  report("set empty suffix", setxattr("f", "user.", "3", 1, 0));
  report("set empty name", setxattr("f", "", "3", 1, 0));
  char longname[300]; strcpy(longname, "user."); memset(longname + 5, 'x', 251); longname[256] = 0;
  report("set name 256", setxattr("f", longname, "3", 1, 0));
  longname[255] = 0;
  report("set name 255", setxattr("f", longname, "3", 1, 0));
  report("remove name 255", removexattr("f", longname));
  static char big[65537];
  report("set 65537 bytes", setxattr("f", "user.big", big, sizeof big, 0));
  report("set 1000 bytes", setxattr("f", "user.big", big, 1000, 0));
  report("get 1000 bytes", getxattr("f", "user.big", big, sizeof big));
  report("set create existing", setxattr("f", "user.a", "1", 1, XATTR_CREATE));
  report("set replace missing", setxattr("f", "user.zz", "1", 1, XATTR_REPLACE));
  report("set replace existing", setxattr("f", "user.a", "22", 2, XATTR_REPLACE));
  report("set bad flags", setxattr("f", "user.zz", "1", 1, 4));
  report("set empty value", setxattr("f", "user.e", "", 0, 0));
  report("get empty value", getxattr("f", "user.e", buf, sizeof buf));
  list("list f", listxattr("f", lbuf, sizeof lbuf), lbuf);
  report("list size 0", listxattr("f", 0, 0));
  report("list too small", listxattr("f", lbuf, 5));
  report("lset symlink", lsetxattr("l", "user.a", "1", 1, 0));
  report("lget symlink", lgetxattr("l", "user.a", buf, sizeof buf));
  list("llist symlink", llistxattr("l", lbuf, sizeof lbuf), lbuf);
  report("get via symlink", getxattr("l", "user.a", buf, sizeof buf));
  report("get missing", getxattr("f", "user.nope", buf, sizeof buf));
  report("remove", removexattr("f", "user.big"));
  report("remove missing", removexattr("f", "user.big"));
  report("remove trusted", removexattr("f", "trusted.a"));
  report("lremove symlink", lremovexattr("l", "user.a"));
  report("missing file", getxattr("nofile", "user.a", buf, sizeof buf));
  int fd = open("f", O_RDONLY);
  report("fget", fgetxattr(fd, "user.a", buf, sizeof buf));
  report("fset on O_RDONLY", fsetxattr(fd, "user.f", "1", 1, 0));
  list("flist", flistxattr(fd, lbuf, sizeof lbuf), lbuf);
  report("fremove", fremovexattr(fd, "user.f"));
  int pfd = open("f", O_PATH);
  report("fget O_PATH", fgetxattr(pfd, "user.a", buf, sizeof buf));
  report("fget bad fd", fgetxattr(999, "user.a", buf, sizeof buf));
  int p[2]; pipe(p);
  report("pipe get", fgetxattr(p[0], "user.a", buf, sizeof buf));
  report("pipe set", fsetxattr(p[0], "user.a", "1", 1, 0));
  report("pipe set trusted", fsetxattr(p[0], "trusted.a", "1", 1, 0));
  list("pipe list", flistxattr(p[0], lbuf, sizeof lbuf), lbuf);
  report("pipe remove", fremovexattr(p[0], "user.a"));
  int s = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_UNIX, SOCK_STREAM, 0), ud = socket(AF_UNIX, SOCK_DGRAM, 0);
  report("socket get", fgetxattr(s, "user.a", buf, sizeof buf));
  report("socket set", fsetxattr(s, "user.a", "1", 1, 0));
  list("socket list", flistxattr(s, lbuf, sizeof lbuf), lbuf);
  memset(buf, 0, sizeof buf);
  report("tcp sockprotoname", fgetxattr(s, "system.sockprotoname", buf, sizeof buf)); printf("  %s\n", buf);
  report("unix sockprotoname", fgetxattr(u, "system.sockprotoname", buf, sizeof buf)); printf("  %s\n", buf);
  report("unix dgram sockprotoname", fgetxattr(ud, "system.sockprotoname", buf, sizeof buf)); printf("  %s\n", buf);
  int e = eventfd(0, 0);
  report("eventfd get", fgetxattr(e, "user.a", buf, sizeof buf));
  report("eventfd set", fsetxattr(e, "user.a", "1", 1, 0));
  list("eventfd list", flistxattr(e, lbuf, sizeof lbuf), lbuf);
  report("fifo set", setxattr("fifo", "user.a", "1", 1, 0));
  report("fifo get", getxattr("fifo", "user.a", buf, sizeof buf));
  report("proc get", getxattr("/proc/self/status", "user.a", buf, sizeof buf));
  report("proc set", setxattr("/proc/self/status", "user.a", "1", 1, 0));
  list("proc list", listxattr("/proc/self/status", lbuf, sizeof lbuf), lbuf);
  report("dev null get", getxattr("/dev/null", "user.a", buf, sizeof buf));
  report("dev null set", setxattr("/dev/null", "user.a", "1", 1, 0));
  /* as nobody */
  chmod("f", 0644);
  mkdir("sticky", 01777);
  close(open("mine", O_CREAT | O_WRONLY, 0666)); chown("mine", 65534, 65534); setxattr("mine", "user.m", "m", 1, 0);
  chmod("mine", 0);
  pid_t c = fork();
  if (c == 0) { setgid(65534); setuid(65534); checks(0); _exit(0); }
  waitpid(c, 0, 0);
  return 0;
}
`;

describe('extended attributes', () => {
  it('answer as natively', async () => {
    const prog = compileStatic('xattr', SOURCE);
    const want = await native([prog, freshDir('xattr-native')], { timeoutMs: 30_000 });
    expect(want.stderr.toString()).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('set trusted.b                EPERM');
    await expectSandboxOutput([prog, freshDir('xattr-sandbox')], lines);
  }, 60_000);

  it('survive checkpoint/restore', async () => {
    const prog = compileStatic('xattr', SOURCE);
    const gate = checkpointGate('xattr');
    const want = await native([prog, freshDir('xattr-cp-native'), gate.native], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('xattr-cp', [prog, freshDir('xattr-cp-sandbox'), gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 120_000);
});
