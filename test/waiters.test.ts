/**
 * Blocked syscalls are data (issue 6): rt_sigtimedwait keeps the caller's mask in its waiter and a
 * handled signal interrupts it with EINTR, natively and across a checkpoint; a read of the caller's
 * stdin that a signal interrupts leaves nothing in flight, so the next read gets the bytes.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { checkpointGate, CLI, compileStatic, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

/** rt_sigtimedwait: taken signal, handled-signal EINTR, timeout; the mask after each. */
const SIGTIMEDWAIT_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static volatile int handled;
static void on_alrm(int s) { (void)s; handled++; }
static int blocked(int sig) { sigset_t m; sigprocmask(SIG_BLOCK, 0, &m); return sigismember(&m, sig); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_alrm; sa.sa_flags = SA_RESTART;
  sigaction(SIGALRM, &sa, 0);
  sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, 0);
  struct timespec five = { 5, 0 }, tenth = { 0, 100000000 };
  siginfo_t si;

  /* A handled signal that is not in the set ends the wait with EINTR once its handler ran (even SA_RESTART). */
  struct itimerval it = { { 0, 0 }, { 0, 200000 } };
  setitimer(ITIMER_REAL, &it, 0);
  double t0 = now();
  int r = sigtimedwait(&set, &si, &five);
  printf("handled: r=%d errno=%s handler=%d quick=%d usr1-blocked=%d\n", r, r < 0 ? strerrorname_np(errno) : "-", handled, now() - t0 < 2, blocked(SIGUSR1));

  /* A signal of the set arriving while waiting is taken, with its siginfo; the mask stays the caller's. */
  pid_t child = fork();
  if (child == 0) { usleep(200000); kill(getppid(), SIGUSR1); _exit(0); }
  r = sigtimedwait(&set, &si, &five);
  printf("taken: r=%d signo=%d from-child=%d usr1-blocked=%d\n", r, si.si_signo, si.si_pid == child, blocked(SIGUSR1));
  waitpid(child, 0, 0);

  /* Nothing comes: EAGAIN at the timeout. */
  r = sigtimedwait(&set, &si, &tenth);
  printf("timeout: r=%d errno=%s usr1-blocked=%d\n", r, r < 0 ? strerrorname_np(errno) : "-", blocked(SIGUSR1));

  /* An ignored-by-default signal in the set that the caller blocks is queued, not dropped (real_blocked). */
  sigset_t chld; sigemptyset(&chld); sigaddset(&chld, SIGCHLD); sigprocmask(SIG_BLOCK, &chld, 0);
  child = fork();
  if (child == 0) { usleep(100000); _exit(3); }
  r = sigtimedwait(&chld, &si, &five);
  printf("sigchld: r=%d status=%d\n", r, si.si_status);
  waitpid(child, 0, 0);
  return 0;
}
`;

/**
 * Blocked in sigtimedwait on a blocked SIGUSR1 at the checkpoint: after restore, a child's SIGUSR1
 * is taken and SIGUSR1 is still blocked once the call returns (a second one stays pending). The
 * child sends the first once its gate (argv[1]) exists, which the test makes after the checkpoint,
 * and the second once the parent has taken the first (a byte on a pipe).
 */
const SIGTIMEDWAIT_CP_C = String.raw`
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  (void)argc;
  setvbuf(stdout, 0, _IONBF, 0);
  sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, 0);
  int go[2]; pipe(go);
  pid_t child = fork();
  if (child == 0) {
    struct timespec ts = { 0, 20000000 };
    while (access(argv[1], F_OK)) nanosleep(&ts, 0);
    kill(getppid(), SIGUSR1);
    char x; read(go[0], &x, 1);
    kill(getppid(), SIGUSR1);
    _exit(0);
  }
  printf("waiting\n");
  siginfo_t si;
  struct timespec limit = { 120, 0 }; /* a bound: the gate comes much sooner */
  int r = sigtimedwait(&set, &si, &limit);
  sigset_t m; sigprocmask(SIG_BLOCK, 0, &m);
  printf("got %d usr1-blocked %d\n", r, sigismember(&m, SIGUSR1));
  write(go[1], "x", 1);
  waitpid(child, 0, 0);
  sigset_t p; sigpending(&p);
  printf("second pending %d\n", sigismember(&p, SIGUSR1));
  return 0;
}
`;

/** The first read of stdin is interrupted by a handler without SA_RESTART; the second gets the bytes. */
const STDIN_EINTR_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void on_alrm(int s) { (void)s; }
int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_alrm; /* no SA_RESTART */
  sigaction(SIGALRM, &sa, 0);
  alarm(1);
  char buf[64];
  ssize_t n = read(0, buf, sizeof buf);
  printf("first %zd %s\n", n, n < 0 ? strerrorname_np(errno) : "");
  n = read(0, buf, sizeof buf);
  printf("second %zd %.*s", n, n > 0 ? (int)n : 0, buf);
  return 0;
}
`;

