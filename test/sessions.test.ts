/**
 * Process groups, sessions, the child subreaper and the parent-death signal (man 2 setpgid, setsid,
 * getsid; man 2 PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG), against the same program natively and
 * across a checkpoint: the subreaper mark and the pdeath signal live in the thread group's record.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, native, PY_WAIT_FOR_GATE } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#define SHOW(what, call) do { long r_ = (call); printf("%s %s %d\n", what, r_ < 0 ? "-1" : "ok", r_ < 0 ? errno : 0); fflush(stdout); } while (0)
static volatile sig_atomic_t got;
static void on_usr1(int s) { got = s; }
int main(int argc, char **argv) {
  if (argc > 1) { pause(); return 0; } /* the exec'd child: waits to be killed */
  pid_t me = getpid();
  int v = -1;
  SHOW("get subreaper", prctl(PR_GET_CHILD_SUBREAPER, &v)); printf("subreaper %d\n", v);
  SHOW("set subreaper", prctl(PR_SET_CHILD_SUBREAPER, 1));
  SHOW("get subreaper", prctl(PR_GET_CHILD_SUBREAPER, &v)); printf("subreaper %d\n", v);
  /* A grandchild orphaned by its parent is adopted by us, the subreaper, and gets its pdeath signal. */
  int fds[2]; if (pipe(fds)) return 1;
  pid_t mid = fork();
  if (mid == 0) {
    pid_t g = fork();
    if (g == 0) {
      signal(SIGUSR1, on_usr1);
      SHOW("set pdeathsig", prctl(PR_SET_PDEATHSIG, SIGUSR1));
      int s = -1; prctl(PR_GET_PDEATHSIG, &s); printf("pdeathsig %d\n", s); fflush(stdout);
      write(fds[1], "r", 1);
      while (getppid() != me) usleep(1000);
      for (int i = 0; i < 2000 && !got; i++) usleep(1000);
      printf("grandchild adopted by subreaper %d, got signal %d\n", getppid() == me, got); fflush(stdout);
      _exit(5);
    }
    char c; read(fds[0], &c, 1);
    _exit(0);
  }
  int st; waitpid(mid, &st, 0);
  pid_t w = wait(&st); /* the adopted grandchild */
  printf("reaped adopted grandchild %d status %d\n", w > 0 && w != mid, WEXITSTATUS(st)); fflush(stdout);
  /* setpgid/getpgid/getsid rules. */
  int gp[2]; if (pipe(gp)) return 1;
  pid_t m2 = fork();
  if (m2 == 0) {
    pid_t g2 = fork();
    if (g2 == 0) { usleep(300000); _exit(0); }
    write(gp[1], &g2, sizeof g2); waitpid(g2, 0, 0); _exit(0);
  }
  pid_t g2; read(gp[0], &g2, sizeof g2);
  SHOW("setpgid of a grandchild", setpgid(g2, g2));
  waitpid(m2, &st, 0);
  SHOW("setpgid negative", setpgid(0, -1));
  SHOW("getpgid of no such process", getpgid(999999));
  SHOW("getsid of no such process", getsid(999999));
  pid_t c = fork();
  if (c == 0) { usleep(200000); _exit(0); }
  SHOW("setpgid child into its own group", setpgid(c, c));
  printf("child pgid is its pid %d\n", getpgid(c) == c);
  SHOW("setpgid child into a group of no process", setpgid(c, 999998));
  SHOW("setpgid child back into ours", setpgid(c, getpgrp()));
  printf("getsid of child is ours %d\n", getsid(c) == getsid(0));
  waitpid(c, &st, 0);
  pid_t e = fork();
  if (e == 0) { execl("/proc/self/exe", "pg", "child", (char *)0); _exit(127); }
  usleep(300000);
  SHOW("setpgid child that exec'd", setpgid(e, e));
  kill(e, SIGTERM); waitpid(e, &st, 0);
  pid_t s = fork();
  if (s == 0) {
    SHOW("setsid in child", setsid());
    SHOW("setsid again (now a group leader)", setsid());
    SHOW("setpgid as session leader", setpgid(0, 0));
    _exit(0);
  }
  waitpid(s, &st, 0);
  pid_t l = fork();
  if (l == 0) { setpgid(0, 0); SHOW("setsid as group leader", setsid()); _exit(0); }
  waitpid(l, &st, 0);
  SHOW("set pdeathsig bad signal", prctl(PR_SET_PDEATHSIG, 65));
  return 0;
}
`;

/**
 * Sets itself subreaper, leaves an orphan-to-be waiting, checkpoints; after restore (once the gate
 * file, its last argument, exists) the orphan must reach it.
 */
const CHECKPOINTED = String.raw`
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(36, 1, 0, 0, 0) == 0
me = os.getpid()
r, w = os.pipe()      # grandchild -> us: it is set up
r2, w2 = os.pipe()    # us -> middle child: exit now
mid = os.fork()
if mid == 0:
    g = os.fork()
    if g == 0:
        signal.signal(signal.SIGUSR1, lambda *_: None)
        assert libc.prctl(1, signal.SIGUSR1, 0, 0, 0) == 0
        got = []
        signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
        os.write(w, b"g")
        while os.getppid() != me: time.sleep(0.01)
        t0 = time.monotonic()
        while not got and time.monotonic() - t0 < 5: time.sleep(0.01)
        print("orphan adopted by the subreaper", os.getppid() == me, "pdeath signal", bool(got), flush=True)
        os._exit(3)
    os.read(r2, 1)  # blocks until we write, after the restore
    os._exit(0)
os.read(r, 1)
print("ready", flush=True)
${PY_WAIT_FOR_GATE}
os.write(w2, b"x")
os.waitpid(mid, 0)
pid, st = os.wait()
print("reaped the orphan", pid != mid, os.waitstatus_to_exitcode(st), flush=True)
`;

describe('process groups, sessions, subreaper, parent-death signal', () => {
  it('answer as natively', async () => {
    const exe = compileStatic('sessions', SOURCE);
    const want = await native([exe]);
    expect(want.status).toBe(0);
    await expectSandboxOutput([exe], want.stdout.toString());
  });

  it('keep the subreaper and the pdeath signal across checkpoint/restore', async () => {
    // Under a shell, so that the subreaper is not init (pid 1 adopts orphans anyway).
    const gate = checkpointGate('sessions');
    await expectCheckpointRestoreMatches('sessions-cp', ['/bin/sh', '-c', '/usr/bin/python3 -c "$0" "$1"; echo "python exit $?"', CHECKPOINTED, gate.sandbox], [
      'ready',
      'orphan adopted by the subreaper True pdeath signal True',
      'reaped the orphan True 3',
      'python exit 0',
    ], gate.open);
  }, 120_000);
});
