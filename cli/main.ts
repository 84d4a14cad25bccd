/**
 * The `snapvisor` command (docs/cli.md): run, checkpoint, restore, checkpoints, inspect, delete,
 * demo, syscalls, and the OCI runtime's command set with runc's flag names (create, start,
 * state, kill, delete, list, ps, exec, pause, resume, update, events, spec, features;
 * cli/oci/). Errors are one line on stderr (and, with --log, runc's JSON error line) with
 * the exit status a shell would give.
 */
import { holdEarlySignals, releaseHeldSignals } from './early-signals.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PLATFORM, PLATFORM_DESCRIPTIONS as PLATFORMS } from '../platforms/catalog.js';
// Only what every command needs is loaded at start-up: the kernel (run, restore), the store
// and the syscall table are imported by the commands that use them, so `checkpoint`,
// `checkpoints` and `--help` start without parsing the kernel.
import { type ControlResponse, checkName, controlSocket, defaultStore, fail, request, streamRemote } from './control.js';
import { isStarting, markStarting, whenStarted } from './control-client.js';
import { byteSize } from './sizes.js';
import { checkpointOutput, interruptOnSigint } from './checkpoint-client.js';
import { controlSocketError } from './control-client.js';
import { configureLog } from './oci/log.js';
import * as oci from './oci/commands.js';
import { type PublishSpec, parsePublish } from './publish-spec.js';
import { parseTmpfsSpec, parseVolumeSpec } from './mount-specs.js';
import { UsageError, checkpointIdProblem, errorLine, storeDirProblem } from './host-errors.js';
import type { MountSpec } from '../src/sandbox/mounts.js';

const program = new Command();
program
  .name('snapvisor')
  .description('Run Linux programs in a TypeScript application kernel, and checkpoint/restore them')
  .option('--root <dir>', 'state directory for named sandboxes and OCI containers (default $XDG_RUNTIME_DIR/snapvisor or /run/snapvisor)')
  .option('--log <file>', 'append errors (and warnings, debug lines) to FILE, as runc does')
  .option('--log-format <format>', 'log line format: text or json (runc\'s {"level","msg","time"})', 'text')
  .option('--debug', 'also log debug lines')
  .option('--systemd-cgroup', 'accepted for runc compatibility (snapvisor makes no cgroups)')
  .option('--rootless <value>', 'accepted for runc compatibility')
  .option('--criu <path>', 'accepted for runc compatibility (checkpoints are snapvisor\'s own)')
  .version('snapvisor version 0.1.0\nspec: 1.0.2', '-v, --version', 'print the version')
  .addHelpText('after', `
Examples:
  snapvisor run -- /usr/bin/python3 -c 'print(1)'
  snapvisor --root /run/sv create --bundle ./bundle --pid-file pid c1 && snapvisor --root /run/sv start c1
  ctr run --runc-binary $(command -v snapvisor) docker.io/library/busybox:latest c1 echo hi`)
  .hook('preAction', () => {
    const g = program.opts();
    configureLog({ file: g.log, format: g.logFormat, debug: !!g.debug });
  })
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ outputError: (str) => fail(`${str.replace(/^error: /, '').trim()} (see snapvisor --help)`) });

const collect = (v: string, prev: string[] = []) => [...prev, v];

/**
 * A usage error of a subcommand names that command's help (`… (see snapvisor pool serve --help)`),
 * not the top level's: commander gives every command the program's output settings.
 */
function pointUsageErrorsAtTheirHelp(cmd: Command, path: string): void {
  for (const c of cmd.commands) {
    const at = `${path} ${c.name()}`;
    c.configureOutput({ outputError: (str) => fail(`${str.replace(/^error: /, '').trim()} (see ${at} --help)`) });
    pointUsageErrorsAtTheirHelp(c, at);
  }
}

/**
 * runc's flag parser (urfave/cli) takes long flags with one dash too, and engines use that
 * (go-runc passes `-no-subreaper`): rewrite `-name`/`-name=v` to `--name` for runc's long
 * flags, up to a `--`, except in `run`'s program arguments.
 */
