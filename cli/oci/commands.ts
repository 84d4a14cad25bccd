/**
 * The OCI runtime commands (runc's command set and flag names, docs/cli.md "OCI runtime"):
 * what containerd's shim and Podman's conmon run. Each function throws Error with one line;
 * main.ts prints it (and logs it to --log as runc's JSON error line) and exits 1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request, stateDir, type ControlResponse, type GuestProcess } from '../control.js';
import { makeDirs } from '../../snapshots/make-dirs.js';
import { logConfig } from './log.js';
import { BundleError, defaultSpec, loadBundle, processSpec, type OciProcess, type BundleSpec } from './bundle.js';
import {
  ContainerError, checkId, containerDir, listContainers, liveStatus, loadContainer, ociState, processStart, removeContainer,
  saveContainer, writeAtomic, type ContainerRecord,
} from './containers.js';
import type { InitRequest } from './init.js';
import { launcherEnv } from '../node-env.js';

export const OCI_VERSION = '1.0.2';

/** The CLI's own script (dist/bundle/main.js), to start the host process and exec waiters. */
const cliScript = () => process.argv[1];

/** Send a control request to container `id`'s host process; ContainerError if it is not running. */
async function control(root: string | undefined, id: string, req: { op: string; [k: string]: unknown }): Promise<ControlResponse & Record<string, unknown>> {
  const sock = path.join(stateDir(root), `${id}.sock`);
  try {
    return await request(sock, req) as ControlResponse & Record<string, unknown>;
  } catch {
    throw new ContainerError('container not running');
  }
}

function must(r: ControlResponse): void {
  if (!r.ok) throw new ContainerError((r as { error: string }).error);
}

/** Read the one status line a started helper writes on its fd 3 ("ok …" or "error …"); EOF without one is a failure. */
function readReady(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    let buf = '';
    pipe.on('data', (d: Buffer) => { buf += d.toString(); });
    pipe.on('error', () => undefined);
    pipe.on('close', () => {
      const line = buf.split('\n')[0];
      if (line.startsWith('ok')) resolve(line.slice(2).trim());
      else if (line.startsWith('error ')) reject(new ContainerError(line.slice(6)));
      else reject(new ContainerError('the container process exited before it was ready'));
    });
  });
}

function exitOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode ?? 128 + os.constants.signals[child.signalCode!]);
    else child.once('exit', (code, sig) => resolve(code ?? 128 + (sig ? os.constants.signals[sig] : 0)));
  });
}

/** Forward SIGTERM/SIGINT/SIGHUP sent to this command to `child` while it runs in the foreground. */
function forwardSignals(child: ChildProcess): () => void {
  const sigs = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const;
  const h = (s: NodeJS.Signals) => { try { child.kill(s); } catch { /* gone */ } };
  for (const s of sigs) process.on(s, h);
  return () => { for (const s of sigs) process.off(s, h); };
}

export interface LaunchOptions {
  bundle?: string;
  pidFile?: string;
  consoleSocket?: string;
  detach: boolean;
  keep?: boolean;
  /** restore: the image directory checkpoint --image-path wrote. */
  imagePath?: string;
}

/**
 * create / run / restore: make container `id` from a bundle and start its host process.
 * Returns the exit status for a foreground run/restore, 0 otherwise. On any error nothing is
 * left: the host process is killed and the container's directory removed.
 */
