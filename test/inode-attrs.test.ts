/**
 * fchmod/fchown of files without a filesystem node (man 2 fchmod, fs/attr.c notify_change;
 * issue 10): a pipe's pipefs inode (shared by both ends) and a socket's sockfs inode (bound or
 * not, unix or inet) change for their owner or CAP_FOWNER/CAP_CHOWN, EPERM otherwise, also
 * through fchownat(AT_EMPTY_PATH) and chmod of /proc/self/fd/N; anon_inodefs files (eventfd,
 * epoll, timerfd, signalfd, inotify) and pidfds give EOPNOTSUPP to anyone and share one inode
 * owned by root; fchmod/fchown of an O_PATH fd are EBADF; a FIFO opened by path is its own
 * inode; chown drops set-user-ID from anything but a directory; reopening a pipe through
 * /proc/self/fd/N checks its mode. One C program prints the same
 * lines natively and in the sandbox, and the changed modes and owners survive a
 * checkpoint/restore.
 */
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native, orphanStubs, PY_WAIT_FOR_GATE, restoreChecked, snapvisor } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>

static void report(const char *what, long r) { if (r < 0) printf("%-36s %s\n", what, strerrorname_np(errno)); else printf("%-36s %ld\n", what, r); fflush(stdout); }
static void st(const char *what, int fd) {
  struct stat s;
  if (fstat(fd, &s) < 0) { printf("%-36s fstat %s\n", what, strerrorname_np(errno)); return; }
  printf("%-36s mode=%o uid=%d gid=%d\n", what, s.st_mode, s.st_uid, s.st_gid); fflush(stdout);
}
static ino_t ino(int fd) { struct stat s; fstat(fd, &s); return s.st_ino; }

