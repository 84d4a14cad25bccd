/**
 * Mounts inside the sandbox (issue 8 point 3): run --volume and --tmpfs, the mount table a
 * path walk crosses (EXDEV across mounts, EROFS on a read-only one, st_dev per superblock,
 * ENOSPC past a tmpfs's size), /proc/mounts and /proc/self/mountinfo, checkpoint/restore of a
 * tmpfs's files and of a volume, and bad mount specs. The C program's lines are compared with
 * the same program run natively in a private mount namespace (unshare -rm) where the machine
 * allows one, and always with the lines Linux 6.x gives (recorded from such a run).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Checkpointed, checkpointAtReady, checkpointGate, compileStatic, freshDir, orphanStubs, restoreChecked, SH_WAIT_FOR_GATE, snapvisor, snapvisorStreaming, stderrLines, testTmpDir } from './helpers.js';

const MNT_C = String.raw`#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <unistd.h>
static char buf[65536];
static void r(const char *what, int rc) { printf("%s %s\n", what, rc < 0 ? strerrorname_np(errno) : "ok"); }
int main(int argc, char **argv) {
  const char *T = argv[1], *R = argv[2], *O = argv[3];
  char a[512], b[512];
  struct stat st, st2, st3;
  snprintf(a, sizeof a, "%s/f", T);
  int fd = open(a, O_CREAT | O_WRONLY, 0644); r("create tmpfs file", fd); write(fd, "x", 1); close(fd);
  snprintf(b, sizeof b, "%s/f", O); r("rename tmpfs->root", rename(a, b));
  r("link tmpfs->root", link(a, b));
  snprintf(b, sizeof b, "%s/g", T); r("rename within tmpfs", rename(a, b));
  r("link within tmpfs", link(b, a));
  r("rmdir mountpoint", rmdir(T));
  snprintf(b, sizeof b, "%s/moved", O); r("rename mountpoint", rename(T, b));
  snprintf(a, sizeof a, "%s/new", R); r("create in ro", open(a, O_CREAT | O_WRONLY, 0644));
  snprintf(a, sizeof a, "%s/a.txt", R); r("open ro file for write", open(a, O_WRONLY));
  r("open ro file for read", open(a, O_RDONLY));
  r("chmod in ro", chmod(a, 0600));
  r("truncate in ro", truncate(a, 0));
  r("utimes in ro", utimes(a, NULL));
  r("unlink in ro", unlink(a));
  snprintf(b, sizeof b, "%s/b.txt", R); r("rename in ro", rename(a, b));
  r("link in ro", link(a, b));
  r("symlink in ro", symlink("x", b));
  snprintf(b, sizeof b, "%s/d", R); r("mkdir in ro", mkdir(b, 0755));
  r("mkdir existing in ro", mkdir(a, 0755));
  snprintf(b, sizeof b, "%s/h", T); r("link ro->tmpfs", link(a, b));
  stat("/", &st); stat(T, &st2); stat(R, &st3);
  printf("dev tmpfs!=root %d ro!=tmpfs %d\n", st.st_dev != st2.st_dev, st2.st_dev != st3.st_dev);
  printf("tmpfs root mode %o\n", st2.st_mode);
  struct statfs sf; statfs(T, &sf);
  printf("statfs tmpfs type %lx bsize %ld blocks %ld\n", (long)sf.f_type, (long)sf.f_bsize, (long)sf.f_blocks);
  statfs(R, &sf); printf("statfs ro flags rdonly %d\n", (int)(sf.f_flags & 1) != 0);
  snprintf(a, sizeof a, "%s/f", T); unlink(a);
  snprintf(a, sizeof a, "%s/g", T); unlink(a);
  snprintf(a, sizeof a, "%s/big", T);
  fd = open(a, O_CREAT | O_WRONLY, 0644);
  long total = 0; int n;
  memset(buf, 'z', sizeof buf);
  while ((n = write(fd, buf, sizeof buf)) > 0) total += n;
  printf("filled %ld then %s\n", total, n < 0 ? strerrorname_np(errno) : "eof");
  close(fd); unlink(a);
  fd = open(a, O_CREAT | O_WRONLY, 0644);
  r("write after freeing", write(fd, buf, sizeof buf));
  return 0;
}
`;

/** What Linux gives (a native run in a private mount namespace: tmpfs size=1m on T, a read-only bind on R). */
const LINUX = `create tmpfs file ok
rename tmpfs->root EXDEV
link tmpfs->root EXDEV
rename within tmpfs ok
link within tmpfs ok
rmdir mountpoint EBUSY
rename mountpoint EBUSY
create in ro EROFS
open ro file for write EROFS
open ro file for read ok
chmod in ro EROFS
truncate in ro EROFS
utimes in ro EROFS
unlink in ro EROFS
rename in ro EROFS
link in ro EROFS
symlink in ro EROFS
mkdir in ro EROFS
mkdir existing in ro EEXIST
link ro->tmpfs EXDEV
dev tmpfs!=root 1 ro!=tmpfs 1
tmpfs root mode 41777
statfs tmpfs type 1021994 bsize 4096 blocks 256
statfs ro flags rdonly 1
filled 1048576 then ENOSPC
write after freeing ok
`;

