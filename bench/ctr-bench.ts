/**
 * Section 6 of `npm run bench` (issue 8): `ctr run` of a busybox image to its first output byte,
 * with containerd's runc shim driving Debian's runc, snapvisor (as `--runc-binary`) and gVisor
 * (runsc, ptrace platform, through a two-line wrapper that adds `--platform=ptrace
 * --network=none`, since ctr passes no runtime flags). containerd is started here on a private
 * socket, root and state (the CRI plugin off), and the image is built from busybox-static and
 * imported with `ctr image import`, as test/containerd.test.ts does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeImageArchive } from './oci-image.js';

const IMAGE = 'docker.io/library/sv-busybox:latest';
const NS = 'svbench';

export interface CtrRow { runtime: string; firstOutputMs: number[]; error?: string }

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Run `ctr run --rm` of `cmd` with runtime binary `binary`: ms from spawn to its first stdout byte, or an Error. */
function ctrRun(sock: string, binary: string, id: string, cmd: string[], env: NodeJS.ProcessEnv): Promise<number | Error> {
  return new Promise((resolve) => {
    const t0 = now();
    let first: number | undefined;
    let err = '';
    const child = spawn('ctr', ['-a', sock, '-n', NS, 'run', '--rm', '--snapshotter', 'native', '--runc-binary', binary, IMAGE, id, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], env });
    child.stdout.on('data', () => { first ??= now() - t0; });
    child.stderr.on('data', (d: Buffer) => { if (err.length < 4096) err += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 && first !== undefined ? first : new Error(`ctr run with ${path.basename(binary)} exited ${code}: ${err.trim().split('\n').pop() ?? ''}`));
    });
  });
}

/**
 * Start containerd in `dir`, import the image, and time `reps` runs (after one untimed warm-up)
 * of `echo hello` per runtime. `runtimes`: [label, binary] pairs. Returns the rows, or an Error
 * when containerd itself cannot run here (not installed, not root).
 */
export async function ctrRunBench(dir: string, runtimes: Array<[string, string]>, reps: number, env: NodeJS.ProcessEnv,
  progress: (s: string) => void = () => undefined): Promise<CtrRow[] | Error> {
  for (const c of ['containerd', 'ctr', 'containerd-shim-runc-v2']) {
    if (spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0) return new Error(`${c} is not installed (Debian package containerd)`);
  }
  if (process.getuid?.() !== 0) return new Error('containerd needs root');
  const base = path.join(dir, 'containerd');
  fs.mkdirSync(base, { recursive: true });
  const sock = path.join(base, 'c.sock');
  fs.writeFileSync(path.join(base, 'config.toml'), `version = 2\nroot = "${base}/root"\nstate = "${base}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`);
  const log = fs.openSync(path.join(base, 'containerd.log'), 'w');
  // The shim and every runtime it runs inherit this environment (so NODE_EXTRA_CA_CERTS is unset for snapvisor, as in the other sections).
  const daemon: ChildProcess = spawn('containerd', ['--config', path.join(base, 'config.toml')], { stdio: ['ignore', log, log], env });
  fs.closeSync(log);
  try {
    const ctr = (args: string[]) => spawnSync('ctr', ['-a', sock, '-n', NS, ...args], { encoding: 'utf8', timeout: 60_000 });
    const deadline = Date.now() + 30_000;
    while (ctr(['version']).status !== 0) {
      if (daemon.exitCode !== null || Date.now() > deadline) return new Error(`containerd did not start: ${fs.readFileSync(path.join(base, 'containerd.log'), 'utf8').trim().split('\n').pop()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const imp = ctr(['image', 'import', makeImageArchive(base, IMAGE)]);
    if (imp.status !== 0) return new Error(`ctr image import failed: ${imp.stderr.trim()}`);
    const rows: CtrRow[] = [];
    let n = 0;
    for (const [label, binary] of runtimes) {
      const row: CtrRow = { runtime: label, firstOutputMs: [] };
      for (let i = 0; i <= reps && !row.error; i++) {
        progress(`ctr run: ${label} ${i}/${reps}`);
        const r = await ctrRun(sock, binary, `b${n++}`, ['echo', 'hello'], env);
        if (r instanceof Error) row.error = r.message;
        else if (i > 0) row.firstOutputMs.push(r);
      }
      rows.push(row);
    }
    return rows;
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => { if (daemon.exitCode !== null) r(undefined); else daemon.on('exit', r); setTimeout(r, 10_000); });
  }
}

/** A shell wrapper in `dir` that runs runsc on the ptrace platform without a network (ctr passes no runtime flags). */
export function runscWrapper(dir: string, runsc: string): string {
  const file = path.join(dir, 'runsc-ptrace');
  fs.writeFileSync(file, `#!/bin/sh\nexec ${runsc} --platform=ptrace --network=none "$@"\n`, { mode: 0o755 });
  return file;
}
