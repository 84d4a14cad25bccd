#!/usr/bin/env node
/**
 * The `snapvisor` command (docs/cli.md): run, checkpoint, restore, checkpoints, demo,
 * syscalls. Errors are one line on stderr with the exit status a shell would give.
 */
import { Command, Option } from 'commander';
import { runCommand } from './run.js';

const program = new Command();
program
  .name('snapvisor')
  .description('Run Linux programs in a TypeScript application kernel, and checkpoint/restore them')
  .option('--root <dir>', 'state directory for named sandboxes (default $XDG_RUNTIME_DIR/snapvisor or /run/snapvisor)')
  .enablePositionalOptions()
  .showHelpAfterError();

program
  .command('run')
  .description('run PROGRAM ARGS… in a new sandbox')
  .passThroughOptions()
  .option('--rootfs <dir>', 'host directory shown read-only as the sandbox root', '/')
  .option('--cwd <dir>', 'working directory inside the sandbox', '/')
  .addOption(new Option('--env <K=V>', 'environment variable (repeatable; default: the caller\'s environment)').argParser((v: string, prev: string[] = []) => [...prev, v]))
  .option('--clear-env', 'start from an empty environment instead of the caller\'s')
  .option('--strace', 'print each syscall on stderr')
  .option('--name <name>', 'register the sandbox under NAME so it can be checkpointed')
  .argument('<program>', 'program to run')
  .argument('[args...]', 'its arguments')
  .action(async (prog: string, args: string[], opts) => {
    process.exitCode = await runCommand(program.opts().root, prog, args, opts);
  });

program.parseAsync(process.argv).catch((e) => {
  process.stderr.write(`snapvisor: ${(e as Error).message}\n`);
  process.exit(1);
});
