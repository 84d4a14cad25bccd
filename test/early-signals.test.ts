/**
 * SIGTERM reaching `snapvisor restore` while it is still rebuilding the sandbox (before the
 * sandbox runs) is held and given to the restored init, whose handler runs (cli/early-signals.ts,
 * cli/run.ts holdStopSignals). It used to end snapvisor at once (status 143), the guest's
 * handler never run. The signal is sent when the restore's trace says it started rebuilding
 * (SNAPVISOR_TRACE_RESTORE), a point inside that window on any machine.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI, checkpointAtReady, orphanStubs } from './helpers.js';

/** A guest that handles SIGTERM (busybox sh runs the trap once its sleep returns). */
const GUEST = ['/bin/busybox', 'sh', '-c', 'trap "echo got TERM; exit 3" TERM; echo ready; while :; do sleep 0.05; done'];

describe('signals before the restored sandbox runs', () => {
  it("SIGTERM sent while restore rebuilds the sandbox reaches the guest's handler", async () => {
    const c = await checkpointAtReady('early-term', GUEST);
    const child = spawn(process.execPath, [CLI, '--root', c.root, 'restore', c.id, '--store', c.store], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SNAPVISOR_TRACE_RESTORE: '1' } });
    let out = '', err = '', sent = false;
    child.stdout.on('data', (d: Buffer) => { out += d; });
    child.stderr.on('data', (d: Buffer) => {
      err += d;
      if (!sent && /\] start\n/.test(err)) { sent = true; child.kill('SIGTERM'); }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const status = await new Promise<number | string>((r) => child.on('close', (code, sig) => r(code ?? sig!)));
    clearTimeout(timer);
    expect(sent).toBe(true);
    expect(out).toBe('got TERM\n');
    expect(status).toBe(3);
    expect(err.split('\n').filter((l) => l && !l.startsWith('[restore '))).toEqual([]);
    expect(orphanStubs()).toEqual([]);
  });
});