int main(int argc, char **argv) {
  int p[2], sv[2]; char path[64];
  pipe(p);
  report("pipe fchmod 02755", fchmod(p[0], 02755)); st("pipe write end", p[1]);
  report("pipe fchown 1000 1001", fchown(p[1], 1000, 1001)); st("pipe read end", p[0]);
  report("pipe fchmod mode with type bits", fchmod(p[0], 0170644)); st("pipe", p[0]);
  snprintf(path, sizeof path, "/proc/self/fd/%d", p[0]);
  report("chmod /proc/self/fd/N of a pipe", chmod(path, 0604)); st("pipe", p[1]);
  report("fchownat pipe AT_EMPTY_PATH", syscall(SYS_fchownat, p[0], "", -1, 1002, AT_EMPTY_PATH)); st("pipe", p[0]);
  report("utimensat pipe", syscall(SYS_utimensat, p[0], NULL, NULL, 0));
  socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  report("socketpair fchmod 04755", fchmod(sv[0], 04755)); st("socketpair end 0", sv[0]); st("socketpair end 1", sv[1]);
  report("socketpair fchown -1 -1", fchown(sv[0], -1, -1)); st("socketpair end 0", sv[0]);
  int u = socket(AF_UNIX, SOCK_DGRAM, 0);
  report("unbound unix fchmod 0640", fchmod(u, 0640)); st("unbound unix", u);
  struct sockaddr_un a = { AF_UNIX }; snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "inode-attrs-%d", getpid());
  report("bind abstract", bind(u, (struct sockaddr *)&a, sizeof a)); st("bound unix", u);
  report("bound unix fchown 1000 -1", fchown(u, 1000, -1)); st("bound unix", u);
  int i4 = socket(AF_INET, SOCK_DGRAM, 0);
  report("inet fchmod 0600", fchmod(i4, 0600)); st("inet", i4);
  int e = eventfd(0, 0), ep = epoll_create1(0), tf = timerfd_create(CLOCK_MONOTONIC, 0), in = inotify_init1(0);
  sigset_t m; sigemptyset(&m); int sf = signalfd(-1, &m, 0);
  int pf = syscall(SYS_pidfd_open, getpid(), 0);
  int anon[] = { e, ep, tf, in, sf, pf }; const char *names[] = { "eventfd", "epoll", "timerfd", "inotify", "signalfd", "pidfd" };
  for (int i = 0; i < 6; i++) {
    char w[64];
    snprintf(w, sizeof w, "%s fchmod", names[i]); report(w, fchmod(anon[i], 0644));
    snprintf(w, sizeof w, "%s fchown", names[i]); report(w, fchown(anon[i], 0, 0));
    snprintf(w, sizeof w, "%s utimensat", names[i]); report(w, syscall(SYS_utimensat, anon[i], NULL, NULL, 0));
  }
  st("eventfd", e); st("epoll", ep); st("timerfd", tf); st("inotify", in); st("signalfd", sf);
  printf("%-36s %s\n", "anon files share an inode", ino(e) == ino(ep) && ino(ep) == ino(tf) && ino(tf) == ino(in) && ino(in) == ino(sf) ? "yes" : "no");
  snprintf(path, sizeof path, "/proc/self/fd/%d", e);
  report("chmod /proc/self/fd/N of an eventfd", chmod(path, 0644));
  int op = open(".", O_PATH);
  report("O_PATH fchmod", fchmod(op, 0755));
  report("O_PATH fchown", fchown(op, -1, -1));
  report("O_PATH fchownat AT_EMPTY_PATH", syscall(SYS_fchownat, op, "", -1, -1, AT_EMPTY_PATH));
  unlink("fifo"); unlink("file");
  report("mkfifo", mkfifo("fifo", 0644));
  int ff = open("fifo", O_RDONLY | O_NONBLOCK);
  st("fifo fd", ff);
  printf("%-36s %s\n", "fifo fd is the fifo's inode", ({ struct stat s; stat("fifo", &s); s.st_ino == ino(ff); }) ? "yes" : "no");
  report("fifo fchmod 0600", fchmod(ff, 0600));
  struct stat fs; stat("fifo", &fs); printf("%-36s mode=%o\n", "fifo by path", fs.st_mode);
  int f = open("file", O_CREAT | O_RDWR, 0644);
  fchmod(f, 06777); report("file fchown -1 -1", fchown(f, -1, -1)); st("file", f);
  fchmod(f, 06767); report("file fchown 0 -1", fchown(f, 0, -1)); st("file", f);
  int q[2]; pipe(q);
  pid_t c = fork();
  if (c == 0) {
    setresgid(1000, 1000, 1000); setresuid(1000, 1000, 1000);
    report("uid 1000: fchmod root's pipe", fchmod(q[0], 0666));
    report("uid 1000: fchmod its own pipe", fchmod(p[0], 0660));
    report("uid 1000: fchown its pipe to root", fchown(p[0], 0, -1));
    report("uid 1000: fchmod root's socket", fchmod(sv[1], 0666));
    report("uid 1000: fchmod its bound socket", fchmod(u, 0600));
    report("uid 1000: fchmod an eventfd", fchmod(e, 0666));
    int q2[2]; pipe(q2); st("uid 1000: its new pipe", q2[0]);
    fchmod(q2[0], 0200); snprintf(path, sizeof path, "/proc/self/fd/%d", q2[0]);
    report("uid 1000: reopen its 0200 pipe to read", open(path, O_RDONLY));
    report("uid 1000: reopen it to write", open(path, O_WRONLY) < 0 ? -1 : 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", q[0]);
    report("uid 1000: reopen root's pipe to read", open(path, O_RDONLY));
    int s2 = socket(AF_UNIX, SOCK_STREAM, 0); st("uid 1000: its new socket", s2);
    st("uid 1000: a new eventfd", eventfd(0, 0));
    fflush(stdout); _exit(0);
  }
  waitpid(c, NULL, 0);
  printf("ready\n"); fflush(stdout);
  /* Then waits for the file argv[1] (test/helpers.ts checkpointGate: made by the test after the checkpoint). */
  struct timespec gate = { 0, 20000000 };
  while (argc > 1 && access(argv[1], F_OK)) nanosleep(&gate, 0);
  st("after: pipe", p[0]); st("after: pipe write end", p[1]);
  st("after: socketpair end 0", sv[0]); st("after: bound unix", u); st("after: inet", i4); st("after: eventfd", e);
  report("after: pipe fchmod 0640", fchmod(p[1], 0640)); st("after: pipe", p[0]);
  report("after: socket fchown 1001 1001", fchown(sv[1], 1001, 1001)); st("after: socketpair end 1", sv[1]);
  return 0;
}
`;

describe('fchmod and fchown of pipes, sockets and anon inodes', () => {
  it('give the same results as Linux, and the changes survive a checkpoint/restore', async () => {
    const bin = compileStatic('inode-attrs', SOURCE);
    // Natively in a scratch directory (it makes a FIFO and a file); in the sandbox they go to its own upper layer.
    const gate = checkpointGate('inode-attrs');
    const want = await native([bin, gate.native], { timeoutMs: 20_000, cwd: freshDir('inode-attrs') });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('pipe fchmod 02755                    0');
    expect(lines).toContain('eventfd fchmod                       EOPNOTSUPP');
    await expectSandboxOutput([bin, gate.native], lines);
    await expectCheckpointRestoreMatches('inode-attrs', [bin, gate.sandbox], lines, gate.open);
    // With --network=host the inet socket is a host socket: its sockfs inode is the sandbox's record too (the host socket is not changed).
    const host = await snapvisor(['run', '--network=host', '--', bin, gate.native], { timeoutMs: 30_000 });
    expect(host.stderr).toBe('');
    expect(host.stdout.toString().split('\n').filter(Boolean)).toEqual(lines);
    expect(host.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 200_000);

  it('the mode fchmod gives a --network=host socket survives a checkpoint/restore (the socket reopened: --tcp-close-on-checkpoint)', async () => {
    const script = [
      'import os, socket, stat, sys, time',
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))",
      'os.fchmod(s.fileno(), 0o640)',
      "print('before', oct(stat.S_IMODE(os.fstat(s.fileno()).st_mode)), flush=True)",
      "print('ready', flush=True)",
      PY_WAIT_FOR_GATE,
      "print('after', oct(stat.S_IMODE(os.fstat(s.fileno()).st_mode)), flush=True)",
    ].join('\n');
    const gate = checkpointGate('hostinet-attrs');
    const c = await checkpointAtReady('hostinet-attrs', ['/usr/bin/python3', '-c', script, gate.sandbox], 90_000, ['--network=host', '--tcp-close-on-checkpoint']);
    expect(c.before).toEqual(['before 0o640', 'ready']);
    gate.open();
    const r = await restoreChecked(c);
    expect(r.stdout.toString()).toBe('after 0o640\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 150_000);
});
