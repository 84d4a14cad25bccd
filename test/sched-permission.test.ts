/**
 * Who may change whose scheduling, as Linux's __sched_setscheduler / user_check_sched_setscheduler /
 * check_same_owner / cap_safe_nice and setpriority's set_one_prio / can_nice decide
 * (kernel/sched/syscalls.c, kernel/sys.c, security/commoncap.c; man 7 sched), what a child inherits
 * (sched_fork: SCHED_RESET_ON_FORK), sched_setattr/sched_getattr's struct handling, and the timer
 * slack (prctl PR_SET_TIMERSLACK / PR_GET_TIMERSLACK). One C program, run natively and in the
 * sandbox: root forks probers with chosen ids (and one with CAP_SYS_NICE alone) that change their
 * own policy, priority and nice, and targets made with chosen (real, effective, saved) uids. The two
 * outputs must be equal. Raising RLIMIT_RTPRIO and RLIMIT_NICE needs CAP_SYS_RESOURCE, which root on
 * this test machine lacks (its hard limits are 0), so those probers run in the sandbox alone and are
 * checked against the lines Linux's rules give (worked out from the code above; every other line of
 * the same program matched a native run).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, native, sameOutputAsNative, snapvisor } from './helpers.js';

const SCHEDPERM = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>

/* Who may change whose scheduling (kernel/sched/syscalls.c user_check_sched_setscheduler,
   kernel/sys.c set_one_prio), what a child inherits (sched_fork: reset-on-fork), sched_setattr /
   sched_getattr's struct handling, and the timer slack (PR_SET_TIMERSLACK). Every probe runs in
   its own forked child, so one probe's change cannot leak into the next. */
struct attr { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t prio; uint64_t runtime, deadline, period; uint32_t umin, umax; };
static char out[2048];
static void add(const char *what, long r) {
  size_t n = strlen(out);
  snprintf(out + n, sizeof out - n, " %s=%s", what, r < 0 ? strerrorname_np(errno) : "ok");
}
static void addv(const char *what, long v) { size_t n = strlen(out); snprintf(out + n, sizeof out - n, " %s=%ld", what, v); }
static long setsched(pid_t pid, int pol, int prio) { struct sched_param p = { prio }; return sched_setscheduler(pid, pol, &p); }
static long setparam(pid_t pid, int prio) { struct sched_param p = { prio }; return sched_setparam(pid, &p); }
static long setattr(pid_t pid, int pol, uint64_t flags, int nice, int prio) {
  struct attr a = { 48, pol, flags, nice, prio, 0, 0, 0, 0, 0 };
  return syscall(SYS_sched_setattr, pid, &a, 0);
}
static long setdl(pid_t pid) { struct attr a = { 48, 6, 0, 0, 0, 10000000, 30000000, 100000000, 0, 0 }; return syscall(SYS_sched_setattr, pid, &a, 0); }
/* /proc/PID/stat's priority (18), nice (19), rt_priority (40) and policy (41), as "prio/nice/rt/policy". */
static void stat_fields(pid_t pid, char *buf, size_t len) {
  char path[64], s[1024];
  snprintf(path, sizeof path, pid ? "/proc/%d/stat" : "/proc/self/stat", pid);
  FILE *f = fopen(path, "r");
  size_t got = f ? fread(s, 1, sizeof s - 1, f) : 0;
  if (f) fclose(f);
  s[got] = 0;
  char *p = strrchr(s, ')');
  long v[52] = { 0 };
  int i = 2; /* field 3 (state) follows the comm */
  for (char *tok = p ? strtok(p + 2, " ") : NULL; tok && i < 52; tok = strtok(NULL, " ")) v[i++] = strtol(tok, NULL, 10);
  snprintf(buf, len, "%ld/%ld/%ld/%ld", v[17], v[18], v[39], v[40]);
}
static void state(const char *tag, pid_t pid) {
  size_t n = strlen(out);
  struct sched_param p = { -1 };
  sched_getparam(pid, &p);
  errno = 0;
  int pr = getpriority(PRIO_PROCESS, pid);
  char st[80];
  stat_fields(pid, st, sizeof st);
  snprintf(out + n, sizeof out - n, " %s[pol=%#x prio=%d nice=%d stat=%s]", tag, sched_getscheduler(pid), p.sched_priority, pr, st);
}
/* Run fn in a forked child, which prints its own line; wait for it. */
#define PROBE(...) do { pid_t c_ = fork(); if (c_ == 0) { out[0] = 0; __VA_ARGS__; fflush(stdout); _exit(0); } int st_; waitpid(c_, &st_, 0); if (!WIFEXITED(st_) || WEXITSTATUS(st_)) printf("probe died %#x\n", st_); } while (0)

