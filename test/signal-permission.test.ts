/**
 * Who may signal whom (kernel/signal.c check_kill_permission, man 2 kill): one C program, run
 * natively and in the sandbox, forks root targets with chosen real/effective/saved uids, process
 * groups and sessions (some left as zombies: exited, not yet reaped), then senders with chosen
 * ids (and one with CAP_KILL alone) that probe each target with kill, tgkill, tkill,
 * rt_sigqueueinfo and pidfd_send_signal. The two outputs must be equal: a zombie is checked like a
 * live process (EPERM from an unprivileged uid, not 0), a thread's tid names its process, and
 * EINVAL for a bad signal comes only once a target was found.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { compileStatic, sameOutputAsNative } from './helpers.js';

const KILLPERM = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>

/* Who may signal whom (kernel/signal.c check_kill_permission), for live and zombie targets:
   root forks targets with chosen (real, effective, saved) uids, sessions and process groups,
   leaves some as zombies, then forks senders with chosen ids that probe each target. */
struct target { const char *name; int r, e, s; int grp; int zombie; pid_t pid; int pidfd; };
static struct target T[] = {
  { "root", 0, 0, 0, 0, 0 },                        { "root zombie", 0, 0, 0, 0, 1 },
  { "1000", 1000, 1000, 1000, 0, 0 },               { "1000 zombie", 1000, 1000, 1000, 0, 1 },
  { "only euid 1000", 0, 1000, 0, 0, 0 },           { "only euid 1000 zombie", 0, 1000, 0, 0, 1 },
  { "only suid 1000", 0, 0, 1000, 0, 0 },           { "only suid 1000 zombie", 0, 0, 1000, 0, 1 },
  { "only ruid 1000", 1000, 0, 0, 0, 0 },
  { "root own pgrp", 0, 0, 0, 2, 0 },               { "root own pgrp zombie", 0, 0, 0, 2, 1 },
  { "root other session", 0, 0, 0, 1, 0 },          { "root other session zombie", 0, 0, 0, 1, 1 },
};
#define NT (sizeof T / sizeof T[0])
struct sender { const char *name; int r, e, s; int capkill; };
static const struct sender S[] = {
  { "1000", 1000, 1000, 1000, 0 }, { "ruid 1000", 1000, 2000, 2000, 0 }, { "euid 1000", 2000, 1000, 2000, 0 },
  { "suid 1000", 2000, 2000, 1000, 0 }, { "2000", 2000, 2000, 2000, 0 }, { "2000+CAP_KILL", 2000, 2000, 2000, 1 },
};
static volatile pid_t thread_tid;
static void *thread_main(void *a) { (void)a; thread_tid = gettid(); for (;;) pause(); }

static char out[512];
static void add(const char *what, long r) {
  size_t n = strlen(out);
  snprintf(out + n, sizeof out - n, " %s=%s", what, r < 0 ? strerrorname_np(errno) : "ok");
}
static long sigqueue0(pid_t pid, int sig) {
  siginfo_t si; memset(&si, 0, sizeof si);
  si.si_signo = sig; si.si_code = SI_QUEUE; si.si_pid = getpid(); si.si_uid = getuid();
  return syscall(SYS_rt_sigqueueinfo, pid, sig, &si);
}
#define BIG 0x3fffffff