export async function launch(root: string | undefined, id: string, mode: 'create' | 'run' | 'restore', o: LaunchOptions): Promise<number> {
  checkId(id);
  const dir = containerDir(root, id);
  if (fs.existsSync(path.join(dir, 'state.json'))) throw new ContainerError(`container with id exists: ${id}`);
  let spec: BundleSpec;
  try { spec = loadBundle(o.bundle ?? '.'); } catch (e) { throw e instanceof BundleError ? new ContainerError(e.message) : e; }
  if (mode === 'restore') {
    if (!o.imagePath) throw new ContainerError('restore needs --image-path');
    if (!fs.existsSync(o.imagePath)) throw new ContainerError(`checkpoint image ${o.imagePath} does not exist`);
  }
  const terminal = spec.process.terminal;
  if (terminal && o.detach && !o.consoleSocket) throw new ContainerError('cannot allocate tty if runc will detach without setting console socket');
  if (!terminal && o.consoleSocket) throw new ContainerError('cannot use console socket if runc will not detach or allocate tty');
  if (o.consoleSocket && !fs.existsSync(o.consoleSocket)) throw new ContainerError(`console socket ${o.consoleSocket} does not exist`);

  makeDirs(stateDir(root), 0o711);
  try { fs.mkdirSync(dir, { mode: 0o711 }); } catch { throw new ContainerError(`container with id exists: ${id}`); }
  let child: ChildProcess | undefined;
  let pty: { master: number; slave: number } | undefined;
  try {
    const rec: ContainerRecord = {
      id, pid: 0, status: 'creating', bundle: spec.bundle, rootfs: spec.rootfs, created: new Date().toISOString(),
      annotations: spec.annotations, spec, resources: spec.config.linux?.resources,
    };
    saveContainer(root, rec);
    const init: InitRequest = { mode: mode === 'restore' ? 'restore' : 'create', imagePath: o.imagePath && path.resolve(o.imagePath), startNow: mode !== 'create', log: logConfig() };
    fs.writeFileSync(path.join(dir, 'init.json'), JSON.stringify(init) + '\n');
    let stdio: Array<number | 'pipe' | 'inherit'> = ['inherit', 'inherit', 'inherit'];
    // The console helpers load koffi: only for terminal containers, so other commands start faster.
    const { openHostPty, sendFdOverSocket } = await import('../../platforms/host/console.js');
    if (terminal && o.consoleSocket) {
      pty = openHostPty(spec.process.consoleSize);
      stdio = [pty.slave, pty.slave, pty.slave];
    }
    child = spawn(process.execPath, [cliScript(), '__oci-init', root ?? '', id], { stdio: [...stdio, 'pipe'], detached: o.detach || !!pty, env: launcherEnv() });
    // The engine receives the pty's master only once the container exists: runc sends it from init.
    await readReady(child);
    if (pty) {
      sendFdOverSocket(o.consoleSocket!, pty.master, '/dev/ptmx');
      fs.closeSync(pty.master);
      fs.closeSync(pty.slave);
      pty = undefined;
    }
    if (o.pidFile) writeAtomic(o.pidFile, String(child.pid));
  } catch (e) {
    if (child?.pid && child.exitCode === null) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }
    if (pty) { fs.closeSync(pty.master); fs.closeSync(pty.slave); }
    removeContainer(root, id);
    throw e;
  }
  const status = await detachOrWait(child, o.detach);
  if (!o.detach && !o.keep) removeContainer(root, id);
  return status;
}

/** `start ID`: run the created container's process. */
export async function startContainer(root: string | undefined, id: string): Promise<void> {
  const rec = loadContainer(root, id);
  const st = liveStatus(rec);
  if (st === 'stopped') throw new ContainerError('cannot start a container that has stopped');
  if (st !== 'created') throw new ContainerError(`cannot start an already ${st} container`);
  must(await control(root, id, { op: 'start' }));
}

/** `state ID`: the OCI state JSON. */
export function containerState(root: string | undefined, id: string): string {
  return JSON.stringify(ociState(loadContainer(root, id)), null, 2) + '\n';
}

/** A signal by number or name, with or without SIG (as runc's kill takes it). Throws on an unknown one. */
export function parseSignal(s: string): number {
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : 'SIG' + s.toUpperCase();
    const n = (os.constants.signals as Record<string, number>)[name];
    if (n) return n;
  }
  throw new ContainerError(`unknown signal "${s}"`);
}

