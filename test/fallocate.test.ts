/**
 * fallocate(2) modes (issue 10 point 2): the upper layer answers as tmpfs. One C program runs
 * natively on a memfd (tmpfs) and in the sandbox on a memfd and on an upper-layer file, and all
 * three must print the same lines: allocation with and without FALLOC_FL_KEEP_SIZE, PUNCH_HOLE
 * (EOPNOTSUPP without KEEP_SIZE), ZERO_RANGE/COLLAPSE_RANGE/INSERT_RANGE/UNSHARE_RANGE (EOPNOTSUPP on
 * tmpfs), unknown and contradictory modes, EINVAL for bad ranges, EFBIG, EBADF for O_RDONLY/O_PATH/a
 * directory/a bad fd, ESPIPE for a pipe, ENODEV for a socket, an eventfd and /dev/null.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { compileStatic, expectSandboxOutput, freshDir, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>

static void report(const char *what, long r) { if (r < 0) printf("%-34s %s\n", what, strerrorname_np(errno)); else printf("%-34s %ld\n", what, r); fflush(stdout); }
static void show(int fd, const char *what) {
  struct stat st; fstat(fd, &st);
  char buf[64]; memset(buf, 'Z', sizeof buf);
  ssize_t n = pread(fd, buf, 24, 0);
  printf("%-34s size %ld data ", what, (long)st.st_size);
  for (ssize_t i = 0; i < n; i++) putchar(buf[i] ? buf[i] : '.');
  printf("\n"); fflush(stdout);
}

int main(int argc, char **argv) {
  /* "memfd": a memfd (tmpfs natively); else a file named argv[1] (the sandbox's upper layer). */
  int fd = strcmp(argv[1], "memfd") == 0 ? memfd_create("f", 0) : open(argv[1], O_CREAT | O_RDWR | O_TRUNC, 0644);
  write(fd, "abcdefghijklmnopqrstuvwx", 24);
  report("allocate 0..100", fallocate(fd, 0, 0, 100)); show(fd, "after");
  report("keep size to 200", fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 200)); show(fd, "after");
  report("punch without keep size", fallocate(fd, FALLOC_FL_PUNCH_HOLE, 2, 4));
  report("punch 2..6", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2, 4)); show(fd, "after");
  report("punch past the end", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 90, 1000)); show(fd, "after");
  report("zero range", fallocate(fd, FALLOC_FL_ZERO_RANGE, 8, 4)); show(fd, "after");
  report("zero range keep size", fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 8, 4));
  report("collapse range", fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096));
  report("collapse keep size", fallocate(fd, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096));
  report("insert range", fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, 4096));
  report("unshare range", fallocate(fd, FALLOC_FL_UNSHARE_RANGE, 0, 10));
  report("punch + zero", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 10));
  report("no hide stale", fallocate(fd, FALLOC_FL_NO_HIDE_STALE, 0, 10));
  report("unknown bit", fallocate(fd, 0x1000, 0, 10));
  report("negative offset", fallocate(fd, 0, -1, 10));
  report("zero length", fallocate(fd, 0, 0, 0));
  report("negative length", fallocate(fd, 0, 0, -5));
  report("past the largest file", fallocate(fd, 0, 0x7fffffffffffffffL - 10, 100));
  report("bad fd", fallocate(999, 0, 0, 10));
  show(fd, "finally");
  int ro = strcmp(argv[1], "memfd") == 0 ? open("/proc/self/fd/3", O_RDONLY) : open(argv[1], O_RDONLY);
  report("O_RDONLY", fallocate(ro, 0, 0, 10));
  report("O_RDONLY bad mode", fallocate(ro, 0x1000, 0, 10));
  report("O_RDONLY punch no keep", fallocate(ro, FALLOC_FL_PUNCH_HOLE, 0, 10));
  int ap = strcmp(argv[1], "memfd") == 0 ? open("/proc/self/fd/3", O_WRONLY | O_APPEND) : open(argv[1], O_WRONLY | O_APPEND);
  report("O_APPEND allocate", fallocate(ap, 0, 0, 300)); show(fd, "after");
  int p[2]; pipe(p);
  report("pipe write end", fallocate(p[1], 0, 0, 10));
  report("pipe read end", fallocate(p[0], 0, 0, 10));
  int d = open(".", O_RDONLY | O_DIRECTORY);
  report("directory", fallocate(d, 0, 0, 10));
  int dp = open(".", O_PATH);
  report("O_PATH directory", fallocate(dp, 0, 0, 10));
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  report("socket", fallocate(s, 0, 0, 10));
  int e = eventfd(0, 0);
  report("eventfd", fallocate(e, 0, 0, 10));
  int dn = open("/dev/null", O_WRONLY);
  report("/dev/null", fallocate(dn, 0, 0, 10));
  return 0;
}
`;

describe('fallocate', () => {
  it('modes and errors as tmpfs answers natively, on a memfd and on an upper-layer file', async () => {
    const prog = compileStatic('fallocate', SOURCE);
    const want = await native([prog, 'memfd'], { timeoutMs: 30_000 });
    expect(want.stderr.toString()).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('zero range                         EOPNOTSUPP');
    await expectSandboxOutput([prog, 'memfd'], lines);
    await expectSandboxOutput([prog, path.join(freshDir('fallocate'), 'f')], lines);
  }, 60_000);
});
