/**
 * Resource limits the sandbox enforces (issue 9 point 4): RLIMIT_AS, RLIMIT_DATA (mmap, brk,
 * mremap, mprotect ENOMEM), RLIMIT_FSIZE (short writes, EFBIG plus SIGXFSZ, whose default action
 * kills) and RLIMIT_NPROC (fork/clone EAGAIN per real uid, threads and zombies counted, root
 * exempt). One C program per limit runs natively and in the sandbox; the outputs must be equal.
 * Each also runs across a checkpoint taken after the limits are set (and, for NPROC, after the
 * drop to another uid): the restored sandbox must go on exactly as the native run did.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native, testTmpDir } from './helpers.js';

const LIMITS = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MiB (1L << 20)
static void report(const char *what, long r) { printf("%-32s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok"); fflush(stdout); }
static void reportn(const char *what, long r) { if (r < 0) report(what, r); else { printf("%-32s %ld\n", what, r); fflush(stdout); } }
static void lim(int res, rlim_t soft, rlim_t hard) { struct rlimit r = { soft, hard }; if (setrlimit(res, &r)) { perror("setrlimit"); exit(2); } }
/* Checkpointed here: in the sandbox, goes on once the gate argv[3] exists (made after the checkpoint). */
static void ready(int argc, char **argv) {
  printf("ready\n"); fflush(stdout);
  struct timespec ts = { 0, 20000000 };
  while (argc > 3 && access(argv[3], F_OK)) nanosleep(&ts, 0);
}
static long mapr(void *p) { return p == MAP_FAILED ? -1 : 0; }
static volatile int xfsz;
static void onxfsz(int s) { (void)s; xfsz++; }
static void *idle(void *a) { (void)a; pause(); return 0; }
static long sbrkr(long n) { return sbrk(n) == (void *)-1 ? -1 : 0; }

