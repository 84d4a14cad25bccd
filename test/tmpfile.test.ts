/**
 * O_TMPFILE (man 2 open; issue 10 point 2): one C program runs natively and in the sandbox and must
 * print the same lines — an unnamed file (nlink 0, /proc/self/fd/N "DIR/#INO (deleted)", mode under
 * the umask) named by linkat(fd, "", ..., AT_EMPTY_PATH) and by linkat of /proc/self/fd/N with
 * AT_SYMLINK_FOLLOW, never again once unlinked, never with O_EXCL; EINVAL/ENOTDIR/ENOENT/
 * EOPNOTSUPP/EACCES for bad opens; linkat of a deleted file (ENOENT), a memfd (EXDEV), a directory
 * (EPERM). Then two unnamed files held across a checkpoint are named after the restore (the O_EXCL
 * one still refuses) with their contents.
 */
import { describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, expectCheckpointRestoreMatches, expectSandboxOutput, freshDir, native } from './helpers.js';

const SOURCE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void report(const char *what, long r) { if (r < 0) printf("%-34s %s\n", what, strerrorname_np(errno)); else printf("%-34s %ld\n", what, r); fflush(stdout); }
static void say(const char *what, int yes) { printf("%-34s %s\n", what, yes ? "yes" : "NO"); fflush(stdout); }

/* Checkpoint guest: two unnamed files (one O_EXCL) held across the checkpoint, named once the gate file exists (made after it). */
static int held(const char *gate) {
  int a = open("d", O_TMPFILE | O_RDWR, 0644), b = open("d", O_TMPFILE | O_RDWR | O_EXCL, 0600);
  report("write a", write(a, "kept across\n", 12));
  report("write b", write(b, "never named\n", 12));
  printf("ready\n"); fflush(stdout);
  struct timespec ts = { 0, 20000000 };
  while (access(gate, F_OK)) nanosleep(&ts, 0);
  struct stat st; fstat(a, &st);
  report("a nlink", st.st_nlink);
  report("a size", st.st_size);
  report("link a", linkat(a, "", AT_FDCWD, "d/a", AT_EMPTY_PATH));
  report("link b", linkat(b, "", AT_FDCWD, "d/b", AT_EMPTY_PATH));
  char buf[32] = ""; int r = open("d/a", O_RDONLY); report("read d/a", read(r, buf, sizeof buf)); printf("%-34s %s", "contents", buf);
  pread(b, buf, 12, 0); printf("%-34s %s", "b contents", buf); fflush(stdout);
  system("ls d");
  return 0;
}

