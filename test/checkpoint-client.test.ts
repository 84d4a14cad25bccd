/**
 * `snapvisor checkpoint NAME` run by the bin's launcher without the CLI's bundle
 * (cli/checkpoint-client.ts): which shapes it takes itself, and that a real checkpoint through it
 * loads no bundle, prints what the full CLI prints and restores.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointLine, parseLightCheckpoint } from '../cli/checkpoint-client.js';
import { CLI, freshDir, orphanStubs, snapvisor, snapvisorStreaming } from './helpers.js';

describe('checkpoint without the bundle', () => {
  it('takes the usual shapes and leaves every other one to the full CLI', () => {
    expect(parseLightCheckpoint(['checkpoint', 'web'])).toEqual({ name: 'web', root: undefined, leaveRunning: false, compress: true });
    expect(parseLightCheckpoint(['--root', '/r', 'checkpoint', 'web', '--store', '/s', '--leave-running', '--no-compress', '--timeout', '2.5']))
      .toEqual({ root: '/r', name: 'web', store: '/s', leaveRunning: true, compress: false, timeoutMs: 2500 });
    expect(parseLightCheckpoint(['--root=/r', 'checkpoint', '--store=/s', 'web', '--compress'])).toEqual({ root: '/r', name: 'web', store: '/s', leaveRunning: false, compress: true });
    for (const args of [
      ['checkpoint'], // no name: commander's usage error
      ['checkpoint', 'a', 'b'],
      ['checkpoint', 'web', '--image-path', '/tmp/x'], // OCI
      ['checkpoint', '--help'],
      ['checkpoint', 'web', '-leave-running'], // runc's one-dash flags
      ['checkpoint', 'web', '--timeout', 'soon'],
      ['checkpoint', 'web', '--store'],
      ['--debug', 'checkpoint', 'web'],
      ['--log', '/tmp/log', 'checkpoint', 'web'],
      ['checkpoint', 'web', '--', 'x'],
      ['run', 'checkpoint'],
    ]) expect(parseLightCheckpoint(args), args.join(' ')).toBeUndefined();
  });

  it('says sizes in B, KiB or MiB, as checkpoints does', () => {
    const line = checkpointLine('x', { id: '0123456789abcdef', pages: 7, newPages: 7, storedPageBytes: 28672, packBytes: 5017, filePages: 0, pauseMs: 1, durationMs: 9 });
    expect(line).toBe('checkpointed x: 7 pages (7 new, 28.0 KiB stored, 4.9 KiB compressed), guest paused 1 ms, written in 9 ms: 0123456789abcdef\n');
    expect(checkpointLine('y', { id: '0123456789abcdef', pages: 1, newPages: 1, storedPageBytes: 4096 * 62005, pauseMs: 3, durationMs: 343 })).toContain('(1 new, 242.2 MiB stored)');
  });

  it('checkpoints a running sandbox without loading the bundle, and the checkpoint restores', async () => {
    const base = freshDir('ckclient');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const name = `ckclient-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'echo ready; i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; sleep 0.05; done; echo done'], { timeoutMs: 90_000 });
    // Limits for load 10-16 (CI 90650ef: the restore's 57 rounds of fork, exec and sleep outlasted
    // 30 s; quiet they take ~5 s); each step's own limit still ends a hang.
    await run.waitFor((l) => l === '3', 60_000);
    // SNAPVISOR_TRACE_STARTUP makes the launcher say when it compiles and evaluates the bundle.
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { env: { ...process.env, SNAPVISOR_TRACE_STARTUP: '1' }, timeoutMs: 60_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    const line = cp.stdout.toString();
    expect(line).toMatch(new RegExp(`^checkpointed ${name}: \\d+ pages \\(\\d+ new, [\\d.]+ (?:B|KiB|MiB|GiB) stored, [\\d.]+ (?:B|KiB|MiB|GiB) compressed[^)]*\\), guest paused \\d+ ms, written in \\d+ ms: [0-9a-f]{16}\\n$`));
    // Sizes in the unit that shows them: a busybox sandbox's pack is KiB, not "0.0 MiB".
    expect(line).not.toMatch(/ 0\.0 MiB/);
    expect(await run.done).toBe(137);
    const last = Number([...run.lines].reverse().find((l) => /^\d+$/.test(l)));
    const r = await snapvisor(['restore', line.trim().split(' ').pop()!, '--store', store], { timeoutMs: 90_000 });
    expect(r.timedOut).toBe(false);
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().split('\n').filter(Boolean);
    expect(lines[0]).toBe(String(last + 1));
    expect(lines[lines.length - 1]).toBe('done');
    // A failure is one line and status 1, as from the full CLI.
    const gone = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
    expect(gone.status).toBe(1);
    expect(gone.stderr).toBe(`snapvisor: container ${name} does not exist (nor a running sandbox of that name in ${root})\n`);
  }, 260_000);

  it('checkpoint and kill typed (or pasted) right after `run --name NAME &` wait for its sandbox, as events does', async () => {
    const base = freshDir('ckstarting');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const name = `ckstarting-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done'], { timeoutMs: 90_000 });
    // At once, as a pasted block runs them: the run's node has not even said it is starting
    // (STATE/NAME.starting), and its control socket comes once its sandbox is built.
    expect(fs.existsSync(path.join(root, `${name}.sock`))).toBe(false);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 90_000 });
    expect(cp.stderr.toString()).toBe('');
    expect(cp.status).toBe(0);
    const k = await snapvisor(['--root', root, 'kill', name, 'KILL'], { timeoutMs: 30_000 });
    expect(k.stderr.toString()).toBe('');
    expect(k.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('a store that cannot be made is one line, and the sandbox runs on and checkpoints after it', async () => {
    const base = freshDir('ckbadstore');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    fs.writeFileSync(path.join(base, 'afile'), '');
    const name = `ckbadstore-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo $i; sleep 0.05; done; echo done'], { timeoutMs: 120_000 });
    await run.waitFor((l) => l === '3', 60_000);
    // procfs answers mkdir with ENOENT under a directory that exists: Node 20's recursive mkdir
    // looped on it forever, with the guest paused (snapshots/make-dirs.ts).
    // (A path through a file is named before the request is sent, as other commands name it.)
    for (const [bad, line] of [
      ['/proc/nonexistent/store', `checkpoint of '${name}' failed: cannot write checkpoint into /proc/nonexistent/store: ENOENT (mkdir)`],
      [path.join(base, 'afile', 'store'), `checkpoint store ${base}/afile/store: ${base}/afile is not a directory`],
    ]) {
      for (const mode of [['--leave-running'], []]) {
        const r = await snapvisor(['--root', root, 'checkpoint', name, '--store', bad, ...mode], { timeoutMs: 30_000 });
        expect(r.timedOut, `${bad} ${mode}`).toBe(false);
        expect(r.stderr).toBe(`snapvisor: ${line}\n`);
        expect(r.status).toBe(1);
      }
    }
    // The guest went on counting (not paused), and a checkpoint into a good store works.
    const before = run.lines.length;
    await run.waitFor(() => run.lines.length >= before + 3, 30_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 60_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(fs.existsSync('/proc/nonexistent')).toBe(false);
  }, 200_000);

  it('^C (SIGINT) stops a checkpoint: status 130, nothing stored, the guest runs on (node client, full CLI, native front)', async () => {
    const base = freshDir('ckint');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const name = `ckint-${process.pid}`;
    // 300 MiB of pages written flat (--no-compress): ~1 s of writing here, long enough to be interrupted.
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c',
      'import time\nb = bytearray(300 << 20)\nfor i in range(0, len(b), 4096): b[i] = i // 4096 % 251 + 1\ni = 0\nwhile True: print(i, flush=True); i += 1; time.sleep(0.05)'],
    { timeoutMs: 240_000, env: { ...process.env, SNAPVISOR_TRACE_CHECKPOINT: '1' } });
    await run.waitFor((l) => l === '3', 90_000);
    const storeFiles = (): string[] => ['pages', 'meta'].flatMap((d) => fs.existsSync(path.join(store, d)) ? fs.readdirSync(path.join(store, d)).map((n) => `${d}/${n}`) : []);
    const captures = (): number => (run.stderr().match(/\] captured /g) ?? []).length;
    const FRONT = path.join(path.dirname(CLI), 'snapvisor');
    for (const [client, mode] of [
      [[process.execPath, CLI], []], // the node client without the bundle (stderr is no terminal)
      [[process.execPath, CLI, '--log', path.join(base, 'log')], ['--leave-running']], // the full CLI
      [[FRONT], []], // the native front: killed by the signal, its connection's close stops the checkpoint
    ] as Array<[string[], string[]]>) {
      const what = `${path.basename(client[client.length - 1])} ${client.includes('--log') ? '--log ' : ''}${mode.join(' ')}`;
      const seen = captures();
      const child = spawn(client[0], [...client.slice(1), '--root', root, 'checkpoint', name, '--store', store, '--no-compress', ...mode], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { err += d; });
      const exited = new Promise<number>((resolve) => child.on('close', (code, sig) => resolve(code ?? 128 + os.constants.signals[sig!])));
      // Once the guest is captured, its pages are being written: interrupt then.
      for (const t0 = Date.now(); captures() === seen; await new Promise((r) => setTimeout(r, 5))) expect(Date.now() - t0, what).toBeLessThan(60_000);
      child.kill('SIGINT');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const status = await exited;
      clearTimeout(killer);
      expect(status, `${what}: ${out} ${err}`).toBe(130);
      expect(out, what).toBe('');
      expect(err, what).toBe(client[0] === FRONT ? '' : `snapvisor: checkpoint of '${name}' interrupted: nothing was stored, the sandbox runs on\n`);
      // Nothing of it in the store (the front does not wait for the sandbox to clean up: a moment).
      for (const t0 = Date.now(); storeFiles().length && Date.now() - t0 < 5000; await new Promise((r) => setTimeout(r, 50)));
      expect(storeFiles(), what).toEqual([]);
      // The guest runs on, with or without --leave-running.
      const n = run.lines.length;
      await run.waitFor(() => run.lines.length >= n + 3, 30_000);
    }
    expect(fs.readFileSync(path.join(base, 'log'), 'utf8')).toMatch(/level=error msg="checkpoint of '.*' interrupted: nothing was stored/);
    const list = await snapvisor(['checkpoints', '--store', store, '--json']);
    expect(JSON.parse(list.stdout.toString())).toEqual([]);
    // And a checkpoint not interrupted goes ahead.
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--no-compress'], { timeoutMs: 120_000 });
    expect(cp.stderr).toBe('');
    expect(cp.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(storeFiles()).toHaveLength(2);
  }, 400_000);

  it('an incremental checkpoint interrupted by ^C loses nothing: the next one restores the guest\'s memory byte for byte', async () => {
    const base = freshDir('ckint-incr');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const gate = path.join(base, 'gate');
    // 100 MiB of seeded random bytes (slow to compress); each step adds 1 to the first byte of every page.
    const guest = ['/usr/bin/python3', '-c', [
      'import random, os, sys, time',
      'N = 100 << 20; P = N // 4096',
      'b = bytearray(random.Random(1).randbytes(N)); i = 0',
      'while not os.path.exists(sys.argv[1]):',
      '    for p in range(P): b[p * 4096] = (b[p * 4096] + 1) & 255',
      '    i += 1; print(i, flush=True); time.sleep(0.05)',
      'e = bytearray(random.Random(1).randbytes(N))',
      'for p in range(P): e[p * 4096] = (e[p * 4096] + i) & 255',
      'print("same" if e == b else "DIFFERENT", flush=True)'].join('\n'), gate];
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'a', '--', ...guest], { timeoutMs: 120_000 });
    await run.waitFor((l) => l === '3', 90_000);
    const first = await snapvisor(['--root', root, 'checkpoint', 'a', '--store', store], { timeoutMs: 120_000 });
    expect(first.status).toBe(0);
    expect(await run.done).toBe(137);
    const a = first.stdout.toString().trim().split(/\s+/).pop()!;
    // Restored under another name: its checkpoints into this store are incremental.
    const restored = snapvisorStreaming(['--root', root, 'restore', a, '--store', store, '--name', 'r'], { timeoutMs: 240_000, env: { ...process.env, SNAPVISOR_TRACE_CHECKPOINT: '1' } });
    const more = async () => { const n = restored.lines.length; await restored.waitFor(() => restored.lines.length >= n + 3, 60_000); };
    await more();
    const child = spawn(process.execPath, [CLI, '--root', root, 'checkpoint', 'r', '--store', store, '--leave-running'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise<number>((resolve) => child.on('close', (code, sig) => resolve(code ?? 128 + os.constants.signals[sig!])));
    for (const t0 = Date.now(); !/\] captured /.test(restored.stderr()); await new Promise((r) => setTimeout(r, 5))) expect(Date.now() - t0).toBeLessThan(60_000);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(err).toBe(`snapvisor: checkpoint of 'r' interrupted: nothing was stored, the sandbox runs on\n`);
    await more();
    const second = await snapvisor(['--root', root, 'checkpoint', 'r', '--store', store], { timeoutMs: 120_000 });
    expect(second.status).toBe(0);
    expect(await restored.done).toBe(137);
    const b = second.stdout.toString().trim().split(/\s+/).pop()!;
    const list = JSON.parse((await snapvisor(['checkpoints', '--store', store, '--json'])).stdout.toString());
    expect(list.map((c: { id: string; parent?: string }) => [c.id, c.parent ?? null])).toEqual([[a, null], [b, a]]);
    fs.writeFileSync(gate, '');
    const end = await snapvisor(['restore', b, '--store', store], { timeoutMs: 120_000 });
    expect(end.timedOut).toBe(false);
    expect(end.status).toBe(0);
    expect(end.stdout.toString().trim().split('\n').pop()).toBe('same');
  }, 400_000);
});
