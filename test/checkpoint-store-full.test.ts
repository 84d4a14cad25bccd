/**
 * A checkpoint whose page writing fails in the middle (its store fills up: ENOSPC from the page
 * file's pwrites, on the page worker's thread and the writer's) is one line, and the sandbox
 * runs on: the page worker is stopped and joined before the page file's fd is closed (a write it
 * issued after the close would land in whatever file next took that fd number), the partial page
 * file is removed, nothing already in the store is lost, and the buffers queued behind the
 * failure are no unhandled rejection (which ended the sandbox, and its guest, before the fix).
 * The store is a 64 MiB tmpfs mounted in a private mount namespace (unshare -m) that the sandbox
 * runs in; the test reads it through /proc/PID/root.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, freshDir, snapvisor } from './helpers.js';

/** Sandboxes started here, killed after the file's tests if a failed assertion left them running. */
const started = new Set<ChildProcess>();
afterAll(() => { for (const c of started) c.kill('SIGKILL'); });

/**
 * Prints a count every 50 ms; once the file argv[1] exists it allocates 160 MiB of seeded random
 * bytes (neither zero nor compressible: more than the store holds, flat or packed), says "big",
 * and counts on.
 */
const GUEST = [
  'import os, random, sys, time',
  'big = None; i = 0',
  'while True:',
  '    if big is None and os.path.exists(sys.argv[1]):',
  '        big = random.Random(1).randbytes(160 << 20); print("big", flush=True)',
  '    print(i, flush=True); i += 1; time.sleep(0.05)',
].join('\n');

describe('a checkpoint into a store that fills up', () => {
  it('is one line (ENOSPC), removes its partial page file, loses nothing stored, and the sandbox runs on (flat and packed, with and without --leave-running)', async (ctx) => {
    // A tmpfs in a private mount namespace needs CAP_SYS_ADMIN (root here and in CI): else skipped, saying why.
    const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=1m probe /mnt'], { encoding: 'utf8' });
    if (probe.status !== 0) { console.log(`skipped: cannot mount a tmpfs in a private mount namespace here (unshare -m: ${(probe.stderr || probe.error?.message || '').trim()})`); ctx.skip(); return; }
    const base = freshDir('ckfull');
    const root = path.join(base, 'state'), store = path.join(base, 'store'), other = path.join(base, 'other'), gate = path.join(base, 'gate');
    fs.mkdirSync(store);
    const name = `ckfull-${process.pid}`;
    // The sandbox in its own mount namespace, with a 64 MiB tmpfs at `store` (gone with it).
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=64m ckfull "$0" && exec "$@"', store,
      process.execPath, CLI, '--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', GUEST, gate], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    const killer = setTimeout(() => child.kill('SIGKILL'), 280_000);
    const lines: string[] = [];
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    readline.createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    const stdoutClosed = new Promise<void>((resolve) => child.stdout!.on('close', () => resolve()));
    const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => { started.delete(child); clearTimeout(killer); resolve(code ?? sig!); }));
    let status: number | string | undefined;
    void exited.then((s) => { status = s; });
    /** Wait until the guest has printed `n` more counts (the sandbox runs on). */
    const countsOn = async (n: number, what: string): Promise<void> => {
      const want = lines.length + n;
      for (const t0 = Date.now(); lines.length < want; await new Promise((r) => setTimeout(r, 20))) {
        expect(status, `${what}: the sandbox ended (${status}); stderr: ${err.slice(-800)}`).toBeUndefined();
        expect(Date.now() - t0, `${what}: no more counts; stderr: ${err.slice(-800)}`).toBeLessThan(60_000);
      }
    };
    await countsOn(3, 'start');
    const inside = `/proc/${child.pid}/root${store}`;
    expect(fs.statfsSync(inside).blocks * fs.statfsSync(inside).bsize).toBe(64 << 20);
    const storeFiles = (): string[] => ['pages', 'meta'].flatMap((d) => fs.existsSync(path.join(inside, d)) ? fs.readdirSync(path.join(inside, d)).map((n) => `${d}/${n}`) : []).sort();

    // A first checkpoint, while the guest is small: it fits.
    const first = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running', '--no-compress'], { timeoutMs: 120_000 });
    expect(first.stderr.toString()).toBe('');
    expect(first.status).toBe(0);
    const firstId = first.stdout.toString().trim().split(' ').pop()!;
    const kept = storeFiles();
    expect(kept).toEqual([`meta/${firstId}`, `pages/${firstId}`]);

    fs.writeFileSync(gate, '');
    await countsOn(1, 'grow');
    for (const t0 = Date.now(); !lines.includes('big'); await new Promise((r) => setTimeout(r, 20))) expect(Date.now() - t0).toBeLessThan(60_000);
    await countsOn(2, 'grown');

    // Flat (the page worker pwrites into the page file) and packed; running on, and ending the sandbox.
    for (const mode of [['--no-compress', '--leave-running'], ['--no-compress'], ['--leave-running'], []]) {
      const what = mode.join(' ') || 'packed';
      const t0 = Date.now();
      const r = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, ...mode], { timeoutMs: 120_000 });
      expect(r.timedOut, what).toBe(false);
      // The page write's ENOSPC; or, where the pages filled the store before LevelDB's open (on the
      // thread pool meanwhile, slow under load) wrote its new log, the catalogue's.
      const full = new RegExp(`^snapvisor: checkpoint of '${name}' failed: (cannot write checkpoint into ${store}: ENOSPC \\(write\\)|cannot open checkpoint store ${store}: IO error: ${store}/[^ ]+: No space left on device)\n$`);
      expect(r.stderr.toString(), `${what}; sandbox stderr: ${err.slice(-800)}`).toMatch(full);
      expect(r.status, what).toBe(1);
      expect(r.stdout.toString(), what).toBe('');
      expect(Date.now() - t0, what).toBeLessThan(120_000);
      // The sandbox and its guest run on (a failed checkpoint thaws the guest, with or without --leave-running).
      await countsOn(3, what);
      // Its partial page file is gone; the first checkpoint is all there.
      expect(storeFiles(), what).toEqual(kept);
    }
    const list = await snapvisor(['checkpoints', '--store', inside, '--json']);
    expect(JSON.parse(list.stdout.toString()).map((c: { id: string }) => c.id)).toEqual([firstId]);
    const check = await snapvisor(['store', 'check', '--store', inside], { timeoutMs: 60_000 });
    expect(check.stderr.toString()).toBe('');
    expect(check.stdout.toString()).toBe(`store ${inside}: 1 checkpoint verified, no damage found\n`);

    // A store with room takes the sandbox's checkpoint (which ends it), and that restores to the guest's count.
    const last = await snapvisor(['--root', root, 'checkpoint', name, '--store', other, '--no-compress'], { timeoutMs: 120_000 });
    expect(last.stderr.toString()).toBe('');
    expect(last.status).toBe(0);
    expect(await exited).toBe(137);
    await stdoutClosed;
    const at = Number([...lines].reverse().find((l) => /^\d+$/.test(l)));
    const restored = spawn(process.execPath, [CLI, 'restore', last.stdout.toString().trim().split(' ').pop()!, '--store', other], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(restored);
    const next = await new Promise<string>((resolve) => {
      readline.createInterface({ input: restored.stdout! }).on('line', resolve);
      setTimeout(() => resolve('(no line within 90 s)'), 90_000).unref();
    });
    restored.kill('SIGKILL');
    expect(next).toBe(String(at + 1));
  }, 300_000);
});
