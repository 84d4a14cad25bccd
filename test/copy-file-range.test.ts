/**
 * copy_file_range(2), preadv2(2) and pwritev2(2) (issue 10: CPython's test_os skipped its
 * copy_file_range tests on ENOSYS): one C program prints the same lines natively and in the
 * sandbox: copies with and without offset pointers, to end of file and past the end of the
 * output (a hole), EINVAL/EBADF/EISDIR/EFAULT/EOVERFLOW in Linux's order, overlapping ranges
 * of one file; preadv2/pwritev2 with offset -1, RWF_HIPRI/DSYNC/SYNC, RWF_NOWAIT on an empty
 * pipe (EAGAIN) and a file, RWF_APPEND, unknown flags (EOPNOTSUPP), ESPIPE on a pipe.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, expectSandboxOutput, freshDir, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
static void report(const char *what, long r) { if (r < 0) printf("%-44s %s\n", what, strerrorname_np(errno)); else printf("%-44s %ld\n", what, r); fflush(stdout); }
static long cfr(int in, loff_t *oi, int out, loff_t *oo, size_t len, unsigned fl) { return syscall(SYS_copy_file_range, in, oi, out, oo, len, fl); }
static void show(const char *what, const char *path) { char b[64] = ""; int fd = open(path, O_RDONLY); int n = read(fd, b, 63); close(fd); b[n < 0 ? 0 : n] = 0; printf("%-44s \"%s\"\n", what, b); }
int main(void) {
  int a = open("a", O_CREAT | O_RDWR | O_TRUNC, 0644); write(a, "hello world", 11); lseek(a, 0, SEEK_SET);
  int b = open("b", O_CREAT | O_RDWR | O_TRUNC, 0644);
  report("copy a->b 5", cfr(a, NULL, b, NULL, 5, 0));
  report("offset of a", lseek(a, 0, SEEK_CUR)); report("offset of b", lseek(b, 0, SEEK_CUR));
  report("copy a->b rest (100)", cfr(a, NULL, b, NULL, 100, 0));
  report("copy a->b at EOF", cfr(a, NULL, b, NULL, 100, 0));
  show("b", "b");
  loff_t oi = 6, oo = 0;
  report("copy with offsets", cfr(a, &oi, b, &oo, 5, 0));
  printf("%-44s %lld %lld\n", "offsets after", (long long)oi, (long long)oo);
  report("offset of a unchanged", lseek(a, 0, SEEK_CUR));
  show("b", "b");
  oo = 20; oi = 0;
  report("copy past the end of b (hole)", cfr(a, &oi, b, &oo, 3, 0));
  struct stat s; fstat(b, &s); printf("%-44s %lld\n", "size of b", (long long)s.st_size);
  report("flags 1", cfr(a, NULL, b, NULL, 5, 1));
  oi = -1; report("negative off_in", cfr(a, &oi, b, NULL, 5, 0));
  oi = 0; oo = -5; report("negative off_out", cfr(a, &oi, b, &oo, 5, 0));
  report("bad in fd", cfr(99, NULL, b, NULL, 5, 0));
  report("bad out fd", cfr(a, NULL, 99, NULL, 5, 0));
  report("bad off_in pointer", cfr(a, (loff_t *)8, b, NULL, 5, 0));
  int d = open(".", O_RDONLY);
  report("from a directory", cfr(d, NULL, b, NULL, 5, 0));
  int p[2]; pipe(p);
  report("from a pipe", cfr(p[0], NULL, b, NULL, 5, 0));
  report("into a pipe", cfr(a, NULL, p[1], NULL, 5, 0));
  int wo = open("a", O_WRONLY); report("from a write-only fd", cfr(wo, NULL, b, NULL, 5, 0));
  int ro = open("b", O_RDONLY); report("into a read-only fd", cfr(a, NULL, ro, NULL, 5, 0));
  int ap = open("b", O_WRONLY | O_APPEND); report("into an O_APPEND fd", cfr(a, NULL, ap, NULL, 5, 0));
  oi = 0; oo = 3; report("same file, overlapping", cfr(a, &oi, a, &oo, 5, 0));
  oi = 0; oo = 11; report("same file, after its end", cfr(a, &oi, a, &oo, 5, 0));
  show("a", "a");
  report("zero length", cfr(a, NULL, b, NULL, 0, 0));
  oi = 100; report("off_in past EOF", cfr(a, &oi, b, NULL, 5, 0));
  // preadv2 / pwritev2
  char buf[8] = ""; struct iovec iv = { buf, 4 };
  lseek(a, 0, SEEK_SET);
  report("preadv2 pos -1", syscall(SYS_preadv2, a, &iv, 1, -1L, 0L, 0));
  report("offset after", lseek(a, 0, SEEK_CUR));
  report("preadv2 pos 6 HIPRI", syscall(SYS_preadv2, a, &iv, 1, 6L, 0L, 1));
  printf("%-44s \"%.4s\"\n", "read", buf);
  report("preadv2 unknown flag 0x1000", syscall(SYS_preadv2, a, &iv, 1, 0L, 0L, 0x1000));
  report("preadv2 pos -2", syscall(SYS_preadv2, a, &iv, 1, -2L, 0L, 0));
  report("preadv2 NOWAIT file", syscall(SYS_preadv2, a, &iv, 1, 0L, 0L, 8));
  report("preadv2 pipe pos 0", syscall(SYS_preadv2, p[0], &iv, 1, 0L, 0L, 0));
  report("preadv2 pipe NOWAIT empty", syscall(SYS_preadv2, p[0], &iv, 1, -1L, 0L, 8));
  write(p[1], "xy", 2);
  report("preadv2 pipe NOWAIT", syscall(SYS_preadv2, p[0], &iv, 1, -1L, 0L, 8));
  struct iovec wv = { "ZZ", 2 };
  report("pwritev2 APPEND at 0", syscall(SYS_pwritev2, a, &wv, 1, 0L, 0L, 16));
  show("a", "a");
  report("offset of a", lseek(a, 0, SEEK_CUR));
  report("pwritev2 pos -1 DSYNC|SYNC", syscall(SYS_pwritev2, a, &wv, 1, -1L, 0L, 6));
  report("offset of a", lseek(a, 0, SEEK_CUR));
  show("a", "a");
  report("pwritev2 APPEND pos -1", syscall(SYS_pwritev2, a, &wv, 1, -1L, 0L, 16));
  report("offset of a", lseek(a, 0, SEEK_CUR));
  report("pwritev2 unknown flag", syscall(SYS_pwritev2, a, &wv, 1, 0L, 0L, 0x1000));
  report("pwritev2 bad fd", syscall(SYS_pwritev2, 99, &wv, 1, 0L, 0L, 0));
  report("preadv pipe pos 0", preadv(p[0], &iv, 1, 0));
  report("preadv negative pos", preadv(a, &iv, 1, -3));
  return 0;
}
`;

describe('copy_file_range, preadv2 and pwritev2', () => {
  it('give the same results as Linux', async () => {
    const bin = compileStatic('copy-file-range', SOURCE);
    // Natively in a scratch directory (it writes files a and b); in the sandbox they go to its upper layer.
    const want = await native([bin], { timeoutMs: 20_000, cwd: freshDir('copy-file-range') });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('copy with offsets                            5');
    await expectSandboxOutput([bin], lines);
  }, 60_000);
});
