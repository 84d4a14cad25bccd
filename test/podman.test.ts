/**
 * Podman drives snapvisor with `--runtime` (Debian's podman and conmon, vfs storage in a private
 * root): run of an image made with `podman import`, exec, stop, and `podman container checkpoint`
 * / `restore` of a running counter that continues.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freshDir, native } from './helpers.js';
import { have, makeRootfs, until } from './oci-helpers.js';

let dir: string;
let skipReason = '';
const IMAGE = 'localhost/sv-busybox:latest';
const podman = (args: string[], timeoutMs = 90_000) => native(['podman', '--root', `${dir}/storage`, '--runroot', `${dir}/run`, '--storage-driver', 'vfs',
  '--runtime', CLI, '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', ...args], { timeoutMs });

beforeAll(async () => {
  if (!have('podman') || !have('conmon')) { skipReason = 'podman or conmon is not installed'; return; }
  if (process.getuid?.() !== 0) { skipReason = 'podman runs rootful here (needs root)'; return; }
  dir = freshDir('podman');
  const rootfs = makeRootfs(path.join(dir, 'rootfs'));
  const tar = path.join(dir, 'rootfs.tar');
  await native(['tar', '-C', rootfs, '-cf', tar, '.']);
  const imp = await podman(['import', tar, IMAGE]);
  if (imp.status !== 0) skipReason = `podman cannot start here: ${imp.stderr.trim().split('\n').at(-1)}`;
}, 120_000);

afterAll(async () => {
  if (dir && !skipReason) await podman(['rm', '--force', '--all', '--time', '0']);
}, 60_000);

describe('podman --runtime snapvisor', () => {
  it('run prints the output and returns the status; exec; stop', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    const r = await podman(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'echo hello from podman $((6*7)); exit 6']);
    expect(r.stdout.toString()).toBe('hello from podman 42\n');
    expect(r.status).toBe(6);
    const d = await podman(['run', '-d', '--name', 'svc', '--network', 'none', IMAGE, 'sh', '-c', 'echo up; exec sleep 600']);
    expect(d.status, d.stderr).toBe(0);
    const ex = await podman(['exec', 'svc', 'sh', '-c', 'echo exec says hi; exit 3']);
    expect(ex.stdout.toString()).toBe('exec says hi\n');
    expect(ex.status).toBe(3);
    const st = await podman(['stop', '--time', '1', 'svc']);
    expect(st.status, st.stderr).toBe(0);
    expect((await podman(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])).stdout.toString()).toMatch(/^svc Exited/m);
    expect((await podman(['logs', 'svc'])).stdout.toString()).toBe('up\n');
    expect((await podman(['rm', 'svc'])).status).toBe(0);
  }, 240_000);

  it('container checkpoint and restore of a running counter: it continues', async (ctx) => {
    if (skipReason) { console.log(`skipped: ${skipReason}`); ctx.skip(); }
    if (!have('criu')) { console.log('skipped: podman checks for criu before any runtime checkpoint, and criu is not installed'); ctx.skip(); }
    const d = await podman(['run', '-d', '--name', 'counter', '--network', 'none', IMAGE, 'sh', '-c', 'i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done']);
    expect(d.status, d.stderr).toBe(0);
    const lines = async () => (await podman(['logs', 'counter'])).stdout.toString().trim().split('\n').filter(Boolean).map(Number);
    expect(await until(async () => (await lines()).length >= 10, 60_000, 500)).toBe(true);
    const ck = await podman(['container', 'checkpoint', 'counter']);
    expect(ck.status, ck.stderr).toBe(0);
    expect((await podman(['ps', '-a', '--format', '{{.Names}} {{.Status}}'])).stdout.toString()).toMatch(/^counter Exited/m);
    const before = await lines();
    const rs = await podman(['container', 'restore', 'counter']);
    expect(rs.status, rs.stderr).toBe(0);
    expect(await until(async () => (await lines()).length >= before.length + 10, 60_000, 500)).toBe(true);
    const all = await lines();
    // One unbroken sequence: the restored counter took up where the checkpoint was, not from 0.
    for (let i = 1; i < all.length; i++) expect(all[i]).toBe(all[i - 1] + 1);
    expect(fs.existsSync(CLI)).toBe(true);
    expect((await podman(['rm', '--force', '--time', '0', 'counter'])).status).toBe(0);
  }, 240_000);
});