/** `kill [--all] ID [SIGNAL]`: SIGNAL (default SIGTERM) to the container's init, or every process with --all. */
export async function killContainer(root: string | undefined, id: string, signal: string | undefined, all: boolean): Promise<void> {
  const rec = loadContainer(root, id);
  const sig = parseSignal(signal ?? 'SIGTERM');
  if (liveStatus(rec) === 'stopped') throw new ContainerError('container not running');
  must(await control(root, id, { op: 'signal', signal: sig, all }));
}

/** Wait (up to `ms`) until the container's host process is gone. */
async function waitGone(rec: ContainerRecord, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (processStart(rec.pid) !== rec.pidStart) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return processStart(rec.pid) !== rec.pidStart;
}

/** `delete [--force] ID`: remove a stopped (or, with --force, any) container; a created one is killed first, as runc does. */
export async function deleteContainer(root: string | undefined, id: string, force: boolean): Promise<void> {
  const rec = loadContainer(root, id);
  const st = liveStatus(rec);
  if ((st === 'running' || st === 'paused') && !force) throw new ContainerError(`cannot delete container ${id} that is not stopped: ${st}`);
  if (st !== 'stopped') {
    await control(root, id, { op: 'signal', signal: 9, all: true }).catch(() => undefined);
    if (!(await waitGone(rec, 10_000))) {
      try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ }
      await waitGone(rec, 2000);
    }
  }
  removeContainer(root, id);
}

/** `pause ID` / `resume ID`: freeze every guest task (at a syscall boundary or in user code) or let them go on. */
export async function pauseContainer(root: string | undefined, id: string, op: 'pause' | 'resume'): Promise<void> {
  const rec = loadContainer(root, id);
  if (liveStatus(rec) === 'stopped') throw new ContainerError('container not running');
  must(await control(root, id, { op }));
}

/** Rows for `list`: OCI containers and `run --name` sandboxes under the root. */
export function listAll(root: string | undefined): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = listContainers(root).map((id) => {
    try { return ociState(loadContainer(root, id)); } catch { return undefined; }
  }).filter((r): r is Record<string, unknown> => !!r);
  const dir = stateDir(root);
  let names: string[] = [];
  try { names = fs.readdirSync(dir).filter((n) => n.endsWith('.json') && !n.startsWith('.')); } catch { /* no root yet */ }
  for (const n of names) {
    const name = n.slice(0, -5);
    if (fs.existsSync(path.join(dir, name, 'state.json'))) continue; // an OCI container's control meta
    try {
      const meta = JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as { name: string; pid: number; started: string };
      if (!fs.existsSync(path.join(dir, `${name}.sock`)) || processStart(meta.pid) === undefined) continue;
      rows.push({ ociVersion: OCI_VERSION, id: meta.name, pid: meta.pid, status: 'running', bundle: '', rootfs: '', created: meta.started, owner: '' });
    } catch { /* a half-written meta of a sandbox starting now */ }
  }
  return rows.sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

/** `list` output: runc's table (ID PID STATUS BUNDLE CREATED OWNER), JSON, or ids only. */
export function formatList(rows: Array<Record<string, unknown>>, format: string, quiet: boolean): string {
  if (quiet) return rows.map((r) => r.id + '\n').join('');
  if (format === 'json') return JSON.stringify(rows) + '\n';
  if (format !== 'table') throw new ContainerError(`invalid format option '${format}' (table or json)`);
  const table = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...rows.map((r) => [String(r.id), String(r.pid), String(r.status), String(r.bundle || '-'), String(r.created), String(r.owner || (os.userInfo().username))])];
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  return table.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('   ').trimEnd() + '\n').join('');
}