struct ids { const char *name; int r, e, s; int rtprio, nicelim, capnice; };
static const struct ids P[] = {
  { "root", 0, 0, 0, 0, 0, 0 },
  { "1000", 1000, 1000, 1000, 0, 0, 0 },
  { "1000 rtprio 10", 1000, 1000, 1000, 10, 0, 0 },
  { "1000 nice 25", 1000, 1000, 1000, 0, 25, 0 },
  { "1000 CAP_SYS_NICE", 1000, 1000, 1000, 0, 0, 1 },
  { "euid 1000", 2000, 1000, 2000, 0, 0, 0 },
  { "ruid 1000", 1000, 2000, 2000, 0, 0, 0 },
};
static const struct ids T[] = {
  { "root", 0, 0, 0 }, { "1000", 1000, 1000, 1000 }, { "euid 1000", 0, 1000, 0 }, { "ruid 1000", 1000, 0, 0 }, { "suid 1000", 0, 0, 1000 },
};
#define NT (sizeof T / sizeof T[0])

static void become(const struct ids *p) {
  struct rlimit rt = { p->rtprio, p->rtprio }, ni = { p->nicelim, p->nicelim };
  setpgid(0, 0); /* PRIO_PGRP probes stay in the probe */
  if (setrlimit(RLIMIT_RTPRIO, &rt) || setrlimit(RLIMIT_NICE, &ni)) { printf("setrlimit: %s\n", strerrorname_np(errno)); _exit(8); }
  if (p->capnice) prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
  if (setresuid(p->r, p->e, p->s)) _exit(3);
  if (p->capnice) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { { 1 << CAP_SYS_NICE, 1 << CAP_SYS_NICE, 0 }, { 0, 0, 0 } };
    if (syscall(SYS_capset, &h, d)) _exit(6);
  }
}

