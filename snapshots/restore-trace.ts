/**
 * SNAPVISOR_TRACE_RESTORE=1: a restore's phases on stderr, one `[restore T ms] what` line each, T
 * the process's age (ms since it started, the clock of the launcher's SNAPVISOR_TRACE_STARTUP lines).
 * A module of its own, loading nothing: cli/run.ts traces the steps before it loads the store's modules.
 */
import fs from 'node:fs';

/** The trace function when SNAPVISOR_TRACE_RESTORE is set, else undefined. */
export function restoreTrace(): ((what: string) => void) | undefined {
  return process.env.SNAPVISOR_TRACE_RESTORE ? (what) => { fs.writeSync(2, `[restore ${(process.uptime() * 1000).toFixed(1)} ms] ${what}\n`); } : undefined;
}
