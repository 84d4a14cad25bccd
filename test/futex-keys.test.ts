/**
 * Futex keys as Linux's get_futex_key (kernel/futex/core.c): a FUTEX_PRIVATE_FLAG futex is
 * keyed by (mm, address) whatever the mapping; a shared one on a private mapping by (mm, address)
 * too, apart from the private key; only a shared one on a MAP_SHARED mapping by the memory it
 * names. snapvisor keyed shared futexes of private mappings by the word's place in its memory
 * file, which a copy-on-write copy changes: a wake after a fork and a store was lost.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, expectSandboxOutput, native } from './helpers.js';

const FUTEX_KEYS_C = String.raw`
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int *word;
static int op_wait;
static volatile long waited;
static void *waiter(void *arg) {
  struct timespec ts = {10, 0};
  waited = syscall(SYS_futex, word, op_wait, *word, &ts, NULL, 0);
  return NULL;
}
static long wake(int op) { return syscall(SYS_futex, word, op, 1, NULL, NULL, 0); }
/* Wake until one waiter is woken (it may not be waiting yet), for at most ~5 s: how many were. */
static long wake_one(int op) {
  for (int i = 0; i < 100; i++) { if (wake(op) == 1) return 1; usleep(50000); }
  return 0;
}
static void start(int op) { op_wait = op; pthread_t th; pthread_create(&th, NULL, waiter, NULL); pthread_detach(th); }
static const char *result(void) {
  for (int i = 0; i < 300 && waited == 1; i++) usleep(50000);
  const char *r = waited == 0 ? "woken" : "timed out";
  waited = 1;
  return r;
}
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  waited = 1;
  /* A shared (not FUTEX_PRIVATE_FLAG) wait on a private anonymous page, a fork, then the waker's
     store copies the page: Linux keys such a futex by (mm, address), so the wake still finds it. */
  word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  start(FUTEX_WAIT);
  usleep(300000);
  pid_t c = fork();
  if (c == 0) { usleep(500000); _exit(0); }
  *word = 1;
  printf("shared wake after fork and copy: %ld\n", wake_one(FUTEX_WAKE));
  printf("waiter: %s\n", result());
  waitpid(c, NULL, 0);
  /* A private waiter and a shared wake on the same word are different keys. */
  start(FUTEX_WAIT_PRIVATE);
  usleep(1000000);
  printf("shared wake of a private waiter: %ld\n", wake(FUTEX_WAKE));
  printf("private wake of a private waiter: %ld\n", wake_one(FUTEX_WAKE_PRIVATE));
  printf("waiter: %s\n", result());
  /* A private wait on a MAP_SHARED page is keyed by (mm, address) too: a shared wake misses it. */
  word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  start(FUTEX_WAIT_PRIVATE);
  usleep(1000000);
  printf("MAP_SHARED: shared wake of a private waiter: %ld\n", wake(FUTEX_WAKE));
  printf("MAP_SHARED: private wake of a private waiter: %ld\n", wake_one(FUTEX_WAKE_PRIVATE));
  printf("waiter: %s\n", result());
  return 0;
}
`;

const EXPECTED = [
  'shared wake after fork and copy: 1',
  'waiter: woken',
  'shared wake of a private waiter: 0',
  'private wake of a private waiter: 1',
  'waiter: woken',
  'MAP_SHARED: shared wake of a private waiter: 0',
  'MAP_SHARED: private wake of a private waiter: 1',
  'waiter: woken',
].join('\n') + '\n';

describe('futex keys', () => {
  it('a shared wake after a fork and a copy-on-write store finds its waiter; private and shared keys stay apart on private and MAP_SHARED pages: as natively', async () => {
    const prog = compileStatic('futex-keys', FUTEX_KEYS_C, ['-pthread']);
    const nat = await native([prog]);
    expect(nat.stdout.toString()).toBe(EXPECTED);
    expect(nat.status).toBe(0);
    await expectSandboxOutput([prog], EXPECTED, 45_000);
  });
});
