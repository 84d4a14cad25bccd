/**
 * Processes, threads and signals with real guests: shells (busybox sh, dash), python3
 * (fork, subprocess, multiprocessing, threading, signals, timers, a segfault), a static
 * C program with pthreads, raw futexes, sigaltstack, and SA_RESTART/EINTR; and limits
 * (RLIMIT_NPROC, the kernel's task limit, `snapvisor kill` of a spinning guest).
 * Wherever the behaviour is deterministic the sandbox's stdout and status are compared
 * with a native run of the same program, and with the expected text.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { compileStatic, freshDir, native, snapvisor, snapvisorStreaming } from './helpers.js';

const PY = '/usr/bin/python3';

/** Run `argv` in the sandbox (cwd /) and natively (cwd /) at the same time. */
async function both(argv: string[], timeoutMs = 30_000) {
  const [sv, nat] = await Promise.all([
    snapvisor(['run', '--', ...argv], { cwd: '/', timeoutMs }),
    native(argv, { cwd: '/', timeoutMs }),
  ]);
  expect(nat.timedOut).toBe(false);
  expect(sv.timedOut).toBe(false);
  return { sv, nat };
}

/** Same stdout (text and bytes) and status as native; returns the sandbox's stdout. */
async function expectSameAsNative(argv: string[], timeoutMs?: number): Promise<string> {
  const { sv, nat } = await both(argv, timeoutMs);
  expect(sv.stdout.toString(), `stderr: ${sv.stderr}`).toBe(nat.stdout.toString());
  expect(sv.stdout.equals(nat.stdout)).toBe(true);
  expect(sv.status, `stderr: ${sv.stderr}`).toBe(nat.status);
  return sv.stdout.toString();
}

// ---------------------------------------------------------------------------------------
// 1. Shells
// ---------------------------------------------------------------------------------------

interface ShellCase { name: string; script: string; stdout: string; status?: number }

const SHELL_CASES: ShellCase[] = [
  {
    name: 'a pipeline of 5 commands',
    script: 'seq 1 2000 | grep 7 | sort -rn | head -n 5 | tr 0-9 a-j; echo "status=$?"',
    stdout: 'bjjh\nbjih\nbjhj\nbjhi\nbjhh\nstatus=0\n',
  },
  {
    name: 'a 5-stage pipeline moving 500 KB, and the status of the last stage',
    script: 'busybox seq 1 100000 | busybox cat | busybox tr 1 x | busybox grep -v 9 | busybox wc -l; seq 1 10 | cat | cat | cat | false; echo "last=$?"',
    stdout: '59049\nlast=1\n',
  },
  {
    name: '$(…) substitutions, nested and with a pipeline inside',
    script: 'x=$(echo a $(echo b $(echo c))); echo "[$x]"; n=$(seq 1 1000 | wc -l); echo "n=$n"; y=`echo back`; echo "$y"; z=$(exit 3); echo "rc=$?"; echo "$(printf "%s-" 1 2 3)"',
    stdout: '[a b c]\nn=1000\nback\nrc=3\n1-2-3-\n',
  },
  {
    name: 'subshells keep their changes to themselves',
    script: 'v=1; (v=2; cd /usr && pwd; echo "in $v"; exit 3); echo "rc=$? v=$v"; pwd; ( (echo nested; exit 4); echo "inner=$?" ); (exit 0) && echo ok',
    stdout: '/usr\nin 2\nrc=3 v=1\n/\nnested\ninner=4\nok\n',
  },
  {
    name: '& and wait: each job\'s status, then wait for all',
    script: '(sleep 0.2; echo slow; exit 3) & a=$!; (echo fast; exit 5) & b=$!; wait $b; echo "b=$?"; wait $a; echo "a=$?"; for i in 1 2 3; do (sleep 0.1; echo "job $i" > /dev/null) & done; wait; echo "all=$?"',
    stdout: 'fast\nb=5\nslow\na=3\nall=0\n',
  },
  {
    name: "trap 'echo got' USR1; kill -USR1 $$",
    script: "trap 'echo got' USR1; kill -USR1 $$; echo after; kill -USR1 $$; trap - USR1; echo reset",
    stdout: 'got\nafter\ngot\nreset\n',
  },
  {
    name: 'a trap in a subshell, signalled by its own child',
    script: "(trap 'echo sub got TERM; exit 9' TERM; /bin/busybox sh -c 'kill -TERM $PPID'; sleep 0.1; echo not reached); echo \"sub=$?\"",
    stdout: 'sub got TERM\nsub=9\n',
  },
  {
    name: "trap 'echo bye' EXIT runs at exit with the exit status",
    script: "trap 'echo bye $?' EXIT; echo body; exit 5",
    stdout: 'body\nbye 5\n',
    status: 5,
  },
  {
    name: 'sleep 10 & kill $!; wait $!; echo $? prints 143 (and 137 for KILL)',
    script: 'sleep 10 & kill $!; wait $!; echo $?; sleep 10 & kill -9 $!; wait $!; echo $?',
    stdout: '143\n137\n',
  },
  {
    name: 'here-documents, read from a pipe, while-read loops',
    script: 'cat <<EOF\nline $((1+1))\nEOF\necho "a b c" | { read x y; echo "$y|$x"; }; printf "1\\n2\\n3\\n" | while read l; do echo "<$l>"; done',
    stdout: 'line 2\nb c|a\n<1>\n<2>\n<3>\n',
  },
  {
    name: 'exec with redirections and exec of another program in a subshell',
    script: 'f=$(mktemp); exec 3>"$f"; echo to3 >&3; exec 3>&-; cat "$f"; rm -f "$f"; (exec /bin/busybox echo "exec\'d"); echo "after=$?"',
    stdout: "to3\nexec'd\nafter=0\n",
  },
  {
    name: 'a killed pipeline member (SIGPIPE) does not hang the pipeline',
    script: 'yes | head -n 3; echo "rc=$?"; busybox seq 1 100000 | head -c 10; echo',
    stdout: 'y\ny\ny\nrc=0\n1\n2\n3\n4\n5\n\n',
  },
];

