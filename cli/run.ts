/** `snapvisor run` and `snapvisor restore`: start a sandbox (new or from a checkpoint), run it to the end, exit with its status. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSandbox } from '../src/sandbox/create.js';
import { UnknownPlatformError, createPlatform } from '../platforms/registry.js';
import type { Platform } from '../platforms/platform.js';
import { hostHasCpuidFaulting } from '../platforms/host/cpu-features.js';
import { type PublishSpec, startPublishing } from './publish.js';
import { randomBytes } from 'node:crypto';
import { ExecError } from '../src/loader/exec.js';
import type { MountSpec } from '../src/sandbox/mounts.js';
import { E } from '../src/errno.js';
import type { ExitInfo, Kernel } from '../src/kernel/kernel.js';
import type { SyscallHook } from '../src/kernel/task.js';
import { FaultInjector, InjectSpecError, parseInjectSpec } from '../src/sandbox/fault-injection.js';
import { serveControl, defaultStore, fail, noteCheckpointed, stateDir, streamEvents } from './control.js';
import { checkpointIdProblem, dirProblem, errorLine, socketPathProblem, storeDirProblem } from './host-errors.js';
import { takeHeldSignals } from './early-signals.js';
import { restoreTrace } from '../snapshots/restore-trace.js';

export { fail };

/**
 * `run`'s options as commander parses them. `cwd` absent: the caller's working directory when
 * the root is the host's own (`--rootfs /`, as `runsc do` and proot do), else `/`.
 */
export interface RunOptions { rootfs: string; cwd?: string; env?: string[]; clearEnv?: boolean; strace?: boolean; name?: string; platform?: string; user?: { uid: number; gid: number }; disk?: number; memory?: number; inject?: string; seed?: string; checkpointStore?: string; checkpointName?: string; checkpointCompress?: boolean; cpuFeatures?: string; publish?: PublishSpec[]; tcpCloseOnCheckpoint?: boolean; network?: 'sandbox' | 'host'; volume?: MountSpec[]; tmpfs?: MountSpec[]; events?: string; eventTypes?: string }

/**
 * --checkpoint-store DIR [--checkpoint-name NAME] [--no-checkpoint-compress]: the kernel's `checkpointRequest` (a guest's
 * write to /proc/snapvisor/checkpoint): checkpoint the sandbox into DIR, leaving it running,
 * and give the kernel the line to log: `snapvisor: checkpoint [NAME ]taken at the guest's request: ID`.
 */
function guestCheckpoints(opts: { checkpointStore?: string; checkpointName?: string; checkpointCompress?: boolean; name?: string }): ((k: Kernel) => Promise<string>) | undefined {
  if (opts.checkpointStore === undefined) return undefined;
  const store = path.resolve(opts.checkpointStore);
  const name = opts.checkpointName ?? opts.name;
  return async (k) => {
    const { checkpointKernel } = await import('../snapshots/checkpoint.js');
    // Compressed unless --no-checkpoint-compress (commander sets false), as `checkpoint`.
    const r = await checkpointKernel(k, store, { leaveRunning: true, name, compress: opts.checkpointCompress !== false });
    noteCheckpointed();
    return `snapvisor: checkpoint ${name ? name + ' ' : ''}taken at the guest's request: ${r.id}`;
  };
}

/** The platform named on the command line, or undefined after printing a one-line error (unknown name). */
function platformOf(name: string | undefined): Platform | undefined {
  try {
    return createPlatform(name);
  } catch (e) {
    if (e instanceof UnknownPlatformError) { fail(e.message); return undefined; }
    throw e;
  }
}

/**
 * --inject SPEC [--seed N]: the fault injector's hook, after printing the seed on stderr (a
 * random one when --seed is not given), or a one-line error (exit 2) for a bad SPEC or seed.
 */