function runcArgv(argv: string[]): string[] {
  const LONG = new Set(['no-subreaper', 'no-pivot', 'no-new-keyring', 'detach', 'bundle', 'pid-file', 'console-socket', 'image-path', 'work-path',
    'leave-running', 'tcp-established', 'ext-unix-sk', 'shell-job', 'file-locks', 'empty-ns', 'auto-dedup', 'lazy-pages', 'status-fd',
    'manage-cgroups-mode', 'parent-path', 'pre-dump', 'page-server', 'force', 'all', 'format', 'root', 'log', 'log-format', 'debug',
    'systemd-cgroup', 'criu', 'rootless', 'process', 'preserve-fds', 'keep', 'stats', 'interval', 'resources', 'quiet', 'tcp-skip-in-flight',
    'link-remap', 'lsm-profile', 'lsm-mount-context', 'pids-limit', 'memory']);
  const out = argv.slice(0, 2);
  let cmdSeen = false, passthrough = false;
  for (const a of argv.slice(2)) {
    const m = /^-([a-z][a-z-]+)(=.*)?$/.exec(a);
    if (!passthrough && m && LONG.has(m[1])) { out.push('-' + a); continue; }
    if (a === '--') passthrough = true;
    if (!cmdSeen && !a.startsWith('-')) { cmdSeen = true; if (a === 'run') passthrough = true; }
    out.push(a);
  }
  return out;
}
/** An action whose errors become one `snapvisor: …` line and exit status 1 (2 for a UsageError). */
const guarded = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
  try { await fn(...args); } catch (e) { fail(errorLine(e)); process.exitCode = e instanceof UsageError ? 2 : 1; }
};
/** A checkpoint id argument (cli/host-errors.ts checkpointIdProblem), else a UsageError (status 2). */
const checkIdArg = (id: string): void => {
  const problem = checkpointIdProblem(id);
  if (problem) throw new UsageError(problem);
};
/** The store DIR (--store, else the default) a command reads, after storeDirProblem's checks (an Error naming what is wrong). */
const storeArg = (dir: string | undefined): string => {
  const store = dir ?? defaultStore();
  const problem = storeDirProblem(store);
  if (problem) throw new Error(problem);
  return store;
};
/** Sizes in the listings: B, KiB, MiB… (a 28 KiB incremental checkpoint showed as `0.0 MiB`). */
const mib = byteSize;
/** --publish HOSTPORT:GUESTPORT (repeatable). */
const collectPublish = (v: string, prev: PublishSpec[] = []): PublishSpec[] => {
  try { return [...prev, parsePublish(v)]; } catch (e) { throw new InvalidArgumentError((e as Error).message); }
};
/** --volume HOST:GUEST[:ro] and --tmpfs GUEST[:OPTIONS] (repeatable). */
const collectVolume = (v: string, prev: MountSpec[] = []): MountSpec[] => {
  try { return [...prev, parseVolumeSpec(v)]; } catch (e) { throw new InvalidArgumentError((e as Error).message); }
};
const collectTmpfs = (v: string, prev: MountSpec[] = []): MountSpec[] => {
  try { return [...prev, parseTmpfsSpec(v)]; } catch (e) { throw new InvalidArgumentError((e as Error).message); }
};
/** --disk/--memory SIZE: bytes, with an optional K, M, G or T suffix (powers of 1024). */
const parseSize = (v: string) => {
  const m = /^(\d+(?:\.\d+)?)([KMGT]i?B?)?$/i.exec(v);
  if (!m) throw new InvalidArgumentError('expected a size like 512M or 2G');
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[(m[2] ?? '').charAt(0).toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 65536) throw new InvalidArgumentError('at least 64K');
  return n;
};
/** --user UID[:GID] (numeric; GID defaults to UID). */
const parseUser = (v: string) => {
  const m = /^(\d+)(?::(\d+))?$/.exec(v);
  if (!m || Number(m[1]) > 0xfffffffe || Number(m[2] ?? m[1]) > 0xfffffffe) throw new InvalidArgumentError('expected UID or UID:GID (numbers)');
  return { uid: Number(m[1]), gid: Number(m[2] ?? m[1]) };
};
/** --timeout SECONDS (a positive number) as ms. */
const parseTimeout = (v: string): number => {
  const s = Number(v);
  if (!(s > 0) || !Number.isFinite(s)) throw new InvalidArgumentError('expected a positive number of seconds');
  return Math.round(s * 1000);
};

program
  .command('run')
  .description('run PROGRAM ARGS… in a new sandbox')
  .passThroughOptions()
  .option('--rootfs <dir>', 'host directory shown read-only as the sandbox root', '/')
  .option('--cwd <dir>', 'working directory inside the sandbox (default: the caller\'s when the root is the host\'s own /, else /)')
  .addOption(new Option('--env <K=V>', 'environment variable (repeatable; added to the caller\'s environment)').argParser(collect))
  .option('--clear-env', 'start from an empty environment instead of the caller\'s')
  .option('--strace', 'print each syscall on stderr')
  .option('--name <name>', 'register the sandbox under NAME so it can be checkpointed')
  .option('--platform <name>', `platform that runs guest code (${Object.keys(PLATFORMS).join(', ')})`, DEFAULT_PLATFORM)
  .addOption(new Option('--user <uid[:gid]>', 'run as this user and group inside the sandbox, unprivileged (default: the caller\'s ids; uid 0 holds every capability)').argParser(parseUser))
  .addOption(new Option('--disk <size>', 'most file data the sandbox may write (e.g. 512M, 2G); writes past it fail with ENOSPC (default: no limit but the memory file)').argParser(parseSize))
  .addOption(new Option('--memory <size>', 'most memory the sandbox may use (e.g. 512M, 2G): guest memory it touched, file data in /tmp and the upper layer, pipe and socket buffers; past it the sandbox\'s OOM killer ends its biggest process (default: half the host\'s memory)').argParser(parseSize))
  .addOption(new Option('-p, --publish <hostport:guestport[/udp]>', 'forward connections to 127.0.0.1:HOSTPORT on the host to the guest\'s TCP listener on GUESTPORT (repeatable; e.g. 8080:80); HOSTPORT:GUESTPORT/udp forwards UDP datagrams both ways, per host peer').argParser(collectPublish))
  .addOption(new Option('--network <mode>', 'the guest\'s TCP and UDP network: sandbox (its own loopback network, nothing outside) or host (sockets of the host\'s network namespace: reach and serve the host and beyond; DNS as the host resolves); unix sockets are the sandbox\'s either way').choices(['sandbox', 'host']).default('sandbox'))
  .option('--tcp-close-on-checkpoint', 'let checkpoints go ahead while connections through --publish or host sockets (--network=host) are open; a restore closes them (the guest sees its peer close or reset) and opens host listeners again')
  .addOption(new Option('-v, --volume <host:guest[:ro]>', 'bind the host directory or file HOST at GUEST in the sandbox (repeatable); writes reach the host unless :ro (then EROFS), beneath a handle of HOST, never following a host symlink; checkpoints record its identity and a restore refuses a changed one').argParser(collectVolume))
  .addOption(new Option('--tmpfs <guest[:options]>', 'mount a new tmpfs at GUEST (repeatable); OPTIONS as mount -o: size=64m,mode=1777,uid=N,gid=N,ro,noexec…; its files are saved in checkpoints').argParser(collectTmpfs))
  .option('--cpu-features <set>', 'CPU features the guest may see: host (all of this CPU\'s; recorded in checkpoints, and a restore on a host lacking any of them is refused, naming them); a smaller set needs CPUID faulting, not available yet', 'host')
  .option('--inject <spec>', 'make syscalls fail: SYSCALL:FAULT:PROBABILITY,… (FAULT: EINTR, EAGAIN, ENOSPC, ENOMEM, EIO, short); see docs/cli.md')
  .option('--seed <n>', 'seed of --inject (default: random; printed on stderr)')
  .option('--checkpoint-store <dir>', 'where a checkpoint the guest asks for (a write to /proc/snapvisor/checkpoint) goes; without it such writes fail with EOPNOTSUPP')
  .option('--checkpoint-name <name>', 'name of the checkpoints the guest asks for (default: --name)')
  .option('--checkpoint-compress', 'store the checkpoints the guest asks for compressed (the default, as checkpoint)')
  .option('--no-checkpoint-compress', 'store the checkpoints the guest asks for as flat page files (as checkpoint --no-compress)')
  .option('-b, --bundle <dir>', 'OCI: run the bundle DIR as container PROGRAM (an id), as runc run does')
  .option('-d, --detach', 'OCI: detach from the container\'s process')
  .option('--pid-file <file>', 'OCI: write the container process\'s pid to FILE')
  .option('--console-socket <path>', 'OCI: send the pty master of a terminal container to this unix socket')
  .option('--keep', 'OCI: keep the container after it exits')
  .option('--no-subreaper', 'OCI: accepted for runc compatibility')
  .option('--no-pivot', 'OCI: accepted for runc compatibility')
  .option('--no-new-keyring', 'OCI: accepted for runc compatibility')
  .option('--preserve-fds <n>', 'OCI: accepted for runc compatibility (only fds 0-2 reach the guest)')
  .option('--events <file>', 'write the sandbox\'s events to FILE as JSON lines')
  .option('--event-types <patterns>', 'with --events: only these types (e.g. task.*,file.*)')
  .argument('<program>', 'program to run (with --bundle: the container id)')
  .argument('[args...]', 'its arguments')
  .addHelpText('after', `
Examples:
  snapvisor run -- /bin/ls -l
  snapvisor run --network=host -- /usr/bin/python3 -m http.server 8000
  snapvisor run --publish 8080:80 --publish 5353:53/udp -- /usr/sbin/mydaemon
  snapvisor run --name counter --rootfs /srv/rootfs -- /bin/sh -c 'i=0; while :; do echo $i; i=$((i+1)); sleep 1; done'
  snapvisor run --volume ./data:/data --volume /etc/hosts:/etc/hosts:ro --tmpfs /scratch:size=64m -- /bin/sh -c 'df /scratch; ls /data'
  snapvisor run --bundle ./bundle c1`)
  .action(async (prog: string, args: string[], opts) => {
    // Before the kernel is loaded: `events NAME` started meanwhile waits for this sandbox (cli/control-client.ts).
    if (opts.name !== undefined) markStarting(program.opts().root, opts.name);
    const { runCommand } = await import('./run.js');
    if (opts.bundle || opts.detach || opts.pidFile || opts.consoleSocket) {
      if (args.length) throw new Error('with --bundle, run takes only the container id');
      releaseHeldSignals();
      process.exitCode = await oci.launch(program.opts().root, prog, 'run', { bundle: opts.bundle, pidFile: opts.pidFile, consoleSocket: opts.consoleSocket, detach: !!opts.detach, keep: !!opts.keep });
      return;
    }
    process.exitCode = await runCommand(program.opts().root, prog, args, opts);
  });