static int rlimits_only;
static void permissions(void) {
  for (size_t i = 0; i < sizeof P / sizeof P[0]; i++) {
    const struct ids *p = &P[i];
    /* Raising RLIMIT_RTPRIO/RLIMIT_NICE needs CAP_SYS_RESOURCE: those probers run alone (argument "rlimit"). */
    if (rlimits_only != (p->rtprio || p->nicelim)) continue;
    /* The prober's own thread. */
    PROBE(become(p); add("FIFO1", setsched(0, SCHED_FIFO, 1)); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("FIFO10", setsched(0, SCHED_FIFO, 10)); add("FIFO11", setsched(0, SCHED_FIFO, 11)); add("down5", setparam(0, 5)); add("up10", setparam(0, 10)); add("RR10", setsched(0, SCHED_RR, 10)); state("st", 0); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("BATCH", setsched(0, SCHED_BATCH, 0)); add("IDLE", setsched(0, SCHED_IDLE, 0)); add("OTHER", setsched(0, SCHED_OTHER, 0)); state("st", 0); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("FIFOreset", setsched(0, SCHED_FIFO | SCHED_RESET_ON_FORK, 1)); add("param", setparam(0, 1)); add("FIFOclear", setsched(0, SCHED_FIFO, 1)); add("BATCHreset", setsched(0, SCHED_BATCH | SCHED_RESET_ON_FORK, 0)); add("OTHERclear", setsched(0, SCHED_OTHER, 0)); state("st", 0); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("nice-1", setpriority(PRIO_PROCESS, 0, -1)); add("nice-5", setpriority(PRIO_PROCESS, 0, -5)); add("nice-6", setpriority(PRIO_PROCESS, 0, -6)); add("nice7", setpriority(PRIO_PROCESS, 0, 7)); add("nice3", setpriority(PRIO_PROCESS, 0, 3)); add("pgrp9", setpriority(PRIO_PGRP, 0, 9)); state("st", 0); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("attrNice-2", setattr(0, SCHED_OTHER, 0, -2, 0)); add("attrNice4", setattr(0, SCHED_OTHER, 0, 4, 0)); add("attrNice2", setattr(0, SCHED_OTHER, 0, 2, 0)); add("attrFIFO", setattr(0, SCHED_FIFO, 0, 0, 3)); add("keepParams", setattr(0, SCHED_RR, 0x10, 0, 2)); add("DL", setdl(0)); state("st", 0); printf("%-18s self:%s\n", p->name, out));
    PROBE(become(p); add("bad4", setsched(0, 4, 0)); add("neg", setsched(0, -1, 0)); add("FIFO0", setsched(0, SCHED_FIFO, 0)); add("OTHER1", setsched(0, SCHED_OTHER, 1)); add("FIFO100", setsched(0, SCHED_FIFO, 100)); add("FIFOneg", setsched(0, SCHED_FIFO, -1)); add("DLparam", setsched(0, 6, 0)); add("nullparam", sched_setscheduler(0, SCHED_OTHER, NULL)); add("badpid", setsched(-3, SCHED_OTHER, 0)); add("nopid", setsched(0x3fffffff, SCHED_OTHER, 0)); printf("%-18s self:%s\n", p->name, out));
    /* Targets: root makes them with chosen ids, then the prober (same ids as above) probes each. */
    pid_t tp[NT];
    for (size_t j = 0; j < NT; j++) {
      int pp[2]; if (pipe(pp)) exit(1);
      pid_t c = fork();
      if (c == 0) { if (setresuid(T[j].r, T[j].e, T[j].s)) _exit(3); if (write(pp[1], "x", 1) != 1) _exit(4); alarm(60); for (;;) pause(); }
      char b; if (read(pp[0], &b, 1) != 1) exit(2);
      close(pp[0]); close(pp[1]);
      tp[j] = c;
    }
    PROBE(become(p); for (size_t j = 0; j < NT; j++) {
      out[0] = 0;
      add("BATCH", setsched(tp[j], SCHED_BATCH, 0)); add("param", setparam(tp[j], 0)); add("FIFO", setsched(tp[j], SCHED_FIFO, 1)); add("OTHER", setsched(tp[j], SCHED_OTHER, 0));
      add("nice2", setpriority(PRIO_PROCESS, tp[j], 2)); add("nice1", setpriority(PRIO_PROCESS, tp[j], 1)); add("attr3", setattr(tp[j], SCHED_OTHER, 0, 3, 0));
      cpu_set_t cs; CPU_ZERO(&cs); CPU_SET(0, &cs); add("affinity", sched_setaffinity(tp[j], sizeof cs, &cs));
      add("get", sched_getscheduler(tp[j])); state("st", tp[j]);
      printf("%-18s -> %-10s%s\n", p->name, T[j].name, out);
    });
    for (size_t j = 0; j < NT; j++) { kill(tp[j], SIGKILL); waitpid(tp[j], NULL, 0); }
  }
  if (rlimits_only) return;
  /* PRIO_USER over several processes: errors of some targets, success on others. */
  pid_t a = fork();
  if (a == 0) { if (setresuid(1000, 1000, 1000)) _exit(3); alarm(60); for (;;) pause(); }
  pid_t b = fork();
  if (b == 0) { if (setresuid(1000, 1000, 1000)) _exit(3); setpriority(PRIO_PROCESS, 0, 4); alarm(60); for (;;) pause(); }
  usleep(100000);
  PROBE(become(&P[1]); add("user3", setpriority(PRIO_USER, 1000, 3)); add("user2", setpriority(PRIO_USER, 0, 2)); add("user-nobody", setpriority(PRIO_USER, 4242, 2)); addv("getuser", (errno = 0, getpriority(PRIO_USER, 1000))); addv("getuserErr", errno); printf("prio user:%s\n", out));
  kill(a, SIGKILL); kill(b, SIGKILL); waitpid(a, NULL, 0); waitpid(b, NULL, 0);
}

static void *thread_state(void *arg) { out[0] = 0; state("thread", 0); addv("slack", prctl(PR_GET_TIMERSLACK)); printf("%s:%s\n", (char *)arg, out); return NULL; }
static void in_thread(const char *tag) { pthread_t th; pthread_create(&th, NULL, thread_state, (void *)tag); pthread_join(th, NULL); }
static void child_state(const char *tag) { PROBE(state("child", 0); addv("slack", prctl(PR_GET_TIMERSLACK)); printf("%s:%s\n", tag, out)); }