int main(int argc, char **argv) {
  if (chdir(argv[1])) { perror("chdir"); return 2; }
  umask(022);
  mkdir("d", 0755);
  if (argc > 2) return held(argv[2]);
  int fd = open("d", O_TMPFILE | O_RDWR, 0640);
  say("O_TMPFILE in d", fd >= 0);
  struct stat st;
  fstat(fd, &st);
  report("nlink", st.st_nlink);
  printf("%-34s %o\n", "mode", st.st_mode);
  say("uid is ours", st.st_uid == getuid());
  char link[256] = "", want[256];
  readlink("/proc/self/fd/3", link, sizeof link - 1);
  char cwd[200]; getcwd(cwd, sizeof cwd);
  snprintf(want, sizeof want, "%s/d/#", cwd);
  say("link is d/#N (deleted)", !strncmp(link, want, strlen(want)) && strstr(link, " (deleted)"));
  report("write", write(fd, "hello tmpfile\n", 14));
  report("F_GETFL", fcntl(fd, F_GETFL) & ~0100000);
  report("linkat AT_EMPTY_PATH", linkat(fd, "", AT_FDCWD, "d/named", AT_EMPTY_PATH));
  stat("d/named", &st);
  report("named size", st.st_size);
  report("named nlink", st.st_nlink);
  fstat(fd, &st);
  report("fd nlink", st.st_nlink);
  report("linkat again (other name)", linkat(fd, "", AT_FDCWD, "d/named2", AT_EMPTY_PATH));
  report("linkat to existing", linkat(fd, "", AT_FDCWD, "d/named", AT_EMPTY_PATH));
  report("unlink both", unlink("d/named") | unlink("d/named2"));
  report("linkat after unlink", linkat(fd, "", AT_FDCWD, "d/named3", AT_EMPTY_PATH));
  close(fd);
  // Through /proc/self/fd/N with AT_SYMLINK_FOLLOW.
  fd = open("d", O_TMPFILE | O_WRONLY, 0600);
  write(fd, "via proc\n", 9);
  char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  report("linkat /proc/self/fd follow", linkat(AT_FDCWD, p, AT_FDCWD, "d/viaproc", AT_SYMLINK_FOLLOW));
  char buf[32] = ""; int r = open("d/viaproc", O_RDONLY); report("read named", read(r, buf, sizeof buf)); printf("%-34s %s", "contents", buf); close(r);
  close(fd);
  // O_EXCL: never linkable.
  fd = open("d", O_TMPFILE | O_RDWR | O_EXCL, 0600);
  say("O_TMPFILE|O_EXCL", fd >= 0);
  report("linkat O_EXCL tmpfile", linkat(fd, "", AT_FDCWD, "d/excl", AT_EMPTY_PATH));
  snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
  report("linkat O_EXCL via proc", linkat(AT_FDCWD, p, AT_FDCWD, "d/excl", AT_SYMLINK_FOLLOW));
  close(fd);
  // Errors.
  report("O_TMPFILE read-only", open("d", O_TMPFILE | O_RDONLY, 0600));
  report("O_TMPFILE|O_CREAT", open("d", O_TMPFILE | O_CREAT | O_RDWR, 0600));
  report("__O_TMPFILE without O_DIRECTORY", open("d", 020000000 | O_RDWR, 0600));
  report("O_TMPFILE on a file", open("d/viaproc", O_TMPFILE | O_RDWR, 0600));
  report("O_TMPFILE missing dir", open("nodir", O_TMPFILE | O_RDWR, 0600));
  report("O_TMPFILE in /proc", open("/proc", O_TMPFILE | O_RDWR, 0600));
  report("O_DIRECTORY|O_RDWR on dir", open("d", O_DIRECTORY | O_RDWR));
  report("linkat bad flags", linkat(AT_FDCWD, "d/viaproc", AT_FDCWD, "d/x", 0x10000));
  report("linkat empty without flag", linkat(AT_FDCWD, "", AT_FDCWD, "d/x", 0));
  int dfd = open("d", O_RDONLY | O_DIRECTORY);
  report("linkat AT_EMPTY_PATH of a dir", linkat(dfd, "", AT_FDCWD, "d/x", AT_EMPTY_PATH));
  // A deleted ordinary file cannot be linked back; a memfd neither.
  int u = open("d/gone", O_CREAT | O_RDWR, 0600); unlink("d/gone");
  report("linkat deleted file", linkat(u, "", AT_FDCWD, "d/back", AT_EMPTY_PATH));
  int m = memfd_create("m", 0);
  report("linkat memfd", linkat(m, "", AT_FDCWD, "d/mem", AT_EMPTY_PATH));
  // Mode follows umask; a nobody without write permission gets EACCES.
  fd = open("d", O_TMPFILE | O_RDWR, 0777);
  fstat(fd, &st); printf("%-34s %o\n", "mode 0777 under umask 022", st.st_mode); fflush(stdout);
  pid_t c = fork();
  if (c == 0) { setuid(65534); report("O_TMPFILE as nobody", open("d", O_TMPFILE | O_RDWR, 0600)); _exit(0); }
  waitpid(c, NULL, 0);
  system("ls d");
  return 0;
}
`;

const prog = compileStatic('tmpfile', SOURCE);

async function nativeLines(args: string[]): Promise<string[]> {
  const r = await native([prog, freshDir('tmpfile-native'), ...args], { timeoutMs: 30_000 });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout.toString().split('\n').filter(Boolean);
}

describe('O_TMPFILE', () => {
  it('unnamed files and linkat answer as natively', async () => {
    const want = await nativeLines([]);
    expect(want.filter((l) => l.endsWith(' NO'))).toEqual([]);
    expect(want.length).toBeGreaterThan(30);
    await expectSandboxOutput([prog, freshDir('tmpfile-sandbox')], want);
  }, 60_000);

  it('unnamed files held across checkpoint/restore are named afterwards with their contents', async () => {
    const gate = checkpointGate('tmpfile');
    await expectCheckpointRestoreMatches('tmpfile-cp', [prog, freshDir('tmpfile-cp-dir'), gate.sandbox], await nativeLines([gate.native]), gate.open);
  }, 90_000);
});
