/**
 * /proc/<pid> of a process of another uid (issue 9): its files belong to the process's euid/egid
 * with Linux's modes (environ and auxv 0400, fd/ 0500), and what shows its memory, files or
 * paths (environ, auxv, maps, cwd, root, exe, fd/N) is refused with EACCES unless the caller may
 * ptrace it (same ids, or CAP_SYS_PTRACE), as Linux's ptrace access check; status, stat, cmdline
 * and lstat stay open to all. A C program drops from root to uid 65534 and probes a root child's
 * /proc entries, natively and in the sandbox; the outputs must be equal.
 */
import { describe, expect, it } from 'vitest';
import { compileStatic, native, orphanStubs, snapvisor } from './helpers.js';

const PROBE = String.raw`
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void report(const char *what, long r) { printf("%-28s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok"); fflush(stdout); }
static long openclose(const char *p, int flags) { int fd = open(p, flags); if (fd >= 0) close(fd); return fd; }
static long rl(const char *p) { char b[256]; return readlink(p, b, sizeof b); }
static long od(const char *p) { DIR *d = opendir(p); if (!d) return -1; closedir(d); return 0; }
static long own(const char *p) { struct stat st; if (lstat(p, &st) < 0) return -1; printf("%-28s uid %d mode %o\n", strrchr(p, 47) + 1, (int)st.st_uid, st.st_mode & 07777); return 0; }

int main(void) {
  int ready[2]; pipe(ready);
  pid_t c = fork();
  if (c == 0) { close(ready[0]); close(ready[1]); alarm(5); pause(); _exit(0); }
  close(ready[1]);
  char p[64];
  #define P(s) (snprintf(p, sizeof p, "/proc/%d/%s", c, s), p)
  report("root: environ", openclose(P("environ"), O_RDONLY));
  report("root: readlink cwd", rl(P("cwd")));
  report("setgid 65534", setgid(65534));
  report("setuid 65534", setuid(65534));
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  own(P("environ")); own(P("auxv")); own(P("status")); own(P("fd")); own(P("maps"));
  report("environ", openclose(P("environ"), O_RDONLY));
  report("auxv", openclose(P("auxv"), O_RDONLY));
  report("maps", openclose(P("maps"), O_RDONLY));
  report("status", openclose(P("status"), O_RDONLY));
  report("cmdline", openclose(P("cmdline"), O_RDONLY));
  report("stat", openclose(P("stat"), O_RDONLY));
  report("readlink cwd", rl(P("cwd")));
  report("readlink root", rl(P("root")));
  report("readlink exe", rl(P("exe")));
  report("lstat cwd", lstat(P("cwd"), &(struct stat){0}));
  report("stat cwd (follows)", stat(P("cwd"), &(struct stat){0}));
  report("opendir fd", od(P("fd")));
  report("readlink fd/0", rl(P("fd/0")));
  report("open fd/0", openclose(P("fd/0"), O_RDONLY));
  report("open environ O_PATH", openclose(P("environ"), O_PATH));
  report("self environ", openclose("/proc/self/environ", O_RDONLY));
  report("self maps", openclose("/proc/self/maps", O_RDONLY));
  report("self readlink cwd", rl("/proc/self/cwd"));
  report("self opendir fd", od("/proc/self/fd"));
  return 0;
}
`;

describe('/proc/<pid> of another uid', () => {
  it('is refused as Linux refuses it (EACCES through the ptrace access check), same as native', async () => {
    const prog = compileStatic('procacc', PROBE);
    const want = await native([prog], { timeoutMs: 30_000 });
    expect(want.status).toBe(0);
    expect(want.stdout.toString()).toContain('environ                      EACCES');
    const r = await snapvisor(['run', '--', prog], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(want.stdout.toString());
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});