program
  .command('checkpoint')
  .description('checkpoint the running sandbox or container NAME into the store (or --image-path); prints the checkpoint id last')
  .argument('<name>', 'name given to run --name, or an OCI container id')
  .option('--store <dir>', 'checkpoint store (default $SNAPVISOR_STORE or ~/.local/share/snapvisor/checkpoints)')
  .option('--leave-running', 'let the sandbox continue after the checkpoint')
  .option('--compress', 'store the pages compressed (the default; format 6: ~50x smaller for a warmed-up heap, and pages that are bytes of host files named, not stored); restores fill an uncompressed cache of them piece by piece as the guest touches them, which later restores and clones map')
  .option('--no-compress', 'store the pages as a flat page file (format 2; 3 when incremental): ~50x larger, written more slowly, mapped by restores as it is (no restore cache)')
  .option('--image-path <dir>', 'OCI: write the checkpoint into DIR (as runc checkpoint; restore --image-path reads it)')
  .option('--work-path <dir>', 'OCI: directory for the checkpoint\'s log (dump.log)')
  .option('--tcp-established', 'accepted for runc compatibility')
  .option('--ext-unix-sk', 'accepted for runc compatibility')
  .option('--shell-job', 'accepted for runc compatibility')
  .option('--file-locks', 'accepted for runc compatibility')
  .option('--pre-dump', 'accepted for runc compatibility')
  .option('--lazy-pages', 'accepted for runc compatibility')
  .option('--auto-dedup', 'accepted for runc compatibility')
  .option('--tcp-skip-in-flight', 'accepted for runc compatibility')
  .option('--link-remap', 'accepted for runc compatibility')
  .option('--parent-path <dir>', 'accepted for runc compatibility')
  .option('--page-server <addr>', 'accepted for runc compatibility')
  .option('--status-fd <fd>', 'accepted for runc compatibility')
  .option('--manage-cgroups-mode <mode>', 'accepted for runc compatibility')
  .addOption(new Option('--empty-ns <ns>', 'accepted for runc compatibility').argParser(collect))
  .option('--timeout <seconds>', 'give up waiting for the sandbox after this long (default 300)', parseTimeout)
  .addHelpText('after', `
Examples:
  snapvisor checkpoint counter --store ./store
  snapvisor checkpoint --image-path /tmp/ck --leave-running c1`)
  .action(guarded(async (name: string, opts) => {
    if (opts.imagePath) {
      const line = await oci.checkpointToImage(program.opts().root, name, { imagePath: opts.imagePath, workPath: opts.workPath, leaveRunning: !!opts.leaveRunning });
      if (program.opts().debug) process.stderr.write(line + '\n');
      return;
    }
    // A store path that is a file, or through one, is named as the other commands name it (a missing store is made).
    const store = storeArg(opts.store);
    const { progressBar } = await import('./progress.js');
    const bar = progressBar('checkpoint');
    const sock = await whenStarted(program.opts().root, name);
    // ^C: the sandbox is asked to stop the checkpoint; what it answers is printed (cli/checkpoint-client.ts).
    const interrupt = interruptOnSigint();
    const r = await request(sock, { op: 'checkpoint', store: (await import('node:path')).resolve(store), leaveRunning: !!opts.leaveRunning, compress: opts.compress !== false, progress: !!process.stderr.isTTY }, opts.timeout, bar.update, interrupt)
      .catch((e: Error) => { if (interrupt.aborted) return { ok: false, interrupted: true, error: 'interrupted' } as ControlResponse; throw e; })
      .finally(() => bar.stop());
    const out = checkpointOutput(name, r);
    if (out.fd === 1) process.stdout.write(out.text); else fail(out.text.replace(/^snapvisor: /, '').trimEnd());
    process.exitCode = out.status;
  }));