static void inheritance(void) {
  PROBE(setsched(0, SCHED_FIFO | SCHED_RESET_ON_FORK, 10); state("self", 0); printf("FIFO10|RESET:%s\n", out); child_state("  fork"); in_thread("  thread"));
  PROBE(setpriority(PRIO_PROCESS, 0, -5); setsched(0, SCHED_BATCH | SCHED_RESET_ON_FORK, 0); state("self", 0); printf("nice-5 BATCH|RESET:%s\n", out); child_state("  fork"); in_thread("  thread"));
  PROBE(setpriority(PRIO_PROCESS, 0, 5); setsched(0, SCHED_IDLE | SCHED_RESET_ON_FORK, 0); state("self", 0); printf("nice5 IDLE|RESET:%s\n", out); child_state("  fork"));
  PROBE(setsched(0, SCHED_RR, 7); setpriority(PRIO_PROCESS, 0, -3); state("self", 0); printf("RR7 nice-3:%s\n", out); child_state("  fork"); in_thread("  thread"));
  PROBE(add("DL", setdl(0)); pid_t c = fork(); if (c == 0) _exit(0); add("fork", c); if (c > 0) waitpid(c, NULL, 0); printf("DEADLINE:%s\n", out));
  PROBE(struct attr a = { 48, 6, 1, 0, 0, 10000000, 30000000, 100000000, 0, 0 }; add("DL|RESET", syscall(SYS_sched_setattr, 0, &a, 0)); state("self", 0); printf("DEADLINE|RESET:%s\n", out); child_state("  fork"));
}

static void *set_other(void *arg) { (void)arg; out[0] = 0; add("threadOTHER", setsched(0, SCHED_OTHER, 0)); state("thread", 0); printf("per-thread:%s\n", out); return NULL; }
static void per_thread(void) {
  PROBE(setsched(0, SCHED_FIFO, 4); pthread_t th; pthread_create(&th, NULL, set_other, NULL); pthread_join(th, NULL); out[0] = 0; state("main", 0); printf("per-thread:%s\n", out));
}

/* /proc/self/task/TID/{stat,comm,status} show that thread: its tid, name and attributes. */
static volatile pid_t worker_tid;
static volatile int worker_done;
static void *worker(void *arg) {
  (void)arg;
  prctl(PR_SET_NAME, "worker", 0, 0, 0);
  setsched(0, SCHED_BATCH, 0);
  setpriority(PRIO_PROCESS, 0, 6);
  worker_tid = gettid();
  while (!worker_done) usleep(1000);
  return NULL;
}
static void task_files(void) {
  PROBE(
    pthread_t th; pthread_create(&th, NULL, worker, NULL);
    while (!worker_tid) usleep(1000);
    char path[96], buf[512], st[80];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", worker_tid);
    FILE *f = fopen(path, "r"); size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0; if (f) fclose(f); buf[n] = 0;
    stat_fields(0, st, sizeof st);
    printf("task files: leader stat %s, worker comm %s", st, buf);
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", worker_tid);
    f = fopen(path, "r"); n = f ? fread(buf, 1, sizeof buf - 1, f) : 0; if (f) fclose(f); buf[n] = 0;
    long v[52] = { 0 }; int i = 0; char *p = strrchr(buf, ')');
    v[0] = strtol(buf, NULL, 10);
    i = 2; for (char *tok = p ? strtok(p + 2, " ") : NULL; tok && i < 52; tok = strtok(NULL, " ")) v[i++] = strtol(tok, NULL, 10);
    printf("  worker stat: is its tid %s, name (%s, prio/nice/rt/policy %ld/%ld/%ld/%ld\n", v[0] == worker_tid ? "yes" : "no", strchr(buf, '(') && strstr(buf, "(worker)") ? "worker)" : "other)", v[17], v[18], v[39], v[40]);
    snprintf(path, sizeof path, "/proc/self/task/%d/status", worker_tid);
    f = fopen(path, "r"); n = f ? fread(buf, 1, sizeof buf - 1, f) : 0; if (f) fclose(f); buf[n] = 0;
    char *name = strstr(buf, "Name:"), *pid = strstr(buf, "\nPid:");
    printf("  worker status: %.*s, Pid is its tid %s\n", name ? (int)strcspn(name, "\n") : 0, name ? name : "", pid && strtol(pid + 5, NULL, 10) == worker_tid ? "yes" : "no");
    worker_done = 1; pthread_join(th, NULL));
}

static void getattr_line(const char *tag, pid_t pid, unsigned size) {
  unsigned char buf[80]; memset(buf, 0xee, sizeof buf);
  struct attr *a = (struct attr *)buf;
  long r = syscall(SYS_sched_getattr, pid, buf, size, 0);
  size_t n = strlen(out);
  if (r) snprintf(out + n, sizeof out - n, " %s=%s", tag, strerrorname_np(errno));
  else snprintf(out + n, sizeof out - n, " %s[size=%u pol=%u flags=%#llx nice=%d prio=%u rt=%llu dl=%llu per=%llu um=%u/%u tail=%02x%02x]", tag, a->size, a->policy, (unsigned long long)a->flags, a->nice, a->prio, (unsigned long long)a->runtime, (unsigned long long)a->deadline, (unsigned long long)a->period, a->umin, a->umax, buf[64], buf[size < 80 ? size : 79]);
}