describe('blocked syscalls as data', () => {
  it('rt_sigtimedwait: EINTR from a handled signal, a taken signal, EAGAIN, the mask kept — as natively', async () => {
    const exe = compileStatic('sigtimedwait', SIGTIMEDWAIT_C);
    const nat = await native([exe], { timeoutMs: 20_000 });
    expect(nat.status).toBe(0);
    expect(nat.stdout.toString()).toBe([
      'handled: r=-1 errno=EINTR handler=1 quick=1 usr1-blocked=1',
      'taken: r=10 signo=10 from-child=1 usr1-blocked=1',
      'timeout: r=-1 errno=EAGAIN usr1-blocked=1',
      'sigchld: r=17 status=3',
    ].join('\n') + '\n');
    const sv = await snapvisor(['run', '--', exe], { timeoutMs: 20_000 });
    expect(sv.timedOut).toBe(false);
    expect(sv.stderr).toBe('');
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
    expect(sv.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });

  it('rt_sigtimedwait across a checkpoint: the restored wait takes the signal and the caller keeps SIGUSR1 blocked', async () => {
    const exe = compileStatic('sigtimedwait-cp', SIGTIMEDWAIT_CP_C);
    const gate = checkpointGate('stw');
    const nat = await native([exe, gate.native], { timeoutMs: 20_000 });
    expect(nat.stdout.toString()).toBe('waiting\ngot 10 usr1-blocked 1\nsecond pending 1\n');
    const root = freshDir('stw-root'), store = freshDir('stw-store');
    const name = `stw-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', exe, gate.sandbox], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'waiting', 40_000);
    await new Promise((r) => setTimeout(r, 500)); // well inside the wait
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['waiting']);
    gate.open();
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = await snapvisor(['--root', root, 'restore', id, '--store', store], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('got 10 usr1-blocked 1\nsecond pending 1\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(sleep; echo hello) | guest: a read of stdin interrupted by a handler loses nothing — the next read gets "hello"', async () => {
    const exe = compileStatic('stdin-eintr', STDIN_EINTR_C);
    const expected = 'first -1 EINTR\nsecond 6 hello\n';
    // The writer is `(sleep; echo hello)` made exact: "hello" is written once the guest has
    // reported its interrupted first read, so it can only reach the guest's second read.
    const feed = (argv: string[]) => new Promise<{ out: string; status: number | null; stderr: string }>((resolve) => {
      const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '', stderr = '', fed = false;
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (!fed && out.includes('first ')) { fed = true; child.stdin.end('hello\n'); }
      });
      child.on('close', (status) => { clearTimeout(timer); resolve({ out, status, stderr }); });
    });
    const nat = await feed([exe]);
    expect(nat.out).toBe(expected);
    const sv = await feed([process.execPath, CLI, 'run', '--', exe]);
    expect(sv.stderr).toBe('');
    expect(sv.out).toBe(expected);
    expect(sv.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });
});
