/**
 * inotify (man 7 inotify; issue 10 point 2): C programs compiled at test time run natively and in the
 * sandbox and must print the same events. The first covers inotify_init1 flags, add_watch (the same
 * wd again, IN_MASK_ADD, IN_MASK_CREATE, IN_ONESHOT, IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK and
 * their errors), rm_watch and IN_IGNORED, IN_CREATE/OPEN/MODIFY/CLOSE_WRITE/ACCESS/CLOSE_NOWRITE/
 * ATTRIB/MOVED_FROM/MOVED_TO (cookies)/MOVE_SELF/DELETE/DELETE_SELF, a rename over a watched file,
 * a watched file unlinked while open (IN_DELETE_SELF and IN_IGNORED at its last close; /proc/self/fd
 * reads "PATH (deleted)"), an open
 * file and the working directory renamed (events, /proc/self/fd and getcwd follow),
 * readdir, truncation and utimensat, exec of a watched program, merging of identical events,
 * FIONREAD, a too-small read (EINVAL), poll and epoll readiness and IN_Q_OVERFLOW past 16384 events
 * (wd numbers and cookies are printed in order of appearance). The second checkpoints a sandbox with
 * events queued, watches set and a reader about to block; after the restore the queued events are
 * read, a child's mkdir wakes a read blocked on another instance at the checkpoint, and watches go on.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native } from './helpers.js';

const EVENTS = String.raw`
#define _GNU_SOURCE
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/epoll.h>
#include <poll.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <dirent.h>

static int ifd;
static unsigned cookies[64]; static int ncookies;
static int wdmap[256]; static int nwd;
static int wdname(int wd) { if (wd < 0) return wd; for (int i = 0; i < nwd; i++) if (wdmap[i] == wd) return i + 1; wdmap[nwd++] = wd; return nwd; }
static int cookie(unsigned c) { if (!c) return 0; for (int i = 0; i < ncookies; i++) if (cookies[i] == c) return i + 1; cookies[ncookies++] = c; return ncookies; }
static const struct { unsigned m; const char *n; } NAMES[] = {
  {IN_ACCESS,"ACCESS"},{IN_MODIFY,"MODIFY"},{IN_ATTRIB,"ATTRIB"},{IN_CLOSE_WRITE,"CLOSE_WRITE"},{IN_CLOSE_NOWRITE,"CLOSE_NOWRITE"},
  {IN_OPEN,"OPEN"},{IN_MOVED_FROM,"MOVED_FROM"},{IN_MOVED_TO,"MOVED_TO"},{IN_CREATE,"CREATE"},{IN_DELETE,"DELETE"},
  {IN_DELETE_SELF,"DELETE_SELF"},{IN_MOVE_SELF,"MOVE_SELF"},{IN_UNMOUNT,"UNMOUNT"},{IN_Q_OVERFLOW,"Q_OVERFLOW"},{IN_IGNORED,"IGNORED"},{IN_ISDIR,"ISDIR"}};
static void drain(const char *label) {
  char buf[65536] __attribute__((aligned(8)));
  printf("-- %s\n", label);
  for (;;) {
    ssize_t n = read(ifd, buf, sizeof buf);
    if (n < 0) { if (errno != EAGAIN) printf("read error %s\n", strerror(errno)); break; }
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      printf("wd%d", wdname(e->wd));
      for (unsigned i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) if (e->mask & NAMES[i].m) printf(" %s", NAMES[i].n);
      if (e->cookie) printf(" cookie%d", cookie(e->cookie));
      if (e->len) printf(" '%s' len%u", e->name, e->len);
      printf("\n");
      p += sizeof *e + e->len;
    }
  }
}
#define R(x) do { long _r = (long)(x); printf("%s = %ld%s%s\n", #x, _r < 0 ? -1L : 0L, _r < 0 ? " " : "", _r < 0 ? strerror(errno) : ""); } while (0)

int main(int argc, char **argv) {
  if (chdir(argv[1])) { perror("chdir"); return 1; }
  ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  printf("fd flags nonblock %d cloexec %d\n", !!(fcntl(ifd, F_GETFL) & O_NONBLOCK), !!(fcntl(ifd, F_GETFD) & FD_CLOEXEC));
  R(inotify_init1(IN_NONBLOCK << 1));
  struct stat st; fstat(ifd, &st); printf("fstat mode %o\n", st.st_mode);
  int wdD = inotify_add_watch(ifd, ".", IN_ALL_EVENTS); wdname(wdD);
  printf("same wd again %d\n", inotify_add_watch(ifd, ".", IN_ALL_EVENTS) == wdD);
  char small[8]; errno = 0; ssize_t rr = read(ifd, small, 8); printf("empty read %zd %s\n", rr, strerror(errno));
  int fd = open("a", O_CREAT | O_WRONLY, 0644);
  write(fd, "x", 1); write(fd, "y", 1); close(fd);
  drain("create+write+close");
  int wdA = inotify_add_watch(ifd, "a", IN_ALL_EVENTS); wdname(wdA);
  fd = open("a", O_RDONLY); char b[4]; read(fd, b, 4); read(fd, b, 4); close(fd);
  drain("open+read+close");
  chmod("a", 0600);
  mkdir("sub", 0755);
  drain("chmod+mkdir");
  rename("a", "sub/b");
  int wdS = inotify_add_watch(ifd, "sub", IN_ALL_EVENTS); wdname(wdS);
  rename("sub/b", "c");
  drain("renames");
  truncate("c", 1);
  link("c", "d");
  drain("truncate+link");
  int n = 0; ioctl(ifd, FIONREAD, &n); printf("FIONREAD empty %d\n", n);
  unlink("d");
  ioctl(ifd, FIONREAD, &n); printf("FIONREAD %d\n", n);
  errno = 0; rr = read(ifd, small, 8); printf("small read %zd %s\n", rr, strerror(errno));
  unlink("c");
  drain("unlinks");
  // poll/epoll readiness
  struct pollfd pfd = { ifd, POLLIN, 0 };
  printf("poll empty %d\n", poll(&pfd, 1, 0));
  close(open("e", O_CREAT | O_RDONLY, 0644));
  int pr = poll(&pfd, 1, 0); printf("poll ready %d revents %x\n", pr, pfd.revents);
  int ep = epoll_create1(0); struct epoll_event ev = { .events = EPOLLIN }; epoll_ctl(ep, EPOLL_CTL_ADD, ifd, &ev);
  printf("epoll %d\n", epoll_wait(ep, &ev, 1, 0));
  drain("touch e");
  // flags and errors
  R(inotify_add_watch(ifd, "e", IN_ALL_EVENTS | IN_ONLYDIR));
  R(inotify_add_watch(ifd, "e", 0));
  R(inotify_add_watch(ifd, "e", IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE));
  R(inotify_add_watch(ifd, "nope", IN_MODIFY));
  R(inotify_add_watch(ifd, ".", IN_MODIFY | IN_MASK_CREATE));
  R(inotify_add_watch(0, ".", IN_MODIFY));
  R(inotify_add_watch(ep, ".", IN_MODIFY));
  R(inotify_rm_watch(ifd, 999));
  symlink("e", "lnk");
  int wdL = inotify_add_watch(ifd, "lnk", IN_ATTRIB | IN_DONT_FOLLOW); wdname(wdL);
  int wdE = inotify_add_watch(ifd, "lnk", IN_ATTRIB | IN_ONESHOT); wdname(wdE);
  drain("symlink");
  chmod("e", 0600); chmod("e", 0644);
  R(inotify_rm_watch(ifd, wdE));
  inotify_add_watch(ifd, "e", IN_OPEN);
  inotify_add_watch(ifd, "e", IN_CLOSE | IN_MASK_ADD);
  close(open("e", O_RDONLY));
  R(inotify_rm_watch(ifd, wdS));
  drain("oneshot, mask_add, rm_watch");
  DIR *d = opendir("."); while (readdir(d)); closedir(d);
  drain("readdir");
  mkdir("sub/x", 0700);
  int wdX = inotify_add_watch(ifd, "sub/x", IN_ALL_EVENTS); wdname(wdX);
  rmdir("sub/x"); rename("sub", "sub2"); rmdir("sub2");
  drain("rmdir");
  // rename over an existing watched file
  close(open("f", O_CREAT | O_WRONLY, 0644)); close(open("g", O_CREAT | O_WRONLY, 0644));
  int wdG = inotify_add_watch(ifd, "g", IN_ALL_EVENTS); wdname(wdG);
  drain("f g");
  rename("f", "g");
  drain("rename over");
  // IN_EXCL_UNLINK
  inotify_rm_watch(ifd, wdD);
  drain("rm dir watch");
  int wdD2 = inotify_add_watch(ifd, ".", IN_ALL_EVENTS | IN_EXCL_UNLINK); wdname(wdD2);
  fd = open("h", O_CREAT | O_RDWR, 0644); unlink("h"); write(fd, "z", 1); close(fd);
  drain("excl_unlink");
  // a watched file unlinked while open: its watch lasts until the last close
  fd = open("k", O_CREAT | O_RDWR, 0644);
  int wdK = inotify_add_watch(ifd, "k", IN_ALL_EVENTS); wdname(wdK);
  unlink("k"); write(fd, "z", 1);
  { char l[4096], pp[64]; snprintf(pp, sizeof pp, "/proc/self/fd/%d", fd); ssize_t n = readlink(pp, l, sizeof l - 1); l[n < 0 ? 0 : n] = 0;
    printf("unlinked fd reads as deleted %d\n", n > 10 && strcmp(l + n - 10, " (deleted)") == 0); }
  drain("unlinked while open");
  close(fd);
  drain("last close");
  // an open file renamed: events through it name the new path; so do /proc/self/fd and getcwd
  fd = open("r1", O_CREAT | O_RDWR, 0644);
  mkdir("cwd1", 0755); if (chdir("cwd1")) return 1;
  if (rename("../r1", "../r2") || rename("../cwd1", "../cwd2")) return 1;
  write(fd, "z", 1);
  char link[4096], cwd[4096]; char proc[64]; snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t ln = readlink(proc, link, sizeof link - 1); link[ln < 0 ? 0 : ln] = 0;
  printf("fd names r2 %d, cwd is cwd2 %d\n", strstr(link, "/r2") != 0, strstr(getcwd(cwd, sizeof cwd), "/cwd2") != 0);
  if (chdir("..")) return 1;
  close(fd);
  drain("renamed while open");
  // open with O_TRUNC, ftruncate, utimes, write to O_APPEND
  fd = open("g", O_WRONLY | O_TRUNC); ftruncate(fd, 5); close(fd);
  struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}}; utimensat(AT_FDCWD, "g", ts, 0);
  struct timespec ts2[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}}; utimensat(AT_FDCWD, "g", ts2, 0);
  utimensat(AT_FDCWD, "g", NULL, 0);
  drain("trunc utimes");
  // exec
  pid_t p = fork();
  if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
  waitpid(p, 0, 0);
  int wdT = inotify_add_watch(ifd, "prog", IN_ALL_EVENTS); wdname(wdT);
  p = fork();
  if (p == 0) { execl("./prog", "prog", "--exit", (char *)0); _exit(127); }
  waitpid(p, 0, 0);
  drain("exec");
  // overflow
  for (int i = 0; i < 8300; i++) close(open("e", O_RDONLY));
  ioctl(ifd, FIONREAD, &n); printf("FIONREAD full %d\n", n);
  char big[65536]; long total = 0, events = 0; int overflow = 0;
  for (;;) {
    ssize_t k = read(ifd, big, sizeof big);
    if (k <= 0) break;
    for (char *q = big; q < big + k;) { struct inotify_event *e = (struct inotify_event *)q; events++; if (e->mask & IN_Q_OVERFLOW) overflow = e->wd; q += sizeof *e + e->len; }
    total += k;
  }
  printf("overflow: %ld events, last overflow wd %d\n", events, overflow);
  return 0;
}
`;

const CHECKPOINT = String.raw`
#define _GNU_SOURCE
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <sys/stat.h>

static int ifd, tell = -1;
static void show(const char *label, int nonblock) {
  char buf[4096] __attribute__((aligned(8)));
  int n = 0; ioctl(ifd, FIONREAD, &n);
  /* The child may go on once the count is taken (it is 0 then, natively too). */
  if (tell >= 0) { if (write(tell, "w", 1) != 1) _exit(1); tell = -1; }
  printf("-- %s (FIONREAD %d)\n", label, n);
  if (!n && nonblock) return;
  ssize_t k = read(ifd, buf, sizeof buf);
  if (k < 0) { printf("read: %s\n", strerror(errno)); return; }
  for (char *p = buf; p < buf + k;) {
    struct inotify_event *e = (struct inotify_event *)p;
    printf("wd%d mask %x cookie %s '%s'\n", e->wd, e->mask, e->cookie ? "set" : "0", e->len ? e->name : "");
    p += sizeof *e + e->len;
  }
}