program
  .command('restore')
  .description('restore checkpoint ID and run it to the end (stdio attached to this command); OCI: restore container ID from --image-path')
  .argument('<id>', 'checkpoint id or unique prefix (OCI: the container id)')
  .option('--store <dir>', 'checkpoint store')
  .option('--name <name>', 'register the restored sandbox under NAME')
  .option('--platform <name>', `platform that runs guest code (${Object.keys(PLATFORMS).join(', ')})`, DEFAULT_PLATFORM)
  .option('--strace', 'print each syscall on stderr')
  .option('--checkpoint-store <dir>', 'where a checkpoint the restored guest asks for goes (as run --checkpoint-store)')
  .option('--checkpoint-name <name>', 'name of the checkpoints the restored guest asks for (default: --name)')
  .option('--checkpoint-compress', 'store the checkpoints the restored guest asks for compressed (the default, as checkpoint)')
  .option('--no-checkpoint-compress', 'store the checkpoints the restored guest asks for as flat page files (as checkpoint --no-compress)')
  .option('--accept-changed-volumes', 'restore although a volume (run --volume) changed on the host since the checkpoint; without it such a restore is refused, naming the volume')
  .option('--no-pool', 'restore in this process even when a warm pool of the checkpoint serves (by default `restore ID [--store DIR]` takes a ready clone of such a pool: docs/pools.md)')
  .option('--image-path <dir>', 'OCI: the directory checkpoint --image-path wrote')
  .option('-b, --bundle <dir>', 'OCI: the container\'s bundle')
  .option('-d, --detach', 'OCI: detach from the container\'s process')
  .option('--pid-file <file>', 'OCI: write the container process\'s pid to FILE')
  .option('--console-socket <path>', 'OCI: send the pty master of a terminal container to this unix socket')
  .option('--work-path <dir>', 'accepted for runc compatibility')
  .option('--tcp-established', 'accepted for runc compatibility')
  .option('--ext-unix-sk', 'accepted for runc compatibility')
  .option('--shell-job', 'accepted for runc compatibility')
  .option('--file-locks', 'accepted for runc compatibility')
  .option('--no-subreaper', 'accepted for runc compatibility')
  .option('--no-pivot', 'accepted for runc compatibility')
  .option('--auto-dedup', 'accepted for runc compatibility')
  .option('--lazy-pages', 'accepted for runc compatibility')
  .option('--tcp-skip-in-flight', 'accepted for runc compatibility')
  .option('--link-remap', 'accepted for runc compatibility')
  .option('--manage-cgroups-mode <mode>', 'accepted for runc compatibility')
  .option('--lsm-profile <p>', 'accepted for runc compatibility')
  .option('--lsm-mount-context <c>', 'accepted for runc compatibility')
  .addOption(new Option('--empty-ns <ns>', 'accepted for runc compatibility').argParser(collect))
  .addHelpText('after', `
Examples:
  snapvisor restore 3f2a9c --store ./store
  snapvisor restore --image-path /tmp/ck --bundle ./bundle --detach --pid-file pid c1`)
  .action(async (id: string, opts) => {
    if (opts.name !== undefined && !opts.imagePath && !opts.bundle) markStarting(program.opts().root, opts.name);
    const { restoreCommand } = await import('./run.js');
    if (opts.imagePath || opts.bundle) {
      releaseHeldSignals();
      try {
        process.exitCode = await oci.launch(program.opts().root, id, 'restore', { bundle: opts.bundle, imagePath: opts.imagePath, pidFile: opts.pidFile, consoleSocket: opts.consoleSocket, detach: !!opts.detach });
      } catch (e) { fail(errorLine(e)); process.exitCode = 1; }
      return;
    }
    process.exitCode = await restoreCommand(program.opts().root, id, opts);
  });

program
  .command('inspect')
  .description('show what checkpoint ID holds: processes, threads, open files, mappings, pipes, sockets, timers, host files, sizes')
  .argument('<id>', 'checkpoint id or unique prefix')
  .option('--store <dir>', 'checkpoint store')
  .option('--json', 'print stable JSON (docs/snapshot-format.md, "Inspect")')
  .addHelpText('after', `
Examples:
  snapvisor inspect 3f2a9c --store ./store
  snapvisor inspect 3f2a9c --store ./store --json | jq '.pipes'`)
  .action(guarded(async (id: string, opts) => {
    checkIdArg(id);
    const { inspectCheckpoint } = await import('../snapshots/inspect.js');
    const report = await inspectCheckpoint(storeArg(opts.store), id);
    if (opts.json) { process.stdout.write(JSON.stringify(report, null, 2) + '\n'); return; }
    const { renderInspect } = await import('./inspect.js');
    process.stdout.write(renderInspect(report));
  }));

const pool = program.command('pool').description('warm pools: clones of a checkpoint kept restored and paused, handed out on request (docs/pools.md)')
  .addHelpText('after', `
Examples:
  snapvisor pool serve --checkpoint 3f2a9c --store ./store --size 4 --listen /run/fn.sock
  echo '{"n": 3}' | snapvisor pool take /run/fn.sock`);
