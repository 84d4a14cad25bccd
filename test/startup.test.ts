/**
 * The CLI's start-up (cli/launcher.ts, scripts/bundle.mjs): the bin compiles the bundle with a
 * V8 code cache the build wrote (full for run, light for --version; `restore ID` the restore
 * bundle with its own); without a cache, or with one older than the bundle or rejected
 * by V8, it compiles the source and works the same; a signal during start-up is held.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, checkpointAtReady, freshDir, orphanStubs, snapvisor, termDuringRestore } from './helpers.js';

const TRACE = { ...process.env, SNAPVISOR_TRACE_STARTUP: '1' };
const traceLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('snapvisor: start-up: '));

/** A copy of the bin and its bundle in a scratch directory (node_modules linked), to damage. */
function copyOfBundle(): string {
  const dir = freshDir('startup');
  const b = path.join(dir, 'bundle');
  fs.mkdirSync(b);
  for (const f of ['main.js', 'package.json', 'snapvisor.cjs', 'snapvisor.cjs.full.cache', 'snapvisor.cjs.light.cache', 'restore.cjs', 'restore.cjs.cache', 'verify-worker.js']) fs.copyFileSync(path.join(path.dirname(CLI), f), path.join(b, f));
  // Native packages resolve from the bundle's directory upwards.
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return path.join(b, 'main.js');
}

