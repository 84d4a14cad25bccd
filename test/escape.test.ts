/**
 * The lower layer is reached only beneath the rootfs's handle (issue 9, gofer-like):
 * attempts to read or write host files outside `--rootfs` fail inside the sandbox and leave
 * the host untouched. Every test keeps a marker file outside the rootfs and asserts that its
 * content never appears in what the guest prints, and that the host files are unchanged.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileStatic, freshDir, orphanStubs, sha256, snapvisor, snapvisorStreaming } from './helpers.js';

const MARKER = 'SNAPVISOR-OUTSIDE-' + crypto.randomBytes(8).toString('hex');
let outside: string, root: string, hostState: () => string;

/** A listing of every file under dir with its content hash (symlinks by target). */
function tree(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) out.push(`${p} -> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) { out.push(`${p}/`); walk(p); }
      else out.push(`${p} ${sha256(fs.readFileSync(p))} ${fs.statSync(p).mode.toString(8)}`);
    }
  };
  walk(dir);
  return out.join('\n');
}

beforeAll(() => {
  const base = freshDir('escape');
  outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), MARKER + '\n');
  root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  fs.writeFileSync(path.join(root, 'data'), 'lower data\n');
  fs.symlinkSync('/', path.join(root, 'x'));                             // covered later by an upper dir
  fs.symlinkSync(outside, path.join(root, 'abs'));                       // absolute symlink out
  fs.symlinkSync('../'.repeat(12) + outside.slice(1), path.join(root, 'rel')); // relative symlink out
  fs.mkdirSync(path.join(root, 'sub'));
  fs.symlinkSync('../../../..' + outside, path.join(root, 'sub', 'up'));
  hostState = () => tree(path.dirname(outside));
});

async function guest(script: string) {
  const before = hostState();
  const r = await snapvisor(['run', '--rootfs', root, '--', '/bin/busybox', 'sh', '-c', script]);
  expect(r.timedOut).toBe(false);
  const all = r.stdout.toString() + r.stderr;
  expect(all).not.toContain(MARKER);
  expect(hostState()).toBe(before);
  return { ...r, out: r.stdout.toString() };
}

describe('escapes from --rootfs fail and leave the host untouched', () => {
  it('the covered symlink: rm /x (-> /), mkdir /x, read /x/… (the issue\'s reproducer)', async () => {
    const r = await guest(`busybox rm /x; busybox mkdir /x; busybox head -1 /x${outside}/secret; busybox head -1 /x/etc/shadow; busybox ls /x; echo done`);
    expect(r.out).toBe('done\n');
    expect(r.stderr).toMatch(/No such file or directory/);
  });

  it('a covered symlink made by the guest: whiteout, mkdir, then mkdir -p below', async () => {
    const r = await guest(`busybox rm /abs; busybox mkdir -p /abs/secret.d; busybox cat /abs/secret; busybox ls -a /abs; echo done`);
    expect(r.out).toBe('.\n..\nsecret.d\ndone\n');
  });

  it('absolute and relative symlinks, ../ chains, symlinks the guest makes', async () => {
    const r = await guest([
      `busybox cat /abs/secret`, `busybox cat /rel/secret`, `busybox cat /sub/up/secret`,
      `busybox cat /../../../..${outside}/secret`, `busybox cat /bin/../../../..${outside}/secret`,
      `busybox ln -s ${outside} /mine; busybox cat /mine/secret`,
      `busybox ln -s ../../../../../../..${outside}/secret /bin/rel2; busybox cat /bin/rel2`,
      `busybox ls /x${outside}`, `echo done`,
    ].join('; '));
    expect(r.out).toBe('done\n');
    expect(r.stderr.match(/No such file or directory/g)?.length).toBe(8);
  });

  it('/proc/self/root and /proc/self/cwd (after chdir) resolve inside the sandbox', async () => {
    const r = await guest([
      `busybox cat /proc/self/root${outside}/secret`, `busybox cat /proc/self/root/../../..${outside}/secret`,
      `cd /bin && busybox cat /proc/self/cwd/../../../..${outside}/secret`,
      `cd /sub && busybox cat /proc/self/cwd/up/secret`,
      `busybox readlink /proc/self/root`, `echo done`,
    ].join('; '));
    expect(r.out).toBe('/\ndone\n');
  });

  it('hard links and writes through links change only the sandbox', async () => {
    const r = await guest([
      `busybox ln /abs/secret /h1`, `busybox ln /x${outside}/secret /h2`,
      `busybox ln /data /h3 && echo more >> /h3 && busybox cat /data`,
      `echo overwritten > /abs/secret`, `busybox mkdir -p ${outside} && echo planted > ${outside}/secret && busybox cat ${outside}/secret`,
      `echo x >> /bin/busybox.new`, `echo done`,
    ].join('; '));
    expect(r.out).toBe('lower data\nmore\nplanted\ndone\n');
    expect(fs.readFileSync(path.join(root, 'data'), 'utf8')).toBe('lower data\n');
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe(MARKER + '\n');
  });
});

const READER = String.raw`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <dirent.h>
int main(int argc, char **argv) {
  int n = atoi(argv[1]), ok = 0, missing = 0, leaked = 0, other = 0;
  /* argv[2]: the directory to read f in (default /d). */
  const char *D = argc > 2 ? argv[2] : "/d";
  char buf[256], f1[256], f2[256];
  snprintf(f1, sizeof f1, "%s/f", D);
  snprintf(f2, sizeof f2, "%s/../%s/f", D, strrchr(D, '/') + 1);
  for (int i = 0; i < n; i++) {
    int fd = open(i % 2 ? f1 : f2, O_RDONLY);
    if (fd < 0) { if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) missing++; else other++; continue; }
    int r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r < 0) { other++; continue; }
    buf[r] = 0;
    if (strcmp(buf, "safe\n") == 0) ok++;
    else { leaked++; fputs(buf, stdout); }
    if (i % 50 == 0) {
      DIR *d = opendir(D);
      if (d) { struct dirent *e; while ((e = readdir(d))) if (strcmp(e->d_name, "marker-only-outside") == 0) leaked++; closedir(d); }
    }
  }
  printf("ok=%d missing=%d leaked=%d other=%d\n", ok, missing, leaked, other);
  return 0;
}
`;

const SWAPPER = String.raw`
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/fs.h>
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
int main(int argc, char **argv) {
  signal(SIGTERM, on_term);
  long swaps = 0;
  /* argv[1] = directory d, argv[2] = symlink dlink: exchange them atomically, forever. */
  while (!stop) {
    if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) == 0) swaps++;
  }
  printf("%ld\n", swaps);
  return 0;
}
`;

/**
 * Run snapvisor with `runArgs` (a reader of d/f, installed at `readerPath`) 10,000 times over while a
 * host process exchanges `dir`/d (holding a safe f) and `dir`/dlink (a symlink to `outsideDir`,
 * whose f holds MARKER): no byte from outside may reach the guest, and both states must be seen.
 * `afterSwap` runs once the swapper has stopped, whatever happened. Returns the reader's counts.
 */
async function swapRace(dir: string, outsideDir: string, readerPath: string, runArgs: string[], afterSwap: () => void = () => undefined): Promise<{ ok: number; missing: number }> {
  const reader = compileStatic('swap-reader', READER);
  const swapper = compileStatic('swap-host', SWAPPER);
  fs.copyFileSync(reader, readerPath);
  fs.chmodSync(readerPath, 0o755);
  fs.mkdirSync(path.join(dir, 'd'));
  fs.writeFileSync(path.join(dir, 'd', 'f'), 'safe\n');
  fs.writeFileSync(path.join(outsideDir, 'f'), MARKER + '\n');
  fs.writeFileSync(path.join(outsideDir, 'marker-only-outside'), MARKER);
  fs.symlinkSync(outsideDir, path.join(dir, 'dlink'));
  const sw = spawn(swapper, [path.join(dir, 'd'), path.join(dir, 'dlink')], { stdio: ['ignore', 'pipe', 'inherit'] });
  let swaps = '';
  sw.stdout!.on('data', (d) => { swaps += d; });
  const swapperDone = new Promise<void>((res) => sw.on('close', () => res()));
  let counts: { ok: number; missing: number };
  try {
    const r = await snapvisor(runArgs, { timeoutMs: 150_000 });
    expect(r.timedOut).toBe(false);
    const out = r.stdout.toString();
    expect(out + r.stderr).not.toContain(MARKER);
    const m = /^ok=(\d+) missing=(\d+) leaked=(\d+) other=(\d+)\n$/.exec(out);
    expect(m, out + r.stderr).not.toBeNull();
    const [ok, missing, leaked, other] = m!.slice(1).map(Number);
    expect(leaked).toBe(0);
    expect(other).toBe(0);
    expect(ok + missing).toBe(10000);
    // Both states were seen: the swap really raced the reads.
    expect(ok).toBeGreaterThan(0);
    expect(missing).toBeGreaterThan(0);
    counts = { ok, missing };
  } finally {
    sw.kill('SIGTERM');
    await swapperDone;
    afterSwap();
  }
  expect(Number(swaps)).toBeGreaterThan(1000);
  return counts;
}

describe('a host-side directory <-> symlink swap while the guest reads', () => {
  it('10,000 reads of /d/f while the host exchanges d and a symlink out: no byte leaks', async () => {
    const t0 = Date.now();
    const { ok, missing } = await swapRace(root, outside, path.join(root, 'bin', 'reader'), ['run', '--rootfs', root, '--', '/bin/reader', '10000']);
    console.log(`swap race: ${ok} reads of the rootfs file, ${missing} ENOENT/ELOOP, in ${Date.now() - t0} ms`);
  }, 180_000);
});

describe('host files across checkpoint/restore', () => {
  it('an open rootfs file is reopened by guest path; a changed or vanished file, or a missing rootfs, refuses the restore with one line', async () => {
    const base = freshDir('lower-restore');
    const r0 = path.join(base, 'root');
    fs.mkdirSync(path.join(r0, 'bin'), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(r0, 'bin', 'busybox'));
    fs.chmodSync(path.join(r0, 'bin', 'busybox'), 0o755);
    fs.writeFileSync(path.join(r0, 'data'), 'line one\nline two\n');
    // The guest waits for /gate/go, made after the checkpoint, not a fixed sleep a loaded machine outlasts.
    fs.mkdirSync(path.join(r0, 'gate'));
    const store = path.join(base, 'store'), state = path.join(base, 'state');
    const name = `lower-${process.pid}`;
    const run = snapvisorStreaming(['--root', state, 'run', '--name', name, '--rootfs', r0, '--', '/bin/busybox', 'sh', '-c',
      'exec 3< /data; read -r a <&3; echo "$a"; echo ready; while [ ! -e /gate/go ]; do busybox sleep 0.02; done; read -r b <&3; echo "$b"'], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const cp = await snapvisor(['--root', state, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(run.lines).toEqual(['line one', 'ready']);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    fs.writeFileSync(path.join(r0, 'gate', 'go'), '');

    const ok = await snapvisor(['--root', state, 'restore', id, '--store', store], { timeoutMs: 30_000 });
    expect(ok.timedOut).toBe(false);
    expect(ok.stderr).toBe('');
    expect(ok.stdout.toString()).toBe('line two\n');
    expect(ok.status).toBe(0);
    expect(orphanStubs()).toEqual([]);

    fs.writeFileSync(path.join(r0, 'data'), 'line one\nline 2!\n');
    const changed = await snapvisor(['--root', state, 'restore', id, '--store', store], { timeoutMs: 20_000 });
    expect(changed.status).not.toBe(0);
    expect(changed.stderr).toMatch(/^snapvisor: [^\n]*\/data[^\n]*changed[^\n]*\n$/);
    expect(changed.stdout.length).toBe(0);

    fs.rmSync(path.join(r0, 'data'));
    const gone = await snapvisor(['--root', state, 'restore', id, '--store', store], { timeoutMs: 20_000 });
    expect(gone.status).not.toBe(0);
    expect(gone.stderr).toMatch(/^snapvisor: [^\n]*\/data[^\n]*gone[^\n]*\n$/);

    fs.renameSync(r0, r0 + '.moved');
    const noRoot = await snapvisor(['--root', state, 'restore', id, '--store', store], { timeoutMs: 20_000 });
    expect(noRoot.status).not.toBe(0);
    expect(noRoot.stderr).toMatch(new RegExp(`^snapvisor: [^\\n]*rootfs ${r0}[^\\n]*missing[^\\n]*\\n$`));
  }, 90_000);
});

describe('escapes through a volume (run --volume) fail and leave the host untouched', () => {
  let vol: string;
  beforeAll(() => {
    vol = path.join(path.dirname(outside), 'vol');
    fs.mkdirSync(vol);
    fs.writeFileSync(path.join(vol, 'file'), 'volume data\n');
    fs.symlinkSync('../outside', path.join(vol, 'up'));       // relative symlink out of the volume
    fs.symlinkSync(outside, path.join(vol, 'abs'));           // absolute symlink to the outside directory
    fs.symlinkSync(path.join(outside, 'secret'), path.join(vol, 'abs-file'));
  });

  async function guestV(script: string, extra: string[] = []) {
    const before = hostState();
    const r = await snapvisor(['run', '--rootfs', root, '--volume', `${vol}:/v:ro`, ...extra, '--', '/bin/busybox', 'sh', '-c', script]);
    expect(r.timedOut).toBe(false);
    expect(r.stdout.toString() + r.stderr).not.toContain(MARKER);
    expect(hostState()).toBe(before);
    return { ...r, out: r.stdout.toString() };
  }

  it('.., absolute and relative symlinks out of the volume resolve inside the sandbox', async () => {
    const r = await guestV([
      'cat /v/file', 'cat /v/up/secret', 'cat /v/abs/secret', 'cat /v/abs-file', 'cat /v/../outside/secret', 'cat /v/../../../outside/secret',
      'ls /v/.. | grep -c outside', 'cd /v && cd .. && pwd', 'echo done',
    ].join('; '));
    expect(r.out).toBe('volume data\n0\n/\ndone\n');
  });

  it('writes to a read-only volume give EROFS; hard links across it give EXDEV', async () => {
    const r = await guestV([
      'echo x > /v/new; echo $?', 'echo x >> /v/file; echo $?', 'rm -f /v/file; echo $?', 'mkdir /v/d; echo $?', 'ln -s / /v/l; echo $?',
      'mv /v/file /v/moved; echo $?', 'chmod 777 /v/file; echo $?', 'touch /v/file; echo $?',
      'ln /v/file /sub/hl 2>&1 | grep -c "cross-device"', 'ln /bin/busybox /v/hl 2>&1 | grep -c "Read-only"', 'cat /v/file',
    ].join('; '));
    expect(r.out).toBe('1\n1\n1\n1\n1\n1\n1\n1\n1\n1\nvolume data\n');
  });

  it('a guest bind mount of a host path that is not in the sandbox finds nothing', async () => {
    const r = await guestV([
      'mkdir /mnt', `mount --bind ${outside} /mnt; echo $?`, 'mount --bind /abs /mnt; echo $?', 'mount --bind /v/up /mnt; echo $?', 'mount --bind /v/abs /mnt; echo $?',
      'mount --bind /v /mnt && cat /mnt/file && umount /mnt', 'ls /mnt | wc -l',
    ].join('; '));
    expect(r.out).toBe('255\n255\n255\n255\nvolume data\n0\n');
    expect(r.stderr).toMatch(/No such file or directory/);
  });

  it('10,000 reads of /v/d/f while the host exchanges d and a symlink out of the volume: no byte leaks', async () => {
    await swapRace(vol, outside, path.join(root, 'bin', 'vreader'), ['run', '--rootfs', root, '--volume', `${vol}:/v:ro`, '--', '/bin/vreader', '10000', '/v/d'], () => {
      // Leave the volume as the other tests expect it: d a directory again.
      if (fs.lstatSync(path.join(vol, 'd')).isSymbolicLink()) fs.renameSync(path.join(vol, 'dlink'), path.join(vol, 'tmp')), fs.renameSync(path.join(vol, 'd'), path.join(vol, 'dlink')), fs.renameSync(path.join(vol, 'tmp'), path.join(vol, 'd'));
    });
  }, 180_000);
});

const WRITER = String.raw`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
/* Write "guest" into /v/d/f n times (alternating /v/d/f and /v/d/../d/f), create and remove /v/d/new: count what happened. */
int main(int argc, char **argv) {
  int n = atoi(argv[1]), ok = 0, missing = 0, other = 0;
  for (int i = 0; i < n; i++) {
    int fd = open(i % 2 ? "/v/d/f" : "/v/d/../d/f", O_WRONLY | O_TRUNC);
    if (fd < 0) { if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) missing++; else { other++; printf("open errno %d\n", errno); } continue; }
    if (write(fd, "guest\n", 6) != 6) other++; else ok++;
    close(fd);
    if (i % 10 == 0) {
      fd = open("/v/d/new", O_CREAT | O_WRONLY, 0644);
      if (fd >= 0) { write(fd, "new\n", 4); close(fd); unlink("/v/d/new"); }
    }
  }
  printf("ok=%d missing=%d other=%d\n", ok, missing, other);
  return 0;
}
`;

describe('escapes through a read-write volume fail and leave the host outside it untouched', () => {
  let vol: string;
  /** Everything on the host but the volume itself: the outside directory and the rootfs. */
  const outsideState = () => tree(outside) + '\n' + tree(root);
  beforeAll(() => {
    vol = path.join(path.dirname(outside), 'rwvol');
    fs.mkdirSync(vol);
    fs.writeFileSync(path.join(vol, 'file'), 'volume data\n');
    fs.symlinkSync('../outside', path.join(vol, 'up'));
    fs.symlinkSync(outside, path.join(vol, 'abs'));
    fs.symlinkSync(path.join(outside, 'secret'), path.join(vol, 'abs-file'));
  });

  it('writes, creates, renames and links through symlinks and .. out of the volume stay inside the sandbox', async () => {
    const before = outsideState();
    const r = await snapvisor(['run', '--rootfs', root, '--volume', `${vol}:/v`, '--', '/bin/busybox', 'sh', '-c', [
      'echo x > /v/up/secret', 'echo x > /v/abs/secret', 'echo x > /v/abs-file', 'echo x >> /v/../outside/secret', 'mkdir /v/up/newdir',
      'mv /v/file /v/up/moved', 'ln /v/file /v/up/hl', 'ln /v/abs-file /v/hl2 && echo x >> /v/hl2', 'ln -s /x /v/up2 && echo x > /v/up2/y',
      'cat /v/file', 'echo done',
    ].join('; ')]);
    expect(r.timedOut).toBe(false);
    expect(r.stdout.toString() + r.stderr).not.toContain(MARKER);
    expect(r.stdout.toString()).toContain('volume data\ndone\n');
    expect(outsideState()).toBe(before);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe(MARKER + '\n');
    // What the guest made inside the volume is there, as links it made (a symlink stays a symlink, never followed on the host).
    expect(fs.lstatSync(path.join(vol, 'hl2')).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(path.join(vol, 'up2'))).toBe('/x');
  });

  it('10,000 writes to /v/d/f while the host exchanges d and a symlink out of the volume: nothing outside is written', async () => {
    const writer = compileStatic('swap-writer', WRITER);
    const swapper = compileStatic('swap-host', SWAPPER);
    fs.copyFileSync(writer, path.join(root, 'bin', 'vwriter'));
    fs.chmodSync(path.join(root, 'bin', 'vwriter'), 0o755);
    fs.mkdirSync(path.join(vol, 'd'));
    fs.writeFileSync(path.join(vol, 'd', 'f'), 'safe\n');
    fs.writeFileSync(path.join(outside, 'f'), MARKER + '\n');
    fs.symlinkSync(outside, path.join(vol, 'dlink'));
    const before = tree(outside);
    const sw = spawn(swapper, [path.join(vol, 'd'), path.join(vol, 'dlink')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let swaps = '';
    sw.stdout!.on('data', (d) => { swaps += d; });
    const swapperDone = new Promise<void>((res) => sw.on('close', () => res()));
    try {
      const r = await snapvisor(['run', '--rootfs', root, '--volume', `${vol}:/v`, '--', '/bin/vwriter', '10000'], { timeoutMs: 150_000 });
      expect(r.timedOut).toBe(false);
      const m = /^ok=(\d+) missing=(\d+) other=(\d+)\n$/.exec(r.stdout.toString());
      expect(m, r.stdout.toString() + r.stderr).not.toBeNull();
      const [ok, missing, other] = m!.slice(1).map(Number);
      expect(other).toBe(0);
      expect(ok + missing).toBe(10000);
      expect(ok).toBeGreaterThan(0);
      expect(missing).toBeGreaterThan(0);
    } finally {
      sw.kill('SIGTERM');
      await swapperDone;
    }
    expect(Number(swaps)).toBeGreaterThan(1000);
    expect(tree(outside)).toBe(before);
    expect(fs.readFileSync(path.join(outside, 'f'), 'utf8')).toBe(MARKER + '\n');
  }, 180_000);
});