pool
  .command('serve')
  .description('keep --size clones of checkpoint --checkpoint restored and paused, and hand them out on the unix socket --listen; or, with --any, --size warm restorers that restore whichever checkpoint of the store a take names')
  .option('--checkpoint <id>', 'checkpoint id or unique prefix (required unless --any)')
  .option('--any', 'keep warm restorer processes (node started, restore code loaded, nothing restored) that restore the checkpoint each take names, in the store\'s STORE/pools/any.sock unless --listen (docs/pools.md, "Any-pools")')
  .option('--store <dir>', 'checkpoint store')
  .requiredOption('--size <n>', 'clones kept ready', (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('expected a whole number from 1 to 64');
    return n;
  })
  .option('--listen <socket>', 'path of the unix socket to serve on (required unless --any)')
  .option('--per-process <n>', 'clones restored together in one hosting process (they share its memory; default 20)', (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new InvalidArgumentError('expected a whole number from 1 to 64');
    return n;
  })
  .option('--no-probe', 'do not run one clone\'s guest at start (stdin at end of file, output discarded) to learn its working set')
  .addHelpText('after', `
Examples:
  snapvisor pool serve --checkpoint 3f2a9c --store ./store --size 4 --listen /run/fn.sock
  snapvisor pool serve --any --store ./store --size 2`)
  .action(async (opts) => {
    try {
      if (opts.any && opts.checkpoint !== undefined) throw new UsageError('--any and --checkpoint are exclusive (--any serves every checkpoint of the store)');
      if (!opts.any && opts.checkpoint === undefined) throw new UsageError('serve needs --checkpoint ID (a pool of clones of that checkpoint) or --any (restorers for any checkpoint of the store)');
      if (opts.any && opts.perProcess !== undefined) throw new UsageError('--per-process is for a checkpoint\'s pool (--checkpoint), not --any');
      if (!opts.any) {
        checkIdArg(opts.checkpoint);
        if (opts.listen === undefined) throw new UsageError('--checkpoint needs --listen SOCKET');
      }
      storeArg(opts.store);
    } catch (e) {
      fail(`pool: ${(e as Error).message}`);
      process.exit(e instanceof UsageError ? 2 : 1);
    }
    if (opts.any) {
      const { anyPoolServe } = await import('./restorer.js');
      process.exitCode = await anyPoolServe(opts);
      process.exit();
    }
    const { poolServe } = await import('./pool.js');
    process.exitCode = await poolServe(opts);
    process.exit();
  });
pool
  .command('take')
  .description('run a clone from the pool serving on SOCKET with this command\'s stdin, stdout and stderr; relay signals; exit with its status')
  .argument('<socket>', 'the pool\'s --listen socket')
  .option('--checkpoint <id>', 'the checkpoint to restore (an any-pool\'s take: id or unique prefix in its store; a checkpoint\'s pool serves only its own full id)')
  .addHelpText('after', `
Examples:
  echo '{"n": 3}' | snapvisor pool take /run/fn.sock`)
  .action(async (socket: string, opts: { checkpoint?: string }) => {
    const { poolTake } = await import('./pool-client.js');
    process.exitCode = await poolTake(socket, fail, opts.checkpoint);
  });