/** `ps NAME`: the processes of a container or `run --name` sandbox; JSON is runc's (host pids). */
export async function psContainer(root: string | undefined, id: string, format: string): Promise<string> {
  const sock = path.join(stateDir(root), `${id}.sock`);
  let isContainer = false;
  try { const rec = loadContainer(root, id); isContainer = true; if (liveStatus(rec) === 'stopped') { if (format === 'json') return '[]\n'; throw new ContainerError('container not running'); } } catch (e) { if (isContainer) throw e; }
  if (!isContainer && !fs.existsSync(sock)) throw new ContainerError(`container ${id} does not exist (nor a running sandbox of that name in ${stateDir(root)})`);
  // A sandbox's socket error says why (cli/control-client.ts); a container's is runc's line.
  const r = isContainer ? await control(root, id, { op: 'ps' }) : await request(sock, { op: 'ps' }) as ControlResponse & Record<string, unknown>;
  must(r);
  const procs = r.processes as GuestProcess[];
  if (format === 'json') return JSON.stringify([r.hostPid]) + '\n';
  if (format !== 'table') throw new ContainerError(`invalid format option '${format}' (table or json)`);
  const table = [['PID', 'PPID', 'UID', 'STAT', 'CMD'], ...procs.map((p) => [String(p.pid), String(p.ppid), String(p.uid), p.state, p.cmd])];
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  return table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ') + '\n').join('');
}

export interface ExecOptions {
  process?: string; detach?: boolean; pidFile?: string; consoleSocket?: string; tty?: boolean; cwd?: string;
  env?: string[]; user?: string; additionalGids?: string[];
}

/**
 * `exec ID CMD…` / `exec --process FILE ID`: a new process in the running container. Its
 * waiter (`__oci-exec-wait`, the pid in --pid-file) holds the engine's stdio, stays alive
 * until the guest process ends and exits with its status. Returns that status, or 0 with --detach.
 */
export async function execContainer(root: string | undefined, id: string, cmd: string[], o: ExecOptions): Promise<number> {
  const rec = loadContainer(root, id);
  const st = liveStatus(rec);
  if (st === 'stopped') throw new ContainerError('cannot exec in a stopped container');
  if (st === 'paused') throw new ContainerError('cannot exec in a paused container');
  if (st !== 'running') throw new ContainerError('cannot exec in a container that is not running');
  let p: OciProcess;
  if (o.process) {
    let text: string;
    try { text = fs.readFileSync(o.process, 'utf8'); } catch { throw new ContainerError(`process file ${o.process} not found`); }
    try { p = JSON.parse(text); } catch (e) { throw new ContainerError(`${o.process}: malformed JSON: ${(e as Error).message}`); }
  } else {
    if (!cmd.length) throw new ContainerError('exec needs a command, or --process FILE');
    p = { args: cmd, terminal: !!o.tty, cwd: o.cwd, env: o.env?.length ? [...rec.spec.process.env, ...o.env] : undefined };
    if (o.user) {
      const [u, g] = o.user.split(':');
      if (!/^\d+$/.test(u) || (g !== undefined && !/^\d+$/.test(g))) throw new ContainerError(`--user ${o.user}: expected UID[:GID]`);
      p.user = { uid: Number(u), gid: g === undefined ? 0 : Number(g), additionalGids: (o.additionalGids ?? []).map(Number) };
    }
  }
  try { processSpec(p, rec.spec.process); } catch (e) { throw new ContainerError((e as Error).message); }
  const terminal = !!p.terminal;
  if (terminal && o.detach && !o.consoleSocket) throw new ContainerError('cannot allocate tty if runc will detach without setting console socket');
  if (!terminal && o.consoleSocket) throw new ContainerError('cannot use console socket if runc will not detach or allocate tty');
  let pty: { master: number; slave: number } | undefined;
  let stdio: Array<number | 'inherit'> = ['inherit', 'inherit', 'inherit'];
  const { openHostPty, sendFdOverSocket } = await import('../../platforms/host/console.js');
  if (terminal && o.consoleSocket) {
    pty = openHostPty(p.consoleSize ? { rows: p.consoleSize.height, cols: p.consoleSize.width } : undefined);
    stdio = [pty.slave, pty.slave, pty.slave];
  }
  const child = spawn(process.execPath, [cliScript(), '__oci-exec-wait', root ?? '', id, JSON.stringify(p)], { stdio: [...stdio, 'pipe'], detached: !!o.detach, env: launcherEnv() });
  try {
    await readReady(child);
    if (pty) { sendFdOverSocket(o.consoleSocket!, pty.master, '/dev/ptmx'); }
    if (o.pidFile) writeAtomic(o.pidFile, String(child.pid));
  } catch (e) {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw e;
  } finally {
    if (pty) { fs.closeSync(pty.master); fs.closeSync(pty.slave); }
  }
  return detachOrWait(child, o.detach);
}