describe('CLI start-up', () => {
  it('the bin uses the code caches the build wrote (run by node, and run as a program)', async () => {
    for (const kind of ['full', 'light']) expect(fs.statSync(path.join(path.dirname(CLI), `snapvisor.cjs.${kind}.cache`)).size).toBeGreaterThan(100_000);
    const r = await snapvisor(['--version'], { env: TRACE });
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^snapvisor version /);
    expect(traceLines(r.stderr)[0]).toMatch(/^snapvisor: start-up: code cache used \(light\), compiled at [\d.]+ ms$/);
    // As engines run it (ctr --runc-binary, podman --runtime): the file itself.
    const direct = spawnSync(CLI, ['run', '--', '/bin/echo', 'hi'], { env: TRACE, encoding: 'utf8', timeout: 30_000 });
    expect(direct.stdout).toBe('hi\n');
    expect(direct.status).toBe(0);
    expect(traceLines(direct.stderr)[0]).toMatch(/code cache used \(full\)/);
    expect(orphanStubs()).toEqual([]);
  });

  it('without the cache, with a stale one or one V8 rejects, the bundle is compiled and works', async () => {
    const bin = copyOfBundle();
    const cache = path.join(path.dirname(bin), 'snapvisor.cjs.full.cache');
    // Stale: the bundle written after its cache (as by a build that stopped half-way).
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(path.dirname(bin), 'snapvisor.cjs'), later, later);
    for (const [what, expected] of [['stale', /code cache stale/], ['garbage', /code cache rejected/], ['missing', /no code cache/]] as const) {
      if (what === 'garbage') {
        fs.writeFileSync(cache, Buffer.alloc(4096, 7));
        fs.utimesSync(cache, new Date(Date.now() + 10_000), new Date(Date.now() + 10_000));
      }
      if (what === 'missing') fs.rmSync(cache);
      const r = spawnSync(process.execPath, [bin, 'run', '--', '/bin/echo', what], { env: TRACE, encoding: 'utf8', timeout: 30_000 });
      expect(r.stdout).toBe(`${what}\n`);
      expect(r.status).toBe(0);
      expect(traceLines(r.stderr)[0]).toMatch(expected);
      expect(r.stderr.split('\n').filter((l) => l && !l.startsWith('snapvisor: start-up: '))).toEqual([]);
    }
    expect(orphanStubs()).toEqual([]);
  });

  it('SIGTERM while the bin is still loading the bundle is held for the restored guest', async () => {
    const c = await checkpointAtReady('startup-term', ['/bin/busybox', 'sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done']);
    // After compiling, before the bundle is evaluated (the next trace line); `restore ID --store DIR`
    // with no pool serving loads the restore bundle.
    const err = await termDuringRestore(c, TRACE, /compiled at/);
    expect(traceLines(err)[0]).toMatch(/^snapvisor: start-up: code cache used \(restore\), compiled at [\d.]+ ms$/);
  });

  it('restore loads the restore bundle in its usual shapes (--no-pool too) and the CLI\'s bundle in any other, restoring alike', async () => {
    expect(fs.statSync(path.join(path.dirname(CLI), 'restore.cjs.cache')).size).toBeGreaterThan(100_000);
    const c = await checkpointAtReady('startup-rb', ['/bin/busybox', 'sh', '-c', 'echo ready; while :; do if read x; then echo "got $x"; exit 0; fi; sleep 0.05; done']);
    for (const [args, kind] of [
      [['--root', c.root, 'restore', c.id, '--store', c.store, '--no-pool'], 'restore'],
      [['restore', '--no-pool', `--store=${c.store}`, c.id.slice(0, 6)], 'restore'],
      [['restore', c.id, '--store', c.store, '--accept-changed-volumes'], 'full'],
    ] as const) {
      const r = await snapvisor([...args], { env: TRACE, input: 'line\n' });
      expect(r.stdout.toString(), args.join(' ')).toBe('got line\n');
      expect(r.status).toBe(0);
      expect(traceLines(r.stderr.toString())[0]).toMatch(new RegExp(`^snapvisor: start-up: code cache used \\(${kind}\\)`));
    }
    // One line for a checkpoint that is not there, as the CLI's bundle gives it.
    const missing = await snapvisor(['restore', 'ffffffffffffffff', '--store', c.store, '--no-pool']);
    expect(missing.stderr.toString()).toBe(`snapvisor: checkpoint ffffffffffffffff not found in store ${c.store}\n`);
    expect(missing.status).toBe(125);
    expect(orphanStubs()).toEqual([]);
  });
  it('names that are not ASCII come back through the restore bundle (its small graphs decode strings without cbor-extract)', async () => {
    const dir = path.join(freshDir('startup-utf8'), 'dïr €');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'é€😀.txt');
    const c = await checkpointAtReady('startup-utf8', ['/bin/busybox', 'sh', '-c', 'exec 3>"$0"; cd "${0%/*}"; echo ready; while :; do if read x; then readlink /proc/self/fd/3; pwd; exit 0; fi; sleep 0.05; done', file]);
    const r = await snapvisor(['restore', c.id, '--store', c.store, '--no-pool'], { env: TRACE, input: 'go\n' });
    expect(traceLines(r.stderr.toString())[0]).toMatch(/\(restore\)/);
    expect(r.stdout.toString()).toBe(`${file}\n${dir}\n`);
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });
  it('a restore writes the restore bundle\'s run-time code cache once its guest answered; later restores use it', async () => {
    const bin = copyOfBundle();
    const dir = path.dirname(bin);
    const runCache = path.join(dir, 'restore.cjs.run.cache');
    const c = await checkpointAtReady('startup-rc', ['/bin/busybox', 'sh', '-c', 'echo ready; while :; do if read x; then echo "got $x"; sleep 0.3; exit 0; fi; sleep 0.05; done']);
    const restore = () => spawnSync(process.execPath, [bin, 'restore', c.id, '--store', c.store], { env: TRACE, input: 'line\n', encoding: 'utf8', timeout: 30_000 });
    const wrote = /^snapvisor: start-up: wrote the run-time code cache \(restore\) at [\d.]+ ms$/;
    // The first: the build's cache, then the run-time one written.
    let r = restore();
    expect(r.stdout).toBe('got line\n');
    expect(r.status).toBe(0);
    expect(traceLines(r.stderr)[0]).toMatch(/^snapvisor: start-up: code cache used \(restore\)/);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(true);
    // It holds what the restore compiled besides what the build's evaluation did.
    expect(fs.statSync(runCache).size).toBeGreaterThan(fs.statSync(path.join(dir, 'restore.cjs.cache')).size);
    const written = fs.statSync(runCache).mtimeMs;
    // The next uses it and writes nothing.
    r = restore();
    expect(r.stdout).toBe('got line\n');
    expect(traceLines(r.stderr)[0]).toMatch(/code cache used \(restore\)/);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(false);
    expect(fs.statSync(runCache).mtimeMs).toBe(written);
    // One V8 rejects (another node, a damaged file) is written anew; the restore works the same.
    // The writer removes what writers killed mid-write left (a dead pid's .tmp), not a live one's.
    fs.writeFileSync(runCache, Buffer.alloc(4096, 7));
    const deadPid = spawnSync('/bin/true').pid!;
    const deadTmp = `${runCache}.${deadPid}.tmp`, liveTmp = `${runCache}.${process.pid}.tmp`;
    fs.writeFileSync(deadTmp, '');
    fs.writeFileSync(liveTmp, '');
    r = restore();
    expect(r.stdout).toBe('got line\n');
    expect(traceLines(r.stderr)[0]).toMatch(/code cache rejected \(restore\)/);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(true);
    expect(fs.existsSync(deadTmp)).toBe(false);
    expect(fs.existsSync(liveTmp)).toBe(true);
    fs.rmSync(liveTmp);
    // One older than the bundle (a rebuild) is not used: the build's cache is, and a new one written.
    const earlier = new Date(Date.now() - 60_000);
    fs.utimesSync(runCache, earlier, earlier);
    r = restore();
    expect(r.stdout).toBe('got line\n');
    expect(traceLines(r.stderr)[0]).toMatch(/code cache used \(restore\)/);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
  it('a run that took a checkpoint writes the full bundle\'s run-time code cache at exit; later runs use it', () => {
    const bin = copyOfBundle();
    const dir = path.dirname(bin);
    const runCache = path.join(dir, 'snapvisor.cjs.full.run.cache');
    const store = path.join(freshDir('startup-frc'), 'store');
    const wrote = /^snapvisor: start-up: wrote the run-time code cache \(full\) at [\d.]+ ms$/;
    const run = (argv: string[]) => spawnSync(process.execPath, [bin, 'run', ...argv], { env: TRACE, encoding: 'utf8', timeout: 60_000 });
    // A guest asking for its own checkpoint (cli/run.ts) and one checkpointed from outside (cli/control.ts).
    const asking = () => run(['--checkpoint-store', store, '--', '/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; cat /proc/snapvisor/checkpoint']);
    // A run that takes no checkpoint writes none, with the build's cache.
    let r = run(['--', '/bin/echo', 'hi']);
    expect(r.stdout).toBe('hi\n');
    expect(traceLines(r.stderr)[0]).toMatch(/^snapvisor: start-up: code cache used \(full\), compiled at/);
    expect(traceLines(r.stderr).some((l) => /run-time/.test(l))).toBe(false);
    expect(fs.existsSync(runCache)).toBe(false);
    // Nor does one under node flags (a pool's processes): plain runs would reject what it wrote.
    r = spawnSync(process.execPath, ['--max-semi-space-size=1', bin, 'run', '--checkpoint-store', store, '--', '/bin/busybox', 'sh', '-c', 'echo 1 > /proc/snapvisor/checkpoint; cat /proc/snapvisor/checkpoint'], { env: TRACE, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toBe('original\n');
    expect(traceLines(r.stderr).some((l) => /run-time/.test(l))).toBe(false);
    expect(fs.existsSync(runCache)).toBe(false);
    // The first that checkpoints: the build's cache, then the run-time one written at exit, larger
    // (the checkpoint's code besides the build's evaluation's).
    r = asking();
    expect(r.stdout).toBe('original\n');
    expect(r.status).toBe(0);
    expect(traceLines(r.stderr)[0]).toMatch(/code cache used \(full\)/);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(true);
    expect(fs.statSync(runCache).size).toBeGreaterThan(fs.statSync(path.join(dir, 'snapvisor.cjs.full.cache')).size);
    // Later runs use it; one that checkpoints again writes it only if it compiled more.
    const before = fs.statSync(runCache);
    r = run(['--', '/bin/echo', 'hi']);
    expect(r.stdout).toBe('hi\n');
    expect(traceLines(r.stderr).slice(0, 2)).toEqual([expect.stringMatching(/^snapvisor: start-up: code cache used \(full\), compiled at/), 'snapvisor: start-up: that cache is the run-time one (snapvisor.cjs.full.run.cache)']);
    expect(fs.statSync(runCache).mtimeMs).toBe(before.mtimeMs);
    r = asking();
    expect(r.stdout).toBe('original\n');
    expect(traceLines(r.stderr)[1]).toBe('snapvisor: start-up: that cache is the run-time one (snapvisor.cjs.full.run.cache)');
    if (traceLines(r.stderr).some((l) => wrote.test(l))) expect(fs.statSync(runCache).size).toBeGreaterThan(before.size);
    else expect(fs.statSync(runCache).mtimeMs).toBe(before.mtimeMs);
    // One V8 rejects is written anew by the next run that checkpoints; the run works the same.
    fs.writeFileSync(runCache, Buffer.alloc(4096, 7));
    r = asking();
    expect(r.stdout).toBe('original\n');
    expect(traceLines(r.stderr).slice(0, 2)).toEqual([expect.stringMatching(/code cache rejected \(full\)/), 'snapvisor: start-up: that cache is the run-time one (snapvisor.cjs.full.run.cache)']);
    expect(traceLines(r.stderr).some((l) => wrote.test(l))).toBe(true);
    expect(fs.statSync(runCache).size).toBeGreaterThan(100_000);
    // One older than the bundle (a rebuild) is not used: the build's cache is.
    const earlier = new Date(Date.now() - 60_000);
    fs.utimesSync(runCache, earlier, earlier);
    r = run(['--', '/bin/echo', 'hi']);
    expect(r.stdout).toBe('hi\n');
    expect(traceLines(r.stderr)[0]).toMatch(/^snapvisor: start-up: code cache used \(full\), compiled at/);
    expect(traceLines(r.stderr).some((l) => /run-time/.test(l))).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
  it('NODE_EXTRA_CA_CERTS held as SNAPVISOR_NODE_EXTRA_CA_CERTS (by the front, by snapvisor\'s node children) is the guest\'s again', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, SNAPVISOR_NODE_EXTRA_CA_CERTS: '/held/ca.pem' };
    delete env.NODE_EXTRA_CA_CERTS;
    const r = spawnSync(process.execPath, [CLI, 'run', '--', '/bin/sh', '-c', 'echo "ca=$NODE_EXTRA_CA_CERTS held=$SNAPVISOR_NODE_EXTRA_CA_CERTS"'], { env, encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).toBe('ca=/held/ca.pem held=\n');
    expect(r.status).toBe(0);
    expect(orphanStubs()).toEqual([]);
  });
});