/** mount(2) and umount2(2) by a root guest: tmpfs with options, remounts, binds, busy and lazy unmounts, stacked mounts. */
const MOUNT_C = String.raw`#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
static void r(const char *what, int rc) { printf("%s %s\n", what, rc < 0 ? strerrorname_np(errno) : "ok"); }
static int creat_close(const char *p) { int fd = open(p, O_CREAT | O_WRONLY, 0644); if (fd >= 0) close(fd); return fd; }
static char A[256], B[256], F[256], X[512], Y[512];
static void info(const char *mp) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    char *p = strchr(line, ' '); p = strchr(p + 1, ' '); p = strchr(p + 1, ' '); p = strchr(p + 1, ' ');
    if (strncmp(p + 1, mp, strlen(mp)) == 0 && p[1 + strlen(mp)] == ' ') {
      char *q = strchr(p + 1, ' ') + 1;        /* mount options */
      char *mo = q; q = strchr(q, ' '); *q = 0;
      char *dash = strstr(q + 1, "- ") + 2;    /* fstype source superoptions */
      char *fst = dash; char *s = strchr(fst, ' '); *s = 0;
      char *src = s + 1; s = strchr(src, ' '); *s = 0;
      char *so = s + 1; so[strcspn(so, "\n")] = 0;
      printf("mountinfo %s %s %s %s\n", mo, fst, src, so); n++;
    }
  }
  if (!n) printf("mountinfo none\n");
  fclose(f);
}
int main(int argc, char **argv) {
  const char *D = argv[1];
  struct stat st;
  snprintf(A, sizeof A, "%s/a", D); snprintf(B, sizeof B, "%s/b", D); snprintf(F, sizeof F, "%s/f", D);
  r("tmpfs on a", mount("mytmp", A, "tmpfs", 0, "size=128k,mode=700"));
  stat(A, &st); printf("mode %o\n", st.st_mode);
  info(A);
  snprintf(X, sizeof X, "%s/x", A);
  int fd = open(X, O_CREAT | O_WRONLY, 0644); write(fd, "data\n", 5); close(fd);
  r("remount size=64k", mount(NULL, A, NULL, MS_REMOUNT, "size=64k"));
  info(A);
  r("bind a on b", mount(A, B, NULL, MS_BIND, NULL));
  snprintf(Y, sizeof Y, "%s/x", B);
  char buf[16] = {0}; fd = open(Y, O_RDONLY); read(fd, buf, sizeof buf - 1); close(fd); printf("through bind: %s", buf);
  r("remount b ro", mount(NULL, B, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL));
  info(B);
  snprintf(Y, sizeof Y, "%s/y", B); r("create in ro bind", creat_close(Y));
  snprintf(Y, sizeof Y, "%s/y", A); r("create in rw source", creat_close(Y));
  snprintf(Y, sizeof Y, "%s/x2", B); r("rename across binds", rename(X, Y));
  fd = open(X, O_RDONLY);
  r("umount a with a file open", umount2(A, 0));
  close(fd);
  r("private a", mount(NULL, A, NULL, MS_PRIVATE, NULL));
  r("private on a non-mount", mount(NULL, D, NULL, MS_PRIVATE, NULL));
  r("umount a", umount2(A, 0));
  snprintf(Y, sizeof Y, "%s/x", B); fd = open(Y, O_RDONLY); r("b still shows the tmpfs", fd); close(fd);
  r("chdir b", chdir(B));
  r("umount b while cwd", umount2(B, 0));
  r("umount b detach", umount2(B, MNT_DETACH));
  r("chdir /", chdir("/"));
  r("umount a again", umount2(A, 0));
  snprintf(Y, sizeof Y, "%s/nonexistent", D); r("umount missing", umount2(Y, 0));
  r("umount bad flags", umount2(A, 0x100));
  r("tmpfs on a file", mount("none", F, "tmpfs", 0, NULL));
  r("unknown type", mount("none", A, "nosuchfs", 0, NULL));
  r("bad tmpfs option", mount("none", A, "tmpfs", 0, "bogus=1"));
  r("bind file on dir", mount(F, A, NULL, MS_BIND, NULL));
  r("bind missing source", mount(Y, A, NULL, MS_BIND, NULL));
  r("tmpfs ro", mount("none", A, "tmpfs", MS_RDONLY, NULL));
  snprintf(Y, sizeof Y, "%s/z", A); r("create in ro tmpfs", creat_close(Y));
  r("stacked tmpfs", mount("second", A, "tmpfs", 0, NULL));
  r("create in the top one", creat_close(Y));
  r("umount top", umount2(A, 0));
  r("create in the one below", creat_close(Y));
  r("umount below", umount2(A, 0));
  info(A);
  return 0;
}
`;