/**
 * `__oci-exec-wait ROOT ID PROCESS`: ask the container's host process to start PROCESS with this
 * process's fds 0–2 as its stdio, report "ok PID" on fd 3, then exit with its status.
 */
export async function execWait(rootArg: string, id: string, processJson: string): Promise<void> {
  const root = rootArg || undefined;
  const tell = (m: string) => { try { fs.writeSync(3, m + '\n'); fs.closeSync(3); } catch { /* starter gone */ } };
  const sock = path.join(stateDir(root), `${id}.sock`);
  const c = net.createConnection(sock);
  let buf = '';
  let started = false;
  c.on('connect', () => c.write(JSON.stringify({ op: 'exec', hostPid: process.pid, process: JSON.parse(processJson) }) + '\n'));
  c.on('error', () => { if (!started) { tell('error container not running'); process.exit(1); } });
  c.on('data', (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (!started) {
        if (!msg.ok) { tell(`error ${msg.error}`); process.exit(1); }
        started = true;
        tell(`ok ${msg.pid}`);
      } else if (msg.exit) {
        const info = msg.exit as { code?: number; signal?: number };
        if (info.code !== undefined) process.exit(info.code);
        process.kill(process.pid, info.signal!);
        setTimeout(() => process.exit(128 + info.signal!), 100);
      }
    }
  });
  c.on('close', () => { if (started) setTimeout(() => process.exit(137), 200); });
}

/** `update [--resources FILE|-] [--pids-limit N] [--memory BYTES] ID`: pids.limit and memory.limit are enforced; the rest is recorded. */
export async function updateContainer(root: string | undefined, id: string, o: { resources?: string; pidsLimit?: string; memory?: string }): Promise<void> {
  const rec = loadContainer(root, id);
  let res: Record<string, unknown> = {};
  if (o.resources) {
    let text: string;
    try { text = o.resources === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(o.resources, 'utf8'); } catch { throw new ContainerError(`resources file ${o.resources} not found`); }
    try { res = JSON.parse(text); } catch (e) { throw new ContainerError(`resources: malformed JSON: ${(e as Error).message}`); }
    if (!res || typeof res !== 'object') throw new ContainerError('resources must be a JSON object');
  }
  if (o.pidsLimit !== undefined) res.pids = { limit: Number(o.pidsLimit) };
  if (o.memory !== undefined) res.memory = { ...(res.memory as object ?? {}), limit: Number(o.memory) };
  if (liveStatus(rec) === 'stopped') throw new ContainerError('container not running');
  must(await control(root, id, { op: 'update', resources: res }));
}

/** `events [--stats] [--interval N] ID`: stats as runc's JSON event lines, once or every interval until the container stops. */
export async function eventsContainer(root: string | undefined, id: string, o: { stats?: boolean; interval?: string }): Promise<void> {
  const intervalMs = parseDuration(o.interval ?? '5s');
  for (;;) {
    const rec = loadContainer(root, id);
    if (liveStatus(rec) === 'stopped') { if (o.stats) throw new ContainerError('container not running'); return; }
    const r = await control(root, id, { op: 'stats' });
    must(r);
    process.stdout.write(JSON.stringify({ type: 'stats', id, data: { pids: { current: r.pids }, memory: { usage: { usage: r.memoryBytes } } } }) + '\n');
    if (o.stats) return;
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}

function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s);
  if (!m) throw new ContainerError(`invalid interval ${s}`);
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
}

