/**
 * Discretionary access control as Linux has it (issue 9): one C program runs natively and in
 * the sandbox on the same fixture (created fresh on the host before each run, owned by root
 * and by 65534), drops to uid/gid 65534 (or drops root's capabilities with capset) and prints
 * the errno of each operation; the two outputs must be equal. Also: `run --user`, /dev and
 * /sys showing only the sandbox's own, and credentials across checkpoint/restore.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkpointGate, compileStatic, freshDir, native, orphanStubs, PY_WAIT_FOR_GATE, snapvisor, snapvisorStreaming, testTmpDir } from './helpers.js';

const PERM = String.raw`
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>

static const char *D;
static char pbuf[4][4096];
static int pnext;
static const char *P(const char *name) { char *b = pbuf[pnext++ % 4]; snprintf(b, 4096, "%s/%s", D, name); return b; }
static void report(const char *what, int r) { printf("%-28s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok"); fflush(stdout); }
static int openclose(const char *p, int flags) { int fd = open(p, flags, 0666); if (fd >= 0) close(fd); return fd; }
static int run(const char *prog, const char *arg, int nnp) {
  pid_t c = fork();
  if (c == 0) {
    if (nnp) prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    execl(prog, prog, arg, (char *)0);
    _exit(100 + errno);
  }
  int st; waitpid(c, &st, 0);
  return WEXITSTATUS(st) >= 100 ? -(errno = WEXITSTATUS(st) - 100), -1 : 0;
}
/* capset with explicit (low-word) effective and permitted sets. */
static int setcaps(unsigned eff, unsigned prm) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2] = { { eff, prm, 0 }, { 0, 0, 0 } };
  return syscall(SYS_capset, &h, d);
}
/* capset of the effective set only (low word; the high word's effective cleared), permitted kept. */
static int seteff(unsigned eff) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  if (syscall(SYS_capget, &h, d) < 0) return -1;
  d[0].effective = eff & d[0].permitted; d[1].effective = 0;
  return syscall(SYS_capset, &h, d);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "ids") == 0) { printf("euid=%d egid=%d\n", geteuid(), getegid()); return 0; }
  D = argv[1];
  if (strcmp(argv[2], "user") == 0) {
    pid_t rootchild = fork();
    if (rootchild == 0) { close(1); close(2); alarm(60); pause(); _exit(0); } /* alive at the kill below however slow the machine; gone a minute later */
    gid_t groups[] = { 12345 };
    report("setgroups", setgroups(1, groups));
    report("setgid 65534", setgid(65534));
    report("setuid 65534", setuid(65534));
    report("setuid 0 again", setuid(0));
    report("open 0600 root file", openclose(P("f600"), O_RDONLY));
    report("open 0644 root file", openclose(P("f644"), O_RDONLY));
    report("write 0644 root file", openclose(P("f644"), O_WRONLY));
    report("O_TRUNC 0644 root file", openclose(P("f644"), O_RDONLY | O_TRUNC));
    report("read /etc/shadow", openclose("/etc/shadow", O_RDONLY));
    report("group 0640 file (egid)", openclose(P("g640"), O_RDONLY));
    report("group 0640 (supplementary)", openclose(P("s640"), O_RDONLY));
    report("open 0700 dir", openclose(P("d700"), O_RDONLY | O_DIRECTORY));
    struct stat st;
    report("stat in 0700 dir", stat(P("d700/inner"), &st));
    report("chdir 0700 dir", chdir(P("d700")));
    report("access 0600 R_OK", access(P("f600"), R_OK));
    report("access 0644 R_OK", access(P("f644"), R_OK));
    report("access 0644 W_OK", access(P("f644"), W_OK));
    report("create in 0755 dir", openclose(P("ro/new"), O_CREAT | O_WRONLY));
    report("mkdir in 0755 dir", mkdir(P("ro/sub"), 0777));
    report("unlink in 0755 dir", unlink(P("ro/file")));
    report("symlink in 0755 dir", symlink("x", P("ro/link")));
    report("unlink in sticky dir", unlink(P("sticky/rootfile")));
    report("rename in sticky dir", rename(P("sticky/rootfile"), P("sticky/moved")));
    umask(077);
    report("create own in sticky", openclose(P("sticky/mine"), O_CREAT | O_WRONLY));
    stat(P("sticky/mine"), &st);
    printf("%-28s %o %d:%d\n", "own file mode", st.st_mode & 07777, st.st_uid, st.st_gid);
    report("unlink own in sticky", unlink(P("sticky/mine")));
    report("exec 0644 file", run(P("f644"), "ids", 0));
    report("exec 0755 file", run(P("prog"), "ids", 0));
    report("exec setuid-root file", run(P("suid"), "ids", 0));
    report("exec setuid, no_new_privs", run(P("suid"), "ids", 1));
    report("chmod root file", chmod(P("f644"), 0777));
    report("chown root file", chown(P("f644"), 65534, 65534));
    report("truncate root file", truncate(P("f644"), 0));
    report("utimes now, root file", utimensat(AT_FDCWD, P("f644"), NULL, 0));
    struct timespec ts[2] = { { 1, 0 }, { 1, 0 } };
    report("utimes set, root file", utimensat(AT_FDCWD, P("f644"), ts, 0));
    report("link to root file", link(P("f600"), P("sticky/hl")));
    report("kill root process", kill(rootchild, 0));
    report("capset raise", setcaps(1 << CAP_DAC_OVERRIDE, 1 << CAP_DAC_OVERRIDE));
    report("PR_CAPBSET_DROP", prctl(PR_CAPBSET_DROP, CAP_CHOWN, 0, 0, 0));
    return 0;
  }
  /* "capdrop": root, then capabilities dropped with capset. */
  report("open 65534's 0600 file", openclose(P("u600"), O_RDONLY));
  report("open 65534's 0700 dir", openclose(P("u700"), O_RDONLY | O_DIRECTORY));
  report("exec 0644 file as root", run(P("f644"), "ids", 0));
  report("capset eff=0", seteff(0));
  report("open 65534's 0600 file", openclose(P("u600"), O_RDONLY));
  report("open 65534's 0700 dir", openclose(P("u700"), O_RDONLY | O_DIRECTORY));
  report("chown without CAP_CHOWN", chown(P("u600"), 0, 0));
  report("capset eff=DAC_OVERRIDE", seteff(1 << CAP_DAC_OVERRIDE));
  report("open 65534's 0600 file", openclose(P("u600"), O_RDONLY));
  report("PR_CAPBSET_DROP CHOWN", prctl(PR_CAPBSET_DROP, CAP_CHOWN, 0, 0, 0));
  report("PR_CAPBSET_READ CHOWN", prctl(PR_CAPBSET_READ, CAP_CHOWN, 0, 0, 0) == 0 ? 0 : -1);
  report("capset prm=0", setcaps(0, 0));
  report("capset raise again", setcaps(1 << CAP_DAC_OVERRIDE, 1 << CAP_DAC_OVERRIDE));
  report("open 65534's 0600 file", openclose(P("u600"), O_RDONLY));
  return 0;
}
`;

let prog: string;
let fixture: string;

/** Fresh fixture on the host: files of root and of 65534 with the modes the program expects. */
function makeFixture(): void {
  fs.rmSync(fixture, { recursive: true, force: true });
  fs.mkdirSync(fixture, { mode: 0o755 });
  fs.chmodSync(fixture, 0o755);
  const file = (name: string, mode: number, uid = 0, gid = 0, content = 'data\n') => {
    const p = path.join(fixture, name);
    fs.writeFileSync(p, content);
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  };
  const dir = (name: string, mode: number, uid = 0, gid = 0) => {
    const p = path.join(fixture, name);
    fs.mkdirSync(p);
    fs.chownSync(p, uid, gid);
    fs.chmodSync(p, mode);
  };
  file('f600', 0o600); file('f644', 0o644); file('g640', 0o640, 0, 65534); file('s640', 0o640, 0, 12345);
  dir('d700', 0o700); file('d700/inner', 0o644);
  dir('ro', 0o755); file('ro/file', 0o644);
  dir('sticky', 0o1777); file('sticky/rootfile', 0o666);
  file('u600', 0o600, 65534, 65534); dir('u700', 0o700, 65534, 65534);
  fs.copyFileSync(prog, path.join(fixture, 'prog')); fs.chmodSync(path.join(fixture, 'prog'), 0o755);
  fs.copyFileSync(prog, path.join(fixture, 'suid')); fs.chmodSync(path.join(fixture, 'suid'), 0o4755);
}

const isRoot = process.getuid?.() === 0;

beforeAll(() => {
  prog = compileStatic('perm', PERM);
  // The test's temp directories must be searchable by 65534.
  for (let d = path.dirname(prog); d.startsWith(testTmpDir()); d = path.dirname(d)) fs.chmodSync(d, 0o755);
  fs.chmodSync(testTmpDir(), 0o755);
  fs.chmodSync(prog, 0o755);
  fixture = path.join(freshDir('perm'), 'fx');
  fs.chmodSync(path.dirname(fixture), 0o755);
});

describe.skipIf(!isRoot)('permissions against native (the test runs as root, the program drops to 65534)', () => {
  it('an unprivileged uid: EACCES/EPERM exactly where Linux gives them', async () => {
    makeFixture();
    const nat = await native([prog, fixture, 'user']);
    makeFixture();
    const sand = await snapvisor(['run', '--', prog, fixture, 'user']);
    expect(sand.stderr).toBe('');
    expect(sand.stdout.toString()).toBe(nat.stdout.toString());
    // The comparison is meaningful: natively these are denied.
    const out = nat.stdout.toString();
    for (const [what, err] of [['open 0600 root file', 'EACCES'], ['open 0700 dir', 'EACCES'], ['create in 0755 dir', 'EACCES'],
      ['unlink in sticky dir', 'EPERM'], ['rename in sticky dir', 'EPERM'], ['link to root file', 'EPERM'], ['exec 0644 file', 'EACCES'], ['read /etc/shadow', 'EACCES'], ['kill root process', 'EPERM']]) {
      expect(out).toMatch(new RegExp(`^${what.replace(/[()/]/g, '\\$&')} +${err}$`, 'm'));
    }
    expect(out).toMatch(/^exec setuid-root file +ok$/m);
  });

  it('root with its capabilities dropped by capset loses the override', async () => {
    makeFixture();
    const nat = await native([prog, fixture, 'capdrop']);
    makeFixture();
    const sand = await snapvisor(['run', '--', prog, fixture, 'capdrop']);
    expect(sand.stderr).toBe('');
    expect(sand.stdout.toString()).toBe(nat.stdout.toString());
    expect(nat.stdout.toString().split('\n').filter((l) => l.startsWith("open 65534's 0600 file")).map((l) => l.split(/ +/).pop()))
      .toEqual(['ok', 'EACCES', 'ok', 'EACCES']);
  });

  it('the setuid program printed the raised euid, and no_new_privs kept it', async () => {
    makeFixture();
    const nat = await native([prog, fixture, 'user']);
    makeFixture();
    const sand = await snapvisor(['run', '--', prog, fixture, 'user']);
    const ids = (s: string) => s.split('\n').filter((l) => l.startsWith('euid='));
    expect(ids(sand.stdout.toString())).toEqual(ids(nat.stdout.toString()));
    expect(ids(nat.stdout.toString())).toEqual(['euid=65534 egid=65534', 'euid=0 egid=65534', 'euid=65534 egid=65534']);
  });
});

describe('run --user, /dev and /sys', () => {
  it('--user 65534:65534 starts unprivileged: no capabilities, root-only files denied', async () => {
    const r = await snapvisor(['run', '--user', '65534:65534', '--', '/bin/sh', '-c',
      'grep -E "^(Uid|Gid|CapEff|CapPrm)" /proc/self/status; cat /etc/shadow 2>&1 >/dev/null | sed "s/^.*: //"; touch /usr/x 2>&1 | sed "s/^.*: //"; echo ok > /tmp/mine && cat /tmp/mine']);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('Uid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n' +
      'CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nPermission denied\nPermission denied\nok\n');
  });

  it('--user with a bad value is a one-line usage error', async () => {
    const r = await snapvisor(['run', '--user', 'nobody', '--', '/bin/true']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^snapvisor: [^\n]*--user[^\n]*\n$/);
  });

  it('/dev/shm is the sandbox\'s own tmpfs and /sys is synthetic: nothing of the host shows', async () => {
    const marker = `/dev/shm/snapvisor-host-${process.pid}`;
    fs.writeFileSync(marker, 'host');
    try {
      const r = await snapvisor(['run', '--', '/bin/sh', '-c', 'ls -A /dev/shm; echo --; ls /sys; echo --; cat /sys/devices/system/cpu/online; echo sandbox > /dev/shm/s && cat /dev/shm/s']);
      expect(r.stderr).toBe('');
      const out = r.stdout.toString();
      expect(out).not.toContain('snapvisor-host');
      expect(out).toMatch(/^--\nclass\ndevices\nfs\nkernel\n--\n0(-\d+)?\nsandbox\n$/);
      expect(fs.existsSync('/dev/shm/s')).toBe(false);
    } finally {
      fs.rmSync(marker, { force: true });
    }
  });
});

describe('credentials across checkpoint/restore', () => {
  it('ids, groups, capabilities and no_new_privs are in the graph and come back', async () => {
    const base = freshDir('creds-cp');
    const store = path.join(base, 'store'), state = path.join(base, 'state');
    const name = `creds-${process.pid}`;
    const gate = checkpointGate('creds');
    // The guest looks for it as uid 1000 without capabilities: the directories above it must let it by.
    for (const d of [testTmpDir(), path.dirname(gate.sandbox)]) fs.chmodSync(d, 0o755);
    const script = 'import os, sys, ctypes, time\n' +
      'libc = ctypes.CDLL(None, use_errno=True)\n' +
      'os.setgroups([4242]); os.setresgid(100, 100, 100); libc.prctl(24, 0, 0, 0, 0); os.setresuid(1000, 1000, 0)\n' +
      'libc.prctl(38, 1, 0, 0, 0)\n' +
      'def show():\n' +
      '  st = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\\t" in l)\n' +
      '  print(os.getresuid(), os.getresgid(), os.getgroups(), [st[k] for k in ("CapPrm", "CapEff", "CapBnd", "NoNewPrivs")], flush=True)\n' +
      '  try: open("/etc/shadow"); print("read shadow")\n' +
      '  except PermissionError: print("shadow denied", flush=True)\n' +
      `show(); print("ready", flush=True)\n${PY_WAIT_FOR_GATE}\nshow()\n`;
    const run = snapvisorStreaming(['--root', state, 'run', '--name', name, '--', '/usr/bin/python3', '-c', script, gate.sandbox], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const cp = await snapvisor(['--root', state, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    gate.open();
    const before = run.lines.slice(0, 2);
    expect(before[0]).toBe("(1000, 1000, 0) (100, 100, 100) [4242] ['000001ffffffffff', '0000000000000000', '000001fffffffffe', '1']");
    expect(before[1]).toBe('shadow denied');
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = await snapvisor(['--root', state, 'restore', id, '--store', store], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(before.join('\n') + '\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
});
