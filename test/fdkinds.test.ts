/**
 * timerfd and signalfd (man 2 timerfd_create, man 2 signalfd; issue 10 point 2): one C program
 * runs natively and in the sandbox and must print the same lines — a periodic timerfd read three
 * times, TFD_TIMER_ABSTIME (future and past), gettime and settime's old value, EAGAIN/EINVAL,
 * poll and epoll readiness, the _ALARM clocks with and without CAP_WAKE_ALARM; a signalfd reading
 * kill()ed signals of its mask (ssi_signo, ssi_code, ssi_pid, ssi_uid), two records at once, a new
 * mask for the same fd, poll/epoll readiness and a blocking read woken by another process; a signal
 * sent to the process while every thread blocks it (shared pending) read by another thread's
 * signalfd, seen by sigpending in each thread, delivered on unblocking. Then a
 * guest blocked in a timerfd read (and holding an hour-long timer) and one blocked in a signalfd
 * read are checkpointed while waiting and restored: they go on as the native run did.
 */
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, checkpointGate, compileStatic, expectSandboxOutput, native, orphanStubs, restoreChecked, snapvisor } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

static void report(const char *what, long r) { if (r < 0) printf("%-34s %s\n", what, strerrorname_np(errno)); else printf("%-34s %ld\n", what, r); fflush(stdout); }
static void say(const char *what, int yes) { printf("%-34s %s\n", what, yes ? "yes" : "NO"); fflush(stdout); }
static int64_t now(clockid_t c) { struct timespec ts; clock_gettime(c, &ts); return ts.tv_sec * 1000000000LL + ts.tv_nsec; }
static struct itimerspec its(int64_t value, int64_t interval) { struct itimerspec s = { { interval / 1000000000, interval % 1000000000 }, { value / 1000000000, value % 1000000000 } }; return s; }
static int64_t ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }
#define MS 1000000LL