int main(int argc, char **argv) {
  const char *mode = argv[1];
  printf("start %s\n", mode); fflush(stdout);
  if (!strcmp(mode, "as")) {
    lim(RLIMIT_AS, 64 * MiB, RLIM_INFINITY);
    ready(argc, argv);
    void *m[100]; int n = 0;
    while (n < 100 && (m[n] = mmap(0, 16 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) != MAP_FAILED) n++;
    printf("as: %d mappings of 16 MiB, then %s\n", n, strerrorname_np(errno));
    report("PROT_NONE 16 MiB", mapr(mmap(0, 16 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
    report("MAP_SHARED 16 MiB", mapr(mmap(0, 16 * MiB, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0)));
    report("MAP_FIXED over one", mapr(mmap(m[0], 16 * MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)));
    report("mremap grow by 16 MiB", mapr(mremap(m[0], 16 * MiB, 32 * MiB, MREMAP_MAYMOVE)));
    report("sbrk 16 MiB", sbrkr(16 * MiB));
    report("munmap one", munmap(m[1], 16 * MiB));
    report("mmap 16 MiB again", mapr(mmap(0, 16 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
    report("mmap 4 KiB more", mapr(mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
  } else if (!strcmp(mode, "data")) {
    lim(RLIMIT_DATA, 32 * MiB, RLIM_INFINITY);
    ready(argc, argv);
    report("sbrk 16 MiB", sbrkr(16 * MiB));
    report("sbrk -16 MiB", sbrkr(-16 * MiB));
    report("sbrk 40 MiB", sbrkr(40 * MiB));
    int n = 0;
    while (n < 100 && mmap(0, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) n++;
    printf("data: %d private writable mappings of 8 MiB, then %s\n", n, strerrorname_np(errno));
    void *ro = mmap(0, 8 * MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    report("read-only private 8 MiB", mapr(ro));
    report("shared writable 8 MiB", mapr(mmap(0, 8 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)));
    report("mprotect it writable", mprotect(ro, 8 * MiB, PROT_READ | PROT_WRITE));
    report("sbrk 8 MiB", sbrkr(8 * MiB));
    report("stack-like MAP_GROWSDOWN", mapr(mmap(0, 8 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0)));
  } else if (!strcmp(mode, "fsize")) {
    const char *path = argv[2];
    lim(RLIMIT_FSIZE, 10000, RLIM_INFINITY);
    signal(SIGXFSZ, onxfsz);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) { perror("open"); return 2; }
    ready(argc, argv);
    static char buf[8000];
    memset(buf, 'x', sizeof buf);
    reportn("write 8000", write(fd, buf, 8000));
    reportn("write 8000 again", write(fd, buf, 8000));
    reportn("write 1 at the limit", write(fd, buf, 1));
    reportn("write 0 at the limit", write(fd, buf, 0));
    reportn("pwrite 10 at 20000", pwrite(fd, buf, 10, 20000));
    reportn("pwrite 100 at 9950", pwrite(fd, buf, 100, 9950));
    reportn("ftruncate 10001", ftruncate(fd, 10001));
    reportn("ftruncate 10000", ftruncate(fd, 10000));
    reportn("ftruncate 5000", ftruncate(fd, 5000));
    reportn("truncate 20000", truncate(path, 20000));
    reportn("fallocate 0..20000", fallocate(fd, 0, 0, 20000));
    reportn("fallocate KEEP_SIZE", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 20000));
    int a = open(path, O_WRONLY | O_APPEND);
    lseek(fd, 0, SEEK_SET);
    reportn("O_APPEND write 8000 at 5000", write(a, buf, 8000));
    printf("SIGXFSZ caught %d times\n", xfsz);
    pid_t c = fork();
    if (c == 0) { signal(SIGXFSZ, SIG_DFL); write(a, buf, 10); _exit(0); }
    int st; waitpid(c, &st, 0);
    printf("default action: %s %d\n", WIFSIGNALED(st) ? "killed by signal" : "exited", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    struct stat sb; fstat(fd, &sb);
    printf("size %ld\n", (long)sb.st_size);
    unlink(path);
  } else if (!strcmp(mode, "nproc")) {
    lim(RLIMIT_NPROC, 3, 3);
    pid_t kids[5];
    for (int i = 0; i < 5; i++) { kids[i] = fork(); if (kids[i] == 0) { pause(); _exit(0); } }
    report("root forks past the limit", kids[4]);
    for (int i = 0; i < 5; i++) { kill(kids[i], SIGKILL); waitpid(kids[i], 0, 0); }
    report("setgid 54321", setgid(54321));
    report("setuid 54321", setuid(54321));
    ready(argc, argv);
    pid_t a = fork();
    if (a == 0) { pause(); _exit(0); }
    report("fork (2 tasks)", a);
    pthread_t th;
    int e = pthread_create(&th, 0, idle, 0);
    errno = e; report("thread (3 tasks)", e ? -1 : 0);
    pid_t b = fork();
    if (b == 0) _exit(0);
    report("fork (4th task)", b);
    e = pthread_create(&th, 0, idle, 0);
    errno = e; report("thread (4th task)", e ? -1 : 0);
    kill(a, SIGKILL);
    siginfo_t si; waitid(P_PID, a, &si, WEXITED | WNOWAIT);
    pid_t z = fork();
    if (z == 0) _exit(0);
    report("fork with a zombie left", z);
    waitpid(a, 0, 0);
    z = fork();
    if (z == 0) _exit(0);
    report("fork after reaping it", z);
    if (z > 0) waitpid(z, 0, 0);
    report("raise the hard limit", setrlimit(RLIMIT_NPROC, &(struct rlimit){ 3, 10 }));
    report("lower the soft limit", setrlimit(RLIMIT_NPROC, &(struct rlimit){ 2, 3 }));
    z = fork();
    if (z == 0) _exit(0);
    report("fork over the lowered limit", z);
  } else if (!strcmp(mode, "prlimit")) {
    /* prlimit64 of another process changes that process's limits, not the caller's. */
    pid_t c = fork();
    if (c == 0) { pause(); _exit(0); }
    struct rlimit o, me0, me1, mf0, mf1;
    getrlimit(RLIMIT_CORE, &me0); getrlimit(RLIMIT_NOFILE, &mf0);
    report("prlimit child CORE 3/3", prlimit(c, RLIMIT_CORE, &(struct rlimit){ 3, 3 }, 0));
    prlimit(c, RLIMIT_CORE, 0, &o);
    printf("child CORE %ld/%ld\n", (long)o.rlim_cur, (long)o.rlim_max);
    report("prlimit child NOFILE 64/1024", prlimit(c, RLIMIT_NOFILE, &(struct rlimit){ 64, 1024 }, 0));
    prlimit(c, RLIMIT_NOFILE, 0, &o);
    printf("child NOFILE %ld/%ld\n", (long)o.rlim_cur, (long)o.rlim_max);
    getrlimit(RLIMIT_CORE, &me1); getrlimit(RLIMIT_NOFILE, &mf1);
    printf("own limits unchanged: %s\n", !memcmp(&me0, &me1, sizeof me0) && !memcmp(&mf0, &mf1, sizeof mf0) ? "yes" : "no");
    kill(c, SIGKILL); waitpid(c, 0, 0);
  }
  printf("done\n");
  return 0;
}
`;

let prog: string;
beforeAll(() => { prog = compileStatic('limits', LIMITS, ['-pthread']); });

async function nativeLines(mode: string): Promise<string[]> {
  const r = await native([prog, mode, path.join(freshDir(`limits-native-${mode}`), 'f')], { timeoutMs: 30_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.toString().split('\n').filter(Boolean);
}

describe('resource limits against native', () => {
  for (const mode of ['as', 'data', 'fsize', 'nproc', 'prlimit']) {
    it(`${mode}: same results as Linux`, async () => {
      const want = await nativeLines(mode);
      expect(want[want.length - 1]).toBe('done');
      await expectSandboxOutput([prog, mode, path.join(freshDir(`limits-sandbox-${mode}`), 'f')], want);
    }, 60_000);
  }
});

describe('resource limits across checkpoint/restore', () => {
  for (const mode of ['as', 'data', 'fsize', 'nproc']) {
    it(`${mode}: the restored sandbox keeps the limits`, async () => {
      const base = freshDir(`limits-cp-${mode}-files`);
      const gate = checkpointGate(`limits-${mode}`);
      // nproc's guest looks for it as uid 54321: the directories above it must let it by.
      for (const d of [testTmpDir(), path.dirname(gate.sandbox)]) fs.chmodSync(d, 0o755);
      await expectCheckpointRestoreMatches(`limits-cp-${mode}`, [prog, mode, path.join(base, 'f'), gate.sandbox], await nativeLines(mode), gate.open);
    }, 120_000);
  }
});