function faultHook(opts: RunOptions): { hook?: SyscallHook; error?: string } {
  if (opts.inject === undefined) return opts.seed === undefined ? {} : { error: '--seed needs --inject' };
  let rules;
  try {
    rules = parseInjectSpec(opts.inject);
  } catch (e) {
    if (e instanceof InjectSpecError) return { error: e.message };
    throw e;
  }
  if (opts.seed !== undefined && !/^\d+$/.test(opts.seed)) return { error: `--seed: '${opts.seed}' is not a number from 0 to 4294967295` };
  const seed = opts.seed !== undefined ? Number(opts.seed) : randomBytes(4).readUInt32LE(0);
  if (seed > 0xffffffff) return { error: `--seed: '${opts.seed}' is not a number from 0 to 4294967295` };
  fs.writeSync(2, `snapvisor: injecting faults (${opts.inject}) with seed ${seed}\n`);
  const injector = new FaultInjector(rules, seed, opts.strace
    ? (t, rule, d) => fs.writeSync(2, `[${t.tid}] injecting ${'result' in d ? rule.fault : `a short count (${d.value})`} into ${rule.syscall}\n`)
    : undefined);
  return { hook: injector.hook };
}

/** The shell's view of an exit: status, or 128+N for death by signal N. */
export function exitStatus(info: ExitInfo): number {
  return 'code' in info ? info.code : 128 + info.signal;
}

/**
 * Hold SIGTERM and SIGHUP that reach snapvisor before its sandbox runs (while `restore` rebuilds
 * it, or `run` builds it), with those held since the process started (cli/early-signals.ts):
 * Node's default would end snapvisor, and the guest with it, without the guest's handler running.
 * Returns the function that stops holding them and gives back those held, in order, for
 * runToEnd to deliver to init.
 */
function holdStopSignals(): () => NodeJS.Signals[] {
  const held: NodeJS.Signals[] = [];
  const hold = (sig: NodeJS.Signals) => { held.push(sig); };
  process.on('SIGTERM', hold);
  process.on('SIGHUP', hold);
  held.push(...takeHeldSignals());
  return () => {
    process.off('SIGTERM', hold);
    process.off('SIGHUP', hold);
    return held.splice(0);
  };
}

/**
 * Run a kernel to its end, serving the control socket when named. `held`: the signals held
 * since the command started (holdStopSignals), delivered to init once it can receive them.
 */
async function runToEnd(kernel: Kernel, root: string | undefined, name: string | undefined, events?: { file: string; types?: string }, held?: () => NodeJS.Signals[]): Promise<number> {
  let control;
  let eventsOut: { close(): void } | undefined;
  let eventsFd: number | undefined;
  try {
    control = name ? await serveControl(root, name, kernel) : undefined;
    if (events) {
      let fd: number;
      try { fd = eventsFd = fs.openSync(events.file, 'w'); } catch (e) { throw new Error(`--events: ${errorLine(e)}`); }
      eventsOut = streamEvents(kernel, events.types, (s) => fs.writeSync(fd, s));
    }
  } catch (e) {
    await control?.close();
    kernel.destroy();
    fail(errorLine(e));
    return 125;
  }
  // SIGTERM/SIGHUP to snapvisor go to the sandbox's init, as a container runtime forwards them
  // (the guest may clean up; by default it dies of it). `snapvisor kill` is the SIGKILL.
  const stop = (sig: NodeJS.Signals) => kernel.signals.send(1, os.constants.signals[sig], { signo: os.constants.signals[sig], code: 0 });
  // Keyboard signals from the caller's terminal (^C, ^\, ^Z) and window changes reach the
  // snapvisor process; they belong to the guest's foreground process group.
  const forward = Object.fromEntries((['SIGINT', 'SIGQUIT', 'SIGTSTP', 'SIGWINCH'] as const).map((name) => {
    const handler = () => kernel.signalForegroundGroup(os.constants.signals[name]);
    process.on(name, handler);
    return [name, handler];
  }));
  process.on('SIGTERM', stop);
  process.on('SIGHUP', stop);
  for (const sig of held?.() ?? []) stop(sig);
  const info = await kernel.run();
  process.off('SIGTERM', stop);
  process.off('SIGHUP', stop);
  for (const [name, handler] of Object.entries(forward)) process.off(name, handler);
  kernel.events.flush();
  eventsOut?.close();
  if (eventsFd !== undefined) fs.closeSync(eventsFd);
  await control?.close();
  kernel.destroy();
  const away = control?.checkpointedAway();
  if (away) {
    // The guest was SIGKILLed once its checkpoint was written (exit 137, as a runc container that
    // CRIU dumped without --leave-running): say why, and how to go on.
    const store = away.store === defaultStore() ? '' : ` --store ${away.store}`;
    fs.writeSync(2, `snapvisor: sandbox ${name} was checkpointed and stopped: ${away.id} (\`snapvisor restore ${away.id}${store}\` continues it)\n`);
  }
  return exitStatus(info);
}