static void timerfd_mode(void) {
  uint64_t n = 0; char small[4];
  report("create TAI", timerfd_create(CLOCK_TAI, 0));
  report("create bad flags", timerfd_create(CLOCK_MONOTONIC, 1));
  int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  say("create monotonic", fd >= 0);
  report("F_GETFL", fcntl(fd, F_GETFL) & ~O_LARGEFILE);
  report("F_GETFD", fcntl(fd, F_GETFD));
  char link[64] = ""; readlink("/proc/self/fd/3", link, sizeof link - 1); printf("%-34s %s\n", "link", link);
  report("read unarmed nonblocking", read(fd, &n, 8));
  report("read 4 bytes", read(fd, small, 4));
  report("write", write(fd, &n, 8));
  struct itimerspec cur; memset(&cur, 0xff, sizeof cur);
  report("gettime unarmed", timerfd_gettime(fd, &cur));
  say("unarmed is 0 0", ns(cur.it_value) == 0 && ns(cur.it_interval) == 0);
  struct itimerspec s = its(10000 * MS, 1000 * MS), old;
  report("settime 10s/1s", timerfd_settime(fd, 0, &s, NULL));
  timerfd_gettime(fd, &cur);
  say("gettime interval 1s", ns(cur.it_interval) == 1000 * MS);
  say("gettime value in (9s,10s]", ns(cur.it_value) > 9000 * MS && ns(cur.it_value) <= 10000 * MS);
  s = its(100 * MS, 100 * MS);
  int64_t t0 = now(CLOCK_MONOTONIC); /* before arming: the waits below are measured from at most the arming */
  report("settime 100ms/100ms", timerfd_settime(fd, 0, &s, &old));
  say("old interval 1s", ns(old.it_interval) == 1000 * MS);
  say("old value in (9s,10s]", ns(old.it_value) > 9000 * MS && ns(old.it_value) <= 10000 * MS);
  struct pollfd p = { fd, POLLIN | POLLOUT, 0 };
  report("poll before expiry", poll(&p, 1, 0));
  report("poll until expiry", poll(&p, 1, 5000));
  report("revents", p.revents);
  say("waited >= 95ms", now(CLOCK_MONOTONIC) - t0 >= 95 * MS);
  fcntl(fd, F_SETFL, 0);
  uint64_t total = 0; int ok = 1;
  for (int i = 0; i < 3; i++) { if (read(fd, &n, 8) != 8 || n < 1) ok = 0; total += n; }
  say("3 blocking reads each >= 1", ok);
  say("elapsed >= 300ms", now(CLOCK_MONOTONIC) - t0 >= 295 * MS);
  s = its(0, 0);
  report("disarm", timerfd_settime(fd, 0, &s, &old));
  say("old interval 100ms", ns(old.it_interval) == 100 * MS);
  timerfd_gettime(fd, &cur);
  say("disarmed is 0 0", ns(cur.it_value) == 0 && ns(cur.it_interval) == 0);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  report("read disarmed", read(fd, &n, 8));
  // TFD_TIMER_ABSTIME on CLOCK_MONOTONIC, in the future and in the past with an interval.
  fcntl(fd, F_SETFL, 0);
  t0 = now(CLOCK_MONOTONIC);
  s = its(t0 + 80 * MS, 0);
  report("settime abstime +80ms", timerfd_settime(fd, TFD_TIMER_ABSTIME, &s, NULL));
  report("read abstime", read(fd, &n, 8)); report("count", n);
  say("woke after 80ms", now(CLOCK_MONOTONIC) - t0 >= 79 * MS);
  timerfd_gettime(fd, &cur);
  say("one-shot done is 0 0", ns(cur.it_value) == 0 && ns(cur.it_interval) == 0);
  s = its(now(CLOCK_MONOTONIC) - 1000 * MS, 10 * MS);
  report("settime abstime past, 10ms", timerfd_settime(fd, TFD_TIMER_ABSTIME, &s, NULL));
  read(fd, &n, 8);
  say("past: count >= 100", n >= 100 && n < 1000);
  timerfd_gettime(fd, &cur);
  say("past: next within 10ms", ns(cur.it_value) > 0 && ns(cur.it_value) <= 10 * MS);
  s = its(0, 0); timerfd_settime(fd, 0, &s, NULL);
  // Errors.
  s = its(1, 0); s.it_value.tv_nsec = 1000000000;
  report("settime nsec 1e9", timerfd_settime(fd, 0, &s, NULL));
  s = its(1, 0); s.it_interval.tv_sec = -1;
  report("settime negative interval", timerfd_settime(fd, 0, &s, NULL));
  s = its(MS, 0);
  report("settime bad flags", timerfd_settime(fd, 4, &s, NULL));
  report("settime cancel-on-set", timerfd_settime(fd, TFD_TIMER_CANCEL_ON_SET, &s, NULL));
  report("settime bad fd", timerfd_settime(99, 0, &s, NULL));
  report("settime on stdout", timerfd_settime(1, 0, &s, NULL));
  report("settime EFAULT", timerfd_settime(fd, 0, (void *)8, NULL));
  report("gettime on stdout", timerfd_gettime(1, &cur));
  report("gettime EFAULT", timerfd_gettime(fd, (void *)8));
  read(fd, &n, 8);
  // Realtime, absolute, cancel-on-set; BOOTTIME; epoll.
  int rt = timerfd_create(CLOCK_REALTIME, 0);
  s = its(now(CLOCK_REALTIME) + 400 * MS, 0);
  report("realtime abstime cancel-on-set", timerfd_settime(rt, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &s, NULL));
  int bt = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
  s = its(300 * MS, 0);
  timerfd_settime(bt, 0, &s, NULL);
  int ep = epoll_create1(0);
  struct epoll_event ev = { EPOLLIN, { .u64 = 7 } }, out[4];
  report("epoll_ctl add realtime", epoll_ctl(ep, EPOLL_CTL_ADD, rt, &ev));
  ev.data.u64 = 8;
  report("epoll_ctl add boottime", epoll_ctl(ep, EPOLL_CTL_ADD, bt, &ev));
  report("epoll_wait now", epoll_wait(ep, out, 4, 0));
  int got = 0; uint64_t tags = 0;
  t0 = now(CLOCK_MONOTONIC);
  while (got < 2 && now(CLOCK_MONOTONIC) - t0 < 5000 * MS) {
    int r = epoll_wait(ep, out, 4, 5000);
    for (int i = 0; i < r; i++) { tags |= 1u << out[i].data.u64; got++; if (out[i].events != EPOLLIN) printf("events %x\n", out[i].events); read(out[i].data.u64 == 7 ? rt : bt, &n, 8); }
  }
  say("epoll saw both timers", got == 2 && tags == ((1u << 7) | (1u << 8)));
  report("alarm clock as root", timerfd_create(CLOCK_REALTIME_ALARM, 0) >= 0 ? 0 : -1);
  pid_t c = fork();
  if (c == 0) {
    setuid(65534);
    report("alarm clock as nobody", timerfd_create(CLOCK_BOOTTIME_ALARM, 0));
    report("monotonic as nobody", timerfd_create(CLOCK_MONOTONIC, 0) >= 0 ? 0 : -1);
    _exit(0);
  }
  waitpid(c, NULL, 0);
}

