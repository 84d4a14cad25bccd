/**
 * The bin's native front (cli/front/front.c, dist/bundle/snapvisor; docs/cli.md "How the bin
 * starts"): its committed bytes are what its assembly makes; it runs `pool take`, `restore` of a
 * full id a pool serves and `checkpoint NAME` without node, with the node client's output and
 * status; everything else, and every case where nothing ran, goes to node with the same outcome
 * as `node main.js`.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { poolStatus } from '../cli/pool-client.js';
import { CLI, REPO_ROOT, freshDir, orphanStubs, snapvisor, snapvisorStreaming, stderrLines, type RunOpts, type RunResult } from './helpers.js';

/** The front beside the CLI under test. */
const FRONT = path.join(path.dirname(CLI), 'snapvisor');

/** Run the front (as a user runs the bin) with `args`; like helpers.ts snapvisor. */
function front(args: string[], opts: RunOpts = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(FRONT, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    const out: Buffer[] = [], err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 30_000);
    if (opts.input !== undefined) { child.stdin!.on('error', () => undefined); child.stdin!.end(opts.input); }
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? 128 + (signal === 'SIGKILL' ? 9 : 0), stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}

const has = (tool: string) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;

/** Checkpoints itself, then reads a line: `wait` runs on until SIGTERM (`caught TERM`, status 7), any other exits with its length. */
const GUEST = ['/bin/busybox', 'sh', '-c', 'trap "echo caught TERM; exit 7" TERM; echo 1 > /proc/snapvisor/checkpoint; read l; echo "$(cat /proc/snapvisor/checkpoint) $l"; [ "$l" = wait ] || exit ${#l}; while :; do busybox sleep 0.1; done'];

async function makeCheckpoint(store: string): Promise<string> {
  const r = await snapvisor(['run', '--checkpoint-store', store, '--', ...GUEST], { timeoutMs: 30_000 });
  expect(r.stdout.toString()).toBe('original \n');
  return /request: ([0-9a-f]{16})$/.exec(r.stderr.trim())![1];
}

