/**
 * Nothing a guest does can hang or crash the kernel (issue 9, point 3): loops over guest-supplied
 * ranges walk VMAs, not pages, and the stub's own pages are out of the guest's reach.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileStatic, freshDir, native, orphanStubs, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

/** Memory syscalls over huge, unmapped, wrapping and partly mapped ranges, with their errno. */
const MM_RANGES_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
#define R(name, call) do { errno = 0; long r = (long)(call); printf("%s %ld %d\n", name, r, r < 0 ? errno : 0); } while (0)
static unsigned char vec[64];
int main(void) {
  const size_t TiB = 1ULL << 40;
  void *lo = (void *)0x200000000000ULL; /* unmapped in both worlds */
  double t0 = now();
  R("madvise-1tib-dontneed", syscall(SYS_madvise, lo, TiB, MADV_DONTNEED));
  R("madvise-1tib-normal", syscall(SYS_madvise, lo, TiB, MADV_NORMAL));
  R("madvise-neg", syscall(SYS_madvise, (void *)0x100000, (size_t)-4096, MADV_DONTNEED));
  R("madvise-badadvice", syscall(SYS_madvise, lo, 4096, 12345));
  R("madvise-zero", syscall(SYS_madvise, lo, 0, MADV_DONTNEED));
  R("madvise-unaligned", syscall(SYS_madvise, (char *)lo + 1, 4096, MADV_DONTNEED));
  R("madvise-beyond", syscall(SYS_madvise, (void *)0x7ffffffff000ULL, TiB, MADV_DONTNEED));
  R("mincore-1tib", syscall(SYS_mincore, lo, TiB, vec));
  R("mincore-neg", syscall(SYS_mincore, (void *)0x100000, (size_t)-4096, vec));
  R("mincore-beyond", syscall(SYS_mincore, (void *)0x7ffffffff000ULL, 8192, vec));
  R("mprotect-1tib", syscall(SYS_mprotect, lo, TiB, PROT_READ));
  R("mprotect-neg", syscall(SYS_mprotect, (void *)0x100000, (size_t)-4096, PROT_READ));
  R("munmap-1tib", syscall(SYS_munmap, lo, TiB));
  R("munmap-neg", syscall(SYS_munmap, (void *)0x100000, (size_t)-4096));
  R("munmap-beyond", syscall(SYS_munmap, (void *)0x7ffffffff000ULL, 8192));
  R("msync-1tib", syscall(SYS_msync, lo, TiB, MS_ASYNC));
  R("msync-neg", syscall(SYS_msync, (void *)0x100000, (size_t)-4096, MS_ASYNC));
  R("msync-badflags", syscall(SYS_msync, lo, 4096, MS_ASYNC | MS_SYNC));
  R("msync-zero", syscall(SYS_msync, lo, 0, MS_ASYNC));
  R("mlock-1tib", syscall(SYS_mlock, lo, TiB));
  R("mlock-neg", syscall(SYS_mlock, (void *)0x100000, (size_t)-4096));
  R("munlock-1tib", syscall(SYS_munlock, lo, TiB));
  R("munlock-neg", syscall(SYS_munlock, (void *)0x100000, (size_t)-4096));
  R("mlockall-0", syscall(SYS_mlockall, 0));
  R("mremap-1tib", syscall(SYS_mremap, lo, TiB, 4096, 0));
  char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  m[0] = 1; m[2 * 4096] = 2;
  munmap(m + 4096, 4096);
  R("madvise-gap", syscall(SYS_madvise, m, 3 * 4096, MADV_DONTNEED));
  printf("after-dontneed %d %d\n", m[0], m[2 * 4096]);
  R("mincore-gap", syscall(SYS_mincore, m, 3 * 4096, vec));
  R("mincore-badvec", syscall(SYS_mincore, m, 4096, (void *)8));
  R("mincore-gap-badvec", syscall(SYS_mincore, m + 4096, 4096, (void *)8));
  R("msync-gap", syscall(SYS_msync, m, 3 * 4096, MS_ASYNC));
  R("mlock-gap", syscall(SYS_mlock, m, 3 * 4096));
  R("mlock-ok", syscall(SYS_mlock, m, 4096));
  R("mlock-unaligned", syscall(SYS_mlock, m + 10, 100));
  R("munlock-ok", syscall(SYS_munlock, m, 4096));
  R("mprotect-gap", syscall(SYS_mprotect, m, 3 * 4096, PROT_READ));
  printf("fast %d\n", now() - t0 < 0.5);
  return 0;
}
`;

/** The stub's page sits at 0x7ffff0000000 in every guest address space: the guest cannot touch it. */
const STUB_REACH_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#define R(name, call) do { errno = 0; long r = (long)(call); printf("%s %d\n", name, r < 0 ? errno : 0); fflush(stdout); } while (0)
int main(void) {
  void *hint = (void *)0x7fffeffff000ULL;
  char *m = mmap(hint, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  printf("mmap-at-hint %d\n", m == hint);
  R("munmap-over-stub", syscall(SYS_munmap, hint, 0x200000));
  R("munmap-stub", syscall(SYS_munmap, (void *)0x7ffff0000000ULL, 4096));
  R("mprotect-over-stub", syscall(SYS_mprotect, hint, 0x200000, PROT_NONE));
  R("mmap-fixed-stub", mmap((void *)0x7ffff0000000ULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0));
  R("madvise-over-stub", syscall(SYS_madvise, hint, 0x200000, MADV_DONTNEED));
  R("mremap-onto-stub", syscall(SYS_mremap, m, 4096, 0x200000, 0));
  m[0] = 7;
  /* More mappings after all that: the stub must still be able to map them. */
  char *n = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  n[12345] = 1;
  printf("alive %d %d\n", m[0], n[12345]);
  return 0;
}
`;