/**
 * The guest's starting directory when --cwd is not given: the caller's when `rootfs` is the host's
 * own root (the same path names the same directory inside), else undefined (start in `/`). The
 * caller's directory may be missing inside (deleted, or under /proc or /dev, which the sandbox
 * shows its own): the sandbox then starts in `/`.
 */
function defaultCwd(rootfs: string): string | undefined {
  if (path.resolve(rootfs) !== '/') return undefined;
  try { return process.cwd(); } catch { return undefined; }
}

/**
 * Why `run --cpu-features SET` can't be honoured, or undefined for `host` (the default). Showing
 * a guest fewer features than the CPU has needs `cpuid` to trap (CPUID faulting), and then an
 * emulation of the instruction, which snapvisor does not have yet: a list the guest could ignore
 * would be recorded in checkpoints as a promise the guest never made.
 */
function cpuFeaturesError(set: string | undefined): string | undefined {
  if (set === undefined || set === 'host') return undefined;
  const why = hostHasCpuidFaulting()
    ? 'snapvisor does not emulate cpuid yet'
    : 'this host\'s CPU cannot make cpuid trap (no cpuid_fault in /proc/cpuinfo), so the guest would see every host feature anyway';
  return `--cpu-features ${set}: only "host" is possible: ${why}`;
}

/**
 * What is wrong with the directories a sandbox will write to, found before it starts (after, it
 * would be a line once the guest ran): the state directory of a named sandbox (--root) and its
 * control socket's path length, and --checkpoint-store. Undefined when both are directories (or
 * do not exist yet: they are made).
 */
function directoriesProblem(root: string | undefined, opts: { name?: string; checkpointStore?: string }): string | undefined {
  return (opts.name !== undefined ? dirProblem('state directory', stateDir(root)) ?? socketPathProblem(path.join(stateDir(root), `${opts.name}.sock`)) : undefined)
    ?? (opts.checkpointStore !== undefined ? dirProblem('checkpoint store (--checkpoint-store)', path.resolve(opts.checkpointStore)) : undefined);
}

/** --volume and --tmpfs mounts, parents before what is mounted inside them (by the depth of the guest path, as Docker sorts them). */
const mountOrder = (specs: MountSpec[]): MountSpec[] => specs.map((s, i) => ({ s, i, d: s.guest.split('/').filter(Boolean).length })).sort((a, b) => a.d - b.d || a.i - b.i).map((x) => x.s);

export async function runCommand(root: string | undefined, prog: string, args: string[], opts: RunOptions): Promise<number> {
  const held = holdStopSignals();
  try {
    return await runSandbox(root, prog, args, opts, held);
  } finally {
    held();
  }
}

async function runSandbox(root: string | undefined, prog: string, args: string[], opts: RunOptions, held: () => NodeJS.Signals[]): Promise<number> {
  const env = [
    ...(opts.clearEnv ? [] : Object.entries(process.env).filter(([k]) => !(opts.env ?? []).some((e) => e.startsWith(k + '='))).map(([k, v]) => `${k}=${v}`)),
    ...(opts.env ?? []),
  ];
  const platform = platformOf(opts.platform);
  if (!platform) return 2;
  const faults = faultHook(opts);
  if (faults.error) { fail(faults.error); return 2; }
  const cpuError = cpuFeaturesError(opts.cpuFeatures);
  if (cpuError) { fail(cpuError); return 2; }
  if (opts.network === 'host' && opts.publish?.length) {
    fail('--publish forwards into the sandbox\'s own network: with --network=host the guest\'s listeners are host sockets already (reach GUESTPORT on the host)');
    return 2;
  }
  const dirs = directoriesProblem(root, opts);
  if (dirs) { fail(dirs); return 125; }
  const cwd = opts.cwd ?? defaultCwd(opts.rootfs);
  let kernel: Kernel;
  try {
    kernel = createSandbox({ rootfs: opts.rootfs, cwd: cwd ?? '/', cwdOrRoot: opts.cwd === undefined, argv: [prog, ...args], env, strace: opts.strace, platform, user: opts.user, diskLimit: opts.disk, memoryLimit: opts.memory, syscallHook: faults.hook, checkpointRequest: guestCheckpoints(opts), publish: opts.publish, tcpCloseOnCheckpoint: opts.tcpCloseOnCheckpoint, network: opts.network, mounts: mountOrder([...(opts.volume ?? []), ...(opts.tmpfs ?? [])]) });
  } catch (e) {
    if (e instanceof ExecError) {
      fail(e.message);
      return e.errno === E.ENOENT ? 127 : 126;
    }
    fail((e as Error).message);
    return 125;
  }
  if (!(await publishPorts(kernel))) return 125;
  return runToEnd(kernel, root, opts.name, opts.events ? { file: opts.events, types: opts.eventTypes } : undefined, held);
}

