/**
 * containerd drives snapvisor as its runc (Debian's containerd and containerd-shim-runc-v2):
 * a containerd started here on a private socket and root, an image built from busybox-static
 * and imported with `ctr image import`, then `ctr run --runc-binary snapvisor`, task exec,
 * kill, ls, delete, checkpoint and restore of a counter; and containerd started with the
 * runtime-handler config of docs/kubernetes.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, REPO_ROOT, freshDir, native } from './helpers.js';
import { have, makeImageArchive, processesMentioning, until } from './oci-helpers.js';

const IMAGE = 'docker.io/library/sv-busybox:latest';
const NS = 'svtest';
let dir: string;
let daemon: ChildProcess | undefined;
let sock: string;
let skipReason = '';

/** The documented runtime-handler config (docs/kubernetes.md), with this machine's paths filled in. */
function kubernetesConfig(base: string): string {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'kubernetes.md'), 'utf8');
  const m = /```toml\n([\s\S]*?)```/.exec(doc);
  if (!m) throw new Error('docs/kubernetes.md has no toml block');
  return `version = 2\nroot = "${base}/root"\nstate = "${base}/state"\n[grpc]\n  address = "${base}/c.sock"\n` +
    m[1].replace(/^version = 2\n/m, '').replaceAll('/usr/local/bin/snapvisor', CLI);
}

async function startContainerd(base: string, config: string): Promise<ChildProcess | string> {
  fs.mkdirSync(base, { recursive: true });
  fs.writeFileSync(path.join(base, 'config.toml'), config);
  const log = fs.openSync(path.join(base, 'containerd.log'), 'w');
  const child = spawn('containerd', ['--config', path.join(base, 'config.toml')], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const up = await until(async () => child.exitCode === null && (await native(['ctr', '-a', `${base}/c.sock`, 'version'], { timeoutMs: 10_000 })).status === 0, 30_000, 300);
  if (!up) {
    child.kill('SIGKILL');
    return `containerd did not start: ${fs.readFileSync(path.join(base, 'containerd.log'), 'utf8').trim().split('\n').slice(-2).join(' | ')}`;
  }
  return child;
}

const ctr = (args: string[], timeoutMs = 60_000) => native(['ctr', '-a', sock, '-n', NS, ...args], { timeoutMs });

beforeAll(async () => {
  if (!have('containerd') || !have('ctr') || !have('containerd-shim-runc-v2')) { skipReason = 'containerd, ctr or containerd-shim-runc-v2 is not installed'; return; }
  if (process.getuid?.() !== 0) { skipReason = 'containerd needs root here'; return; }
  dir = freshDir('containerd');
  sock = `${dir}/c.sock`;
  const r = await startContainerd(dir, `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`);
  if (typeof r === 'string') { skipReason = r; return; }
  daemon = r;
  const imp = await ctr(['image', 'import', makeImageArchive(dir, IMAGE)]);
  expect(imp.status, imp.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  if (!daemon) return;
  const ls = await ctr(['task', 'ls', '-q']);
  for (const id of ls.stdout.toString().split('\n').filter(Boolean)) await ctr(['task', 'kill', '-s', 'KILL', id]);
  await new Promise((r) => setTimeout(r, 500));
  for (const id of ls.stdout.toString().split('\n').filter(Boolean)) await ctr(['task', 'delete', '-f', id]);
  daemon.kill('SIGTERM');
  await until(() => daemon!.exitCode !== null || daemon!.signalCode !== null, 10_000);
}, 60_000);

const run = (id: string, cmd: string[], extra: string[] = []) =>
  ctr(['run', '--snapshotter', 'native', '--runc-binary', CLI, ...extra, IMAGE, id, ...cmd], 90_000);

describe('containerd with snapvisor as the runc binary', () => {
  it('ctr run prints the container\'s output and returns its status', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    const r = await run('hello', ['sh', '-c', 'echo hello from $((6*7)); exit 7'], ['--rm']);
    expect(r.stdout.toString()).toBe('hello from 42\n');
    expect(r.status).toBe(7);
    expect(processesMentioning(' hello')).toEqual([]);
  }, 120_000);

  it('task ls, task exec, task kill, deletion', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    const log = path.join(dir, 'svc.log');
    expect((await run('svc', ['sh', '-c', 'echo up; exec sleep 600'], ['-d', '--log-uri', `file://${log}`])).status).toBe(0);
    expect(await until(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('up'), 30_000)).toBe(true);
    const ls = await ctr(['task', 'ls']);
    expect(ls.stdout.toString()).toMatch(/svc\s+\d+\s+RUNNING/);
    const ex = await ctr(['task', 'exec', '--exec-id', 'e1', 'svc', 'sh', '-c', 'echo exec says $((6*7)); exit 5']);
    expect(ex.stdout.toString()).toBe('exec says 42\n');
    expect(ex.status).toBe(5);
    expect((await ctr(['task', 'kill', '-s', 'KILL', 'svc'])).status).toBe(0);
    expect(await until(async () => /svc\s+\d+\s+STOPPED/.test((await ctr(['task', 'ls'])).stdout.toString()), 30_000)).toBe(true);
    expect((await ctr(['task', 'delete', 'svc'])).status).toBe(0);
    expect((await ctr(['container', 'delete', 'svc'])).status).toBe(0);
    expect((await ctr(['task', 'ls', '-q'])).stdout.toString()).not.toMatch(/svc/);
    expect(processesMentioning('__oci-init /run/containerd/runc/' + NS + ' svc')).toEqual([]);
  }, 180_000);

  it('task checkpoint leaves a counter running; a restore from a container checkpoint continues it', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    const counter = ['sh', '-c', 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done'];
    const lines = (log: string) => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map(Number) : []);
    const stopAndRemove = async (id: string) => {
      await ctr(['task', 'kill', '-s', 'KILL', id]);
      expect(await until(async () => new RegExp(`${id}\\s+\\d+\\s+STOPPED`).test((await ctr(['task', 'ls'])).stdout.toString()), 30_000)).toBe(true);
      expect((await ctr(['task', 'delete', id])).status).toBe(0);
      expect((await ctr(['container', 'delete', id])).status).toBe(0);
    };
    // ctr task checkpoint: the task goes on (no --exit); the checkpoint (our store, tarred by the
    // shim from --image-path) is an image in containerd's content store.
    const log1 = path.join(dir, 'counter1.log');
    expect((await run('counter1', counter, ['-d', '--log-uri', `file://${log1}`])).status).toBe(0);
    expect(await until(() => lines(log1).length >= 5, 30_000)).toBe(true);
    const ck = await ctr(['task', 'checkpoint', 'counter1']);
    expect(ck.status, ck.stderr).toBe(0);
    const ref = ck.stdout.toString().trim();
    expect(ref).toMatch(/^containerd\.io\/checkpoint\/counter1:/);
    const images = (await ctr(['image', 'ls'])).stdout.toString();
    expect(images).toMatch(new RegExp(`${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+\\S+\\s+sha256:\\w+\\s+[\\d.]+ MiB`)); // holds the guest's pages, not just metadata
    const n = lines(log1).length;
    expect(await until(() => lines(log1).length > n + 3, 30_000)).toBe(true);
    const seq1 = lines(log1);
    for (let i = 1; i < seq1.length; i++) expect(seq1[i]).toBe(seq1[i - 1] + 1);
    await stopAndRemove('counter1');

    // ctr 1.6 restores only a container checkpoint (task + image + spec): `ctr container checkpoint
    // --task --image`, then `ctr container restore --live`, which starts the task and returns (its
    // output goes to ctr, which is gone): the counter also keeps its value in the sandbox's /tmp,
    // read with `ctr task exec`.
    const counter2 = ['sh', '-c', 'i=0; while :; do echo $i > /tmp/count; i=$((i+1)); sleep 0.1; done'];
    expect((await run('counter2', counter2, ['-d'])).status).toBe(0);
    let execs = 0;
    const count = async () => {
      const r = await ctr(['task', 'exec', '--exec-id', `read${execs++}`, 'counter2', 'cat', '/tmp/count']);
      // Empty: cat ran between the shell's truncation of /tmp/count and its write (Number('') is 0).
      const text = r.stdout.toString().trim();
      return r.status === 0 && text !== '' ? Number(text) : -1;
    };
    expect(await until(async () => (await count()) >= 30, 60_000, 500)).toBe(true);
    let beforeCheckpoint = await count();
    for (let i = 0; i < 20 && beforeCheckpoint < 0; i++) beforeCheckpoint = await count();
    expect(beforeCheckpoint).toBeGreaterThanOrEqual(30);
    const ck2 = await ctr(['container', 'checkpoint', '--task', '--image', 'counter2', `${NS}/counter2-ck:1`]);
    expect(ck2.status, ck2.stderr).toBe(0);
    await stopAndRemove('counter2');
    const rs = await ctr(['container', 'restore', '--live', 'counter2', `${NS}/counter2-ck:1`]);
    expect(rs.status, rs.stderr).toBe(0);
    expect(await until(async () => /counter2\s+\d+\s+RUNNING/.test((await ctr(['task', 'ls'])).stdout.toString()), 30_000)).toBe(true);
    // It continues from the checkpoint (taken after `beforeCheckpoint` was read), not from 0.
    let v1 = await count();
    for (let i = 0; i < 20 && v1 < 0; i++) v1 = await count();
    expect(v1).toBeGreaterThanOrEqual(beforeCheckpoint);
    expect(await until(async () => (await count()) > v1, 30_000, 300)).toBe(true);
    await stopAndRemove('counter2');
  }, 300_000);
});

