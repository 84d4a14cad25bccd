/**
 * clone(CLONE_VM) without CLONE_THREAD — vfork(2), glibc's posix_spawn — shares the parent's
 * memory (kernel/fork.c copy_mm: the child takes the parent's mm), until the child execs
 * (fs/exec.c exec_mmap gives it a new one) or exits. posix_spawn depends on it: its child stores
 * the exec's errno in the parent's memory, and posix_spawn returns that errno. A copy-on-write
 * copy instead (what snapvisor did) made posix_spawn of a missing program return 0.
 */
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, checkpointGate, compileStatic, expectSandboxOutput, native, orphanStubs, restoreChecked, snapvisor } from './helpers.js';

const CLONE_VM_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static volatile int word;
static volatile char *child_map;
static int stores(void *arg) { word = 42; return 7; }
static int maps(void *arg) {
  /* A mapping the child makes is in the one address space: the parent reads it. */
  char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 1;
  strcpy(m + 4096, "made by the child");
  child_map = m;
  return 0;
}
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t pid = 0;
  int st = -1;
  char *missing[] = {"nope", NULL};
  int r = posix_spawn(&pid, "/nonexistent/nope", NULL, NULL, missing, environ);
  printf("posix_spawn of a missing program: %s\n", r ? strerror(r) : "0");
  char *sh[] = {"busybox", "true", NULL};
  r = posix_spawn(&pid, "/bin/busybox", NULL, NULL, sh, environ);
  if (r == 0) waitpid(pid, &st, 0);
  printf("posix_spawn of busybox true: %d, status %d\n", r, WEXITSTATUS(st));

  size_t sz = 1 << 16;
  char *stack = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  pid = clone(stores, stack + sz, CLONE_VM | SIGCHLD, NULL);
  waitpid(pid, &st, 0);
  printf("clone(CLONE_VM) child: status %d, its store seen: %d\n", WEXITSTATUS(st), word);
  pid = clone(maps, stack + sz, CLONE_VM | SIGCHLD, NULL);
  waitpid(pid, &st, 0);
  printf("clone(CLONE_VM) child's mmap: status %d, %s\n", WEXITSTATUS(st), child_map ? (char *)child_map + 4096 : "(none)");

  /* vfork: the child's stores before it exits are the parent's; an exec leaves them too. */
  char *heap = malloc(1 << 20);
  memset(heap, 'p', 1 << 20);
  word = 0;
  pid = vfork();
  if (pid == 0) { word = 5; _exit(3); }
  waitpid(pid, &st, 0);
  printf("vfork child: status %d, its store seen: %d\n", WEXITSTATUS(st), word);
  pid = vfork();
  if (pid == 0) {
    word = 6;
    char *av[] = {"busybox", "echo", "vfork child exec'd", NULL};
    execv("/bin/busybox", av);
    _exit(127);
  }
  waitpid(pid, &st, 0);
  size_t same = 0;
  for (size_t i = 0; i < (1 << 20); i++) same += heap[i] == 'p';
  printf("after the exec: status %d, store seen: %d, heap intact: %d\n", WEXITSTATUS(st), word, same == (1 << 20));
  return 0;
}
`;

const EXPECTED = [
  'posix_spawn of a missing program: No such file or directory',
  'posix_spawn of busybox true: 0, status 0',
  'clone(CLONE_VM) child: status 7, its store seen: 42',
  "clone(CLONE_VM) child's mmap: status 0, made by the child",
  'vfork child: status 3, its store seen: 5',
  "vfork child exec'd",
  'after the exec: status 0, store seen: 6, heap intact: 1',
].join('\n') + '\n';

describe('clone(CLONE_VM) shares the address space', () => {
  it('posix_spawn reports a missing program, stores and mappings of CLONE_VM and vfork children are the parent\'s, an exec leaves the parent\'s memory alone: as natively', async () => {
    const prog = compileStatic('clone-vm', CLONE_VM_C);
    const nat = await native([prog]);
    expect(nat.stdout.toString()).toBe(EXPECTED);
    expect(nat.status).toBe(0);
    await expectSandboxOutput([prog], EXPECTED, 45_000);
  });

  it('under --memory, a vfork child that fills the shared address space is OOM-killed with its parent (the OOM killer kills every process of the mm, mm/oom_kill.c)', async () => {
    const prog = compileStatic('clone-vm-oom', String.raw`
      #define _GNU_SOURCE
      #include <stdio.h>
      #include <string.h>
      #include <sys/mman.h>
      #include <sys/wait.h>
      #include <unistd.h>
      int main(void) {
        setvbuf(stdout, NULL, _IONBF, 0);
        printf("ready\n");
        pid_t c = vfork();
        if (c == 0) {
          /* 16 MiB at a time: one mapping larger than the limit fails at once (ENOMEM). */
          for (int k = 0; k < 16; k++) {
            size_t len = 16u << 20;
            char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) _exit(9);
            for (size_t i = 0; i < len; i += 4096) m[i] = 1;
          }
          _exit(0);
        }
        int st;
        waitpid(c, &st, 0);
        printf("parent resumed\n");
        return 0;
      }`);
    const r = await snapvisor(['run', '--memory', '64M', '--', prog], { timeoutMs: 60_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stdout.toString()).toBe('ready\n');
    expect(r.status).toBe(137);
    expect(r.stderr).toMatch(/out of memory \(limit 64 MiB\): killed process 2 /);
  });

  it('a vfork child sharing its parent\'s memory across checkpoint and restore: its store after the restore is the parent\'s', async () => {
    const prog = compileStatic('clone-vm-checkpoint', String.raw`
      #define _GNU_SOURCE
      #include <stdio.h>
      #include <sys/syscall.h>
      #include <sys/wait.h>
      #include <time.h>
      #include <unistd.h>
      static volatile int word;
      int main(int argc, char **argv) {
        (void)argc;
        setvbuf(stdout, NULL, _IONBF, 0);
        pid_t c = vfork();
        if (c == 0) {
          /* Raw syscalls only: this runs on the parent's stack. Waits for the gate argv[1] (made after the checkpoint). */
          static const char ready[] = "ready\n";
          syscall(SYS_write, 1, ready, sizeof ready - 1);
          struct timespec ts = {0, 20000000};
          while (syscall(SYS_access, argv[1], F_OK)) syscall(SYS_nanosleep, &ts, NULL);
          word = 77;
          syscall(SYS_exit, 4);
        }
        int st;
        waitpid(c, &st, 0);
        printf("child status %d, its store seen: %d\n", WEXITSTATUS(st), word);
        return 0;
      }`);
    const gate = checkpointGate('clone-vm');
    const nat = await native([prog, gate.native]);
    expect(nat.stdout.toString()).toBe('ready\nchild status 4, its store seen: 77\n');
    const c = await checkpointAtReady('clone-vm', [prog, gate.sandbox]);
    expect(c.before).toEqual(['ready']);
    gate.open();
    const r = await restoreChecked(c);
    expect(r.stdout.toString()).toBe('child status 4, its store seen: 77\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
