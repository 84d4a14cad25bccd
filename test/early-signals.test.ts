/**
 * SIGTERM reaching `snapvisor restore` while it is still rebuilding the sandbox (before the
 * sandbox runs) is held and given to the restored init, whose handler runs (cli/early-signals.ts,
 * cli/run.ts holdStopSignals). It used to end snapvisor at once (status 143), the guest's
 * handler never run. The signal is sent when the restore's trace says it started rebuilding
 * (SNAPVISOR_TRACE_RESTORE), a point inside that window on any machine.
 */
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, termDuringRestore } from './helpers.js';

/** A guest that handles SIGTERM (busybox sh runs the trap once its sleep returns). */
const GUEST = ['/bin/busybox', 'sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done'];

describe('signals before the restored sandbox runs', () => {
  it("SIGTERM sent while restore rebuilds the sandbox reaches the guest's handler", async () => {
    const c = await checkpointAtReady('early-term', GUEST);
    const err = await termDuringRestore(c, { ...process.env, SNAPVISOR_TRACE_RESTORE: '1' }, /\] start\n/);
    expect(err.split('\n').filter((l) => l && !l.startsWith('[restore '))).toEqual([]);
  });
});
