/**
 * The process that hosts an OCI container's sandbox (what runc's `runc init` is to runc):
 * started by `create`, `run` or `restore` as `snapvisor __oci-init ROOT ID`, in its own session,
 * with the container's stdio as its fds 0–2 and a pipe on fd 3 on which it reports "ok" or
 * the error once the sandbox exists. Its pid is the one in --pid-file: the engine's shim
 * (a subreaper) reaps it when the container's init ends, and its exit status is the
 * container's (a death by signal N is re-raised, so the shim sees the same signal).
 *
 * It serves the control socket `<root>/<id>.sock` (cli/control.ts) with the runtime's ops:
 * start, signal, pause, resume, exec, update, stats, ps, checkpoint.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ExitInfo, Kernel } from '../../src/kernel/kernel.js';
import { ExecError } from '../../src/loader/exec.js';
import { serveControl, type ControlRequest } from '../control.js';
import { exitStatus } from '../run.js';
import { configureLog, logLine, type LogConfig } from './log.js';
import { containerDir, loadContainer, processStart, saveContainer, type ContainerRecord } from './containers.js';
import { createContainerSandbox, spawnProcess } from './guest.js';
import { defaultMemoryLimit } from '../../src/sandbox/create.js';
import { processSpec, type OciProcess, type OciResources } from './bundle.js';
import { setControllingTty } from '../../platforms/host/console.js';

/** What the starting command leaves in `<root>/<id>/init.json` for the host process. */
export interface InitRequest {
  mode: 'create' | 'restore';
  /** restore: the checkpoint store written by `checkpoint --image-path`. */
  imagePath?: string;
  /** Start the guest at once (run, restore) instead of waiting for `start`. */
  startNow: boolean;
  log: LogConfig;
}

const READY_FD = 3;

function ready(msg: string): void {
  try { fs.writeSync(READY_FD, msg + '\n'); fs.closeSync(READY_FD); } catch { /* the starter is gone: nothing to tell */ }
}

/** Find the one checkpoint in an image directory (the last if there are several). */
async function restoreFromImage(imagePath: string, log: (m: string) => void): Promise<Kernel> {
  const { listCheckpoints } = await import('../../snapshots/store.js');
  const { restoreKernel } = await import('../../snapshots/checkpoint.js');
  if (!fs.existsSync(imagePath)) throw new Error(`checkpoint image ${imagePath} does not exist`);
  const list = await listCheckpoints(imagePath).catch(() => []);
  if (!list.length) throw new Error(`no snapvisor checkpoint in ${imagePath}`);
  const { kernel } = await restoreKernel(imagePath, list[list.length - 1].id);
  // Guest stdio: fds 0–2 are this process's (the engine's new stdio). Files that were attached
  // to an exec'd process's stdio in the checkpointed sandbox have no counterpart here.
  for (const f of Object.values(kernel.state.openFiles)) {
    if (f.kind === 'hostfd' && (f.hostFd ?? 0) > 2) {
      log(`restore: open file ${f.path} of an exec'd process is attached to /dev/null`);
      kernel.emit({ type: 'file.update', fileId: f.id, what: 'hostFd' }, [['set', ['openFiles', f.id, 'hostFd'], fs.openSync('/dev/null', 'r+')]]);
    }
  }
  return kernel;
}

