/**
 * Helpers for the OCI runtime tests: a busybox-static root filesystem, OCI bundles around it,
 * an OCI image archive of it (for `ctr image import`), and checks that nothing of a container
 * is left running.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './helpers.js';

export { BUSYBOX, makeImageArchive, makeRootfs } from '../bench/oci-image.js';
import { makeRootfs } from '../bench/oci-image.js';

/** An OCI bundle in `dir` (rootfs + config.json from `snapvisor spec`, with `edit` applied). */
export function makeBundle(dir: string, edit: (c: Record<string, any>) => void = () => undefined): string {
  makeRootfs(path.join(dir, 'rootfs'));
  execFileSync(process.execPath, [CLI, 'spec', '--bundle', dir]);
  const file = path.join(dir, 'config.json');
  const c = JSON.parse(fs.readFileSync(file, 'utf8'));
  c.process.terminal = false;
  c.process.env = ['PATH=/bin', 'HOME=/root'];
  c.root.readonly = false; // `spec` writes runc's default, a read-only root; the tests write to /tmp unless they say otherwise
  edit(c);
  fs.writeFileSync(file, JSON.stringify(c, null, 1));
  return dir;
}

/** Host processes whose command line mentions `needle` (snapvisor host processes of a container, stubs of the test's own kind). */
export function processesMentioning(needle: string): string[] {
  const r = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.includes(needle) && !l.includes('ps -eo') && !l.includes('vitest'));
}

/** Whether `cmd` runs on this machine (for skips with a printed reason). */
export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Poll `f` until it returns a truthy value or `ms` pass; returns the last value. */
export async function until<T>(f: () => T | Promise<T>, ms: number, stepMs = 100): Promise<T> {
  const end = Date.now() + ms;
  let v = await f();
  while (!v && Date.now() < end) {
    await new Promise((r) => setTimeout(r, stepMs));
    v = await f();
  }
  return v;
}
