/**
 * SIGTERM and SIGHUP that reach `snapvisor run` or `snapvisor restore` before its sandbox runs
 * are held from the start of the process (holdEarlySignals: called by the bin's launcher before
 * the CLI's bundle is loaded, or first thing from a startup snapshot), then given to the sandbox's init by runToEnd
 * (cli/run.ts), as a signal to a running sandbox is. Node's default action would end snapvisor,
 * and the guest with it, without the guest's handler running: a restored guest has its handlers
 * already, and `kill -TERM` of a restore still loading (about 0.2–1.5 s after its start,
 * depending on the machine's load) gave status 143 with the handler never run. Other commands
 * hold nothing.
 */

/** Global options of cli/main.ts that take a value (the value is no command name). */
const GLOBAL_WITH_VALUE = new Set(['--root', '--log', '--log-format', '--rootless', '--criu']);

/** The command name in `argv` (arguments after the script): the first argument that is no global option or its value. */
export function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (GLOBAL_WITH_VALUE.has(argv[i])) i++;
    else if (!argv[i].startsWith('-')) return argv[i];
  }
  return undefined;
}

/**
 * What is held: kept on globalThis, not in this module, because the bin's launcher
 * (cli/launcher.ts, its own bundle) starts holding before the CLI's bundle is loaded, and the
 * CLI's copy of this module takes over from it.
 */
interface EarlySignals { held: NodeJS.Signals[]; holding: boolean; hold: (sig: NodeJS.Signals) => void }
const KEY = Symbol.for('snapvisor.early-signals');
function state(): EarlySignals {
  const g = globalThis as unknown as Record<symbol, EarlySignals | undefined>;
  if (!g[KEY]) {
    const held: NodeJS.Signals[] = [];
    g[KEY] = { held, holding: false, hold: (sig) => { held.push(sig); } };
  }
  return g[KEY];
}

/**
 * Start holding SIGTERM and SIGHUP if `argv` (process.argv's shape) runs `run` or `restore`;
 * a second call does nothing. The first thing the CLI does (cli/main.ts main, and before it
 * the launcher).
 */
export function holdEarlySignals(argv: readonly string[]): void {
  const s = state();
  if (s.holding) return;
  const command = commandOf(argv.slice(2));
  if (command === 'run' || command === 'restore') {
    s.holding = true;
    process.on('SIGTERM', s.hold);
    process.on('SIGHUP', s.hold);
  }
}

/** Stop holding; returns the signals held so far, in order, for the caller to deliver. */
export function takeHeldSignals(): NodeJS.Signals[] {
  const s = state();
  if (s.holding) {
    s.holding = false;
    process.off('SIGTERM', s.hold);
    process.off('SIGHUP', s.hold);
  }
  return s.held.splice(0);
}

/**
 * Stop holding on a path that runs no sandbox in this process (OCI run and restore): a signal
 * held meanwhile now does what it would have done, end this process.
 */
export function releaseHeldSignals(): void {
  const h = takeHeldSignals();
  if (h.length) process.kill(process.pid, h[0]);
}