describe.each([
  { name: 'busybox sh', shell: ['/bin/busybox', 'sh'] },
  { name: 'dash', shell: ['/bin/dash'] },
])('$name -c: same as native', ({ shell }) => {
  it.each(SHELL_CASES)('$name', async ({ script, stdout, status }) => {
    const { sv, nat } = await both([...shell, '-c', script]);
    expect(sv.stdout.toString(), `stderr: ${sv.stderr}`).toBe(nat.stdout.toString());
    expect(sv.status, `stderr: ${sv.stderr}`).toBe(nat.status);
    expect(sv.stdout.toString()).toBe(stdout);
    expect(sv.status).toBe(status ?? 0);
  });

  it('the whole brief in one script, in well under the 10 s of the background sleep', async () => {
    const script = [
      'echo start',
      'seq 1 200 | grep 1 | sort -r | head -n 5 | tr 0-9 a-j',
      'x=$(echo inner $(echo nested)); echo "x=$x"',
      '(cd /usr; echo sub $(pwd); exit 3); echo "sub rc=$?"',
      '(sleep 0.1; echo bg1) & p1=$!',
      '(echo bg2; exit 5) & p2=$!',
      'wait $p1; echo w1=$?',
      'wait $p2; echo w2=$?',
      "trap 'echo got' USR1; kill -USR1 $$; echo after",
      'sleep 10 & kill $!; wait $!; echo $?',
      "trap 'echo bye' EXIT",
      'echo end',
    ].join('\n');
    const t0 = Date.now();
    const out = await expectSameAsNative([...shell, '-c', script]);
    expect(Date.now() - t0).toBeLessThan(8_000);
    expect(out).toBe('start\njb\nib\nhb\ngb\nfb\nx=inner nested\nsub /usr\nsub rc=3\nbg2\nbg1\nw1=0\nw2=5\ngot\nafter\n143\nend\nbye\n');
  });
});

// ---------------------------------------------------------------------------------------
// 2. python3
// ---------------------------------------------------------------------------------------

const py = (...lines: string[]) => [PY, '-c', lines.join('\n')];