describe('the native front', () => {
  it('is the ELF its committed assembly makes', (ctx) => {
    const missing = ['as', 'ld', 'objcopy'].filter((t) => !has(t));
    if (missing.length) { console.log(`skipped: no ${missing.join(', ')} to assemble cli/front/front.S`); ctx.skip(); return; }
    const r = spawnSync(process.execPath, ['scripts/assemble-front.mjs', '--check'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stdout).toBe('front-elf.ts matches front.S\n');
    expect(r.status).toBe(0);
    expect(fs.statSync(FRONT).mode & 0o777).toBe(0o755);
    // The build wrote its node into the front's slot.
    expect(fs.readFileSync(FRONT).includes(Buffer.from(process.execPath + '\0'))).toBe(true);
  });

  it('front.S is gcc -S of front.c (when this gcc is the one that made it)', async (ctx) => {
    const ident = /\.ident\s+"(.*)"/.exec(fs.readFileSync(path.join(REPO_ROOT, 'cli/front/front.S'), 'utf8'))?.[1];
    const gcc = has('gcc') ? spawnSync('gcc', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] : undefined;
    if (!gcc || !ident || ident.replace(/^GCC: /, '') !== gcc.replace(/^gcc /, '')) { console.log(`skipped: front.S was made by ${ident}, this gcc is ${gcc ?? 'absent'}`); ctx.skip(); return; }
    const { compileFront } = await import(path.join(REPO_ROOT, 'scripts/assemble-front.mjs')) as { compileFront(): string };
    const cwd = process.cwd();
    process.chdir(REPO_ROOT);
    try { expect(compileFront() === fs.readFileSync('cli/front/front.S', 'utf8')).toBe(true); } finally { process.chdir(cwd); }
  });

  it('leaves what it does not run to node, with the same output and status', async () => {
    for (const args of [['--version'], ['--help'], ['frobnicate'], ['pool', 'take'], ['pool', 'take', 'a', 'b'], ['checkpoint'], ['checkpoint', 'a', 'b'],
      ['restore'], ['restore', 'abcd', '--no-pool', '--store', '/nonexistent'], ['pool', 'take', '/nonexistent/p.sock'], ['checkpoint', 'no-such-sandbox', '--root', '/nonexistent'],
      ['--root', '/nonexistent', 'checkpoint', 'nope'], ['checkpoint', 'a/b']]) {
      const [n, f] = await Promise.all([snapvisor(args, { timeoutMs: 30_000 }), front(args, { timeoutMs: 30_000 })]);
      expect(f.timedOut, args.join(' ')).toBe(false);
      expect({ status: f.status, stdout: f.stdout.toString(), stderr: f.stderr }, args.join(' ')).toEqual({ status: n.status, stdout: n.stdout.toString(), stderr: n.stderr });
    }
    // A control socket that never answers: after --timeout, the node client's line and status.
    const fakeRoot = freshDir('front-fake');
    const server = net.createServer(() => undefined).listen(path.join(fakeRoot, 'mute.sock'));
    await new Promise((r) => server.once('listening', r));
    const args = ['--root', fakeRoot, 'checkpoint', 'mute', '--timeout', '0.5', '--store', fakeRoot];
    const [mn, mf] = await Promise.all([snapvisor(args, { timeoutMs: 30_000 }), front(args, { timeoutMs: 30_000 })]);
    server.close();
    expect(mf.stderr).toBe(`snapvisor: no answer from the sandbox to 'checkpoint' within 1 s (${path.join(fakeRoot, 'mute.sock')})\n`);
    expect({ status: mf.status, stderr: mf.stderr }).toEqual({ status: mn.status, stderr: mn.stderr });
    // No node at the recorded path nor in PATH: one line, 127. (A copy without the build's path.)
    const dir = freshDir('front-nonode');
    const bytes = fs.readFileSync(FRONT);
    const at = bytes.indexOf(Buffer.from(process.execPath + '\0'));
    bytes.fill(0, at, at + process.execPath.length);
    fs.writeFileSync(path.join(dir, 'snapvisor'), bytes, { mode: 0o755 });
    const r = spawnSync(path.join(dir, 'snapvisor'), ['--version'], { env: { PATH: dir }, encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(127);
    expect(r.stderr).toBe('snapvisor: cannot start node (not at the path the build recorded, nor in PATH)\n');
    // ... and with node in PATH it runs: the copy finds main.js beside its own real path.
    fs.symlinkSync(CLI, path.join(dir, 'main.js'));
    const ok = spawnSync(path.join(dir, 'snapvisor'), ['--version'], { env: { PATH: `/nonexistent:${path.dirname(process.execPath)}` }, encoding: 'utf8', timeout: 30_000 });
    expect(ok.stdout).toMatch(/^snapvisor version /);
    expect(ok.status).toBe(0);
  }, 120_000);

  it('runs pool take and restore of a full id through a pool; a prefix, or no pool, restores in node as before', async () => {
    const store = freshDir('front-store'), sock = path.join(freshDir('front-sock'), 'p.sock');
    const id = await makeCheckpoint(store);
    const pool = snapvisorStreaming(['pool', 'serve', '--checkpoint', id, '--store', store, '--size', '2', '--listen', sock], { timeoutMs: 240_000 });
    await pool.waitFor((l) => l.startsWith('pool serving'), 60_000);
    // The well-known name the front connects to.
    expect(fs.readlinkSync(path.join(store, 'pools', `${id}.sock`))).toBe(sock);

    const take = await front(['pool', 'take', sock], { input: 'abc\n', timeoutMs: 30_000 });
    expect(take).toMatchObject({ status: 3, stderr: '', timedOut: false });
    expect(take.stdout.toString()).toBe('restored abc\n');
    for (let i = 0; i < 400 && (await poolStatus(sock)).ready < 1; i++) await new Promise((r) => setTimeout(r, 50));
    const served = await front(['restore', id, '--store', store], { input: 'abcd\n', timeoutMs: 30_000 });
    expect(served).toMatchObject({ status: 4, stderr: '', timedOut: false });
    expect(served.stdout.toString()).toBe('restored abcd\n');
    expect((await poolStatus(sock)).served).toBe(2);
    // A prefix: node finds the pool through its registration.
    for (let i = 0; i < 400 && (await poolStatus(sock)).ready < 1; i++) await new Promise((r) => setTimeout(r, 50));
    const prefix = await front(['restore', id.slice(0, 8), '--store', store], { input: 'ab\n', timeoutMs: 30_000 });
    expect(prefix).toMatchObject({ status: 2, stderr: '', timedOut: false });
    expect(prefix.stdout.toString()).toBe('restored ab\n');
    expect((await poolStatus(sock)).served).toBe(3);

    // Signals: relayed to the guest once it runs (its TERM trap: status 7; ^C: 130).
    for (const [args, sig, status, out] of [[['pool', 'take', sock], 'SIGINT', 130, 'restored wait\n'], [['restore', id, '--store', store], 'SIGTERM', 7, 'restored wait\ncaught TERM\n']] as const) {
      for (let i = 0; i < 400 && (await poolStatus(sock)).ready < 1; i++) await new Promise((r) => setTimeout(r, 50));
      const c = spawn(FRONT, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let o = '', e = '';
      c.stdout!.on('data', (d) => { o += d; });
      c.stderr!.on('data', (d) => { e += d; });
      const exited = new Promise<number | null>((r) => c.on('close', (code) => r(code)));
      c.stdin!.write('wait\n');
      for (let i = 0; i < 400 && !o.includes('restored wait'); i++) await new Promise((r) => setTimeout(r, 25));
      const t0 = Date.now();
      c.kill(sig);
      const timer = setTimeout(() => c.kill('SIGKILL'), 20_000);
      expect(await exited).toBe(status);
      clearTimeout(timer);
      expect(Date.now() - t0).toBeLessThan(20_000);
      expect(o).toBe(out);
      expect(e).toBe('');
      c.stdin!.destroy();
    }

    pool.child.kill('SIGTERM');
    expect(await pool.done).toBe(0);
    expect(fs.readdirSync(path.join(store, 'pools'))).toEqual([]);
    // No pool: restored in node's process, the same output.
    const own = await front(['restore', id, '--store', store], { input: 'xyz\n', timeoutMs: 30_000 });
    expect(own).toMatchObject({ status: 3, stderr: '', timedOut: false });
    expect(own.stdout.toString()).toBe('restored xyz\n');
    // SIGTERM that a restore's take held before falling back reaches node in SNAPVISOR_FRONT_HELD
    // (cli/launcher.ts): held there too, and given to the guest once it runs.
    const held = await front(['restore', id, '--store', store], { input: 'wait\n', env: { ...process.env, SNAPVISOR_FRONT_HELD: 'SIGTERM' }, timeoutMs: 30_000 });
    expect(held).toMatchObject({ status: 7, stderr: '', timedOut: false });
    expect(held.stdout.toString()).toMatch(/^(restored wait\n)?caught TERM\n$/);
    await new Promise((r) => setTimeout(r, 500));
    expect(orphanStubs()).toEqual([]);
  }, 240_000);

  it('checkpoints a named sandbox with the node client\'s line and status', async () => {
    const base = freshDir('front-ck');
    const root = path.join(base, 'state'), store = path.join(base, 'store');
    const name = `front-ck-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo $i; sleep 0.05; done; echo done'], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === '3', 20_000);
    const LINE = new RegExp(`^checkpointed ${name}: \\d+ pages \\(\\d+ new, [\\d.]+ (?:B|KiB|MiB|GiB) stored, [\\d.]+ (?:B|KiB|MiB|GiB) compressed[^)]*\\), guest paused \\d+ ms, written in \\d+ ms: [0-9a-f]{16}\\n$`);
    // The front (relative --store: the client's cwd), then node's client: the same line.
    const f = await front(['--root', root, 'checkpoint', name, '--store', 'store', '--leave-running'], { cwd: base, timeoutMs: 20_000 });
    expect(f).toMatchObject({ status: 0, stderr: '', timedOut: false });
    expect(f.stdout.toString()).toMatch(LINE);
    const n = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 20_000 });
    expect(n.stdout.toString()).toMatch(LINE);
    expect(fs.existsSync(path.join(store, 'CURRENT'))).toBe(true);
    // A failure the sandbox reports (a store that is a file): the node client's words and status.
    const file = path.join(base, 'file');
    fs.writeFileSync(file, 'x');
    const bad = await front(['--root', root, 'checkpoint', name, '--store', file, '--leave-running'], { timeoutMs: 20_000 });
    const badNode = await snapvisor(['--root', root, 'checkpoint', name, '--store', file, '--leave-running'], { timeoutMs: 20_000 });
    expect(bad.status).toBe(1);
    expect({ status: bad.status, stderr: bad.stderr, stdout: bad.stdout.toString() }).toEqual({ status: badNode.status, stderr: badNode.stderr, stdout: badNode.stdout.toString() });
    // Without --leave-running: the sandbox ends, checkpointed; then its name is unknown, as with node.
    const last = await front(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(last.status).toBe(0);
    expect(last.stdout.toString()).toMatch(LINE);
    expect(await run.done).toBe(137);
    const gone = await front(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 20_000 });
    expect(gone.status).toBe(1);
    expect(stderrLines(gone.stderr)).toEqual([`snapvisor: container ${name} does not exist (nor a running sandbox of that name in ${root})`]);
    const r = await snapvisor(['restore', last.stdout.toString().trim().split(' ').pop()!, '--store', store], { timeoutMs: 30_000 });
    expect(r.status).toBe(0);
    expect(r.stdout.toString().trim().split('\n').pop()).toBe('done');
    await new Promise((r) => setTimeout(r, 500));
    expect(orphanStubs()).toEqual([]);
  }, 120_000);
  it('passes NODE_EXTRA_CA_CERTS to node under another name, and a guest still gets it', async () => {
    // node would read and parse that CA bundle while it starts (~35 ms here); the guest inherits the variable as before.
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' };
    const gate = path.join(freshDir('front-ca'), 'go');
    const child = spawn(FRONT, ['run', '--rootfs', '/', '--', '/bin/sh', '-c', `echo "ca=$NODE_EXTRA_CA_CERTS sv=$SNAPVISOR_NODE_EXTRA_CA_CERTS"; while [ ! -e ${gate} ]; do /bin/sleep 0.05; done`], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    const deadline = Date.now() + 30_000;
    while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // The process is node now (the front exec'ed it): the environment it was started with.
    const started = fs.readFileSync(`/proc/${child.pid}/environ`, 'latin1').split('\0');
    fs.writeFileSync(gate, '');
    const status = await new Promise<number | null>((r) => child.on('close', r));
    expect(out).toBe('ca=/nonexistent/ca.pem sv=\n');
    expect(status).toBe(0);
    expect(started).toContain('SNAPVISOR_NODE_EXTRA_CA_CERTS=/nonexistent/ca.pem');
    expect(started.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS='))).toBe(false);
    expect(orphanStubs()).toEqual([]);
  }, 60_000);
});
