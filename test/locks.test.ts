/**
 * Advisory locks as Linux keeps them (src/vfs/locks.ts, src/syscalls/locks.ts): POSIX record locks
 * between processes (conflicts, F_GETLK, split and merge, release on close of any fd and on exit,
 * F_SETLKW waits, EDEADLK), OFD locks, flock (conversion, sharing across fork, EINTR), Linux's errno
 * for bad arguments; against the same program natively, and held and awaited across a checkpoint.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native, PY_WAIT_FOR_GATE } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/wait.h>
static int setlk(int fd, int cmd, short type, short whence, long start, long len) {
  struct flock fl = { .l_type = type, .l_whence = whence, .l_start = start, .l_len = len };
  return fcntl(fd, cmd, &fl) < 0 ? errno : 0;
}
static void getlk(const char *what, int fd, int cmd, short type, long start, long len, pid_t expect) {
  struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
  if (fcntl(fd, cmd, &fl) < 0) { printf("%s: error %d\n", what, errno); return; }
  if (fl.l_type == F_UNLCK) printf("%s: unlocked\n", what);
  else printf("%s: type %d start %ld len %ld pid %s\n", what, fl.l_type, (long)fl.l_start, (long)fl.l_len,
              fl.l_pid == expect ? "expected" : fl.l_pid == -1 ? "-1" : "other");
  fflush(stdout);
}
#define SAY(...) do { printf(__VA_ARGS__); fflush(stdout); } while (0)
static void on_alarm(int s) { (void)s; }
int main(int argc, char **argv) {
  if (chdir(argv[1])) return 1;
  int fd = open("lk", O_RDWR | O_CREAT | O_TRUNC, 0644);
  char buf[100] = {0}; write(fd, buf, 100);
  pid_t me = getpid();
  int sync1[2], sync2[2]; pipe(sync1); pipe(sync2);
  char c;
  SAY("wrlck 10+10: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 10, 10));
  SAY("rdlck 30+10: %d\n", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 30, 10));
  SAY("own getlk sees nothing: "); getlk("", fd, F_GETLK, F_WRLCK, 0, 100, me);
  pid_t ch = fork();
  if (ch == 0) {
    getlk("child getlk 0+100", fd, F_GETLK, F_WRLCK, 0, 100, me);
    getlk("child getlk 25+100", fd, F_GETLK, F_WRLCK, 25, 100, me);
    getlk("child getlk rd 30+5", fd, F_GETLK, F_RDLCK, 30, 5, me);
    SAY("child wrlck 15+1: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 15, 1));
    SAY("child rdlck 35+1: %d\n", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 35, 1));
    SAY("child wrlck 50+10: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 50, 10));
    write(sync1[1], "a", 1); read(sync2[0], &c, 1);
    getlk("child after split 12+2", fd, F_GETLK, F_WRLCK, 12, 2, me);
    getlk("child after split 11+1", fd, F_GETLK, F_WRLCK, 11, 1, me);
    getlk("child after split 14+100", fd, F_GETLK, F_WRLCK, 14, 100, me);
    write(sync1[1], "b", 1); read(sync2[0], &c, 1);
    getlk("child after parent closed another fd", fd, F_GETLK, F_WRLCK, 0, 0, me);
    /* blocking wait */
    write(sync1[1], "c", 1); read(sync2[0], &c, 1);
    SAY("child setlkw 0+1 (parent holds it): %d\n", setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1));
    SAY("child got it after parent unlocked\n");
    SAY("child unlock all: %d\n", setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));
    /* deadlock: child holds 1+1, waits for 0+1 that the parent holds */
    SAY("child wrlck 1+1: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1));
    write(sync1[1], "d", 1); read(sync2[0], &c, 1);
    SAY("child setlkw 0+1: %d\n", setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1));
    write(sync1[1], "e", 1); read(sync2[0], &c, 1);
    /* exit with a lock held: it goes */
    SAY("child wrlck 90+5: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 90, 5));
    _exit(0);
  }
  read(sync1[0], &c, 1);
  SAY("parent unlock 12+2: %d\n", setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 12, 2));
  write(sync2[1], "A", 1); read(sync1[0], &c, 1);
  int other = open("lk", O_RDONLY); close(other);
  write(sync2[1], "B", 1); read(sync1[0], &c, 1);
  SAY("parent wrlck 0+1: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
  write(sync2[1], "C", 1);
  usleep(300000);
  SAY("parent unlocks 0+1\n"); if (setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1)) SAY("unlock failed\n");
  read(sync1[0], &c, 1); /* child took 0+1, released, holds 1+1 */
  SAY("parent wrlck 0+1 again: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
  write(sync2[1], "D", 1);
  usleep(300000); /* the child now waits for 0+1 */
  SAY("parent setlkw 1+1 would deadlock: %s\n", setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 1, 1) == EDEADLK ? "EDEADLK" : "no");
  SAY("parent unlocks 0+1\n"); if (setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1)) SAY("unlock failed\n");
  read(sync1[0], &c, 1);
  write(sync2[1], "E", 1);
  int st; waitpid(ch, &st, 0);
  SAY("after the child exited, wrlck 90+5: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 90, 5));
  /* OFD locks */
  int o1 = open("lk", O_RDWR), o2 = open("lk", O_RDWR);
  SAY("ofd wrlck o1 0+10: %d\n", setlk(o1, F_OFD_SETLK, F_WRLCK, SEEK_SET, 200, 10));
  SAY("ofd wrlck o2 205+1: %d\n", setlk(o2, F_OFD_SETLK, F_WRLCK, SEEK_SET, 205, 1));
  SAY("posix wrlck 205+1 against own ofd: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 205, 1));
  getlk("ofd getlk o2", o2, F_OFD_GETLK, F_WRLCK, 200, 1, me);
  getlk("posix getlk", fd, F_GETLK, F_WRLCK, 200, 1, me);
  { struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 5 }; SAY("ofd with l_pid: %d\n", fcntl(o1, F_OFD_SETLK, &fl) < 0 ? errno : 0); }
  close(o1);
  SAY("after closing o1, ofd wrlck o2 205+1: %d\n", setlk(o2, F_OFD_SETLK, F_WRLCK, SEEK_SET, 205, 1));
  close(o2);
  /* flock */
  int f1 = open("lk", O_RDONLY), f2 = open("lk", O_RDONLY);
  SAY("flock f1 EX: %d\n", flock(f1, LOCK_EX) < 0 ? errno : 0);
  SAY("flock f2 EX|NB: %d\n", flock(f2, LOCK_EX | LOCK_NB) < 0 ? errno : 0);
  SAY("flock f2 SH|NB: %d\n", flock(f2, LOCK_SH | LOCK_NB) < 0 ? errno : 0);
  pid_t fc = fork();
  if (fc == 0) { SAY("child flock inherited f1 EX|NB: %d\n", flock(f1, LOCK_EX | LOCK_NB) < 0 ? errno : 0); _exit(0); }
  waitpid(fc, &st, 0);
  SAY("flock f1 SH (convert): %d\n", flock(f1, LOCK_SH) < 0 ? errno : 0);
  SAY("flock f2 SH|NB: %d\n", flock(f2, LOCK_SH | LOCK_NB) < 0 ? errno : 0);
  SAY("flock f1 EX|NB (convert, f2 shares): %d\n", flock(f1, LOCK_EX | LOCK_NB) < 0 ? errno : 0);
  SAY("flock f2 EX|NB (f1 lost its lock converting): %d\n", flock(f2, LOCK_EX | LOCK_NB) < 0 ? errno : 0);
  SAY("flock f2 UN: %d\n", flock(f2, LOCK_UN) < 0 ? errno : 0);
  SAY("flock bad op: %d\n", flock(f1, 3) < 0 ? errno : 0);
  SAY("flock bad fd: %d\n", flock(999, LOCK_SH) < 0 ? errno : 0);
  SAY("posix lock unaffected by flock: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 0));
  /* blocking flock interrupted by a signal without SA_RESTART */
  SAY("flock f1 EX: %d\n", flock(f1, LOCK_EX) < 0 ? errno : 0);
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_alarm; sigaction(SIGALRM, &sa, 0);
  alarm(1);
  SAY("flock f2 EX interrupted: %d\n", flock(f2, LOCK_EX) < 0 ? errno : 0);
  /* argument errors */
  SAY("bad type: %d\n", setlk(fd, F_SETLK, 7, SEEK_SET, 0, 1));
  SAY("bad whence: %d\n", setlk(fd, F_SETLK, F_WRLCK, 5, 0, 1));
  SAY("negative start: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, -5, 1));
  SAY("negative len before 0: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 2, -5));
  SAY("negative len: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 20, -5));
  SAY("overflow: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0x7fffffffffffff00L, 0x1000));
  SAY("seek_end: %d\n", setlk(fd, F_SETLK, F_WRLCK, SEEK_END, -10, 5));
  SAY("getlk unlck: %d\n", setlk(fd, F_GETLK, F_UNLCK, SEEK_SET, 0, 1));
  int ro = open("lk", O_RDONLY), wo = open("lk", O_WRONLY);
  SAY("wrlck on O_RDONLY: %d\n", setlk(ro, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
  SAY("rdlck on O_WRONLY: %d\n", setlk(wo, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
  SAY("bad pointer: %d\n", fcntl(fd, F_SETLK, (void *)8) < 0 ? errno : 0);
  return 0;
}
`;

/** A parent holds a record lock and a flock; its child waits for both across the checkpoint. */
const CHECKPOINTED = String.raw`
import fcntl, os, sys, time
os.chdir(sys.argv[1])
f = open("lk", "w+"); f.write("x" * 100); f.flush()
fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)
g = open("lk2", "w"); fcntl.flock(g, fcntl.LOCK_EX)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    g.close()  # the inherited description would keep the parent's flock alive
    f2 = open("lk", "r+"); g2 = open("lk2", "w")
    try: fcntl.lockf(f2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0); print("child: record lock taken?!", flush=True)
    except OSError as e: print("child: record lock busy", e.errno, flush=True)
    try: fcntl.flock(g2, fcntl.LOCK_EX | fcntl.LOCK_NB); print("child: flock taken?!", flush=True)
    except OSError as e: print("child: flock busy", e.errno, flush=True)
    os.write(w, b"x")
    fcntl.lockf(f2, fcntl.LOCK_EX, 10, 0)
    print("child: record lock taken after the parent released it", flush=True)
    fcntl.flock(g2, fcntl.LOCK_EX)
    print("child: flock taken after the parent closed its file", flush=True)
    os._exit(0)
os.read(r, 1)
time.sleep(0.3)
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
print("parent: releasing", flush=True)
fcntl.lockf(f, fcntl.LOCK_UN, 10, 0)
time.sleep(0.3)
g.close()
os.waitpid(pid, 0)
print("done", flush=True)
`;

describe('advisory locks', () => {
  it('fcntl record locks, OFD locks and flock answer as natively', async () => {
    const exe = compileStatic('locks', SOURCE);
    const want = await native([exe, freshDir('locks-native')], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe, freshDir('locks-sandbox')], want.stdout.toString());
  }, 70_000);

  it('held locks and a waiting F_SETLKW survive checkpoint/restore', async () => {
    const gate = checkpointGate('locks');
    const want = await native(['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('locks-cp-native'), gate.native], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('locks-cp', ['/usr/bin/python3', '-c', CHECKPOINTED, freshDir('locks-cp-sandbox'), gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 120_000);
});