describe('python3: processes, threads and signals, same as native', () => {
  it('os.fork + os.waitpid: exit status and death by signal', async () => {
    const out = await expectSameAsNative(py(
      'import os, signal',
      'pid = os.fork()',
      'if pid == 0: os._exit(42)',
      'wpid, st = os.waitpid(pid, 0)',
      'print("exit", wpid == pid, os.WIFEXITED(st), os.WEXITSTATUS(st))',
      'pid = os.fork()',
      'if pid == 0:',
      '    os.kill(os.getpid(), signal.SIGTERM)',
      '    os._exit(1)',
      'wpid, st = os.waitpid(pid, 0)',
      'print("signal", wpid == pid, os.WIFSIGNALED(st), os.WTERMSIG(st))',
      'pids = [os.fork() or os._exit(i) for i in range(1, 6)]',
      'print("many", sorted(os.WEXITSTATUS(os.waitpid(p, 0)[1]) for p in pids))',
      'try: os.waitpid(-1, 0)',
      'except ChildProcessError as e: print("no children", e.errno)',
    ));
    expect(out).toBe('exit True True 42\nsignal True True 15\nmany [1, 2, 3, 4, 5]\nno children 10\n');
  });

  it('subprocess.run(["ls"]), with captured output, input and status', async () => {
    const out = await expectSameAsNative(py(
      'import subprocess',
      'r = subprocess.run(["ls"], cwd="/usr")',
      'print("ls rc", r.returncode, flush=True)',
      'r = subprocess.run(["ls", "/usr"], capture_output=True, text=True)',
      'print("captured", r.returncode, "bin" in r.stdout.split())',
      'r = subprocess.run(["ls", "/nonexistent-dir"], capture_output=True)',
      'print("missing", r.returncode, len(r.stderr) > 0)',
      'big = bytes(range(256)) * 4000',
      'r = subprocess.run(["/bin/cat"], input=big, capture_output=True)',
      'print("cat", r.returncode, r.stdout == big)',
    ));
    expect(out).toMatch(/^bin\n/m);
    expect(out).toMatch(/ls rc 0\ncaptured 0 True\nmissing 2 True\ncat 0 True\n$/);
  });

  it('multiprocessing.Pool(2).map(abs, range(-10, 0))', async () => {
    const out = await expectSameAsNative(py(
      'import multiprocessing',
      'with multiprocessing.Pool(2) as p:',
      '    print(p.map(abs, range(-10, 0)))',
    ));
    expect(out).toBe('[10, 9, 8, 7, 6, 5, 4, 3, 2, 1]\n');
  });

  it('threading: 8 threads incrementing under a Lock, and a Condition ping-pong', async () => {
    const out = await expectSameAsNative(py(
      'import threading',
      'lock = threading.Lock(); count = 0',
      'def work():',
      '    global count',
      '    for _ in range(5000):',
      '        with lock:',
      '            c = count; count = c + 1',
      'ts = [threading.Thread(target=work) for _ in range(8)]',
      'for t in ts: t.start()',
      'for t in ts: t.join()',
      'print("count", count)',
      'cond = threading.Condition(); turn = ["ping"]; log = []',
      'def player(me, other):',
      '    for i in range(50):',
      '        with cond:',
      '            while turn[0] != me: cond.wait()',
      '            log.append(me); turn[0] = other; cond.notify_all()',
      'a = threading.Thread(target=player, args=("ping", "pong"))',
      'b = threading.Thread(target=player, args=("pong", "ping"))',
      'a.start(); b.start(); a.join(); b.join()',
      'print("pingpong", len(log), log == ["ping", "pong"] * 50)',
      'print("alive", threading.active_count())',
    // ~6 s on a quiet CI machine; 45-59 s (10 s of CPU) at load ~10, where 8 threads contend for
    // the lock on 2 loaded cores: limits that fit that, a hang still fails.
    ), 120_000);
    expect(out).toBe('count 40000\npingpong 100 True\nalive 1\n');
  }, 150_000);

  it('signal.signal(SIGALRM) + signal.alarm(1) fires once, after about a second', async () => {
    const out = await expectSameAsNative(py(
      'import signal, time',
      'got = []',
      'signal.signal(signal.SIGALRM, lambda s, f: got.append(s))',
      't0 = time.monotonic(); w0 = time.time()',
      'print("previous", signal.alarm(1))',
      'while not got: signal.pause()',
      'el, wel = time.monotonic() - t0, time.time() - w0',
      'print("got", got, 0.9 <= el < 2.0, 0.9 <= wel < 2.0)',
      'signal.alarm(5); print("remaining", signal.alarm(0))',
    ));
    expect(out).toBe('previous 0\ngot [14] True True\nremaining 5\n');
  });

  it('time.sleep(0.2) takes 0.2 s, within 20%', async () => {
    const sv = await snapvisor(['run', '--', ...py(
      'import time',
      'for _ in range(5):',
      '    t0 = time.monotonic(); w0 = time.time(); time.sleep(0.2)',
      '    print(time.monotonic() - t0, time.time() - w0)',
    )]);
    expect(sv.stderr).toBe('');
    expect(sv.status).toBe(0);
    const rows = sv.stdout.toString().trim().split('\n').map((l) => l.split(' ').map(Number));
    expect(rows.length).toBe(5);
    for (const [mono, wall] of rows) {
      expect(mono).toBeGreaterThanOrEqual(0.16);
      expect(wall).toBeGreaterThanOrEqual(0.16);
    }
    // The median, so that one late wake-up on a loaded machine does not fail the test.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    expect(median(rows.map((r) => r[0]))).toBeLessThanOrEqual(0.24);
    expect(median(rows.map((r) => r[1]))).toBeLessThanOrEqual(0.24);
  });

  it('ctypes.string_at(0) dies of SIGSEGV: status 139, like native', async () => {
    const { sv, nat } = await both(py('import ctypes', 'print("before", flush=True)', 'ctypes.string_at(0)', 'print("after")'));
    expect(nat.status).toBe(139);
    expect(sv.status).toBe(139);
    expect(sv.stdout.toString()).toBe('before\n');
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
  });

  it('a child process that segfaults is reported to its parent as SIGSEGV', async () => {
    const out = await expectSameAsNative(py(
      'import os, ctypes',
      'pid = os.fork()',
      'if pid == 0: ctypes.string_at(0)',
      'st = os.waitpid(pid, 0)[1]',
      'print(os.WIFSIGNALED(st), os.WTERMSIG(st))',
    ));
    expect(out).toBe('True 11\n');
  });

  it('stop/continue, fork and exec from threads, SIGINT as KeyboardInterrupt, abort', async () => {
    const out = await expectSameAsNative(py(
      'import os, signal, threading, time, sys',
      'pid = os.fork()',
      'if pid == 0:',
      '    for i in range(30): time.sleep(0.02)',
      '    os._exit(3)',
      'os.kill(pid, signal.SIGSTOP)',
      'st = os.waitpid(pid, os.WUNTRACED)[1]; print("stopped", os.WIFSTOPPED(st), os.WSTOPSIG(st))',
      'os.kill(pid, signal.SIGCONT)',
      'st = os.waitpid(pid, os.WCONTINUED)[1]; print("continued", os.WIFCONTINUED(st))',
      'print("exit", os.WEXITSTATUS(os.waitpid(pid, 0)[1]))',
      'res = []',
      'def forker():',
      '    p = os.fork()',
      '    if p == 0: os._exit(len(threading.enumerate()))',
      '    res.append(os.waitpid(p, 0)[1] >> 8)',
      'bs = [threading.Thread(target=time.sleep, args=(0.3,)) for _ in range(3)]',
      'for b in bs: b.start()',
      't = threading.Thread(target=forker); t.start(); t.join()',
      'for b in bs: b.join()',
      'print("fork in a thread", res)',
      'pid = os.fork()',
      'if pid == 0:',
      '    for _ in range(2): threading.Thread(target=time.sleep, args=(5,), daemon=True).start()',
      '    threading.Thread(target=lambda: os.execv("/bin/busybox", ["busybox", "sh", "-c", "echo exec from a thread; exit 12"])).start()',
      '    time.sleep(5); os._exit(99)',
      'print("exec in a thread", os.waitpid(pid, 0)[1] >> 8)',
      // The child says it is in its try before the SIGINT (a fixed 0.2 s raced its fork handlers at load ~8).
      'r, w = os.pipe()',
      'pid = os.fork()',
      'if pid == 0:',
      '    try: os.write(w, b"x"); time.sleep(5)',
      '    except KeyboardInterrupt: os._exit(33)',
      '    os._exit(0)',
      'os.read(r, 1); os.kill(pid, signal.SIGINT)',
      'print("sigint", os.waitpid(pid, 0)[1] >> 8)',
      'pid = os.fork()',
      'if pid == 0: os.abort()',
      'print("abort", os.WTERMSIG(os.waitpid(pid, 0)[1]))',
    ));
    expect(out).toBe('stopped True 19\ncontinued True\nexit 3\nfork in a thread [1]\nexec from a thread\nexec in a thread 12\nsigint 33\nabort 6\n');
  });
});