/** Open the sandbox's published ports (config.publish); false, after one line and ending the sandbox, if one cannot be. */
async function publishPorts(kernel: Kernel): Promise<boolean> {
  const specs = kernel.state.config.publish;
  if (!specs?.length) return true;
  try {
    await startPublishing(kernel, specs);
    return true;
  } catch (e) {
    fail((e as Error).message);
    kernel.destroy();
    return false;
  }
}

/** `restore`'s options; `onFirstOutput`: called (once, on a later turn of the event loop) after the guest first writes to a host fd. */
export type RestoreOptions = { store?: string; name?: string; strace?: boolean; platform?: string; checkpointStore?: string; checkpointName?: string; checkpointCompress?: boolean; acceptChangedVolumes?: boolean; onFirstOutput?: () => void };

export async function restoreCommand(root: string | undefined, id: string, opts: RestoreOptions): Promise<number> {
  const held = holdStopSignals();
  try {
    return await restoreSandbox(root, id, opts, held);
  } finally {
    held();
  }
}

async function restoreSandbox(root: string | undefined, id: string, opts: RestoreOptions, held: () => NodeJS.Signals[]): Promise<number> {
  const restored = await restoreForRun(root, id, opts);
  if (typeof restored === 'number') return restored;
  return restored.finalStatus(await runToEnd(restored.kernel, root, opts.name, undefined, held));
}

/**
 * The restore half of `snapvisor restore ID` (everything before the guest runs): the platform,
 * the id and directories checked, restoreKernel (CPU features, changed host files, the page
 * checks, a new generation and randomness), the published ports opened. Resolves with the kernel
 * ready to `run()` and `finalStatus`, which maps the guest's exit status to the command's (125 if
 * a page failed its background check or could not be filled meanwhile: the kernel logged the
 * line); or with the command's status (2, 125) after one line on fd 2. Also used by a warm
 * any-pool's restorer (cli/restorer.ts), which runs the kernel for a take.
 */
export async function restoreForRun(root: string | undefined, id: string, opts: RestoreOptions): Promise<{ kernel: Kernel; finalStatus(status: number): number } | number> {
  const trace = restoreTrace();
  trace?.('command');
  const platform = platformOf(opts.platform);
  trace?.('platform (koffi loaded)');
  if (!platform) return 2;
  const badId = checkpointIdProblem(id);
  if (badId) { fail(badId); return 2; }
  const dirs = storeDirProblem(opts.store ?? defaultStore()) ?? directoriesProblem(root, opts);
  if (dirs) { fail(dirs); return 125; }
  // The store (LevelDB, cbor-x) is loaded only by the commands that use it: `run` starts faster.
  const { restoreKernel } = await import('../snapshots/checkpoint.js');
  const { SnapshotError } = await import('../snapshots/store.js');
  trace?.('store modules evaluated');
  let restored;
  try {
    restored = await restoreKernel(opts.store ?? defaultStore(), id, { strace: opts.strace, platform, checkpointRequest: guestCheckpoints(opts), acceptChangedVolumes: opts.acceptChangedVolumes, workingSet: true, onFirstOutput: opts.onFirstOutput });
  } catch (e) {
    fail(e instanceof SnapshotError ? e.message : `restore failed: ${(e as Error).message}`);
    return 125;
  }
  const kernel = restored.kernel;
  if (!(await publishPorts(kernel))) return 125;
  // A page that fails its background check stops the sandbox (the kernel logs the line): snapvisor's failure.
  let corrupt: string | undefined;
  void restored.verified.then((bad) => { corrupt = bad; });
  // A page a compressed checkpoint's cache could not be filled with stopped it too (the kernel logged the line).
  return { kernel, finalStatus: (status) => corrupt !== undefined || kernel.pageSourceFailure !== undefined ? 125 : status };
}