/** `spec`: write runc's default config.json into the bundle (refusing to overwrite one). */
export function writeSpec(bundle: string | undefined): void {
  const file = path.join(bundle ?? '.', 'config.json');
  if (fs.existsSync(file)) throw new ContainerError('File config.json exists. Remove it first');
  fs.writeFileSync(file, JSON.stringify(defaultSpec(), null, '\t') + '\n');
}

/** `features`: what this runtime implements, in the shape of runc's `features` (runtime-spec features.md). */
export function features(): string {
  return JSON.stringify({
    ociVersionMin: '1.0.0', ociVersionMax: OCI_VERSION,
    hooks: [],
    mountOptions: ['bind', 'rbind', 'ro', 'rw', 'nosuid', 'nodev', 'noexec'],
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount'],
      capabilities: [],
      cgroup: { v1: false, v2: false, systemd: false, systemdUser: false },
      seccomp: { enabled: false },
      apparmor: { enabled: false },
      selinux: { enabled: false },
    },
    annotations: { 'org.opencontainers.runc.checkpoint.enabled': 'true', 'io.snapvisor.kernel': 'snapvisor application kernel (every syscall served by the sandbox)' },
  }, null, 4) + '\n';
}

/**
 * `checkpoint --image-path DIR [--work-path DIR] [--leave-running] ID`: our own checkpoint
 * format (a checkpoint store, snapshots/) in DIR; without --leave-running the container
 * stops once it is written, as after runc checkpoint.
 */
export async function checkpointToImage(root: string | undefined, id: string, o: { imagePath: string; workPath?: string; leaveRunning?: boolean }): Promise<string> {
  const rec = loadContainer(root, id);
  if (liveStatus(rec) === 'stopped' || liveStatus(rec) === 'created') throw new ContainerError('container not running');
  const image = path.resolve(o.imagePath);
  makeDirs(image);
  const r = await control(root, id, { op: 'checkpoint', store: image, leaveRunning: !!o.leaveRunning });
  if (!r.ok) throw new ContainerError(`checkpoint of ${id} failed: ${(r as { error: string }).error}`);
  // Podman looks for CRIU's inventory.img to tell a complete checkpoint directory from a partial
  // one; ours is complete once the store's manifest is written, so it is written after.
  fs.writeFileSync(path.join(image, 'inventory.img'), `snapvisor checkpoint ${r.id} (a snapvisor checkpoint store, not a CRIU image)\n`);
  const line = `checkpointed ${id}: ${r.pages} pages, guest paused ${Number(r.pauseMs).toFixed(0)} ms, written in ${Number(r.durationMs).toFixed(0)} ms: ${r.id}`;
  if (o.workPath) {
    makeDirs(o.workPath);
    fs.appendFileSync(path.join(o.workPath, 'dump.log'), line + '\n');
  }
  if (!o.leaveRunning) await waitGone(rec, 10_000);
  return line;
}

/** Whether `id` names an OCI container under the root (a valid id with a state record). */
export function containerExists(root: string | undefined, id: string): boolean {
  try { checkId(id); } catch { return false; }
  return fs.existsSync(path.join(containerDir(root, id), 'state.json'));
}

/** `--detach`: let the child run on and return 0; else relay signals to it and return its exit status. */
async function detachOrWait(child: ChildProcess, detach: boolean | undefined): Promise<number> {
  if (detach) {
    child.unref();
    (child.stdio[3] as net.Socket | null)?.destroy();
    return 0;
  }
  const unforward = forwardSignals(child);
  const status = await exitOf(child);
  unforward();
  return status;
}