int main(void) {
  pthread_t th;
  pthread_create(&th, NULL, thread_main, NULL);
  while (!thread_tid) usleep(1000);
  for (size_t i = 0; i < NT; i++) {
    int p[2];
    if (pipe(p)) return 1;
    pid_t c = fork();
    if (c == 0) {
      if (T[i].grp == 1) setsid();
      if (T[i].grp == 2) setpgid(0, 0);
      if (setresuid(T[i].r, T[i].e, T[i].s)) _exit(3);
      if (write(p[1], "x", 1) != 1) _exit(4);
      if (T[i].zombie) _exit(0);
      alarm(60); /* gone a minute later whatever happens to the test */
      for (;;) pause();
    }
    char b;
    if (read(p[0], &b, 1) != 1) return 2;
    close(p[0]); close(p[1]);
    siginfo_t si;
    if (T[i].zombie && waitid(P_PID, c, &si, WEXITED | WNOWAIT)) return 5; /* a zombie now, not reaped */
    T[i].pid = c;
    T[i].pidfd = syscall(SYS_pidfd_open, c, 0);
  }
  for (size_t s = 0; s < sizeof S / sizeof S[0]; s++) {
    pid_t c = fork();
    if (c == 0) {
      if (S[s].capkill) prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
      if (setresuid(S[s].r, S[s].e, S[s].s)) _exit(3);
      if (S[s].capkill) {
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = { { 1 << CAP_KILL, 1 << CAP_KILL, 0 }, { 0, 0, 0 } };
        if (syscall(SYS_capset, &h, d)) _exit(6);
      }
      for (size_t i = 0; i < NT; i++) {
        pid_t pid = T[i].pid;
        out[0] = 0;
        add("kill", kill(pid, 0));
        add("CONT", kill(pid, SIGCONT));
        add("tgkill", syscall(SYS_tgkill, pid, pid, 0));
        add("tkill", syscall(SYS_tkill, pid, 0));
        add("sigqueue", sigqueue0(pid, 0));
        add("pidfd", syscall(SYS_pidfd_send_signal, T[i].pidfd, 0, NULL, 0));
        if (T[i].grp) { add("pgrp", kill(-pid, 0)); add("pgrpCONT", kill(-pid, SIGCONT)); }
        if (T[i].zombie) add("sig99", kill(pid, 99));
        printf("%-14s -> %-26s%s\n", S[s].name, T[i].name, out);
      }
      out[0] = 0;
      add("kill-1", kill(-1, 0));
      add("thread", kill(thread_tid, 0));
      add("tgkillThread", syscall(SYS_tgkill, getppid(), thread_tid, 0));
      add("tgkillWrongGroup", syscall(SYS_tgkill, T[0].pid, thread_tid, 0));
      add("sigqueueThread", sigqueue0(thread_tid, 0));
      add("noneSig99", kill(BIG, 99));
      add("tgkillNone99", syscall(SYS_tgkill, BIG, BIG, 99));
      printf("%-14s -> %-26s%s\n", S[s].name, "(others)", out);
      fflush(stdout);
      _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) { printf("sender %s failed: %#x\n", S[s].name, st); return 7; }
  }
  for (size_t i = 0; i < NT; i++) if (!T[i].zombie) kill(T[i].pid, SIGKILL);
  for (size_t i = 0; i < NT; i++) waitpid(T[i].pid, NULL, 0);
  printf("done\n");
  return 0;
}
`;

let prog: string;
beforeAll(() => { prog = compileStatic('killperm', KILLPERM, ['-pthread']); });

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('signal permission against native (the test runs as root; targets and senders drop to other uids)', () => {
  it('kill, tgkill, tkill, rt_sigqueueinfo and pidfd_send_signal allow and refuse as Linux, zombies included', async () => {
    const out = await sameOutputAsNative([prog]);
    // The comparison is meaningful: these are the cells snapvisor got wrong before.
    const row = (sender: string, target: string) => out.split('\n').find((l) => l.startsWith(sender.padEnd(14) + ' -> ' + target.padEnd(26))) ?? '';
    expect(row('2000', 'root zombie')).toContain(' kill=EPERM CONT=ok tgkill=EPERM tkill=EPERM sigqueue=EPERM pidfd=EPERM sig99=EINVAL');
    expect(row('1000', 'only euid 1000 zombie')).toContain(' kill=EPERM ');
    expect(row('1000', '1000 zombie')).toContain(' kill=ok CONT=ok tgkill=ok tkill=ok sigqueue=ok pidfd=ok');
    expect(row('2000', 'root other session zombie')).toContain(' CONT=EPERM ');
    expect(row('2000', 'root own pgrp zombie')).toContain(' pgrp=EPERM pgrpCONT=ok ');
    expect(row('2000', 'root')).toContain(' pidfd=EPERM');
    expect(row('2000+CAP_KILL', 'root other session zombie')).toContain(' kill=ok CONT=ok ');
    expect(row('2000', '(others)')).toContain(' kill-1=ok thread=EPERM tgkillThread=EPERM tgkillWrongGroup=ESRCH sigqueueThread=EPERM noneSig99=ESRCH tgkillNone99=ESRCH');
    expect(out).toMatch(/\ndone\n$/);
  }, 90_000);
});
