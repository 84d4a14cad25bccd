/**
 * splice(2) and tee(2) (issue 10: CPython's test_os skipped its splice tests on ENOSYS): one C
 * program prints the same lines natively and in the sandbox: a file into a pipe with and without
 * an offset pointer, tee between pipes, a pipe into a pipe and into a file at an offset, the
 * errors in do_splice's order (EINVAL, EBADF, ESPIPE, EFAULT), EAGAIN with SPLICE_F_NONBLOCK, a
 * splice that waits for a writer, end of input and EPIPE. A guest blocked in a splice is
 * checkpointed and restored, and goes on as natively.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>
static void report(const char *what, long r) { if (r < 0) printf("%-40s %s\n", what, strerrorname_np(errno)); else printf("%-40s %ld\n", what, r); fflush(stdout); }
static void drain(const char *what, int fd) { char b[64]; int n = read(fd, b, sizeof b); printf("%-40s \"%.*s\"\n", what, n < 0 ? 0 : n, b); fflush(stdout); }
int main(void) {
  int f = open("in", O_CREAT | O_RDWR | O_TRUNC, 0644); write(f, "0123456789", 10); lseek(f, 0, SEEK_SET);
  int p[2], q[2]; pipe(p); pipe(q);
  report("file->pipe 4", splice(f, NULL, p[1], NULL, 4, 0));
  report("file offset", lseek(f, 0, SEEK_CUR));
  __off64_t off = 7; report("file->pipe at offset 7", splice(f, &off, p[1], NULL, 100, 0));
  printf("%-40s %lld\n", "offset after", (long long)off);
  report("file offset unchanged", lseek(f, 0, SEEK_CUR));
  report("tee p->q", tee(p[0], q[1], 100, 0));
  drain("q", q[0]);
  report("pipe->pipe 3", splice(p[0], NULL, q[1], NULL, 3, 0));
  drain("q", q[0]);
  int o = open("out", O_CREAT | O_RDWR | O_TRUNC, 0644);
  off = 2; report("pipe->file at offset 2", splice(p[0], NULL, o, &off, 100, 0));
  printf("%-40s %lld\n", "offset after", (long long)off);
  char b[16] = ""; pread(o, b, 15, 0); printf("%-40s %d %d \"%s\"\n", "out", b[0], b[1], b + 2);
  report("empty pipe NONBLOCK", splice(p[0], NULL, o, NULL, 10, SPLICE_F_NONBLOCK));
  report("zero length", splice(p[0], NULL, o, NULL, 0, 0));
  report("bad flags", splice(p[0], NULL, o, NULL, 5, 0x100));
  report("bad fd", splice(99, NULL, o, NULL, 5, 0));
  report("file->file", splice(f, NULL, o, NULL, 5, 0));
  report("offset on the pipe side", splice(p[0], &off, o, NULL, 5, 0));
  report("pipe to itself", splice(p[0], NULL, p[1], NULL, 5, 0));
  report("read end as output", splice(f, NULL, p[0], NULL, 5, 0));
  int a = open("out", O_WRONLY | O_APPEND); report("into O_APPEND", splice(p[0], NULL, a, NULL, 5, 0));
  off = -1; report("negative offset", splice(f, &off, p[1], NULL, 5, 0));
  report("bad offset pointer", splice(f, (__off64_t *)8, p[1], NULL, 5, 0));
  report("tee bad flags", tee(p[0], q[1], 5, 0x100));
  report("tee file", tee(f, q[1], 5, 0));
  report("tee empty NONBLOCK", tee(p[0], q[1], 5, SPLICE_F_NONBLOCK));
  lseek(f, 0, SEEK_SET);
  // a blocking splice woken by a writer
  int c = fork();
  if (c == 0) { usleep(200000); write(p[1], "late", 4); _exit(0); }
  report("pipe->file waits for data", splice(p[0], NULL, o, NULL, 100, 0));
  waitpid(c, NULL, 0);
  close(p[1]);
  report("pipe->file at end of input", splice(p[0], NULL, o, NULL, 100, 0));
  close(q[0]);
  signal(SIGPIPE, SIG_IGN);
  report("file->pipe with no reader", splice(f, NULL, q[1], NULL, 5, 0));
  return 0;
}
`;

const BLOCKED = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  int p[2]; pipe(p);
  int o = open("out", O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fork() == 0) { // writes once the gate (argv[1]) exists: in the sandbox, after the checkpoint
    close(p[0]);
    struct timespec ts = { 0, 20000000 };
    while (argc > 1 && access(argv[1], F_OK)) nanosleep(&ts, 0);
    write(p[1], "data", 4);
    _exit(0);
  }
  close(p[1]);
  printf("ready\n"); fflush(stdout);
  long r = splice(p[0], NULL, o, NULL, 100, 0);
  printf("spliced %ld\n", r);
  char b[8] = { 0 }; pread(o, b, 7, 0); printf("out %s\n", b);
  printf("then %ld\n", (long)splice(p[0], NULL, o, NULL, 100, 0));
  wait(NULL);
  return 0;
}
`;

describe('splice and tee', () => {
  it('give the same results as Linux', async () => {
    const bin = compileStatic('splice', SOURCE);
    // Natively in a scratch directory (it writes files in and out); in the sandbox they go to its upper layer.
    const want = await native([bin], { timeoutMs: 20_000, cwd: freshDir('splice') });
    expect(want.stderr).toBe('');
    expect(want.status).toBe(0);
    const lines = want.stdout.toString().split('\n').filter(Boolean);
    expect(lines).toContain('pipe->file waits for data                4');
    await expectSandboxOutput([bin], lines);
  }, 60_000);

  it('a guest blocked in a splice is checkpointed and restored, then gets its data', async () => {
    const bin = compileStatic('splice-blocked', BLOCKED);
    const gate = checkpointGate('splice');
    const want = await native([bin, gate.native], { timeoutMs: 20_000, cwd: freshDir('splice-blocked') });
    expect(want.status).toBe(0);
    await expectCheckpointRestoreMatches('splice', [bin, gate.sandbox], want.stdout.toString().split('\n').filter(Boolean), gate.open);
  }, 90_000);
});