// ---------------------------------------------------------------------------------------
// 3. A static C program: pthreads, futex, sigaltstack + SIGSEGV, SA_RESTART vs EINTR
// ---------------------------------------------------------------------------------------

const C_THREADS = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *en(int e) { return e ? strerrorname_np(e) : "0"; }
static long futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts) {
  return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* --- 4 threads, a mutex-protected counter, a condition variable --- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long counter;
static int ready, arrived;
static void *incr(void *arg) {
  for (int i = 0; i < 50000; i++) { pthread_mutex_lock(&mu); counter++; pthread_mutex_unlock(&mu); }
  pthread_mutex_lock(&mu);
  arrived++;
  pthread_cond_broadcast(&cv);
  while (!ready) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return (void *)((intptr_t)arg * 10);
}
static void test_threads(void) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, incr, (void *)(intptr_t)(i + 1));
  pthread_mutex_lock(&mu);
  while (arrived < 4) pthread_cond_wait(&cv, &mu);
  ready = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  long sum = 0;
  for (int i = 0; i < 4; i++) { void *r; pthread_join(th[i], &r); sum += (intptr_t)r; }
  printf("threads: counter=%ld arrived=%d joined=%ld\n", counter, arrived, sum);
  struct timespec dl; clock_gettime(CLOCK_REALTIME, &dl); dl.tv_nsec += 50000000; if (dl.tv_nsec >= 1000000000) { dl.tv_sec++; dl.tv_nsec -= 1000000000; }
  pthread_mutex_lock(&mu);
  int r = pthread_cond_timedwait(&cv, &mu, &dl);
  pthread_mutex_unlock(&mu);
  printf("cond_timedwait: %s\n", en(r));
}

/* --- raw futex wait/wake --- */
static uint32_t fword, gate;
static int woken_waiters;
static void *waker(void *arg) {
  (void)arg;
  usleep(100000);
  __atomic_store_n(&fword, 1, __ATOMIC_SEQ_CST);
  return (void *)futex(&fword, FUTEX_WAKE_PRIVATE, 1, NULL);
}
static void *gate_waiter(void *arg) {
  (void)arg;
  while (__atomic_load_n(&gate, __ATOMIC_SEQ_CST) == 0) futex(&gate, FUTEX_WAIT_PRIVATE, 0, NULL);
  __atomic_fetch_add(&woken_waiters, 1, __ATOMIC_SEQ_CST);
  return NULL;
}
static void test_futex(void) {
  long r = futex(&fword, FUTEX_WAIT_PRIVATE, 5, NULL);
  printf("futex: value mismatch r=%ld errno=%s\n", r, r < 0 ? en(errno) : "0");
  struct timespec ts = {0, 30000000};
  double t0 = now();
  r = futex(&fword, FUTEX_WAIT_PRIVATE, 0, &ts);
  printf("futex: timeout r=%ld errno=%s waited=%d\n", r, r < 0 ? en(errno) : "0", now() - t0 >= 0.029);
  printf("futex: wake nobody=%ld\n", futex(&fword, FUTEX_WAKE_PRIVATE, 1, NULL));
  pthread_t th;
  pthread_create(&th, NULL, waker, NULL);
  r = futex(&fword, FUTEX_WAIT_PRIVATE, 0, NULL);
  void *woke;
  pthread_join(th, &woke);
  printf("futex: wait r=%ld fword=%u waker woke %ld\n", r, fword, (long)(intptr_t)woke);
  /* three waiters: wake 2 of them, then the rest */
  pthread_t w[3];
  for (int i = 0; i < 3; i++) pthread_create(&w[i], NULL, gate_waiter, NULL);
  usleep(200000);
  long first = futex(&gate, FUTEX_WAKE_PRIVATE, 2, NULL); /* spurious wake-ups: they wait again */
  usleep(100000);
  __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
  long rest = futex(&gate, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL);
  for (int i = 0; i < 3; i++) pthread_join(w[i], NULL);
  printf("futex: woke %ld then %ld, %d waiters done\n", first, rest, woken_waiters);
}

