#!/usr/bin/env node
/**
 * The `snapvisor` command (docs/cli.md): run, checkpoint, restore, checkpoints, delete,
 * demo, syscalls. Errors are one line on stderr with the exit status a shell would give.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PLATFORM, PLATFORMS } from '../platforms/registry.js';
// Only what every command needs is loaded at start-up: the kernel (run, restore), the store
// and the syscall table are imported by the commands that use them, so `checkpoint`,
// `checkpoints` and `--help` start without parsing the kernel.
import { controlSocket, defaultStore, fail, request } from './control.js';

const program = new Command();
program
  .name('snapvisor')
  .description('Run Linux programs in a TypeScript application kernel, and checkpoint/restore them')
  .option('--root <dir>', 'state directory for named sandboxes (default $XDG_RUNTIME_DIR/snapvisor or /run/snapvisor)')
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({ outputError: (str) => fail(`${str.replace(/^error: /, '').trim()} (see snapvisor --help)`) });

// Output into a pipe that closed early (`snapvisor checkpoints | head -1`): stop quietly, as a
// program killed by SIGPIPE would.
process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(141); throw e; });

const collect = (v: string, prev: string[] = []) => [...prev, v];
/** An action whose errors become one `snapvisor: …` line and exit status 1. */
const guarded = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => async (...args: A) => {
  try { await fn(...args); } catch (e) { fail((e as Error).message); process.exitCode = 1; }
};
const mib = (n: number) => (n / 1048576).toFixed(1) + ' MiB';
/** --disk SIZE: bytes, with an optional K, M, G or T suffix (powers of 1024). */
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

program
  .command('run')
  .description('run PROGRAM ARGS… in a new sandbox')
  .passThroughOptions()
  .option('--rootfs <dir>', 'host directory shown read-only as the sandbox root', '/')
  .option('--cwd <dir>', 'working directory inside the sandbox', '/')
  .addOption(new Option('--env <K=V>', 'environment variable (repeatable; added to the caller\'s environment)').argParser(collect))
  .option('--clear-env', 'start from an empty environment instead of the caller\'s')
  .option('--strace', 'print each syscall on stderr')
  .option('--name <name>', 'register the sandbox under NAME so it can be checkpointed')
  .option('--platform <name>', `platform that runs guest code (${Object.keys(PLATFORMS).join(', ')})`, DEFAULT_PLATFORM)
  .addOption(new Option('--user <uid[:gid]>', 'run as this user and group inside the sandbox, unprivileged (default: the caller\'s ids; uid 0 holds every capability)').argParser(parseUser))
  .addOption(new Option('--disk <size>', 'most file data the sandbox may write (e.g. 512M, 2G); writes past it fail with ENOSPC (default: no limit but the memory file)').argParser(parseSize))
  .option('--inject <spec>', 'make syscalls fail: SYSCALL:FAULT:PROBABILITY,… (FAULT: EINTR, EAGAIN, ENOSPC, ENOMEM, EIO, short); see docs/cli.md')
  .option('--seed <n>', 'seed of --inject (default: random; printed on stderr)')
  .argument('<program>', 'program to run')
  .argument('[args...]', 'its arguments')
  .action(async (prog: string, args: string[], opts) => {
    const { runCommand } = await import('./run.js');
    process.exitCode = await runCommand(program.opts().root, prog, args, opts);
  });

program
  .command('checkpoint')
  .description('checkpoint the running sandbox NAME into the store; prints the checkpoint id last')
  .argument('<name>', 'name given to run --name')
  .option('--store <dir>', 'checkpoint store (default $SNAPVISOR_STORE or ~/.local/share/snapvisor/checkpoints)')
  .option('--leave-running', 'let the sandbox continue after the checkpoint')
  .action(guarded(async (name: string, opts) => {
    const store = opts.store ?? defaultStore();
    const r = await request(controlSocket(program.opts().root, name), { op: 'checkpoint', store: (await import('node:path')).resolve(store), leaveRunning: !!opts.leaveRunning });
    if (!r.ok) throw new Error(`checkpoint of '${name}' failed: ${r.error}`);
    const s = r as unknown as { id: string; pages: number; newPages: number; storedPageBytes: number; pauseMs: number; durationMs: number };
    process.stdout.write(`checkpointed ${name}: ${s.pages} pages (${s.newPages} new, ${mib(s.storedPageBytes)} stored), guest paused ${s.pauseMs.toFixed(0)} ms, written in ${s.durationMs.toFixed(0)} ms: ${s.id}\n`);
  }));

