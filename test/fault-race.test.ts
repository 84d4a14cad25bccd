/**
 * Threads faulting while their address space changes: a guest fault that came just as the
 * stub was interrupted for a mapping change (PTRACE_INTERRUPT's event stop came first, the
 * SIGSEGV stayed pending) was taken for a fault of the stub's own injection site, and the
 * sandbox died with "stub's injection site faulted (signal 11)". Two threads first-touching
 * fresh mappings (each touch a fault the kernel serves) while two others map, protect and
 * unmap: it died within seconds before the fix, every time.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, expectSandboxOutput, orphanStubs } from './helpers.js';

const RACE = `#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static volatile int stop;
static void *toucher(void *a) {
  long n = 0;
  while (!stop) {
    char *p = mmap(0, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < (8 << 20); i += 4096) p[i] = 1;   /* first touches: faults served by the kernel */
    munmap(p, 8 << 20); n++;
  }
  return (void *)n;
}
static void *mapper(void *a) {
  long n = 0;
  while (!stop) { void *p = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); mprotect(p, 4096, PROT_NONE); munmap(p, 4096); n++; }
  return (void *)n;
}
int main(int argc, char **argv) {
  pthread_t t[4];
  pthread_create(&t[0], 0, toucher, 0); pthread_create(&t[1], 0, toucher, 0);
  pthread_create(&t[2], 0, mapper, 0); pthread_create(&t[3], 0, mapper, 0);
  struct timespec d = { atoi(argv[1]), 0 }; nanosleep(&d, 0); stop = 1;
  long total = 0; for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); total += (long)r; }
  printf("ok %ld\\n", total > 0 ? 1L : 0L);
  return 0;
}
`;

describe('faults racing mapping changes', () => {
  it('threads touching fresh memory while other threads mmap/mprotect/munmap run to the end', async () => {
    const exe = compileStatic('fault-race', RACE, ['-pthread']);
    await expectSandboxOutput([exe, '6'], 'ok 1\n', 120_000);
    expect(orphanStubs()).toEqual([]);
  }, 150_000);
});