/* --- sigaltstack + SIGSEGV handler that recovers with siglongjmp --- */
static sigjmp_buf jb;
static volatile void *fault_addr;
static volatile int on_altstack, fault_code;
static void segv(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  stack_t cur;
  sigaltstack(NULL, &cur);
  on_altstack = (cur.ss_flags & SS_ONSTACK) != 0;
  fault_addr = si->si_addr;
  fault_code = si->si_code;
  siglongjmp(jb, sig);
}
static volatile long depth;
static long recurse(long n) { volatile char buf[1024]; buf[0] = (char)n; depth = n; return recurse(n + 1) + buf[0]; }
static void test_segv(void) {
  stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0};
  if (sigaltstack(&ss, NULL)) perror("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  long pg = sysconf(_SC_PAGESIZE);
  char *p = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(p + pg, pg); /* an unmapped page between two mapped ones */
  for (int round = 0; round < 3; round++) {
    int s = sigsetjmp(jb, 1);
    if (s == 0) {
      p[pg + 10] = 1;
      printf("segv: no fault?!\n");
    } else {
      printf("segv: round %d sig=%d addr_ok=%d code=%d altstack=%d\n", round, s, fault_addr == p + pg + 10, fault_code, on_altstack);
    }
  }
  mprotect(p, pg, PROT_READ);
  if (sigsetjmp(jb, 1) == 0) p[1] = 1;
  printf("segv: write to read-only page code=%d, still readable=%d\n", fault_code, p[1] == 0);
  sigset_t m;
  sigprocmask(SIG_BLOCK, NULL, &m);
  printf("segv: SIGSEGV blocked after siglongjmp=%d\n", sigismember(&m, SIGSEGV));
  on_altstack = 0;
  if (sigsetjmp(jb, 1) == 0) recurse(0);
  printf("segv: stack overflow recovered on the alternate stack=%d deep=%d\n", on_altstack, depth > 1000);
}

/* --- SA_RESTART vs EINTR --- */
static void on_alrm(int s) { (void)s; }
static void handler(int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alrm;
  sa.sa_flags = flags;
  sigaction(SIGALRM, &sa, NULL);
}
static void arm_ms(int ms) {
  struct itimerval it = {{0, 0}, {0, ms * 1000}};
  setitimer(ITIMER_REAL, &it, NULL);
}
static uint32_t rw;
static void *wake_rw_later(void *arg) {
  (void)arg;
  usleep(300000);
  __atomic_store_n(&rw, 1, __ATOMIC_SEQ_CST);
  futex(&rw, FUTEX_WAKE_PRIVATE, 1, NULL);
  return NULL;
}
static void test_restart(int flags, const char *name) {
  handler(flags);
  /* a blocking read from a pipe, interrupted by SIGALRM: continues with SA_RESTART, else EINTR */
  int fds[2];
  pipe(fds);
  pid_t child = fork();
  if (child == 0) { close(fds[0]); usleep(300000); write(fds[1], "late", 4); _exit(0); }
  close(fds[1]);
  arm_ms(100);
  char buf[16];
  errno = 0;
  ssize_t n = read(fds[0], buf, sizeof buf);
  printf("%s: pipe read=%zd errno=%s", name, n, n < 0 ? en(errno) : "0");
  if (n > 0) printf(" data=%.*s", (int)n, buf);
  printf("\n");
  int st;
  waitpid(child, &st, 0);
  close(fds[0]);
  /* wait4: restarted too */
  child = fork();
  if (child == 0) { usleep(300000); _exit(5); }
  arm_ms(100);
  errno = 0;
  pid_t w = waitpid(child, &st, 0);
  printf("%s: waitpid ok=%d errno=%s\n", name, w == child, en(errno));
  if (w != child) waitpid(child, &st, 0);
  /* an untimed futex wait is restarted (ERESTARTSYS) */
  rw = 0;
  pthread_t th;
  pthread_create(&th, NULL, wake_rw_later, NULL);
  arm_ms(100);
  errno = 0;
  long fr = futex(&rw, FUTEX_WAIT_PRIVATE, 0, NULL);
  printf("%s: futex wait r=%ld errno=%s\n", name, fr, en(fr < 0 ? errno : 0));
  pthread_join(th, NULL);
}