program
  .command('restore')
  .description('restore checkpoint ID and run it to the end (stdio attached to this command)')
  .argument('<id>', 'checkpoint id or unique prefix')
  .option('--store <dir>', 'checkpoint store')
  .option('--name <name>', 'register the restored sandbox under NAME')
  .option('--platform <name>', `platform that runs guest code (${Object.keys(PLATFORMS).join(', ')})`, DEFAULT_PLATFORM)
  .option('--strace', 'print each syscall on stderr')
  .action(async (id: string, opts) => {
    const { restoreCommand } = await import('./run.js');
    process.exitCode = await restoreCommand(program.opts().root, id, opts);
  });

program
  .command('checkpoints')
  .description('list the checkpoints in a store, oldest first')
  .option('--store <dir>', 'checkpoint store')
  .option('--json', 'print JSON')
  .action(guarded(async (opts) => {
    const { listCheckpoints } = await import('../snapshots/store.js');
    const fs = await import('node:fs');
    const dir = opts.store ?? defaultStore();
    // No store yet (nothing was ever checkpointed there): an empty list, not an error.
    const list = fs.existsSync(dir) ? await listCheckpoints(dir) : [];
    if (opts.json) { process.stdout.write(JSON.stringify(list, null, 1) + '\n'); return; }
    const rows = [['ID', 'CREATED', 'NAME', 'PAGES', 'STORED'], ...list.map((c) => [c.id, new Date(c.createdMs).toISOString(), c.name ?? '', String(c.pages), mib(c.storedPageBytes)])];
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
  }));

program
  .command('delete')
  .description('delete a checkpoint (pages no other checkpoint uses are freed)')
  .argument('<id>', 'checkpoint id or unique prefix')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (id: string, opts) => {
    const { deleteCheckpoint } = await import('../snapshots/store.js');
    await deleteCheckpoint(opts.store ?? defaultStore(), id);
  }));

program
  .command('export')
  .description('write checkpoint ID to one file (to move it to another store or host)')
  .argument('<id>', 'checkpoint id or unique prefix')
  .requiredOption('-o, --output <file>', 'file to write')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (id: string, opts) => {
    const { exportCheckpoint } = await import('../snapshots/export.js');
    const r = await exportCheckpoint(opts.store ?? defaultStore(), id, opts.output);
    process.stdout.write(`exported ${r.id} to ${opts.output} (${mib(r.bytes)})\n`);
  }));

program
  .command('import')
  .description('add an exported checkpoint file to a store; prints the new checkpoint id last')
  .argument('<file>', 'file written by export')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (file: string, opts) => {
    const { importCheckpoint } = await import('../snapshots/export.js');
    const r = await importCheckpoint(opts.store ?? defaultStore(), file);
    process.stdout.write(`imported ${r.sourceId}: ${r.pages} pages (${r.newPages} new): ${r.id}\n`);
  }));

const store = program.command('store').description('maintain a checkpoint store');
store
  .command('check')
  .description('verify every record and page of every checkpoint in the store; one line per damaged checkpoint, exit 1 if any')
  .option('--store <dir>', 'checkpoint store')
  .action(guarded(async (opts) => {
    const { checkStore } = await import('../snapshots/store.js');
    const dir = opts.store ?? defaultStore();
    const r = await checkStore(dir);
    for (const p of r.problems) fail(p);
    if (r.problems.length) { process.exitCode = 1; return; }
    process.stdout.write(`store ${dir}: ${r.ok.length} checkpoint${r.ok.length === 1 ? '' : 's'} verified, no damage found\n`);
  }));

program
  .command('kill')
  .description('kill the running sandbox NAME')
  .argument('<name>')
  .action(guarded(async (name: string) => {
    await request(controlSocket(program.opts().root, name), { op: 'kill' });
  }));

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

program.parseAsync(process.argv).catch((e: Error & { code?: string; exitCode?: number }) => {
  // Commander's own exits (help, version, usage errors): the message is already out.
  if (e.code?.startsWith('commander.')) process.exit(e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2);
  fail(e.message);
  process.exit(1);
});