static void attrs(void) {
  PROBE(getattr_line("ga", 0, 56); getattr_line("ga64", 0, 64); getattr_line("ga48", 0, 48); getattr_line("ga47", 0, 47); getattr_line("ga4097", 0, 4097); add("gaflags", syscall(SYS_sched_getattr, 0, out + 1500, 56, 1)); add("ganull", syscall(SYS_sched_getattr, 0, NULL, 56, 0)); printf("getattr:%s\n", out));
  PROBE(
    struct attr a = { 47, 0, 0, 0, 0, 0, 0, 0, 0, 0 }; add("size47", syscall(SYS_sched_setattr, 0, &a, 0)); addv("back", a.size);
    unsigned char big[80]; memset(big, 0, sizeof big); ((struct attr *)big)->size = 80; add("size80zero", syscall(SYS_sched_setattr, 0, big, 0));
    big[70] = 1; add("size80tail", syscall(SYS_sched_setattr, 0, big, 0)); addv("back", ((struct attr *)big)->size);
    struct attr z = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }; add("size0", syscall(SYS_sched_setattr, 0, &z, 0));
    struct attr u = { 48, 0, 0x20, 0, 0, 0, 0, 0, 0, 0 }; add("uclamp48", syscall(SYS_sched_setattr, 0, &u, 0));
    u.size = 56; add("uclamp56", syscall(SYS_sched_setattr, 0, &u, 0));
    struct attr f = { 56, 0, 0x100, 0, 0, 0, 0, 0, 0, 0 }; add("badflag", syscall(SYS_sched_setattr, 0, &f, 0));
    add("callflags", syscall(SYS_sched_setattr, 0, &z, 1)); add("null", syscall(SYS_sched_setattr, 0, NULL, 0));
    struct attr s = { 56, 0, 0, 30, 0, 3000000, 0, 0, 0, 0 }; add("slice3ms nice30", syscall(SYS_sched_setattr, 0, &s, 0)); getattr_line("ga", 0, 56);
    s.runtime = 50; s.nice = 19; add("slice50", syscall(SYS_sched_setattr, 0, &s, 0)); getattr_line("ga", 0, 56);
    s.runtime = 3000000; syscall(SYS_sched_setattr, 0, &s, 0); add("legacyOTHER", setsched(0, SCHED_OTHER, 0)); getattr_line("ga", 0, 56);
    PROBE(getattr_line("child", 0, 56); printf("  fork:%s\n", out));
    add("FIFO", setsched(0, SCHED_FIFO, 2)); getattr_line("ga", 0, 56);
    struct attr kp = { 56, 0, 0x08, 0, 0, 0, 0, 0, 0, 0 }; add("keepPolicy", syscall(SYS_sched_setattr, 0, &kp, 0)); getattr_line("ga", 0, 56);
    kp.prio = 5; add("keepPolicy5", syscall(SYS_sched_setattr, 0, &kp, 0)); getattr_line("ga", 0, 56);
    add("OTHER", setsched(0, SCHED_OTHER, 0)); getattr_line("ga", 0, 56);
    printf("setattr:%s\n", out));
  PROBE(setsched(0, SCHED_FIFO, 3); struct attr k = { 48, SCHED_RR, 0x10, 0, 2, 0, 0, 0, 0, 0 }; add("keepParamsRR", syscall(SYS_sched_setattr, 0, &k, 0)); state("st", 0);
        struct attr o = { 48, SCHED_OTHER, 0x11, 0, 0, 0, 0, 0, 0, 0 }; add("keepParamsOTHER", syscall(SYS_sched_setattr, 0, &o, 0)); o.flags = 0x18; add("keepAllReset0", syscall(SYS_sched_setattr, 0, &o, 0)); o.flags = 0x19; add("keepAllReset", syscall(SYS_sched_setattr, 0, &o, 0)); getattr_line("ga", 0, 56); printf("keep params:%s\n", out));
  PROBE(add("DL", setdl(0)); getattr_line("ga", 0, 56); add("param", setparam(0, 0)); printf("deadline:%s\n", out));
  PROBE(struct attr d = { 48, 6, 0, 0, 0, 500, 30000000, 100000000, 0, 0 }; add("DLshort", syscall(SYS_sched_setattr, 0, &d, 0));
        d.runtime = 40000000; add("DLrt>dl", syscall(SYS_sched_setattr, 0, &d, 0)); d.runtime = 10000000; d.period = 20000000; add("DLper<dl", syscall(SYS_sched_setattr, 0, &d, 0));
        d.period = 0; d.deadline = 50000; d.runtime = 10000; add("DLper<min", syscall(SYS_sched_setattr, 0, &d, 0)); d.deadline = 5000000000ull; d.runtime = 1000000; add("DLper>max", syscall(SYS_sched_setattr, 0, &d, 0));
        printf("deadline params:%s\n", out));
  printf("priority range:"); for (int p = 0; p < 8; p++) printf(" %d:%d/%d", p, sched_get_priority_min(p), sched_get_priority_max(p)); printf("\n");
}