/* Interfaces that fail with EINTR after a handler even with SA_RESTART (signal(7)). */
static void test_never_restarted(int flags, const char *name) {
  handler(flags);
  /* a timed futex wait: ERESTART_RESTARTBLOCK, i.e. EINTR after a handler */
  rw = 0;
  struct timespec ts = {1, 0};
  arm_ms(100);
  errno = 0;
  double t0 = now();
  long fr = futex(&rw, FUTEX_WAIT_PRIVATE, 0, &ts);
  printf("%s: timed futex wait r=%ld errno=%s early=%d\n", name, fr, en(errno), now() - t0 < 0.6);
  /* never restarted: nanosleep (with the time left in rem), poll, pause */
  struct timespec req = {1, 0}, rem = {-1, -1};
  arm_ms(100);
  errno = 0;
  int r = nanosleep(&req, &rem);
  printf("%s: nanosleep r=%d errno=%s rem_ok=%d\n", name, r, en(errno), rem.tv_sec == 0 && rem.tv_nsec > 500000000);
  arm_ms(100);
  errno = 0;
  r = poll(NULL, 0, 1000);
  printf("%s: poll r=%d errno=%s\n", name, r, en(errno));
  arm_ms(50);
  errno = 0;
  r = pause();
  printf("%s: pause r=%d errno=%s\n", name, r, en(errno));
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1 && strcmp(argv[1], "never-restarted") == 0) {
    test_never_restarted(SA_RESTART, "SA_RESTART");
    test_never_restarted(0, "no SA_RESTART");
    return 0;
  }
  test_threads();
  test_futex();
  test_segv();
  test_restart(SA_RESTART, "SA_RESTART");
  test_restart(0, "no SA_RESTART");
  return 0;
}
`;

const C_EXPECTED = `threads: counter=200000 arrived=4 joined=100
cond_timedwait: ETIMEDOUT
futex: value mismatch r=-1 errno=EAGAIN
futex: timeout r=-1 errno=ETIMEDOUT waited=1
futex: wake nobody=0
futex: wait r=0 fword=1 waker woke 1
futex: woke 2 then 3, 3 waiters done
segv: round 0 sig=11 addr_ok=1 code=1 altstack=1
segv: round 1 sig=11 addr_ok=1 code=1 altstack=1
segv: round 2 sig=11 addr_ok=1 code=1 altstack=1
segv: write to read-only page code=2, still readable=1
segv: SIGSEGV blocked after siglongjmp=0
segv: stack overflow recovered on the alternate stack=1 deep=1
SA_RESTART: pipe read=4 errno=0 data=late
SA_RESTART: waitpid ok=1 errno=0
SA_RESTART: futex wait r=0 errno=0
no SA_RESTART: pipe read=-1 errno=EINTR
no SA_RESTART: waitpid ok=0 errno=EINTR
no SA_RESTART: futex wait r=-1 errno=EINTR
`;

/** Sleeps never end before their deadline (CLOCK_MONOTONIC), relative or absolute. */
const C_SLEEP_DEADLINE = String.raw`
#include <stdio.h>
#include <time.h>
static long long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(void) {
  int early_abs = 0, early_rel = 0;
  long long worst = 0;
  for (int i = 0; i < 40; i++) {
    long long d = ns() + 10000000 + i * 137000;
    struct timespec ts = {d / 1000000000, d % 1000000000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    long long n = ns();
    if (n < d) { early_abs++; if (d - n > worst) worst = d - n; }
    struct timespec r = {0, 10000000 + i * 137000};
    long long t0 = ns();
    nanosleep(&r, NULL);
    n = ns();
    if (n - t0 < r.tv_nsec) { early_rel++; if (r.tv_nsec - (n - t0) > worst) worst = r.tv_nsec - (n - t0); }
  }
  printf("early wake-ups: absolute %d/40, relative %d/40, worst %lld us\n", early_abs, early_rel, worst / 1000);
  return 0;
}
`;

const C_NEVER_RESTARTED_EXPECTED = `SA_RESTART: timed futex wait r=-1 errno=EINTR early=1
SA_RESTART: nanosleep r=-1 errno=EINTR rem_ok=1
SA_RESTART: poll r=-1 errno=EINTR
SA_RESTART: pause r=-1 errno=EINTR
no SA_RESTART: timed futex wait r=-1 errno=EINTR early=1
no SA_RESTART: nanosleep r=-1 errno=EINTR rem_ok=1
no SA_RESTART: poll r=-1 errno=EINTR
no SA_RESTART: pause r=-1 errno=EINTR
`;

describe('a static C program (gcc -static -pthread)', () => {
  it('pthreads, futex, sigaltstack + SIGSEGV recovery, SA_RESTART vs EINTR: same as native', async () => {
    const exe = compileStatic('threads', C_THREADS, ['-pthread']);
    const { sv, nat } = await both([exe]);
    expect(nat.stdout.toString()).toBe(C_EXPECTED);
    expect(nat.status).toBe(0);
    // Line by line first, so that a failure names the line.
    expect(sv.stdout.toString().split('\n')).toEqual(nat.stdout.toString().split('\n'));
    expect(sv.stderr).toBe('');
    expect(sv.status).toBe(0);
  });

  it('pthread_cancel of threads blocked in read and sleep, TLS, a robust mutex, pthread_exit of the main thread', async () => {
    const exe = compileStatic('pthreadmisc', String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
static int p[2];
static void cleanup(void *a) { printf("cleanup %s\n", (char *)a); }
static void *reader(void *a) { (void)a; char b; pthread_cleanup_push(cleanup, "reader"); read(p[0], &b, 1); pthread_cleanup_pop(0); return NULL; }
static void *sleeper(void *a) { (void)a; pthread_cleanup_push(cleanup, "sleeper"); sleep(10); pthread_cleanup_pop(0); return NULL; }
static __thread int tls = 5;
static void *tlsf(void *a) { tls += (int)(long)a; return (void *)(long)tls; }
static pthread_mutex_t rm;
static void *die_holding(void *a) { (void)a; pthread_mutex_lock(&rm); return NULL; }
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pipe(p);
  pthread_t a, b; void *r;
  pthread_create(&a, NULL, reader, NULL); pthread_create(&b, NULL, sleeper, NULL);
  usleep(100000);
  pthread_cancel(a); pthread_join(a, &r); printf("reader canceled=%d\n", r == PTHREAD_CANCELED);
  pthread_cancel(b); pthread_join(b, &r); printf("sleeper canceled=%d\n", r == PTHREAD_CANCELED);
  pthread_t t[3]; long sum = 0;
  for (long i = 0; i < 3; i++) pthread_create(&t[i], NULL, tlsf, (void *)i);
  for (int i = 0; i < 3; i++) { pthread_join(t[i], &r); sum += (long)r; }
  printf("tls sum=%ld main tls=%d\n", sum, tls);
  pthread_mutexattr_t at; pthread_mutexattr_init(&at); pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&rm, &at);
  pthread_create(&a, NULL, die_holding, NULL); pthread_join(a, NULL);
  int e = pthread_mutex_lock(&rm);
  printf("robust lock after owner died: %s\n", strerrorname_np(e));
  pthread_mutex_consistent(&rm); pthread_mutex_unlock(&rm);
  /* detached threads and exit of main thread via pthread_exit */
  pid_t c = fork();
  if (c == 0) {
    pthread_create(&a, NULL, sleeper, NULL);
    pthread_detach(a);
    pthread_exit(NULL); /* the process lives on while its detached thread sleeps */
  }
  usleep(200000);
  int st; printf("waitpid nohang while a thread lives: %d\n", waitpid(c, &st, WNOHANG));
  kill(c, SIGKILL); waitpid(c, &st, 0);
  printf("killed %d\n", WTERMSIG(st));
  return 0;
}
`, ['-pthread']);
    const out = await expectSameAsNative([exe]);
    expect(out).toBe('cleanup reader\nreader canceled=1\ncleanup sleeper\nsleeper canceled=1\ntls sum=18 main tls=5\n'
      + 'robust lock after owner died: EOWNERDEAD\nwaitpid nohang while a thread lives: 0\nkilled 9\n');
  });

  // signal(7): a timed futex wait, nanosleep (which reports the time left), poll and pause
  // fail with EINTR after a handler, SA_RESTART or not.
  it('syscalls never restarted after a handler: timed futex wait, nanosleep (rem), poll, pause', async () => {
    const exe = compileStatic('threads', C_THREADS, ['-pthread']);
    const { sv, nat } = await both([exe, 'never-restarted']);
    expect(nat.stdout.toString()).toBe(C_NEVER_RESTARTED_EXPECTED);
    expect(sv.stdout.toString().split('\n')).toEqual(nat.stdout.toString().split('\n'));
    expect(sv.status).toBe(0);
  });

  it('nanosleep and clock_nanosleep(TIMER_ABSTIME) never return before the deadline', async () => {
    const exe = compileStatic('sleepdeadline', C_SLEEP_DEADLINE);
    const { sv, nat } = await both([exe]);
    expect(nat.stdout.toString()).toBe('early wake-ups: absolute 0/40, relative 0/40, worst 0 us\n');
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
    expect(sv.status).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// 4. Limits
// ---------------------------------------------------------------------------------------

describe('limits', () => {
  // RLIMIT_NPROC does not bind uid 0 (as on Linux), so the guests drop to uid 54321 first. They
  // run only in the sandbox: natively a fork bomb's limit would also count the host's tasks of
  // that uid. test/limits.test.ts compares RLIMIT_NPROC with native.
  it('a fork bomb under RLIMIT_NPROC 50 gets EAGAIN and the kernel survives', async () => {
    const t0 = Date.now();
    const sv = await snapvisor(['run', '--', ...py(
      'import os, resource',
      'resource.setrlimit(resource.RLIMIT_NPROC, (50, 50)); os.setgid(54321); os.setuid(54321)',
      'while True:',
      '    try: os.fork()',
      '    except OSError as e: os.write(1, b"EAGAIN %d\\n" % e.errno); os._exit(0)',
    )], { timeoutMs: 90_000 });
    expect(sv.timedOut).toBe(false);
    expect(sv.status).toBe(0);
    const lines = sv.stdout.toString().trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(new Set(lines)).toEqual(new Set(['EAGAIN 11']));
    // 2.4 s on a quiet machine; 12–28 s in CI runs at load 8 (~50 python forks at tens of ms each,
    // docs/benchmarks.md "Fork and exec"), up to 53 s at load 11–19: a hang, not slowness, fails.
    expect(Date.now() - t0).toBeLessThan(75_000);
    // … and the kernel still runs new sandboxes.
    const after = await snapvisor(['run', '--', '/bin/busybox', 'echo', 'alive']);
    expect(after.stdout.toString()).toBe('alive\n');
  }, 120_000);

  it('RLIMIT_NPROC counts live children and zombies; reaping frees the slots', async () => {
    const sv = await snapvisor(['run', '--', ...py(
      'import os, resource, signal, time',
      'resource.setrlimit(resource.RLIMIT_NPROC, (20, 20)); os.setgid(54321); os.setuid(54321)',
      'kids = []',
      'while True:',
      '    try: pid = os.fork()',
      '    except OSError as e: err = e.errno; break',
      '    if pid == 0: time.sleep(30); os._exit(0)',
      '    kids.append(pid)',
      'print("forked", len(kids), "then errno", err)',
      'os.kill(kids[0], signal.SIGKILL); time.sleep(0.2)',
      'try: os.fork() or os._exit(0); print("fork with a zombie: ok")',
      'except OSError as e: print("fork with a zombie:", e.errno)',
      'for k in kids[1:]: os.kill(k, signal.SIGKILL)',
      'print("reaped", sorted(set(os.WTERMSIG(os.waitpid(k, 0)[1]) for k in kids)))',
      'pid = os.fork()',
      'if pid == 0: os._exit(3)',
      'print("fork after reaping", os.WEXITSTATUS(os.waitpid(pid, 0)[1]))',
    )]);
    expect(sv.stderr).toBe('');
    expect(sv.status).toBe(0);
    expect(sv.stdout.toString()).toBe('forked 19 then errno 11\nfork with a zombie: 11\nreaped [9]\nfork after reaping 3\n');
  });

  it('without an rlimit, the kernel\'s task limit gives EAGAIN, and everything is reaped', async () => {
    const exe = compileStatic('forkall', String.raw`
      #define _GNU_SOURCE
      #include <errno.h>
      #include <signal.h>
      #include <stdio.h>
      #include <string.h>
      #include <sys/wait.h>
      #include <unistd.h>
      static pid_t kids[4096];
      int main(void) {
        int n = 0, e = 0;
        for (;;) {
          pid_t p = fork();
          if (p < 0) { e = errno; break; }
          if (p == 0) { pause(); _exit(0); }
          kids[n++] = p;
          if (n == 4096) break;
        }
        printf("stopped by %s after %s\n", e ? strerrorname_np(e) : "nothing", n > 100 && n < 4096 ? "many" : "?");
        for (int i = 0; i < n; i++) kill(kids[i], SIGKILL);
        int r = 0, st;
        while (wait(&st) > 0) if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) r++;
        printf("reaped all=%d errno=%s\n", r == n, strerrorname_np(errno));
        return 0;
      }`);
    const sv = await snapvisor(['run', '--', exe], { timeoutMs: 40_000 });
    expect(sv.timedOut).toBe(false);
    expect(sv.stdout.toString()).toBe('stopped by EAGAIN after many\nreaped all=1 errno=ECHILD\n');
    expect(sv.status).toBe(0);
  });

  it('snapvisor kill ends a guest spinning in `while True: pass` (run exits 137)', async () => {
    const root = freshDir('root');
    const name = `spin-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', ...py('print("spinning", flush=True)', 'while True: pass')]);
    await run.waitFor((l) => l === 'spinning');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const k = await snapvisor(['--root', root, 'kill', name]);
    expect(k.stderr).toBe('');
    expect(k.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('snapvisor kill ends spinning threads and spinning child processes too', async () => {
    const root = freshDir('root');
    const name = `spin-${randomBytes(4).toString('hex')}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', ...py(
      'import os, threading',
      'def spin():',
      '    while True: pass',
      'for i in range(2):',
      '    if os.fork() == 0: spin()',
      'threading.Thread(target=spin, daemon=True).start()',
      'print("spinning", flush=True)',
      'spin()',
    )]);
    await run.waitFor((l) => l === 'spinning');
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const k = await snapvisor(['--root', root, 'kill', name]);
    expect(k.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(Date.now() - t0).toBeLessThan(5_000);
    // The name is free again.
    const again = await snapvisor(['--root', root, 'run', '--name', name, '--', '/bin/true']);
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
  });
});

