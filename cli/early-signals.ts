/**
 * SIGTERM and SIGHUP that reach `snapvisor run` or `snapvisor restore` before its sandbox runs
 * are held from the start of the process (this module is cli/main.ts's first import, so it is
 * evaluated before the rest of the CLI loads), then given to the sandbox's init by runToEnd
 * (cli/run.ts), as a signal to a running sandbox is. Node's default action would end snapvisor,
 * and the guest with it, without the guest's handler running: a restored guest has its handlers
 * already, and `kill -TERM` of a restore still loading (about 0.2–1.5 s after its start,
 * depending on the machine's load) gave status 143 with the handler never run. Other commands
 * hold nothing.
 */

/** Global options of cli/main.ts that take a value (the value is no command name). */
const GLOBAL_WITH_VALUE = new Set(['--root', '--log', '--log-format', '--rootless', '--criu']);

/** The command name in `argv` (arguments after the script): the first argument that is no global option or its value. */
function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (GLOBAL_WITH_VALUE.has(argv[i])) i++;
    else if (!argv[i].startsWith('-')) return argv[i];
  }
  return undefined;
}

const held: NodeJS.Signals[] = [];
const hold = (sig: NodeJS.Signals): void => { held.push(sig); };
let holding = false;
const command = commandOf(process.argv.slice(2));
if (command === 'run' || command === 'restore') {
  holding = true;
  process.on('SIGTERM', hold);
  process.on('SIGHUP', hold);
}

/** Stop holding; returns the signals held so far, in order, for the caller to deliver. */
export function takeHeldSignals(): NodeJS.Signals[] {
  if (holding) {
    holding = false;
    process.off('SIGTERM', hold);
    process.off('SIGHUP', hold);
  }
  return held.splice(0);
}

/**
 * Stop holding on a path that runs no sandbox in this process (OCI run and restore): a signal
 * held meanwhile now does what it would have done, end this process.
 */
export function releaseHeldSignals(): void {
  const h = takeHeldSignals();
  if (h.length) process.kill(process.pid, h[0]);
}