/** What Linux gives (the program natively as root of a private mount namespace, unshare -rm). */
const LINUX_MOUNT = `tmpfs on a ok
mode 40700
mountinfo rw,relatime tmpfs mytmp rw,size=128k,mode=700
remount size=64k ok
mountinfo rw,relatime tmpfs mytmp rw,size=64k,mode=700
bind a on b ok
through bind: data
remount b ro ok
mountinfo ro,relatime tmpfs mytmp rw,size=64k,mode=700
create in ro bind EROFS
create in rw source ok
rename across binds EXDEV
umount a with a file open EBUSY
private a ok
private on a non-mount EINVAL
umount a ok
b still shows the tmpfs ok
chdir b ok
umount b while cwd EBUSY
umount b detach ok
chdir / ok
umount a again EINVAL
umount missing ENOENT
umount bad flags EINVAL
tmpfs on a file ENOTDIR
unknown type ENODEV
bad tmpfs option EINVAL
bind file on dir ENOTDIR
bind missing source ENOENT
tmpfs ro ok
create in ro tmpfs EROFS
stacked tmpfs ok
create in the top one ok
umount top ok
create in the one below EROFS
umount below ok
mountinfo none
`;

let prog: string, mountProg: string, base: string, vol: string, other: string;

beforeAll(() => {
  prog = compileStatic('mounts-errno', MNT_C);
  mountProg = compileStatic('mounts-mount', MOUNT_C);
  base = freshDir('mounts');
  vol = path.join(base, 'vol');
  other = path.join(base, 'other');
  fs.mkdirSync(vol);
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(vol, 'a.txt'), 'hi\n');
});

/**
 * Run busybox sh -c `script` with run options `opts` as a named sandbox and checkpoint it at its
 * `ready` line (it is killed: 137). The script's $1 is a gate file made just after the checkpoint:
 * the script waits for it with SH_WAIT_FOR_GATE, so it is still there when the checkpoint comes.
 */
const checkpointWith = async (prefix: string, opts: string[], script: string): Promise<Checkpointed> => {
  const gate = checkpointGate(prefix);
  const c = await checkpointAtReady(prefix, ['/bin/busybox', 'sh', '-c', script, 'sh', gate.sandbox], 40_000, opts);
  gate.open();
  return c;
};

/** A listing of dir (names, sizes, modes, contents' lengths) to compare before and after. */
function listing(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.join('\n');
}