static long nvcsw(void) { struct rusage u; getrusage(RUSAGE_THREAD, &u); return u.ru_nvcsw; }
static const char *sleeps(void) {
  long before = nvcsw();
  for (int i = 0; i < 200; i++) { struct timespec z = { 0, 0 }; nanosleep(&z, NULL); }
  long n = nvcsw() - before;
  return n >= 150 ? "switches" : n <= 20 ? "none" : "some";
}

static void slack(void) {
  PROBE(addv("default", prctl(PR_GET_TIMERSLACK)); add("set1000", prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)); addv("get", prctl(PR_GET_TIMERSLACK)); printf("slack:%s\n", out);
        child_state("  fork"); in_thread("  thread");
        PROBE(prctl(PR_SET_TIMERSLACK, 777, 0, 0, 0); prctl(PR_SET_TIMERSLACK, 0, 0, 0, 0); addv("childReset", prctl(PR_GET_TIMERSLACK)); printf("  fork reset:%s\n", out));
        out[0] = 0; prctl(PR_SET_TIMERSLACK, 0, 0, 0, 0); addv("reset", prctl(PR_GET_TIMERSLACK));
        add("FIFO", setsched(0, SCHED_FIFO, 1)); addv("fifo", prctl(PR_GET_TIMERSLACK)); addv("setWhileFifo", prctl(PR_SET_TIMERSLACK, 5000, 0, 0, 0)); addv("fifo2", prctl(PR_GET_TIMERSLACK));
        add("OTHER", setsched(0, SCHED_OTHER, 0)); addv("other", prctl(PR_GET_TIMERSLACK));
        prctl(PR_SET_TIMERSLACK, 2000, 0, 0, 0); add("RR", setsched(0, SCHED_RR, 1)); add("BATCH", setsched(0, SCHED_BATCH, 0)); addv("afterRR", prctl(PR_GET_TIMERSLACK));
        prctl(PR_SET_TIMERSLACK, 3000, 0, 0, 0); add("IDLE", setsched(0, SCHED_IDLE, 0)); addv("idle", prctl(PR_GET_TIMERSLACK));
        printf("slack:%s\n", out));
  PROBE(prctl(PR_SET_TIMERSLACK, 4000, 0, 0, 0); setsched(0, SCHED_FIFO | SCHED_RESET_ON_FORK, 1); addv("fifoReset", prctl(PR_GET_TIMERSLACK)); printf("slack:%s\n", out); child_state("  fork"));
  PROBE(printf("sleeps: default %s", sleeps()); prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0); printf(", slack 1 ns %s", sleeps()); prctl(PR_SET_TIMERSLACK, 0, 0, 0, 0); printf(", back to default %s", sleeps()); setsched(0, SCHED_FIFO, 1); printf(", SCHED_FIFO %s\n", sleeps()));
}