/** N threads released at once from a barrier, each computing for a while; or N busy child processes. */
const MANY_TASKS_C = String.raw`
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
static pthread_barrier_t barrier;
static unsigned long spin(unsigned long n) { volatile unsigned long x = 0; for (unsigned long i = 0; i < n; i++) x += i; return x; }
static void *worker(void *arg) { (void)arg; pthread_barrier_wait(&barrier); spin(500000); return 0; }
int main(int argc, char **argv) {
  int n = atoi(argv[2]);
  if (!strcmp(argv[1], "threads")) {
    pthread_t *th = calloc(n, sizeof *th);
    pthread_attr_t a; pthread_attr_init(&a); pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_barrier_init(&barrier, 0, n + 1);
    for (int i = 0; i < n; i++) if (pthread_create(&th[i], &a, worker, 0)) { printf("create %d failed\n", i); return 1; }
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < n; i++) pthread_join(th[i], 0);
    printf("joined %d threads\n", n);
  } else {
    for (int i = 0; i < n; i++) {
      pid_t p = fork();
      if (p < 0) { printf("fork %d failed\n", i); return 1; }
      if (p == 0) { usleep(300000); spin(500000); _exit(7); }
    }
    int ok = 0, st;
    while (wait(&st) > 0) ok += WIFEXITED(st) && WEXITSTATUS(st) == 7;
    printf("reaped %d processes\n", ok);
  }
  return 0;
}
`;

/** Calls into the [vsyscall] page at its fixed addresses: time, gettimeofday, getcpu. */
const VSYSCALL_C = String.raw`
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
typedef long (*time_fn)(long *);
typedef long (*gtod_fn)(struct timeval *, void *);
typedef long (*getcpu_fn)(unsigned *, unsigned *, void *);
int main(void) {
  long t = ((time_fn)0xffffffffff600400)(0);
  struct timeval tv; long r = ((gtod_fn)0xffffffffff600000)(&tv, 0);
  unsigned cpu = 99, node = 99; long g = ((getcpu_fn)0xffffffffff600800)(&cpu, &node, 0);
  long now = time(0);
  printf("time-ok %d gettimeofday %ld ok %d getcpu %ld cpu-ok %d node %u\n", now - t >= 0 && now - t < 5, r, now - tv.tv_sec >= 0 && now - tv.tv_sec < 5, g, cpu < 1024, node);
  return 0;
}
`;

/** int 0x80 from 64-bit code: i386 numbers (write 4, getpid 20, getuid32 199, exit 1); 13 (time) is not served. */
const INT80_C = String.raw`
#include <stdio.h>
#include <unistd.h>
static long int80(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile ("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return r;
}
static char msg[] = "hello via int 0x80\n";
int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  long w = int80(4, 1, (long)msg, sizeof msg - 1);
  long p = int80(20, 0, 0, 0), u = int80(199, 0, 0, 0);
  printf("write %ld getpid-ok %d getuid-ok %d\n", w, p == getpid(), u == (long)getuid());
  printf("time %ld\n", int80(13, 0, 0, 0));
  int80(1, 3, 0, 0);
  return 0;
}
`;