int main(int argc, char **argv) {
  if (chdir(argv[1])) return 1;
  ifd = inotify_init1(IN_CLOEXEC);
  int wd = inotify_add_watch(ifd, ".", IN_ALL_EVENTS);
  close(open("before", O_CREAT | O_WRONLY, 0644));
  int wf = inotify_add_watch(ifd, "before", IN_ATTRIB | IN_MOVE_SELF | IN_ONESHOT);
  rename("before", "renamed");
  printf("wds %d %d\n", wd, wf);
  int watching[2];
  if (pipe(watching)) return 1;
  pid_t child = fork();
  if (child == 0) {
    /* Once the parent has counted what its blocking read will find (nothing yet) and the file
       argv[2] exists (made by the test after the checkpoint; natively, before the run). */
    char c;
    struct timespec ts = { 0, 20000000 };
    if (read(watching[0], &c, 1) != 1) _exit(1);
    while (access(argv[2], F_OK)) nanosleep(&ts, 0);
    mkdir("from-child", 0755);
    _exit(0);
  }
  int queued = ifd;
  ifd = inotify_init1(0);
  inotify_add_watch(ifd, ".", IN_CREATE);
  printf("ready\n"); fflush(stdout);
  tell = watching[1];
  show("blocking read woken by the child", 0);
  close(ifd);
  ifd = queued;
  show("queued before the checkpoint", 0);
  waitpid(child, 0, 0);
  show("rest", 1);
  chmod("renamed", 0600);
  int wd2 = inotify_add_watch(ifd, "renamed", IN_ATTRIB);
  printf("new wd %d\n", wd2);
  chmod("renamed", 0644);
  inotify_rm_watch(ifd, wd);
  show("after", 1);
  return 0;
}
`;

/** A scratch directory holding a copy of /bin/true named prog (the exec part watches it). */
function scratch(prefix: string): string {
  const d = freshDir(prefix);
  fs.copyFileSync('/bin/true', path.join(d, 'prog'));
  fs.chmodSync(path.join(d, 'prog'), 0o755);
  return d;
}

describe('inotify', () => {
  it('events, flags and errors as natively', async () => {
    const prog = compileStatic('inotify-events', EVENTS);
    const want = await native([prog, scratch('inotify-native')], { timeoutMs: 30_000 });
    expect(want.stderr.toString()).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('wd2 MOVE_SELF');
    expect(lines).toContain('unlinked fd reads as deleted 1');
    expect(lines).toContain('fd names r2 1, cwd is cwd2 1');
    expect(lines[lines.length - 1]).toBe('overflow: 16385 events, last overflow wd -1');
    // ~6.5 s quiet, 51 s at load ~11: limits that fit, a hang still fails.
    await expectSandboxOutput([prog, scratch('inotify-sandbox')], lines, 120_000);
  }, 180_000);

  it('watches, queued events and a blocked reader survive checkpoint/restore', async () => {
    const prog = compileStatic('inotify-checkpoint', CHECKPOINT);
    // The child makes its directory once `go` exists (outside the watched one): natively at once,
    // in the sandbox after the checkpoint, so the parent's read is blocked when it is taken.
    const goNative = path.join(freshDir('inotify-cp-go'), 'go'), go = path.join(freshDir('inotify-cp-go'), 'go');
    fs.writeFileSync(goNative, '');
    const want = await native([prog, freshDir('inotify-cp-native'), goNative], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain("wd1 mask 40000100 cookie 0 'from-child'");
    await expectCheckpointRestoreMatches('inotify-cp', [prog, freshDir('inotify-cp-sandbox'), go], lines, () => fs.writeFileSync(go, ''));
  }, 150_000);
});