program
  .command('checkpoints')
  .description('list the checkpoints in a store, oldest first')
  .option('--store <dir>', 'checkpoint store')
  .option('--json', 'print JSON')
  .action(guarded(async (opts) => {
    const { surveyCheckpoints } = await import('../snapshots/store.js');
    const fs = await import('node:fs');
    const dir = storeArg(opts.store);
    // No store yet (nothing was ever checkpointed there): an empty list, not an error.
    const survey = fs.existsSync(dir) ? await surveyCheckpoints(dir) : { checkpoints: [], damaged: [] };
    const list = survey.checkpoints;
    // A damaged checkpoint hides no other: the sound ones are listed, then one line on stderr for
    // each damaged one, and status 1, as `store check` (which also reads every page) gives.
    const damaged = () => {
      for (const d of survey.damaged) fail(`${d.problem} (not listed)`);
      if (survey.damaged.length) process.exitCode = 1;
    };
    if (opts.json) { process.stdout.write(JSON.stringify(list, null, 1) + '\n'); damaged(); return; }
    // A deleted parent's pages stay as long as a child inherits them, but the parent is no longer listed: say so.
    const listed = new Set(list.map((c) => c.id));
    const damagedIds = new Set(survey.damaged.map((d) => d.id));
    const parentOf = (c: { parent?: string }): string => c.parent === undefined ? '' : listed.has(c.parent) ? c.parent : `${c.parent} (${damagedIds.has(c.parent) ? 'damaged' : 'deleted'})`;
    const rows = [['ID', 'CREATED', 'NAME', 'PARENT', 'PAGES', 'STORED', 'ON DISK'], ...list.map((c) => [c.id, new Date(c.createdMs).toISOString(), c.name ?? '', parentOf(c), String(c.pages), mib(c.storedPageBytes), c.packBytes === undefined ? mib(c.storedPageBytes) : mib(c.packBytes)])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
    damaged();
  }));

program
  .command('gc')
  .description('remove what no checkpoint of the store references: page files of deleted checkpoints no incremental checkpoint inherits from any more, and leftovers of interrupted writes')
  .option('--store <dir>', 'checkpoint store')
  .addHelpText('after', `
Example:
  snapvisor gc --store ./store`)
  .action(guarded(async (opts) => {
    const { gcStore } = await import('../snapshots/store.js');
    const r = await gcStore(storeArg(opts.store));
    process.stdout.write(`removed ${r.removedFiles} file${r.removedFiles === 1 ? '' : 's'}, ${mib(r.freedBytes)} freed\n`);
  }));

program
  .command('delete')
  .description('delete an OCI container (stopped, or any with --force), or a checkpoint (pages no other checkpoint uses are freed)')
  .argument('<id>', 'container id, or checkpoint id or unique prefix')
  .option('--store <dir>', 'checkpoint store')
  .option('-f, --force', 'OCI: kill a running container first; a checkpoint: delete it even while a warm pool serves it')
  .addHelpText('after', `
Examples:
  snapvisor delete --force c1
  snapvisor delete 3f2a9c --store ./store`)
  .action(guarded(async (id: string, opts) => {
    const root = program.opts().root;
    const checkpointLike = /^[0-9a-f]{4,16}$/.test(id);
    if (!opts.store && (oci.containerExists(root, id) || (opts.force && !checkpointLike))) return oci.deleteContainer(root, id, !!opts.force);
    if (!opts.store && !checkpointLike) throw new Error(`container ${id} does not exist`);
    // With --store ID can only be a checkpoint id.
    checkIdArg(id);
    const { deleteCheckpoint } = await import('../snapshots/store.js');
    try {
      const store = storeArg(opts.store);
      // A warm pool serving it (registered in the store) could no longer replace its clones:
      // refused without --force, as docker refuses to remove an image a container uses (docs/pools.md).
      const { poolsServing, restoreId } = await import('./pool-registry.js');
      const fullId = restoreId(store, id);
      const pools = fullId === undefined ? [] : poolsServing(store, fullId);
      const which = pools.map((p) => `${p.socket} (pid ${p.pid})`).join(', ');
      if (pools.length && !opts.force) throw new Error(`checkpoint ${fullId} is served by the warm pool on ${which}: stop it first, or delete with --force (the pool then stops refilling)`);
      process.stdout.write(`deleted checkpoint ${await deleteCheckpoint(store, id)}\n`);
      if (pools.length) fail(`the warm pool on ${which} served checkpoint ${fullId}: its clones ready still serve takes, but it cannot restore new ones`);
    } catch (e) {
      if (!opts.store && /not found|no checkpoint store/.test((e as Error).message)) throw new Error(`container or checkpoint ${id} does not exist`);
      throw e;
    }
  }));

/**
 * Where `export -o OUTPUT` writes: a temporary file beside OUTPUT, renamed onto it once complete
 * (`commit`), so a failed export leaves a file already at OUTPUT as it was (`abandon` removes the
 * temporary one and names OUTPUT in the error). Refuses (an Error) an OUTPUT that is a directory,
 * or one inside the store `storeDir`, whose own files it could replace.
 */
async function exportTarget(storeDir: string, output: string): Promise<{ tmp: string; commit<T>(r: T): T; abandon(e: unknown): never }> {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const out = path.resolve(output);
  if (fs.statSync(out, { throwIfNoEntry: false })?.isDirectory()) throw new Error(`cannot write ${output}: Is a directory`);
  const real = (p: string): string | undefined => { try { return fs.realpathSync(p); } catch { return undefined; } };
  const store = real(storeDir), outDir = real(path.dirname(out));
  if (store !== undefined && outDir !== undefined && (outDir === store || outDir.startsWith(store + path.sep))) {
    throw new Error(`cannot write ${output}: it is inside the checkpoint store ${storeDir}, whose files it could replace`);
  }
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.${process.pid}.tmp`);
  return {
    tmp,
    commit: (r) => { fs.renameSync(tmp, out); return r; },
    abandon: (e) => {
      fs.rmSync(tmp, { force: true });
      if (e instanceof Error) e.message = e.message.split(tmp).join(output);
      throw e;
    },
  };
}

program
  .command('export')
  .description('write checkpoint ID to one file (to move it to another store or host)')
  .argument('<id>', 'checkpoint id or unique prefix')
  .requiredOption('-o, --output <file>', 'file to write')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (id: string, opts) => {
    checkIdArg(id);
    const dir = storeArg(opts.store);
    const { exportCheckpoint } = await import('../snapshots/export.js');
    const { progressBar } = await import('./progress.js');
    const { tmp, commit, abandon } = await exportTarget(dir, opts.output);
    const bar = progressBar('export');
    const r = await exportCheckpoint(dir, id, tmp, bar.update).then(commit, abandon).finally(() => bar.stop());
    process.stdout.write(`exported ${r.id} to ${opts.output} (${mib(r.bytes)})\n`);
  }));

program
  .command('import')
  .description('add an exported checkpoint file to a store; prints the new checkpoint id last')
  .argument('<file>', 'file written by export')
  .option('--store <dir>', 'checkpoint store')
  .option('--no-compress', 'write a flat page file (format 2) instead of a compressed page pack')
  .action(guarded(async (file: string, opts) => {
    const { importCheckpoint } = await import('../snapshots/export.js');
    const { progressBar } = await import('./progress.js');
    const bar = progressBar('import');
    const r = await importCheckpoint(storeArg(opts.store), file, bar.update, { compress: opts.compress }).finally(() => bar.stop());
    process.stdout.write(`imported ${r.sourceId}: ${r.pages} pages (${r.newPages} new): ${r.id}\n`);
  }));

const store = program.command('store').description('maintain a checkpoint store');
store
  .command('check')
  .description('verify every record and page of every checkpoint in the store; one line per damaged checkpoint, exit 1 if any')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (opts) => {
    const { checkStore } = await import('../snapshots/store.js');
    const dir = storeArg(opts.store);
    const r = await checkStore(dir);
    for (const p of r.problems) fail(p);
    if (r.problems.length) { process.exitCode = 1; return; }
    process.stdout.write(`store ${dir}: ${r.ok.length} checkpoint${r.ok.length === 1 ? '' : 's'} verified, no damage found\n`);
  }));

/**
 * `pool` and `store` given no subcommand, or one they do not have: one line and status 2, as other
 * usage errors (commander would print the group's whole help on stderr for the first).
 */
for (const group of [pool, store]) {
  const names = group.commands.map((c) => c.name()).join(', ');
  // (An action turns commander's implicit `help [command]` off: it is asked for explicitly.)
  group.helpCommand(true).usage('[options] [command]').argument('[subcommand]').action((sub?: string) => {
    throw new UsageError(sub === undefined ? `${group.name()}: a subcommand is missing (${names}; see snapvisor ${group.name()} --help)` : `unknown command '${sub}' (see snapvisor ${group.name()} --help)`);
  });
}

program
  .command('kill')
  .description('send SIGNAL to an OCI container\'s init (default SIGTERM), or kill the run --name sandbox NAME (default SIGKILL)')
  .argument('<name>', 'container id or sandbox name')
  .argument('[signal]', 'signal number or name (TERM, SIGTERM, 15)')
  .option('-a, --all', 'OCI: send the signal to every process of the container')
  .option('--timeout <seconds>', 'give up waiting for the sandbox after this long (default 10)', parseTimeout)
  .addHelpText('after', `
Examples:
  snapvisor kill c1 KILL
  snapvisor kill counter`)
  .action(guarded(async (name: string, signal: string | undefined, opts) => {
    const root = program.opts().root;
    if (oci.containerExists(root, name)) return oci.killContainer(root, name, signal, !!opts.all);
    const sig = oci.parseSignal(signal ?? 'KILL');
    const r = await request(await whenStarted(root, name), sig === 9 ? { op: 'kill' } : { op: 'signal', signal: sig, all: !!opts.all }, opts.timeout);
    if (!r.ok) throw new Error((r as { error: string }).error);
  }));

program
  .command('create')
  .description('OCI: create container ID from a bundle; its process waits for start')
  .argument('<id>', 'container id')
  .option('-b, --bundle <dir>', 'bundle directory (config.json and the root filesystem)', '.')
  .option('--pid-file <file>', 'write the container process\'s pid to FILE (the engine\'s shim waits on it)')
  .option('--console-socket <path>', 'send the pty master of a terminal container to this unix socket (SCM_RIGHTS)')
  .option('--no-pivot', 'accepted for runc compatibility')
  .option('--no-new-keyring', 'accepted for runc compatibility')
  .option('--preserve-fds <n>', 'accepted for runc compatibility (only fds 0-2 reach the guest)')
  .addHelpText('after', `
Example:
  snapvisor create --bundle ./bundle --pid-file /run/c1.pid c1`)
  .action(guarded(async (id: string, opts) => {
    await oci.launch(program.opts().root, id, 'create', { bundle: opts.bundle, pidFile: opts.pidFile, consoleSocket: opts.consoleSocket, detach: true });
  }));

program
  .command('start')
  .description('OCI: start the process of created container ID')
  .argument('<id>', 'container id')
  .addHelpText('after', '\nExample:\n  snapvisor start c1')
  .action(guarded(async (id: string) => oci.startContainer(program.opts().root, id)));

program
  .command('state')
  .description('OCI: print the state of container ID (runtime-spec JSON)')
  .argument('<id>', 'container id')
  .addHelpText('after', '\nExample:\n  snapvisor state c1')
  .action(guarded(async (id: string) => { process.stdout.write(oci.containerState(program.opts().root, id)); }));

program
  .command('list')
  .description('list OCI containers and run --name sandboxes')
  .option('-f, --format <format>', 'table or json', 'table')
  .option('-q, --quiet', 'print ids only')
  .addHelpText('after', '\nExample:\n  snapvisor list --format json')
  .action(guarded(async (opts) => { process.stdout.write(oci.formatList(oci.listAll(program.opts().root), opts.format, !!opts.quiet)); }));

program
  .command('ps')
  .description('list the processes of an OCI container or run --name sandbox (json: host pids, as runc ps)')
  .argument('<name>', 'container id or sandbox name')
  .option('-f, --format <format>', 'table or json', 'table')
  .addHelpText('after', '\nExample:\n  snapvisor ps counter')
  .action(guarded(async (name: string, opts) => { process.stdout.write(await oci.psContainer(program.opts().root, name, opts.format)); }));

program
  .command('exec')
  .description('OCI: run a new process in running container ID')
  .argument('<id>', 'container id')
  .argument('[command...]', 'command and arguments (or --process)')
  .passThroughOptions()
  .option('-p, --process <file>', 'the process as an OCI process JSON file')
  .option('-d, --detach', 'detach from the process (its waiter\'s pid goes to --pid-file)')
  .option('--pid-file <file>', 'write the pid of the process the engine waits on to FILE')
  .option('--console-socket <path>', 'send the pty master of a terminal process to this unix socket')
  .option('-t, --tty', 'allocate a terminal')
  .option('--cwd <dir>', 'working directory in the container')
  .addOption(new Option('-e, --env <K=V>', 'environment variable (repeatable)').argParser(collect))
  .option('-u, --user <uid[:gid]>', 'user to run as')
  .addOption(new Option('-g, --additional-gids <gid>', 'supplementary group (repeatable)').argParser(collect))
  .option('--no-new-privs', 'accepted for runc compatibility')
  .addOption(new Option('-c, --cap <cap>', 'accepted for runc compatibility').argParser(collect))
  .option('--apparmor <profile>', 'accepted for runc compatibility')
  .option('--process-label <label>', 'accepted for runc compatibility')
  .option('--preserve-fds <n>', 'accepted for runc compatibility')
  .option('--ignore-paused', 'accepted for runc compatibility')
  .option('--cgroup <path>', 'accepted for runc compatibility')
  .addHelpText('after', `
Examples:
  snapvisor exec c1 ps
  snapvisor exec --detach --pid-file /run/e1.pid --process proc.json c1`)
  .action(async (id: string, cmd: string[], opts) => {
    try {
      process.exitCode = await oci.execContainer(program.opts().root, id, cmd, opts);
    } catch (e) { fail((e as Error).message); process.exitCode = 1; }
  });

for (const op of ['pause', 'resume'] as const) {
  program
    .command(op)
    .description(op === 'pause' ? 'OCI: freeze every process of container ID' : 'OCI: let the processes of paused container ID run again')
    .argument('<id>', 'container id')
    .addHelpText('after', `\nExample:\n  snapvisor ${op} c1`)
    .action(guarded(async (id: string) => oci.pauseContainer(program.opts().root, id, op)));
}

program
  .command('update')
  .description('OCI: change the resources of container ID (pids.limit and memory.limit are enforced; others are recorded)')
  .argument('<id>', 'container id')
  .option('-r, --resources <file>', 'linux.resources JSON from FILE, or - for stdin')
  .option('--pids-limit <n>', 'most processes and threads')
  .option('--memory <bytes>', 'the sandbox\'s memory limit in bytes (lowered below what is used: reclaim, then the OOM killer)')
  .addHelpText('after', '\nExample:\n  snapvisor update --pids-limit 64 c1')
  .action(guarded(async (id: string, opts) => oci.updateContainer(program.opts().root, id, opts)));

/**
 * How long `events NAME` waits for the control socket of NAME (ms): EVENTS_WAIT_MS in any case,
 * up to EVENTS_STARTING_WAIT_MS while a `run --name NAME` that is starting says so (markStarting).
 */
const EVENTS_WAIT_MS = 2000, EVENTS_STARTING_WAIT_MS = 60_000;

program
  .command('events')
  .description('stream the events of the running sandbox NAME as JSON lines until it ends; for an OCI container ID, its stats as JSON event lines (runc events)')
  .argument('<name>', 'name given to run --name, or an OCI container id')
  .option('--type <patterns>', 'only these event types, comma-separated, * as wildcard (e.g. task.*,file.*)')
  .option('--stats', 'OCI: print stats once and exit')
  .option('--interval <duration>', 'OCI: time between stats (5s, 500ms)', '5s')
  .addHelpText('after', '\nExamples:\n  snapvisor events --type \'task.*,file.*\' counter\n  snapvisor events --stats c1')
  .action(guarded(async (name: string, opts) => {
    const root = program.opts().root;
    if (opts.stats || (oci.containerExists(root, name) && !opts.type)) return oci.eventsContainer(root, name, opts);
    // A `run --name NAME &` started just before registers NAME only once its sandbox is built
    // (node's start-up, the program loaded: 0.1–0.5 s here, 3–4 s with the CPUs loaded), and a
    // sandbox of that name killed earlier may have left its socket behind until then: wait for it
    // a while, longer while such a run says it is starting (bounded either way).
    checkName(name);
    const t0 = Date.now();
    const waiting = () => Date.now() - t0 < EVENTS_WAIT_MS || (Date.now() - t0 < EVENTS_STARTING_WAIT_MS && isStarting(root, name));
    const pause = () => new Promise((r) => setTimeout(r, 50));
    for (;;) {
      let sock: string;
      try { sock = controlSocket(root, name); } catch (e) { if (!waiting()) throw e; await pause(); continue; }
      try {
        await streamRemote(sock, opts.type, (s) => process.stdout.write(s));
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if ((code === 'ECONNREFUSED' || code === 'ENOENT') && waiting()) { await pause(); continue; }
        throw new Error(controlSocketError(sock, e));
      }
    }
  }));

program
  .command('spec')
  .description('OCI: write a default config.json (sh on a terminal, root in ./rootfs)')
  .option('-b, --bundle <dir>', 'bundle directory (default: the current directory)')
  .option('--rootless', 'accepted for runc compatibility')
  .addHelpText('after', '\nExample:\n  snapvisor spec --bundle b   # then put the root filesystem in b/rootfs')
  .action(guarded(async (opts) => oci.writeSpec(opts.bundle)));

program
  .command('features')
  .description('OCI: print what this runtime implements (JSON)')
  .addHelpText('after', '\nExample:\n  snapvisor features')
  .action(guarded(async () => { process.stdout.write(oci.features()); }));

program
  .command('demo')
  .description('run a python3 counter, checkpoint it mid-way, kill it, restore it, and show it continuing')
  .option('--store <dir>', 'checkpoint store (default: a temporary directory)')
  .action(async (opts) => { process.exitCode = await (await import('./demo.js')).demoCommand(opts); });

program
  .command('syscalls')
  .description('print the syscall table: number, name, support level, note')
  .option('--markdown', 'as the Markdown table of docs/syscalls.md')
  .action(async (opts) => (await import('./syscalls.js')).syscallsCommand(opts));

/**
 * Run the command line `argv` (process.argv's shape: node, script, arguments…). The command
 * definitions above are made when this module is evaluated, which may be long before this call:
 * the bin's launcher (scripts/bundle.mjs) runs it from a Node startup snapshot in which this
 * module was evaluated at build time. So nothing above may read the process's arguments,
 * environment or stdio; that starts here.
 */
export async function main(argv: string[]): Promise<void> {
  // First: SIGTERM/SIGHUP reaching run or restore are held from here on (cli/early-signals.ts).
  holdEarlySignals(argv);
  // Internal entry points: the process hosting an OCI container, and an exec'd process's waiter.
  if (argv[2] === '__oci-init') {
    const { ociInit } = await import('./oci/init.js');
    await ociInit(argv[3], argv[4]);
    return;
  }
  if (argv[2] === '__pool-host') {
    const { poolHost } = await import('./pool.js');
    process.exit(await poolHost(argv[3], argv[4], Number(argv[5]) || 1));
  }
  if (argv[2] === '__restorer') {
    const { restorerHost } = await import('./restorer.js');
    process.exit(await restorerHost(argv[3]));
  }
  if (argv[2] === '__oci-exec-wait') {
    await oci.execWait(argv[3], argv[4], argv[5]);
    return;
  }
  // Output into a pipe that closed early (`snapvisor checkpoints | head -1`): stop quietly, as a
  // program killed by SIGPIPE would.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(141); throw e; });
  pointUsageErrorsAtTheirHelp(program, 'snapvisor');
  await program.parseAsync(runcArgv(argv)).catch((e: Error & { code?: string; exitCode?: number }) => {
    // Commander's own exits (help, version, usage errors): the message is already out.
    // (`help COMMAND` is commander.help with exit code 0; help shown for an error has 1.)
    if (e.code?.startsWith('commander.')) process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || (e.code === 'commander.help' && e.exitCode === 0) ? 0 : 2);
    fail(errorLine(e));
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}