describe('run --volume and --tmpfs', () => {
  it('a tmpfs and a read-only volume give the errnos Linux gives (EXDEV, EBUSY, EROFS, ENOSPC, statfs, st_dev)', async () => {
    const before = listing(vol);
    const r = await snapvisor(['run', '--volume', `${vol}:/r:ro`, '--tmpfs', '/t:size=1m', '--', prog, '/t', '/r', other], { timeoutMs: 30_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toBe(LINUX);
    expect(listing(vol)).toBe(before);
    expect(fs.readdirSync(other)).toEqual([]);
    // The same program natively, in a private mount namespace, where one can be made.
    const n = path.join(base, 'native');
    fs.mkdirSync(path.join(n, 't'), { recursive: true });
    fs.mkdirSync(path.join(n, 'o'));
    const probe = spawnSync('unshare', ['-rm', 'true']);
    if (probe.status !== 0) { console.log('mounts.test: no native comparison: unshare -rm is not allowed here'); return; }
    const nat = spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o size=1m tmpfs ${n}/t && mount --bind ${vol} ${vol} && mount -o remount,bind,ro ${vol} && ${prog} ${n}/t ${vol} ${n}/o`], { encoding: 'utf8' });
    expect(nat.stdout).toBe(LINUX);
  });

  it('/proc/mounts and /proc/self/mountinfo list the volume and the tmpfs with their options', async () => {
    const r = await snapvisor(['run', '--volume', `${vol}:/data:ro`, '--tmpfs', '/scratch:size=64m,mode=755,noexec', '--', '/bin/busybox', 'sh', '-c', 'cat /proc/mounts; echo --; cat /proc/self/mountinfo; echo --; cat /proc/1/mounts | tail -2']);
    expect(r.stderr).toBe('');
    const [mounts, info, pid1] = r.stdout.toString().split('--\n');
    expect(mounts.split('\n')).toEqual([
      'none / overlay rw,relatime 0 0',
      'proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0',
      'tmpfs /dev tmpfs rw,nosuid,mode=755 0 0',
      'devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=666 0 0',
      'shm /dev/shm tmpfs rw,nosuid,nodev 0 0',
      'sysfs /sys sysfs ro,nosuid,nodev,noexec,relatime 0 0',
      `${vol} /data hostfs ro,relatime 0 0`,
      'tmpfs /scratch tmpfs rw,noexec,relatime,size=65536k,mode=755 0 0',
      '',
    ]);
    const lines = info.trim().split('\n');
    expect(lines[0]).toMatch(/^20 19 \d+:\d+ \/ \/ rw,relatime - overlay none rw$/);
    expect(lines[6]).toMatch(new RegExp(`^30 20 0:\\d+ / /data ro,relatime - hostfs ${vol} ro$`));
    expect(lines[7]).toMatch(/^31 20 0:\d+ \/ \/scratch rw,noexec,relatime - tmpfs tmpfs rw,size=65536k,mode=755$/);
    expect(pid1.trim().split('\n')).toEqual(mounts.trim().split('\n').slice(-2));
  });

  it('st_dev of every mount point is the major:minor of its mountinfo line, so os.path.ismount finds each mount as natively', async () => {
    // For every mount point (the topmost of mounts stacked on one point), stat's device against
    // mountinfo's; then os.path.ismount (st_dev against the parent's, or the same inode) of the
    // paths given. A bind mount within one filesystem is no mount to ismount, natively too.
    const py = [
      'import os, sys',
      'top = {}',
      'for l in open("/proc/self/mountinfo"):',
      '    f = l.split(); top[f[4]] = f[2]',
      'for p, d in sorted(top.items()):',
      '    st = os.stat(p); got = "%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))',
      '    if got != d: print("dev", p, got, d)',
      'print(len(top), "mounts", " ".join(p for p in sys.argv[1:] if os.path.ismount(p)))',
    ].join('\n');
    const implicit = ['/', '/proc', '/dev', '/dev/pts', '/dev/shm', '/sys'];
    const paths = [...implicit, '/data', '/scratch', '/tmp/b', '/tmp/p', '/usr', '/proc/self', '/dev/null', '/etc/passwd'];
    const r = await snapvisor(['run', '--volume', `${vol}:/data:ro`, '--tmpfs', '/scratch', '--', '/bin/busybox', 'sh', '-c',
      `mkdir -p /tmp/b /tmp/p && mount --bind /usr /tmp/b && mount -t proc proc /tmp/p && exec /usr/bin/python3 -c '${py}' ${paths.join(' ')}`], { timeoutMs: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('10 mounts / /proc /dev /dev/pts /dev/shm /sys /data /scratch /tmp/p\n');
    expect(r.status).toBe(0);
    // Natively, where all six are mount points, ismount finds them all as the sandbox does.
    const nat = spawnSync('/usr/bin/python3', ['-c', 'import os, sys; print(" ".join(p for p in sys.argv[1:] if os.path.ismount(p)))', ...implicit], { encoding: 'utf8' });
    const nativeMounts = new Set(fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]));
    if (implicit.every((p) => nativeMounts.has(p))) expect(nat.stdout).toBe(`${implicit.join(' ')}\n`);
    else console.log(`mounts.test: no native ismount comparison: not all of ${implicit.join(' ')} are mount points here`);
  });

  it('a missing mount point is made, a bound file is seen as a file, a volume inside a tmpfs is reached through it', async () => {
    const f = path.join(base, 'single.txt');
    fs.writeFileSync(f, 'one file\n');
    const r = await snapvisor(['run', '--tmpfs', '/a', '--volume', `${vol}:/a/b/c:ro`, '--volume', `${f}:/etc/single.txt:ro`, '--', '/bin/busybox', 'sh', '-c',
      'cat /a/b/c/a.txt /etc/single.txt; ls /a/b; cd /a/b/c/.. && pwd; echo x >> /etc/single.txt; echo $?']);
    expect(r.stdout.toString()).toBe('hi\none file\nc\n/a/b\n1\n');
    expect(r.stderr).toContain('Read-only file system');
    expect(fs.readFileSync(f, 'utf8')).toBe('one file\n');
  });

  it('statfs of a volume is the host filesystem\'s (as a bind mount\'s), with the mount\'s read-only flag', async () => {
    const fmt = '%T %b %S %l';
    const r = await snapvisor(['run', '--volume', `${vol}:/data:ro`, '--', '/bin/busybox', 'stat', '-f', '-c', fmt, '/data']);
    const n = spawnSync('/bin/busybox', ['stat', '-f', '-c', fmt, vol], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString().split(' ').slice(0, 1).concat(r.stdout.toString().trim().split(' ').slice(2))).toEqual(n.stdout.split(' ').slice(0, 1).concat(n.stdout.trim().split(' ').slice(2)));
    expect(Math.abs(Number(r.stdout.toString().split(' ')[1]) - Number(n.stdout.split(' ')[1]))).toBeLessThan(1024); // the total, give or take a concurrent resize
  });

  it('bad specs and a missing host path: one clear line, a non-zero status, nothing left running', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--volume', `${base}/nonexistent:/data:ro`], /^snapvisor: volume .*\/nonexistent: no such file or directory on the host$/],
      [['--volume', 'justone'], /argument 'justone' is invalid\. expected HOST:GUEST or HOST:GUEST:ro/],
      [['--volume', `${vol}:relative`], /must be absolute/],
      [['--tmpfs', 'scratch'], /the guest path of tmpfs 'scratch' must be absolute/],
      [['--tmpfs', '/scratch:size=lots'], /bad tmpfs size 'lots'/],
      [['--tmpfs', '/scratch:color=blue'], /unknown tmpfs option 'color=blue'/],
      [['--tmpfs', '/'], /^snapvisor: tmpfs: cannot be mounted over the sandbox's root/],
      [['--volume', `${vol}:/`], /^snapvisor: volume .*: cannot be mounted over the sandbox's root/],
    ];
    for (const [args, line] of cases) {
      const r = await snapvisor(['run', ...args, '--', '/bin/true']);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(stderrLines(r.stderr).length, r.stderr).toBe(1);
      expect(r.stderr.trim()).toMatch(line);
      expect(r.stdout.toString()).toBe('');
    }
    expect(orphanStubs()).toEqual([]);
  });

  it('checkpoint and restore: the tmpfs keeps its files and its use, the volume is reached again', async () => {
    const c = await checkpointWith('mounts-cp', ['--tmpfs', '/t:size=1m', '--volume', `${vol}:/v:ro`], [
      `echo kept > /t/f; dd if=/dev/zero of=/t/big bs=65536 count=8 2>/dev/null; echo ready; ${SH_WAIT_FOR_GATE}`,
      'cat /t/f /v/a.txt; df /t | tail -1; grep -c " /t \\| /v " /proc/mounts; dd if=/dev/zero of=/t/more bs=65536 count=16 2>&1 | grep -c \"No space left\"; ls -s /t/more',
    ].join('; '));
    // inspect names the volume among the host files the restore needs, and both mounts.
    const report = JSON.parse((await snapvisor(['inspect', c.id, '--store', c.store, '--json'])).stdout.toString());
    expect(report.hostFiles).toContainEqual({ path: fs.realpathSync(vol), role: 'volume', sizeBytes: null, mtimeMs: null });
    expect(report.mounts.map((m: { mountpoint: string; fstype: string; options: string }) => [m.mountpoint, m.fstype, m.options]).sort()).toEqual([['/t', 'tmpfs', 'rw,relatime'], ['/v', 'hostfs', 'ro,relatime']]);
    expect(report.mounts.find((m: { mountpoint: string }) => m.mountpoint === '/t')).toMatchObject({ usedBytes: 9 * 65536, sizeLimitBytes: 1 << 20 });
    const r = await restoreChecked(c);
    const out = r.stdout.toString().split('\n');
    expect(out.slice(0, 2)).toEqual(['kept', 'hi']);
    expect(out[2]).toMatch(/^tmpfs\s+1024\s+576\s+448\s+56% \/t$/); // 9 blocks of 64 KiB: the small file's and the big one's 8
    expect(out[3]).toBe('2');
    expect(out[4]).toBe('1');
    expect(out[5]).toMatch(/^\s*448 \/t\/more$/); // 7 blocks more fitted
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });
});

/** A listing of dir with contents (hash of the bytes) and symlink targets, without times: for comparing what two runs made. */
function contents(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      if (e.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) { out.push(`${rel}/ ${st.mode.toString(8)}`); walk(p); }
      else out.push(`${rel} ${st.mode.toString(8)} ${st.size} nlink=${st.nlink} ${fs.readFileSync(p, 'utf8')}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

describe('read-write volumes', () => {
  /** Changes of every kind, made through the volume mounted at $V. */
  const SCRIPT = [
    'echo new > $V/n', 'echo more >> $V/f', 'mkdir $V/d', 'echo x > $V/d/y', 'mv $V/d/y $V/d/z', 'ln $V/f $V/hl', 'ln -s target $V/sl',
    'chmod 600 $V/n', 'touch -d "2001-01-01 10:20:30" $V/n', 'rm -r $V/sub', 'truncate -s 3 $V/hl', 'rmdir $V/gone', 'mkdir -m 700 $V/priv',
    'echo x > $V/up/outside-attempt; echo up=$?', 'cat $V/f', 'ls $V | wc -l', 'stat -c "%s %a %Y" $V/n',
  ].join('; ');
  const fresh = () => {
    const v = freshDir('rw-volume');
    fs.mkdirSync(path.join(v, 'sub'));
    fs.writeFileSync(path.join(v, 'sub', 'inner'), 'i\n');
    fs.mkdirSync(path.join(v, 'gone'));
    fs.writeFileSync(path.join(v, 'f'), 'orig\n');
    fs.symlinkSync('..', path.join(v, 'up'));
    return v;
  };

  it('writes through a read-write volume reach the host as the same commands run natively on the directory leave it', async () => {
    const v = fresh(), nat = fresh();
    const r = await snapvisor(['run', '--volume', `${v}:/w`, '--env', 'V=/w', '--', '/bin/busybox', 'sh', '-c', SCRIPT]);
    expect(r.stderr).toBe('');
    expect(fs.existsSync(path.join(path.dirname(v), 'outside-attempt'))).toBe(false); // $V/up/.. is the sandbox's /, not the host's
    const n = spawnSync('/bin/busybox', ['sh', '-c', SCRIPT], { env: { ...process.env, V: nat }, encoding: 'utf8' });
    // The one difference: natively $V/up/.. is the host's directory above; in the sandbox it is the sandbox's /, where the write stays.
    expect(r.stdout.toString()).toBe(n.stdout);
    expect(contents(v)).toBe(contents(nat));
    fs.rmSync(path.join(path.dirname(nat), 'outside-attempt'), { force: true });
  });

  it('a file held open for writing goes on being written after checkpoint and restore; the restore sees the guest\'s writes as the volume\'s identity', async () => {
    const v = freshDir('rw-volume-cp');
    const c = await checkpointWith('mounts-rw', ['--volume', `${v}:/w`], `exec 3>>/w/log; echo one >&3; echo made > /w/new; echo ready; ${SH_WAIT_FOR_GATE}; echo two >&3; cat /w/new`);
    expect(fs.readFileSync(path.join(v, 'log'), 'utf8')).toBe('one\n');
    const r = await restoreChecked(c);
    expect(r.stdout.toString()).toBe('made\n');
    expect(r.status).toBe(0);
    expect(fs.readFileSync(path.join(v, 'log'), 'utf8')).toBe('one\ntwo\n');
  });
});

const NOEXEC_C = String.raw`#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
  /* argv[1]: a copy of this program on a noexec mount; argv[2]: a setuid copy on a nosuid mount (owned by 0, run as 1000 after setuid). */
  int fd = open(argv[1], O_RDONLY);
  void *p = mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  printf("mmap exec on noexec %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok");
  p = mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  printf("mmap read on noexec %s\n", p == MAP_FAILED ? strerrorname_np(errno) : "ok");
  pid_t c = fork();
  if (c == 0) { execl(argv[1], argv[1], (char *)0); printf("exec on noexec %s\n", strerrorname_np(errno)); fflush(stdout); _exit(0); }
  waitpid(c, 0, 0);
  return 0;
}
`;
const SUID_C = String.raw`#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[1], "drop") == 0) {
    if (setgid(1000) || setuid(1000)) { perror("setuid"); return 1; }
    execl(argv[2], argv[2], "show", argv[2], (char *)0);
    perror("exec"); return 1;
  }
  printf("%s euid %d\n", argv[2], (int)geteuid());
  return 0;
}
`;

describe('mount flags are enforced: noexec, nosuid', () => {
  it('noexec: execve gives EACCES and a PROT_EXEC mapping EPERM, as Linux (natively in unshare -rm too)', async () => {
    const p = compileStatic('mounts-noexec', NOEXEC_C);
    // Lines twice: the child's copy of stdio's buffer is flushed by it too (natively the same).
    const LINUX_NOEXEC = 'mmap exec on noexec EPERM\nmmap read on noexec ok\nexec on noexec EACCES\nmmap exec on noexec EPERM\nmmap read on noexec ok\n';
    const r = await snapvisor(['run', '--tmpfs', '/ne:noexec', '--', '/bin/busybox', 'sh', '-c', `cp ${p} /ne/p && ${p} /ne/p`]);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(LINUX_NOEXEC);
    if (spawnSync('unshare', ['-rm', 'true']).status !== 0) { console.log('mounts.test: no native comparison: unshare -rm is not allowed here'); return; }
    const d = freshDir('noexec-native');
    expect(spawnSync('unshare', ['-rm', 'sh', '-c', `mount -t tmpfs -o noexec none ${d} && cp ${p} ${d}/p && ${p} ${d}/p`], { encoding: 'utf8' }).stdout).toBe(LINUX_NOEXEC);
  });

  it('nosuid: a set-user-ID root program run by uid 1000 keeps euid 1000 there, and becomes root elsewhere', async () => {
    const p = compileStatic('mounts-suid', SUID_C);
    const r = await snapvisor(['run', '--tmpfs', '/ns:nosuid', '--tmpfs', '/s', '--', '/bin/busybox', 'sh', '-c', `for d in /ns /s; do cp ${p} $d/p && chmod 4755 $d/p; ${p} drop $d/p; done`]);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('/ns/p euid 1000\n/s/p euid 0\n');
  });
});

describe('volumes across checkpoint/restore', () => {
  it('a volume changed on the host since the checkpoint refuses the restore, naming it, unless --accept-changed-volumes', async () => {
    const v = freshDir('mounts-changed');
    fs.writeFileSync(path.join(v, 'a'), 'before\n');
    const c = await checkpointWith('mounts-vol', ['--volume', `${v}:/v:ro`], `echo ready; ${SH_WAIT_FOR_GATE}; cat /v/a`);
    fs.writeFileSync(path.join(v, 'a'), 'after!\n');
    const refused = await snapvisor(['--root', c.root, 'restore', c.id, '--store', c.store], { timeoutMs: 20_000 });
    expect(refused.status).toBe(125);
    expect(stderrLines(refused.stderr)).toEqual([`snapvisor: checkpoint ${c.id}: volume ${fs.realpathSync(v)} changed since the checkpoint (restore --accept-changed-volumes uses it as it is)`]);
    expect(refused.stdout.toString()).toBe('');
    const r = await snapvisor(['--root', c.root, 'restore', c.id, '--store', c.store, '--accept-changed-volumes'], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('after!\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });
});

describe('mount(2) and umount2(2) inside the sandbox', () => {
  /** A directory with a/, b/ and a file f for the mount program. */
  const mountDir = () => {
    const d = freshDir('mount-syscalls');
    fs.mkdirSync(path.join(d, 'a'));
    fs.mkdirSync(path.join(d, 'b'));
    fs.writeFileSync(path.join(d, 'f'), '');
    return d;
  };

  it('a root guest mounts, remounts, binds and unmounts as Linux does', async () => {
    const d = mountDir();
    const before = listing(d);
    const r = await snapvisor(['run', '--', mountProg, d]);
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe(LINUX_MOUNT);
    expect(listing(d)).toBe(before); // everything happened in the sandbox's tmpfs mounts
    const probe = spawnSync('unshare', ['-rm', 'true']);
    if (probe.status !== 0) { console.log('mounts.test: no native comparison: unshare -rm is not allowed here'); return; }
    const nd = mountDir();
    expect(spawnSync('unshare', ['-rm', mountProg, nd], { encoding: 'utf8' }).stdout).toBe(LINUX_MOUNT);
  });

  it('an unprivileged guest (run --user 1000) gets EPERM after the target is looked up', async () => {
    const d = mountDir();
    // uid 1000 must reach the program and the directory: the test's temp directories are 0700.
    for (const p of [testTmpDir(), path.dirname(mountProg), path.dirname(d), d]) fs.chmodSync(p, 0o755);
    const r = await snapvisor(['run', '--user', '1000', '--', mountProg, d]);
    const lines = r.stdout.toString().split('\n');
    for (const l of ['tmpfs on a EPERM', 'bind a on b EPERM', 'umount a EPERM', 'umount missing ENOENT', 'umount bad flags EINVAL', 'bind missing source EPERM', 'mountinfo none']) expect(lines).toContain(l);
  });

  it('MS_MOVE moves a mount with the mounts below it; into itself is ELOOP (as Linux)', async () => {
    const r = await snapvisor(['run', '--', '/bin/busybox', 'sh', '-c',
      'mkdir -p /tmp/a /tmp/b; mount -t tmpfs t1 /tmp/a; mkdir /tmp/a/in; mount -t tmpfs t2 /tmp/a/in; echo x > /tmp/a/in/f; mount --move /tmp/a /tmp/b; cat /tmp/b/in/f; ls /tmp/a | wc -l; grep " /tmp/" /proc/self/mountinfo | cut -d" " -f5,9; mount --move /tmp/b /tmp/b/in 2>&1 | grep -c "Too many levels"']);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('x\n0\n/tmp/b t1\n/tmp/b/in t2\n1\n');
  });

  it('renaming a directory that holds a mount point takes the mount along (as Linux)', async () => {
    const r = await snapvisor(['run', '--', '/bin/busybox', 'sh', '-c',
      'mkdir -p /tmp/a/b; mount -t tmpfs t /tmp/a/b; echo x > /tmp/a/b/f; mv /tmp/a /tmp/z; cat /tmp/z/b/f; grep " /tmp/" /proc/self/mountinfo | cut -d" " -f5; umount /tmp/z/b; echo $?']);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('x\n/tmp/z/b\n0\n');
  });

  it('proc and bind mounts by busybox mount; a guest-made tmpfs survives checkpoint and restore', async () => {
    const r = await snapvisor(['run', '--', '/bin/busybox', 'sh', '-c',
      'mkdir /tmp/p && mount -t proc proc /tmp/p && readlink /tmp/p/self >/dev/null && grep " /tmp/p " /proc/self/mountinfo | cut -d" " -f5-; umount /tmp/p; ls /tmp/p | wc -l; mount --bind /etc /mnt && [ -e /mnt/passwd ] && echo bound; umount /mnt']);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('/tmp/p rw,relatime - proc proc rw\n0\nbound\n');
    const c = await checkpointWith('mounts-guest', [], `mkdir -p /tmp/m && mount -t tmpfs -o size=256k mine /tmp/m && echo kept > /tmp/m/f && echo ready; ${SH_WAIT_FOR_GATE}; cat /tmp/m/f; grep " /tmp/m " /proc/mounts; umount /tmp/m && ls /tmp/m | wc -l`);
    const rr = await restoreChecked(c);
    expect(rr.stdout.toString()).toBe('kept\nmine /tmp/m tmpfs rw,relatime,size=256k 0 0\n0\n');
    expect(rr.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  }, 120_000); // 46 s seen at load 15
});
