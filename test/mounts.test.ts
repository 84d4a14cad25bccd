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
import { type Checkpointed, compileStatic, freshDir, orphanStubs, restoreChecked, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

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

let prog: string, base: string, vol: string, other: string;

beforeAll(() => {
  prog = compileStatic('mounts-errno', MNT_C);
  base = freshDir('mounts');
  vol = path.join(base, 'vol');
  other = path.join(base, 'other');
  fs.mkdirSync(vol);
  fs.mkdirSync(other);
  fs.writeFileSync(path.join(vol, 'a.txt'), 'hi\n');
});

/** Run busybox sh -c `script` with run options `opts` as a named sandbox and checkpoint it at its `ready` line (it is killed: 137). */
async function checkpointWith(prefix: string, opts: string[], script: string): Promise<Checkpointed> {
  const dir = freshDir(prefix);
  const root = path.join(dir, 'state'), store = path.join(dir, 'store');
  const name = `${prefix}-${process.pid}`;
  const run = snapvisorStreaming(['--root', root, 'run', '--name', name, ...opts, '--', '/bin/busybox', 'sh', '-c', script], { timeoutMs: 40_000 });
  await run.waitFor((l) => l === 'ready', 20_000);
  const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  expect(await run.done).toBe(137);
  return { id: cp.stdout.toString().trim().split(/\s+/).pop()!, root, store, before: [...run.lines] };
}

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
    expect(lines[0]).toBe('20 19 0:43 / / rw,relatime - overlay none rw');
    expect(lines[6]).toMatch(new RegExp(`^30 20 0:\\d+ / /data ro,relatime - hostfs ${vol} ro$`));
    expect(lines[7]).toMatch(/^31 20 0:\d+ \/ \/scratch rw,noexec,relatime - tmpfs tmpfs rw,size=65536k,mode=755$/);
    expect(pid1.trim().split('\n')).toEqual(mounts.trim().split('\n').slice(-2));
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

  it('bad specs and a missing host path: one clear line, a non-zero status, nothing left running', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--volume', `${base}/nonexistent:/data:ro`], /^snapvisor: volume .*\/nonexistent: no such file or directory on the host$/],
      [['--volume', 'justone'], /argument 'justone' is invalid\. expected HOST:GUEST or HOST:GUEST:ro/],
      [['--volume', `${vol}:relative`], /must be absolute/],
      [['--tmpfs', 'scratch'], /the guest path of tmpfs 'scratch' must be absolute/],
      [['--tmpfs', '/scratch:size=lots'], /bad tmpfs size 'lots'/],
      [['--tmpfs', '/scratch:color=blue'], /unknown tmpfs option 'color=blue'/],
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
      'echo kept > /t/f; dd if=/dev/zero of=/t/big bs=65536 count=8 2>/dev/null; echo ready; sleep 2',
      'cat /t/f /v/a.txt; df /t | tail -1; grep -c " /t \\| /v " /proc/mounts; dd if=/dev/zero of=/t/more bs=65536 count=16 2>&1 | grep -c \"No space left\"; ls -s /t/more',
    ].join('; '));
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