static int sfd_read(int fd, struct signalfd_siginfo *si, size_t n) { return read(fd, si, n); }

static void signalfd_mode(void) {
  sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigaddset(&m, SIGUSR2);
  sigprocmask(SIG_BLOCK, &m, NULL);
  sigset_t one; sigemptyset(&one); sigaddset(&one, SIGUSR1);
  report("signalfd4 sizemask 4", syscall(289, -1, &one, 4, 0));
  report("signalfd4 bad flags", signalfd(-1, &one, 1));
  report("signalfd on stdout", signalfd(1, &one, 0));
  report("signalfd bad fd", signalfd(99, &one, 0));
  report("signalfd EFAULT", syscall(289, -1, (void *)8, 8, 0));
  int fd = signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
  say("signalfd", fd >= 0);
  report("F_GETFL", fcntl(fd, F_GETFL) & ~O_LARGEFILE);
  report("F_GETFD", fcntl(fd, F_GETFD));
  char link[64] = ""; readlink("/proc/self/fd/3", link, sizeof link - 1); printf("%-34s %s\n", "link", link);
  struct signalfd_siginfo si[2];
  report("read none pending", sfd_read(fd, si, sizeof si[0]));
  report("read 100 bytes", sfd_read(fd, si, 100));
  report("write", write(fd, si, sizeof si[0]));
  struct pollfd p = { fd, POLLIN | POLLOUT, 0 };
  report("poll none pending", poll(&p, 1, 0));
  kill(getpid(), SIGUSR2);
  report("poll USR2 not in mask", poll(&p, 1, 0));
  kill(getpid(), SIGUSR1);
  report("poll USR1 pending", poll(&p, 1, 0));
  report("revents", p.revents);
  memset(si, 0, sizeof si);
  report("read", sfd_read(fd, si, sizeof si));
  report("ssi_signo", si[0].ssi_signo);
  report("ssi_code", si[0].ssi_code);
  say("ssi_pid is self", si[0].ssi_pid == (uint32_t)getpid());
  report("ssi_uid", si[0].ssi_uid);
  report("read again", sfd_read(fd, si, sizeof si));
  sigset_t two = m;
  report("update mask", signalfd(fd, &two, 0));
  report("poll USR2 now in mask", poll(&p, 1, 0));
  kill(getpid(), SIGUSR1);
  report("read two records", sfd_read(fd, si, sizeof si));
  report("first signo", si[0].ssi_signo);
  report("second signo", si[1].ssi_signo);
  sigset_t pend; sigpending(&pend);
  say("nothing pending", !sigismember(&pend, SIGUSR1) && !sigismember(&pend, SIGUSR2));
  // epoll and a blocking read woken by another process.
  int ep = epoll_create1(0);
  struct epoll_event ev = { EPOLLIN, { .u64 = 5 } }, out[2];
  report("epoll_ctl add", epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
  report("epoll_wait none", epoll_wait(ep, out, 2, 0));
  int go[2]; pipe(go);
  pid_t c = fork();
  if (c == 0) { char x; usleep(300000); kill(getppid(), SIGUSR2); read(go[0], &x, 1); usleep(50000); kill(getppid(), SIGUSR1); _exit(0); }
  report("epoll_wait woken", epoll_wait(ep, out, 2, 5000));
  report("events", out[0].events);
  fcntl(fd, F_SETFL, 0);
  report("blocking read", sfd_read(fd, si, sizeof si[0]));
  report("ssi_signo", si[0].ssi_signo);
  say("ssi_pid is child", si[0].ssi_pid == (uint32_t)c);
  write(go[1], "x", 1);
  report("blocking read 2", sfd_read(fd, si, sizeof si[0]));
  report("ssi_signo", si[0].ssi_signo);
  waitpid(c, NULL, 0);
}

/* A signal sent to the process while every thread blocks it waits in the shared pending set:
   another thread's signalfd reads it; sigpending shows it in every thread; unblocking runs its handler. */
static int sfd_thread_fd;
static volatile int handled;
static void on_usr2(int s) { (void)s; handled++; }
static void *reader(void *a) {
  (void)a;
  struct signalfd_siginfo si;
  long r = read(sfd_thread_fd, &si, sizeof si);
  printf("%-34s %ld\n", "thread read", r);
  printf("%-34s %u\n", "thread ssi_signo", si.ssi_signo);
  printf("%-34s %s\n", "thread ssi_pid is self", si.ssi_pid == (uint32_t)getpid() ? "yes" : "NO");
  fflush(stdout);
  sigset_t pend; sigpending(&pend);
  say("thread sees USR2 pending", sigismember(&pend, SIGUSR2));
  return 0;
}
static void signalfd_threads(void) {
  sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigaddset(&m, SIGUSR2);
  sigprocmask(SIG_BLOCK, &m, NULL);
  signal(SIGUSR2, on_usr2);
  sigset_t one; sigemptyset(&one); sigaddset(&one, SIGUSR1);
  sfd_thread_fd = signalfd(-1, &one, 0);
  kill(getpid(), SIGUSR2);
  sigset_t pend; sigpending(&pend);
  say("main sees USR2 pending", sigismember(&pend, SIGUSR2));
  pthread_t th;
  pthread_create(&th, NULL, reader, NULL);
  usleep(100000);
  kill(getpid(), SIGUSR1);
  pthread_join(th, NULL);
  sigset_t two; sigemptyset(&two); sigaddset(&two, SIGUSR2);
  sigprocmask(SIG_UNBLOCK, &two, NULL);
  report("handler ran on unblock", handled);
  sigpending(&pend);
  say("nothing pending", !sigismember(&pend, SIGUSR1) && !sigismember(&pend, SIGUSR2));
}

/*
 * Checkpoint guests: print ready, then block (in a timerfd read / a signalfd read) across the
 * checkpoint. The timer is due 20 s after ready, as long as the checkpoint command may take (its
 * limit in the test), so the read is still blocked when the checkpoint comes on a loaded machine.
 */
static void timerfd_cp(void) {
  int fd = timerfd_create(CLOCK_MONOTONIC, 0), hour = timerfd_create(CLOCK_BOOTTIME, 0);
  struct itimerspec s = its(20000 * MS, 500 * MS), cur;
  int64_t t0 = now(CLOCK_MONOTONIC);
  timerfd_settime(fd, 0, &s, NULL);
  s = its(3600000 * MS, 60000 * MS);
  timerfd_settime(hour, 0, &s, NULL);
  printf("ready\n"); fflush(stdout);
  uint64_t n = 0;
  report("read", read(fd, &n, 8));
  say("count >= 1", n >= 1);
  say("elapsed >= 20s", now(CLOCK_MONOTONIC) - t0 >= 19999 * MS);
  timerfd_gettime(fd, &cur);
  say("interval 500ms", ns(cur.it_interval) == 500 * MS);
  say("next within 500ms", ns(cur.it_value) > 0 && ns(cur.it_value) <= 500 * MS);
  report("read again", read(fd, &n, 8));
  timerfd_gettime(hour, &cur);
  say("hour timer: interval 60s", ns(cur.it_interval) == 60000 * MS);
  say("hour timer: left in (3500s,3580s]", ns(cur.it_value) > 3500000 * MS && ns(cur.it_value) <= 3580000 * MS);
}

/* The child signals once the gate (argv[2], made by the test after the checkpoint) exists. */
static void signalfd_cp(const char *gate) {
  sigset_t m; sigemptyset(&m); sigaddset(&m, SIGUSR1); sigaddset(&m, SIGUSR2);
  sigprocmask(SIG_BLOCK, &m, NULL);
  sigset_t one; sigemptyset(&one); sigaddset(&one, SIGUSR1);
  int fd = signalfd(-1, &one, 0);
  kill(getpid(), SIGUSR2); // pending across the checkpoint, not in the mask yet
  pid_t c = fork();
  if (c == 0) {
    struct timespec ts = { 0, 20000000 };
    while (access(gate, F_OK)) nanosleep(&ts, NULL);
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  printf("ready\n"); fflush(stdout);
  struct signalfd_siginfo si;
  report("read", read(fd, &si, sizeof si));
  report("ssi_signo", si.ssi_signo);
  say("ssi_pid is child", si.ssi_pid == (uint32_t)c);
  signalfd(fd, &m, SFD_NONBLOCK);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  report("read USR2", read(fd, &si, sizeof si));
  report("ssi_signo", si.ssi_signo);
  report("read none", read(fd, &si, sizeof si));
  waitpid(c, NULL, 0);
}

int main(int argc, char **argv) {
  (void)argc;
  if (!strcmp(argv[1], "timerfd")) timerfd_mode();
  else if (!strcmp(argv[1], "signalfd")) signalfd_mode();
  else if (!strcmp(argv[1], "signalfd-threads")) signalfd_threads();
  else if (!strcmp(argv[1], "timerfd-cp")) timerfd_cp();
  else if (!strcmp(argv[1], "signalfd-cp")) signalfd_cp(argv[2]);
  return 0;
}
`;

const prog = compileStatic('fdkinds', SOURCE, ['-pthread']);

async function nativeLines(mode: string, ...args: string[]): Promise<string[]> {
  const r = await native([prog, mode, ...args], { timeoutMs: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.toString().split('\n').filter(Boolean);
}

describe('timerfd and signalfd against native', () => {
  for (const [mode, lines] of [['timerfd', 52], ['signalfd', 37], ['signalfd-threads', 7]] as const) {
    it(`${mode}: same results as Linux`, async () => {
      const want = await nativeLines(mode);
      expect(want.length).toBe(lines);
      expect(want.filter((l) => l.endsWith(' NO'))).toEqual([]);
      await expectSandboxOutput([prog, mode], want);
    }, 60_000);
  }
});

describe('timerfd and signalfd across checkpoint/restore', () => {
  for (const [mode, waiting] of [['timerfd-cp', 'timerfd-read'], ['signalfd-cp', 'signalfd-read']] as const) {
    it(`${mode}: checkpointed while blocked in a ${waiting}, the restored guest goes on as Linux`, async () => {
      // signalfd-cp's child signals once its gate exists: made after the checkpoint.
      const gate = checkpointGate(`fdkinds-${mode}`);
      const nat = nativeLines(mode, gate.native); // timerfd-cp's takes 20 s: meanwhile, the sandbox
      const c = await checkpointAtReady(`fdkinds-cp-${mode}`, [prog, mode, gate.sandbox]);
      expect(c.before).toEqual(['ready']);
      gate.open();
      const { id, store } = c;
      // The guest was inside the read when it was saved.
      const ins = await snapvisor(['inspect', id, '--store', store, '--json'], { timeoutMs: 20_000 });
      expect(ins.status).toBe(0);
      const report = JSON.parse(ins.stdout.toString()) as { processes: Array<{ threads: Array<{ waiting: string | null }>; timers: Array<{ kind: string; id: number | null; remainingNs: number | null; intervalNs: number }> }> };
      expect(report.processes.flatMap((p) => p.threads.map((th) => th.waiting))).toContain(waiting);
      if (mode === 'timerfd-cp') {
        // Its two timerfds (fds 3 and 4) with their time left and intervals.
        const [t3, t4] = report.processes[0].timers.filter((x) => x.kind === 'timerfd');
        expect([t3.id, t3.intervalNs, t4.id, t4.intervalNs]).toEqual([3, 500e6, 4, 60e9]);
        expect(t3.remainingNs).toBeGreaterThan(0);
        expect(t3.remainingNs).toBeLessThanOrEqual(20e9);
        expect(t4.remainingNs).toBeGreaterThan(3580e9); // less than 20 s went by: t3 has not fired
        expect(t4.remainingNs).toBeLessThanOrEqual(3600e9);
      }
      const r = await restoreChecked(c, 60_000);
      const all = await nat;
      expect(all.filter((l) => l.endsWith(' NO'))).toEqual([]);
      expect(r.stdout.toString().split('\n').filter(Boolean)).toEqual(all.slice(all.indexOf('ready') + 1));
      expect(r.status).toBe(0);
      expect(orphanStubs()).toEqual([]);
    }, 150_000);
  }
});
