/**
 * Garbage pointers passed to syscalls give EFAULT to the guest (as Linux does) and the
 * kernel keeps running: a static C guest makes raw syscalls with bad pointers.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, native, snapvisor } from './helpers.js';

const EFAULT_C = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void report(const char *name, long r) {
  printf("%s %ld %d\\n", name, r, r < 0 ? errno : 0);
  fflush(stdout);
}

int main(void) {
  char statbuf[256];
  int null = open("/dev/null", O_RDONLY);
  int file = open("/etc/passwd", O_RDONLY);
  if (null < 0 || file < 0) { perror("open"); return 2; }
  errno = 0; report("read-devnull", syscall(SYS_read, null, (void *)1, 10));
  errno = 0; report("read-file", syscall(SYS_read, file, (void *)1, 10));
  errno = 0; report("write", syscall(SYS_write, 1, (void *)0xdead0000, 5));
  errno = 0; report("stat", syscall(SYS_stat, (void *)8, statbuf));
  errno = 0; report("openat", syscall(SYS_openat, AT_FDCWD, (char *)0x10, 0));
  errno = 0; report("clock_gettime", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)16));
  errno = 0; report("uname", syscall(SYS_uname, (void *)24));
  errno = 0; report("getcwd", syscall(SYS_getcwd, (char *)32, 100));
  printf("alive\\n");
  return 0;
}
`;

// read(2) of /dev/null returns 0 (EOF) without touching the buffer, so Linux gives 0 there,
// not EFAULT; the regular-file read is the one that must fault.
const EXPECTED = [
  'read-devnull 0 0',
  'read-file -1 14',
  'write -1 14',
  'stat -1 14',
  'openat -1 14',
  'clock_gettime -1 14',
  'uname -1 14',
  'getcwd -1 14',
  'alive',
].join('\n') + '\n';

describe('EFAULT on garbage pointers', () => {
  it('every bad pointer gives EFAULT and the guest goes on, as natively', async () => {
    const prog = compileStatic('efault', EFAULT_C);
    const [sv, nat] = await Promise.all([snapvisor(['run', prog]), native([prog])]);
    expect(nat.stdout.toString()).toBe(EXPECTED);
    expect(nat.status).toBe(0);
    expect(sv.stdout.toString()).toBe(EXPECTED);
    expect(sv.status).toBe(0);
    expect(sv.stderr).not.toMatch(/internal error/);
  });
});

/**
 * A buffer whose first 10 bytes are mapped and the rest is not (the page after it is
 * unmapped): `write` and `read` fault part-way through.
 */
const PARTIAL_C = `
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED || munmap(p + 4096, 4096) != 0) { perror("mmap"); return 2; }
  char *edge = p + 4096 - 10;
  if (argc > 1 && strcmp(argv[1], "write") == 0) {
    memcpy(edge, "ABCDEFGHI\\n", 10);
    errno = 0;
    long w = syscall(SYS_write, 1, edge, 100);
    int e = w < 0 ? errno : 0;
    printf("\\nwrite %ld %d\\n", w, e);
  } else {
    int fd = open(argv[0], O_RDONLY);
    errno = 0;
    long r = syscall(SYS_read, fd, edge, 100);
    int e = r < 0 ? errno : 0;
    printf("read %ld %d offset %ld elf %d\\n", r, e, (long)lseek(fd, 0, SEEK_CUR), r > 0 && memcmp(edge + 1, "ELF", 3) == 0);
  }
  printf("alive\\n");
  return 0;
}
`;

describe('syscalls that fault part-way through a buffer', () => {
  it('write to a pipe: the bytes that come out are exactly the ones reported (EFAULT means none)', async () => {
    const prog = compileStatic('partial', PARTIAL_C);
    const [sv, nat] = await Promise.all([snapvisor(['run', prog, 'write']), native([prog, 'write'])]);
    for (const r of [nat, sv]) {
      expect(r.status).toBe(0);
      const out = r.stdout.toString();
      const m = /\nwrite (-?\d+) (\d+)\nalive\n$/.exec(out);
      expect(m, out).not.toBeNull();
      const written = out.slice(0, m!.index);
      const ret = Number(m![1]);
      // Linux on a pipe: EFAULT and nothing written; on a file: the 10 mapped bytes.
      if (ret < 0) {
        expect(Number(m![2])).toBe(14);
        expect(written).toBe('');
      } else {
        expect(written).toBe('ABCDEFGHI\n'.slice(0, ret));
      }
    }
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
  });

  it('read of a regular file: returns the bytes that fit before the fault, as Linux does', async () => {
    const prog = compileStatic('partial', PARTIAL_C);
    const [sv, nat] = await Promise.all([snapvisor(['run', prog]), native([prog])]);
    expect(nat.stdout.toString()).toBe('read 10 0 offset 10 elf 1\nalive\n');
    expect(sv.stdout.toString()).toBe(nat.stdout.toString());
    expect(sv.status).toBe(0);
  });
});