/** A guest that misbehaves in every thread: computing, hammering syscalls, blocked on its own full pipe. */
const MISBEHAVE_C = String.raw`
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static void *spin(void *a) { (void)a; volatile unsigned long x = 0; for (;;) x++; return 0; }
static void *hammer(void *a) { (void)a; for (;;) { madvise((void *)0x200000000000ULL, 1ULL << 40, MADV_DONTNEED); getppid(); } return 0; }
static void *stuck(void *a) { (void)a; int p[2]; pipe(p); static char buf[1 << 20]; memset(buf, 1, sizeof buf); write(p[1], buf, sizeof buf); return 0; }
int main(void) {
  pthread_t t;
  pthread_create(&t, 0, spin, 0); pthread_create(&t, 0, hammer, 0); pthread_create(&t, 0, stuck, 0);
  printf("misbehaving\n"); fflush(stdout);
  spin(0);
  return 0;
}
`;

describe('no guest-reachable hang', () => {
  it('madvise, mincore, mprotect, munmap, msync, mlock over 1 TiB and wrapping ranges answer at once with Linux errno', async () => {
    const exe = compileStatic('mm-ranges', MM_RANGES_C);
    const nat = await native([exe]);
    const t0 = Date.now();
    const sv = await snapvisor(['run', '--', exe], { timeoutMs: 20_000 });
    const ms = Date.now() - t0;
    expect(nat.status).toBe(0);
    expect(nat.stdout.toString()).toMatch(/madvise-neg -1 22\n/);
    expect(nat.stdout.toString()).toMatch(/fast 1\n/);
    expect(sv.timedOut).toBe(false);
    expect(sv.stderr).toBe('');
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
    expect(sv.status).toBe(0);
    expect(ms).toBeLessThan(10_000);
    expect(orphanStubs()).toEqual([]);
  });

  it("the stub's pages cannot be unmapped, protected or mapped over; the guest gets EINVAL/ENOMEM and goes on", async () => {
    const exe = compileStatic('stub-reach', STUB_REACH_C);
    const sv = await snapvisor(['run', '--', exe], { timeoutMs: 20_000 });
    expect(sv.timedOut).toBe(false);
    expect(sv.stderr).toBe('');
    expect(sv.stdout.toString()).toBe([
      'mmap-at-hint 1',
      'munmap-over-stub 22', // a reserved range, as addresses above TASK_SIZE: EINVAL
      'munmap-stub 22',
      'mprotect-over-stub 12', // nothing the guest mapped there: ENOMEM
      'mmap-fixed-stub 12',
      'madvise-over-stub 12',
      'mremap-onto-stub 12', // cannot grow in place over it, and may not move
      'alive 7 1',
    ].join('\n') + '\n');
    expect(sv.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });

  it('300 threads released from a barrier, and 300 busy processes, all run to the end', async () => {
    const exe = compileStatic('many-tasks', MANY_TASKS_C, ['-pthread']);
    for (const [kind, line] of [['threads', 'joined 300 threads'], ['processes', 'reaped 300 processes']]) {
      const t0 = Date.now();
      const sv = await snapvisor(['run', '--', exe, kind, '300'], { timeoutMs: 120_000 });
      expect(sv.timedOut, `${kind}: ${Date.now() - t0} ms`).toBe(false);
      expect(sv.stderr).toBe('');
      expect(sv.stdout.toString()).toBe(line + '\n');
      expect(sv.status).toBe(0);
    }
    expect(orphanStubs()).toEqual([]);
  }, 300_000);

  it("a stub keeps nothing of the host's: only its own page, its batch table, [vsyscall] and memory-file windows, under its seccomp filter", async () => {
    // The stub prepares itself before its first stop (platforms/ptrace/stub.ts SETUP).
    const sv = snapvisorStreaming(['run', '--rootfs', '/', '--', '/bin/sh', '-c', 'echo up; exec sleep 30'], { timeoutMs: 40_000 });
    try {
      await sv.waitFor((l) => l === 'up', 20_000);
      const stubs = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try { return fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(sv.child.pid); } catch { return false; }
      });
      expect(stubs.length).toBe(1);
      const maps = fs.readFileSync(`/proc/${stubs[0]}/maps`, 'utf8').trim().split('\n');
      const names = maps.map((l) => l.split(/\s+/).slice(5).join(' '));
      expect(names.filter((n) => !n.startsWith('/memfd:snapvisor-memory'))).toEqual(['/memfd:snapvisor-stub (deleted)', '/memfd:snapvisor-stub-batch (deleted)', '[vsyscall]']);
      expect(maps.find((l) => l.endsWith('/memfd:snapvisor-stub (deleted)'))).toMatch(/^7ffff0000000-7ffff0001000 r-xp /);
      expect(maps.find((l) => l.endsWith('/memfd:snapvisor-stub-batch (deleted)'))).toMatch(/^7ffff0010000-7ffff0020000 r--s /);
      expect(fs.readFileSync(`/proc/${stubs[0]}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m);
    } finally {
      sv.child.kill('SIGKILL');
      await sv.done;
    }
    expect(orphanStubs()).toEqual([]);
  });

  it('the vsyscall page is trapped: time, gettimeofday and getcpu there are served by the kernel', async () => {
    const exe = compileStatic('vsyscall', VSYSCALL_C);
    const sv = await snapvisor(['run', '--strace', '--', exe], { timeoutMs: 20_000 });
    expect(sv.timedOut).toBe(false);
    expect(sv.status).toBe(0);
    expect(sv.stdout.toString()).toBe('time-ok 1 gettimeofday 0 ok 1 getcpu 0 cpu-ok 1 node 0\n');
    // Each call reached the kernel as the syscall it stands for (the host would answer it untrapped).
    expect(sv.stderr).toMatch(/^\[1\] time\(0\) = /m);
    expect(sv.stderr).toMatch(/^\[1\] gettimeofday\(0x[0-9a-f]+, 0\) = 0$/m);
    expect(sv.stderr).toMatch(/^\[1\] getcpu\(0x[0-9a-f]+, 0x[0-9a-f]+, 0\) = 0$/m);
    expect(orphanStubs()).toEqual([]);
  });

  it('int 0x80 is what the host makes it: the i386 table for the calls served (ENOSYS for others), or SIGSEGV where the host has no i386 entry', async () => {
    const exe = compileStatic('int80', INT80_C);
    const nat = await native([exe]);
    const sv = await snapvisor(['run', '--', exe], { timeoutMs: 20_000 });
    expect(sv.timedOut).toBe(false);
    if (nat.status === 139) {
      console.log('int 0x80: this host has no i386 syscall entry (native SIGSEGV); the sandbox must do the same');
      expect(sv.status).toBe(139);
      expect(sv.stdout.toString()).toBe('');
      return;
    }
    expect(nat.stdout.toString()).toMatch(/^hello via int 0x80\nwrite 19 getpid-ok 1 getuid-ok 1\ntime \d+\n$/);
    expect(nat.status).toBe(3);
    expect(sv.stdout.toString()).toBe('hello via int 0x80\nwrite 19 getpid-ok 1 getuid-ok 1\ntime -38\n');
    expect(sv.status).toBe(3);
  });

  it('kill and checkpoint answer in time while every thread of the guest misbehaves', async () => {
    const exe = compileStatic('misbehave', MISBEHAVE_C, ['-pthread']);
    const root = freshDir('misbehave-root'), store = freshDir('misbehave-store');
    const name = `misbehave-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', exe], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'misbehaving', 20_000);
    let t0 = Date.now();
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 30_000 });
    expect(cp.timedOut).toBe(false);
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    t0 = Date.now();
    const k = await snapvisor(['--root', root, 'kill', name], { timeoutMs: 20_000 });
    expect(k.stderr).toBe('');
    expect(k.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a control request with no answer gives up at its timeout with one line', async () => {
    // A "sandbox" whose control socket accepts and never answers (as a wedged kernel would).
    const root = freshDir('mute-root');
    const server = net.createServer(() => undefined);
    await new Promise<void>((r) => server.listen(path.join(root, 'mute.sock'), () => r()));
    try {
      for (const [cmd, extra] of [['kill', []], ['checkpoint', ['--store', freshDir('mute-store')]]] as const) {
        const t0 = Date.now();
        const r = await snapvisor(['--root', root, cmd, 'mute', ...extra, '--timeout', '1'], { timeoutMs: 20_000 });
        expect(r.timedOut).toBe(false);
        expect(r.status).toBe(1);
        expect(stderrLines(r.stderr)).toHaveLength(1);
        expect(r.stderr).toMatch(new RegExp(`no answer from the sandbox to '${cmd}' within 1 s`));
        expect(Date.now() - t0).toBeLessThan(10_000);
      }
    } finally {
      server.close();
    }
    expect(fs.existsSync(path.join(root, 'mute.sock'))).toBe(false);
  });
});