int main(int argc, char **argv) {
  rlimits_only = argc > 1 && !strcmp(argv[1], "rlimit");
  struct rlimit zero = { 0, 0 };
  setrlimit(RLIMIT_RTPRIO, &zero); setrlimit(RLIMIT_NICE, &zero);
  setvbuf(stdout, NULL, _IOLBF, 0);
  permissions();
  if (rlimits_only) { printf("done\n"); return 0; }
  inheritance();
  per_thread();
  task_files();
  attrs();
  slack();
  printf("done\n");
  return 0;
}
`;

const SLACK_CHECKPOINT = String.raw`
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Scheduling attributes and timer slack across a checkpoint: set before "ready", read after. */
struct attr { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t prio; uint64_t runtime, deadline, period; uint32_t umin, umax; };
static int go[2], done[2];
static void show(const char *who) {
  struct attr a; memset(&a, 0, sizeof a);
  syscall(SYS_sched_getattr, 0, &a, sizeof a, 0);
  printf("%s: slack=%d policy=%#x nice=%d slice=%llu\n", who, prctl(PR_GET_TIMERSLACK), sched_getscheduler(0), getpriority(PRIO_PROCESS, 0), (unsigned long long)a.runtime);
  fflush(stdout);
}
static void *thread_main(void *arg) {
  (void)arg;
  prctl(PR_SET_TIMERSLACK, 777, 0, 0, 0);
  struct sched_param p = { 0 };
  sched_setscheduler(0, SCHED_IDLE, &p);
  char b;
  if (write(done[1], "x", 1) != 1 || read(go[0], &b, 1) != 1) return NULL;
  show("thread");
  if (write(done[1], "x", 1) != 1) return NULL;
  return NULL;
}
int main(int argc, char **argv) {
  if (argc < 2 || pipe(go) || pipe(done)) return 1;
  prctl(PR_SET_TIMERSLACK, 12345, 0, 0, 0);
  setpriority(PRIO_PROCESS, 0, 3);
  struct attr a = { 56, SCHED_BATCH, 1 /* SCHED_FLAG_RESET_ON_FORK */, 3, 0, 2500000, 0, 0, 0, 0 };
  if (syscall(SYS_sched_setattr, 0, &a, 0)) return 2;
  pthread_t th;
  pthread_create(&th, NULL, thread_main, NULL);
  char b;
  if (read(done[0], &b, 1) != 1) return 3;
  show("main");
  puts("ready");
  fflush(stdout);
  struct stat st;
  while (stat(argv[1], &st)) usleep(20000);
  show("main");
  if (write(go[1], "x", 1) != 1 || read(done[0], &b, 1) != 1) return 4;
  pid_t c = fork();
  if (c == 0) { show("child"); prctl(PR_SET_TIMERSLACK, 0, 0, 0, 0); printf("child reset: slack=%d\n", prctl(PR_GET_TIMERSLACK)); return 0; }
  waitpid(c, NULL, 0);
  prctl(PR_SET_TIMERSLACK, 0, 0, 0, 0);
  printf("main reset: slack=%d\n", prctl(PR_GET_TIMERSLACK));
  pthread_join(th, NULL);
  return 0;
}
`;

let prog: string, slackProg: string;
beforeAll(() => {
  prog = compileStatic('schedperm', SCHEDPERM, ['-pthread']);
  slackProg = compileStatic('slackcp', SLACK_CHECKPOINT, ['-pthread']);
});

const isRoot = process.getuid?.() === 0;

/** The RLIMIT_RTPRIO / RLIMIT_NICE probers' lines (sandbox only: see the header). */
const RLIMIT_LINES = `1000 rtprio 10     self: FIFO1=ok
1000 rtprio 10     self: FIFO10=ok FIFO11=EPERM down5=ok up10=ok RR10=ok st[pol=0x2 prio=10 nice=0 stat=-11/0/10/2]
1000 rtprio 10     self: BATCH=ok IDLE=ok OTHER=EPERM st[pol=0x5 prio=0 nice=0 stat=20/0/0/5]
1000 rtprio 10     self: FIFOreset=ok param=ok FIFOclear=EPERM BATCHreset=ok OTHERclear=EPERM st[pol=0x40000003 prio=0 nice=0 stat=20/0/0/3]
1000 rtprio 10     self: nice-1=EACCES nice-5=EACCES nice-6=EACCES nice7=ok nice3=EACCES pgrp9=ok st[pol=0 prio=0 nice=9 stat=29/9/0/0]
1000 rtprio 10     self: attrNice-2=EPERM attrNice4=ok attrNice2=EPERM attrFIFO=ok keepParams=ok DL=EPERM st[pol=0x1 prio=3 nice=4 stat=-4/4/3/1]
1000 rtprio 10     self: bad4=EINVAL neg=EINVAL FIFO0=EINVAL OTHER1=EINVAL FIFO100=EINVAL FIFOneg=EINVAL DLparam=EINVAL nullparam=EINVAL badpid=EINVAL nopid=ESRCH
1000 rtprio 10     -> root       BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 rtprio 10     -> 1000       BATCH=ok param=ok FIFO=EPERM OTHER=ok nice2=ok nice1=EACCES attr3=ok affinity=ok get=ok st[pol=0 prio=0 nice=3 stat=23/3/0/0]
1000 rtprio 10     -> euid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 rtprio 10     -> ruid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 rtprio 10     -> suid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       self: FIFO1=EPERM
1000 nice 25       self: FIFO10=EPERM FIFO11=EPERM down5=EINVAL up10=EINVAL RR10=EPERM st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       self: BATCH=ok IDLE=ok OTHER=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       self: FIFOreset=EPERM param=EINVAL FIFOclear=EPERM BATCHreset=ok OTHERclear=EPERM st[pol=0x40000003 prio=0 nice=0 stat=20/0/0/3]
1000 nice 25       self: nice-1=ok nice-5=ok nice-6=EACCES nice7=ok nice3=ok pgrp9=ok st[pol=0 prio=0 nice=9 stat=29/9/0/0]
1000 nice 25       self: attrNice-2=ok attrNice4=ok attrNice2=ok attrFIFO=EPERM keepParams=EPERM DL=EPERM st[pol=0 prio=0 nice=2 stat=22/2/0/0]
1000 nice 25       self: bad4=EINVAL neg=EINVAL FIFO0=EINVAL OTHER1=EINVAL FIFO100=EINVAL FIFOneg=EINVAL DLparam=EINVAL nullparam=EINVAL badpid=EINVAL nopid=ESRCH
1000 nice 25       -> root       BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       -> 1000       BATCH=ok param=ok FIFO=EPERM OTHER=ok nice2=ok nice1=EACCES attr3=ok affinity=ok get=ok st[pol=0 prio=0 nice=3 stat=23/3/0/0]
1000 nice 25       -> euid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       -> ruid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
1000 nice 25       -> suid 1000  BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM nice1=EPERM attr3=EPERM affinity=EPERM get=ok st[pol=0 prio=0 nice=0 stat=20/0/0/0]
done
`;

describe.skipIf(!isRoot)('scheduling permissions against native (the test runs as root; probers and targets drop to other uids)', () => {
  it('sched_setscheduler, sched_setparam, sched_setattr and setpriority allow and refuse as Linux; children inherit as sched_fork; the timer slack is per thread', async () => {
    const out = await sameOutputAsNative([prog]);
    // The comparison is meaningful: these are cells snapvisor got wrong before.
    const lines = out.split('\n');
    const row = (prefix: string) => lines.filter((l) => l.startsWith(prefix));
    expect(row('1000               self: FIFO1=')).toEqual(['1000               self: FIFO1=EPERM']);
    expect(row('1000               -> root ')[0]).toContain(' BATCH=EPERM param=EPERM FIFO=EPERM OTHER=EPERM nice2=EPERM');
    expect(row('1000               -> euid 1000 ')[0]).toContain(' BATCH=EPERM'); // cap_safe_nice: the target keeps root's permitted set
    expect(row('1000               self: nice-1=')[0]).toContain(' nice-1=EACCES');
    expect(row('FIFO10|RESET:')[0]).toContain('pol=0x40000001 prio=10 nice=0 stat=-11/0/10/1'); // /proc/PID/stat's priority, nice, rt_priority, policy
    expect(out).toContain('slack: default=50000 set1000=ok get=1000\n  fork: child[pol=0 prio=0 nice=0 stat=20/0/0/0] slack=1000\n');
    expect(out).toContain('sleeps: default switches, slack 1 ns none, back to default switches, SCHED_FIFO none\n');
    expect(lines.at(-2)).toBe('done');
  });

  it('RLIMIT_RTPRIO and RLIMIT_NICE let an unprivileged thread raise its priority as far as they say, and no further', async () => {
    const sand = await snapvisor(['run', '--', prog, 'rlimit'], { timeoutMs: 60_000 });
    expect(sand.timedOut).toBe(false);
    expect(sand.stderr).toBe('');
    expect(sand.status).toBe(0);
    expect(sand.stdout.toString()).toBe(RLIMIT_LINES);
  });
});

describe('timer slack and scheduling attributes across a checkpoint', () => {
  it('a thread\'s PR_SET_TIMERSLACK value, policy, reset-on-fork flag, nice and time slice are saved and restored, and forks after the restore inherit them', async () => {
    const gate = checkpointGate('slackcp');
    const nat = await native([slackProg, gate.native]);
    expect(nat.status).toBe(0);
    const expected = nat.stdout.toString().split('\n').filter(Boolean);
    // What is checked across the checkpoint: the set values, not defaults.
    expect(expected.slice(0, 2)).toEqual(['main: slack=12345 policy=0x40000003 nice=3 slice=2500000', 'ready']);
    expect(expected.find((l) => l.startsWith('thread:'))).toMatch(/^thread: slack=777 policy=0x5 nice=3 /);
    expect(expected).toContain('child reset: slack=12345'); // the child's default is its parent's slack at fork
    await expectCheckpointRestoreMatches('slackcp', [slackProg, gate.sandbox], expected, gate.open);
  });
});