/** Entry point of `snapvisor __oci-init ROOT ID`. Never returns: the process exits with the container's status. */
export async function ociInit(rootArg: string, id: string): Promise<void> {
  const root = rootArg || undefined;
  const dir = containerDir(root, id);
  let rec: ContainerRecord;
  let req: InitRequest;
  let kernel: Kernel;
  try {
    req = JSON.parse(fs.readFileSync(path.join(dir, 'init.json'), 'utf8'));
    configureLog(req.log);
    rec = loadContainer(root, id);
    // A terminal container: the pty on fds 0–2 becomes our controlling terminal, so window
    // changes (SIGWINCH) and hang-ups reach us and go on to the guest.
    if (rec.spec.process.terminal) setControllingTty(0);
    const warn = (m: string) => logLine('warning', m);
    kernel = req.mode === 'restore' ? await restoreFromImage(req.imagePath!, warn) : createContainerSandbox(rec.spec);
    // Kernel warnings go to the runtime's log, never into the container's stderr.
    (kernel as unknown as { log: (m: string) => void }).log = warn;
  } catch (e) {
    const msg = e instanceof ExecError ? `exec failed: ${e.message}` : (e as Error).message;
    ready(`error ${msg}`);
    process.exit(1);
  }
  // The control server is unref'd: this keeps the process alive while the container waits for `start`.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const execs = new Map<number, net.Socket>();
  const execFds = new Map<number, number[]>();
  let started = false;
  let finishing = false;

  const save = (patch: Partial<ContainerRecord>) => { Object.assign(rec, patch); saveContainer(root, rec); };
  const reply = (conn: net.Socket, r: object, end = true) => { if (end) conn.end(JSON.stringify(r) + '\n'); else conn.write(JSON.stringify(r) + '\n'); };

  // Host fds given to exec'd processes are closed once no open file of the sandbox uses them
  // (so the engine sees end-of-file on the exec's stdout when the process and its children are done).
  const releaseExecFds = () => {
    const used = new Set(Object.values(kernel.state.openFiles).filter((f) => f.kind === 'hostfd').map((f) => f.hostFd));
    for (const [pid, fds] of execFds) {
      const left = fds.filter((fd) => used.has(fd));
      for (const fd of fds) if (!used.has(fd)) { try { fs.closeSync(fd); } catch { /* already closed */ } }
      if (left.length) execFds.set(pid, left); else execFds.delete(pid);
    }
  };
  kernel.events.subscribe((evs) => {
    for (const ev of evs) {
      if (ev.type === 'task.zombie') {
        const conn = execs.get(ev.tid);
        const info: ExitInfo = ev.code !== undefined ? { code: ev.code } : { signal: ev.signal ?? 0, core: !!ev.core };
        if (conn) { execs.delete(ev.tid); reply(conn, { exit: info }); }
        if (execFds.size) releaseExecFds();
      } else if (ev.type === 'fd.close' && execFds.size) releaseExecFds();
    }
  });

  const finish = async (info: ExitInfo) => {
    if (finishing) return;
    finishing = true;
    clearInterval(keepAlive);
    for (const conn of execs.values()) reply(conn, { exit: { signal: 9, core: false } });
    save({ status: 'stopped', exitStatus: exitStatus(info) });
    await control.close().catch(() => undefined);
    kernel.destroy();
    for (const sig of FORWARDED) process.removeAllListeners(sig);
    if ('code' in info) process.exit(info.code);
    // Die of the same signal, so the shim's wait status is the guest's.
    process.kill(process.pid, info.signal);
    setTimeout(() => process.exit(128 + info.signal), 100);
  };

  const start = () => {
    started = true;
    void kernel.run().then(finish);
    save({ status: 'running' });
  };

  const handler = (r: ControlRequest, conn: net.Socket): boolean => {
    switch (r.op) {
      case 'start':
        if (started) reply(conn, { ok: false, error: 'cannot start an already running container' });
        else { start(); reply(conn, { ok: true }); }
        return true;
      case 'signal': {
        const sig = Number(r.signal);
        if (!started && sig === 9) { reply(conn, { ok: true }); void finish({ signal: 9, core: false }); return true; }
        if (!started) {
          // runc delivers signals to a created container's init too; ours has not run yet, so
          // a signal it would die of ends it (it has no handlers).
          reply(conn, { ok: true });
          void finish({ signal: sig, core: false });
          return true;
        }
        // SIGKILL to init ends the whole sandbox at once (even a paused one), as in a pid namespace.
        if (sig === 9) { kernel.kill(); reply(conn, { ok: true }); return true; }
        const groups = r.all ? Object.values(kernel.state.threadGroups).filter((g) => !g.zombie).map((g) => g.tgid) : [1];
        for (const g of groups) kernel.signals.send(g, sig, { signo: sig, code: 0 /* SI_USER */ });
        reply(conn, { ok: true });
        return true;
      }
      case 'pause':
        if (rec.status === 'paused') { reply(conn, { ok: false, error: 'container already paused' }); return true; }
        if (!started) { reply(conn, { ok: false, error: 'container not running' }); return true; }
        void kernel.quiesce().then(() => { save({ status: 'paused' }); reply(conn, { ok: true }); });
        return true;
      case 'resume':
        if (rec.status !== 'paused') { reply(conn, { ok: false, error: 'container not paused' }); return true; }
        kernel.thaw();
        save({ status: 'running' });
        reply(conn, { ok: true });
        return true;
      case 'exec': {
        if (!started || rec.status !== 'running') { reply(conn, { ok: false, error: rec.status === 'paused' ? 'cannot exec in a paused container' : 'cannot exec in a container that is not running' }); return true; }
        const hostPid = Number(r.hostPid);
        let fds: number[] = [];
        try {
          const p = processSpec(r.process as OciProcess, rec.spec.process);
          // The exec's stdio are the fds the engine gave the `exec` command (whose process
          // waits for this one): opened again through /proc (pipes, fifos, ttys, files).
          fds = [0, 1, 2].map((n) => fs.openSync(`/proc/${hostPid}/fd/${n}`, n === 0 ? 'r' : 'r+'));
          const pid = spawnProcess(kernel, p, fds as [number, number, number]);
          execFds.set(pid, fds);
          execs.set(pid, conn);
          conn.on('close', () => execs.delete(pid));
          reply(conn, { ok: true, pid }, false);
        } catch (e) {
          for (const fd of fds) fs.closeSync(fd);
          const err = e as NodeJS.ErrnoException;
          reply(conn, { ok: false, error: e instanceof ExecError ? `exec failed: ${err.message}` : err.code === 'ENXIO' ? 'exec stdio on a socket is not supported' : err.message });
        }
        return true;
      }
      case 'update': {
        const res = r.resources as OciResources;
        const limit = res?.pids?.limit;
        // pids.limit is what the kernel enforces (fork/clone past it give EAGAIN); a limit of 0 or -1 means none.
        if (typeof limit === 'number') (kernel as unknown as { maxTasks: number }).maxTasks = limit > 0 ? limit : 512;
        // memory.limit sets the sandbox's memory limit (0 or -1: the default); lowering it below what is used reclaims and OOM-kills.
        const mem = res?.memory?.limit;
        if (typeof mem === 'number') kernel.setMemoryLimit(mem > 0 ? mem : defaultMemoryLimit());
        save({ resources: res });
        reply(conn, { ok: true });
        return true;
      }
      case 'stats': {
        // Live processes counted from the graph (guestProcesses would read every command line).
        reply(conn, { ok: true, pids: Object.values(kernel.state.threadGroups).filter((tg) => !tg.zombie).length, memoryBytes: kernel.memoryLimit?.usage() ?? kernel.state.memoryFile.end - kernel.state.memoryFile.free.reduce((n, [, l]) => n + l, 0), hostRssBytes: process.memoryUsage().rss });
        return true;
      }
    }
    return false;
  };

  let control: { close(): Promise<void> };
  try {
    control = await serveControl(root, id, kernel, handler);
  } catch (e) {
    kernel.destroy();
    ready(`error ${(e as Error).message}`);
    process.exit(1);
  }
  // Signals sent to this process (rather than through `kill`) go to the guest's init, as they
  // would reach runc's container init; window changes go to the terminal's foreground group.
  for (const sig of FORWARDED) {
    process.on(sig, () => {
      if (sig === 'SIGWINCH') kernel.signalForegroundGroup(os.constants.signals.SIGWINCH);
      else if (started) kernel.signals.send(1, os.constants.signals[sig], { signo: os.constants.signals[sig], code: 0 });
    });
  }
  save({ pid: process.pid, pidStart: processStart(process.pid), status: 'created' });
  if (req.startNow) start();
  ready('ok');
}

const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'] as const;