describe('copy-on-write fork of a large process', () => {
  it('a 500 MB python3 forks in well under a second without copying its memory', async () => {
    const script = [
      'import os, time',
      'b = bytearray(500 * 1024 * 1024)',
      'for i in range(0, len(b), 4096): b[i] = 1',
      't0 = time.monotonic()',
      'pid = os.fork()',
      'if pid == 0:',
      '    b[0] = 7; os._exit(b[4096])',
      '_, st = os.waitpid(pid, 0)',
      'print(round((time.monotonic() - t0) * 1000), os.WEXITSTATUS(st), b[0])',
    ].join('\n');
    const r = await snapvisor(['run', '--', '/usr/bin/python3', '-c', script], { timeoutMs: 60_000 });
    expect(r.status).toBe(0);
    const [ms, childSaw, parentHas] = r.stdout.toString().trim().split(' ').map(Number);
    expect(childSaw).toBe(1);   // the child saw the parent's memory
    expect(parentHas).toBe(1);  // and its write did not reach the parent
    expect(ms).toBeLessThan(1000);
  });
});

describe('credentials', () => {
  it('set*id rules match Linux: root may set anything, then an unprivileged process only ids it holds', async () => {
    const script = [
      'import os',
      'def tryit(name, f, *a):',
      '    try: f(*a); print(name, "ok", os.getresuid(), os.getresgid())',
      '    except OSError as e: print(name, "errno", e.errno)',
      'tryit("setgroups", os.setgroups, [5, 6]); print(sorted(os.getgroups()))',
      'tryit("setresgid", os.setresgid, 1000, 1000, 1000)',
      'tryit("setreuid", os.setreuid, 1000, 1001)',
      'tryit("setuid-back-to-saved", os.setuid, 1000)',
      'tryit("setuid-root", os.setuid, 0)',
      'tryit("seteuid-real", os.seteuid, 1000)',
      'tryit("setgroups-unpriv", os.setgroups, [])',
    ].join('\n');
    const [a, b] = await Promise.all([snapvisor(['run', '--', '/usr/bin/python3', '-c', script]), native(['/usr/bin/python3', '-c', script])]);
    expect(b.status).toBe(0);
    expect(a.stdout.toString()).toBe(b.stdout.toString());
  });
});

describe('madvise after fork', () => {
  it("a child's MADV_DONTNEED zeroes its own copy-on-write pages, never its parent's", async () => {
    const script = [
      'import mmap, os',
      'm = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS); m[0:5] = b"hello"',
      'pid = os.fork()',
      'if pid == 0:',
      '    m.madvise(mmap.MADV_DONTNEED); print("child", m[0:5]); os._exit(0)',
      'os.waitpid(pid, 0); print("parent", m[0:5])',
      'm.madvise(mmap.MADV_DONTNEED); print("after", m[0:5])',
    ].join('\n');
    const [a, b] = await Promise.all([snapvisor(['run', '--', '/usr/bin/python3', '-c', script]), native(['/usr/bin/python3', '-c', script])]);
    expect(b.status).toBe(0);
    expect(a.stdout.toString()).toBe(b.stdout.toString());
    expect(a.stdout.toString()).toMatch(/^parent b'hello'$/m);
  });
});