describe('docs/kubernetes.md: containerd with the snapvisor runtime handler', () => {
  it('containerd started with the documented config loads the handler and runs a container with it', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    const base = freshDir('k8s');
    const r = await startContainerd(base, kubernetesConfig(base));
    if (typeof r === 'string') throw new Error(r);
    try {
      const k = (args: string[]) => native(['ctr', '-a', `${base}/c.sock`, '-n', 'k8s.io', ...args], { timeoutMs: 60_000 });
      const plugins = await k(['plugins', 'ls']);
      expect(plugins.stdout.toString()).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+linux\/amd64\s+ok/);
      const dump = await native(['containerd', '--config', `${base}/config.toml`, 'config', 'dump']);
      expect(dump.stdout.toString()).toContain('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.snapvisor]');
      const handler = /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.snapvisor\]\s*[\s\S]*?runtime_type = "([^"]+)"[\s\S]*?BinaryName = "([^"]+)"/.exec(dump.stdout.toString());
      expect(handler?.[2]).toBe(CLI);
      expect((await k(['image', 'import', makeImageArchive(base, IMAGE)])).status).toBe(0);
      // The handler's runtime type and binary as containerd loaded them (CRI starts a pod's containers with these).
      const run2 = await k(['run', '--rm', '--snapshotter', 'native', '--runtime', handler![1], '--runc-binary', handler![2], IMAGE, 'k1', 'sh', '-c', 'echo via handler']);
      expect(run2.stdout.toString()).toBe('via handler\n');
      expect(run2.status).toBe(0);
    } finally {
      r.kill('SIGTERM');
      await until(() => r.exitCode !== null || r.signalCode !== null, 10_000);
    }
  }, 180_000);
});
