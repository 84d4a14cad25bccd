/**
 * Host-file pages in incremental checkpoints (docs/snapshot-format.md "Incremental checkpoints"):
 * the kernel's page cache holds host files' bytes, also of files no guest maps any more (a
 * program that ran and ended); a checkpoint that leaves its sandbox running counts them clean, so
 * the next one inherits them instead of reading them and naming them in its pack again, while
 * their file is unchanged. A file changed since is noticed: the next checkpoint stores its pages
 * itself, and a restore of a link whose layers name the file is refused, naming it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshDir, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

describe('host-file pages in incremental checkpoints', () => {
  it('are inherited while their file is unchanged; a file changed since is stored by the next checkpoint, and a restore naming it is refused', async () => {
    // A rootfs of its own, so the test may change a host file in the guest's page cache.
    const base = freshDir('inc-host-files');
    const rootfs = path.join(base, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    for (const name of ['busybox', 'other']) {
      fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', name));
      fs.chmodSync(path.join(rootfs, 'bin', name), 0o755);
    }
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    // /bin/other runs once and ends: its pages stay in the page cache, mapped by no guest.
    const script = '/bin/other true; i=0; while [ $i -lt 150 ]; do i=$((i+1)); echo $i; usleep 40000; done';
    const run = snapvisorStreaming(['--root', root, 'run', '--rootfs', rootfs, '--name', 'inc-hf', '--', '/bin/busybox', 'sh', '-c', script], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === '3', 30_000);
    const last = () => Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
    const checkpoint = async (leaveRunning: boolean): Promise<{ id: string; newPages: number; filePages: number }> => {
      const cp = await snapvisor(['--root', root, 'checkpoint', 'inc-hf', '--store', store, '--compress', ...(leaveRunning ? ['--leave-running'] : [])], { timeoutMs: 30_000 });
      expect(cp.stderr).toBe('');
      expect(cp.status).toBe(0);
      const out = cp.stdout.toString();
      const wait = String(last() + 3);
      if (leaveRunning) await run.waitFor((l) => l === wait, 30_000);
      return { id: out.trim().split(/\s+/).pop()!, newPages: Number(/\((\d+) new/.exec(out)?.[1]), filePages: Number(/(\d+) pages named in host files/.exec(out)?.[1] ?? 0) };
    };

    const first = await checkpoint(true);
    expect(first.filePages).toBeGreaterThan(100); // busybox's text, mapped, and /bin/other's, not
    // Nothing changed but the shell's own few pages: no host-file page is read or named again.
    const second = await checkpoint(true);
    expect(second.filePages).toBe(0);
    expect(second.newPages).toBeLessThan(first.filePages);

    // /bin/other changes on the host (same bytes, new mtime).
    const other = path.join(rootfs, 'bin', 'other'), ref = path.join(base, 'mtime-ref');
    fs.writeFileSync(ref, '');
    execFileSync('touch', ['-r', other, ref]); // keeps the nanoseconds, which a Date would lose
    const { atime, mtime } = fs.statSync(other);
    fs.utimesSync(other, atime, new Date(mtime.getTime() + 5000));
    // The third stores its pages itself, not naming the file: more new pages than the second.
    const third = await checkpoint(false);
    expect(third.filePages).toBe(0);
    expect(third.newPages).toBeGreaterThan(second.newPages + 10);
    expect(await run.done).toBe(137);

    // Both inherit from the first's pack, which names /bin/other: refused, naming it (a restore
    // checks every host file of the packs it opens, also of pages a later link stored itself).
    for (const id of [second.id, third.id]) {
      const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 30_000 });
      expect(r.timedOut).toBe(false);
      expect(r.status).not.toBe(0);
      expect(r.stdout.toString()).toBe('');
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/cannot be restored here: (the page file of [0-9a-f]{16}, which it inherits pages from: )?the host file \/bin\/other, which its memory maps, changed since the checkpoint/);
      expect(orphanStubs()).toEqual([]);
    }

    // /bin/other as it was: both restore and count on to the end.
    execFileSync('touch', ['-r', ref, other]);
    for (const id of [second.id, third.id]) {
      const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const nums = r.stdout.toString().split('\n').filter(Boolean).map(Number);
      expect(nums[nums.length - 1]).toBe(150);
      expect(orphanStubs()).toEqual([]);
    }
  }, 180_000);
});
