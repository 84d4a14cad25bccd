/**
 * Portable snapshots (issue 7 point 7): a checkpoint records the CPU features its guest may
 * have seen, and a restore on a host lacking any of them is refused with the features named;
 * the host is simulated with SNAPVISOR_SIMULATE_HOST_CPU_FEATURES. A restore on a host with
 * more features records the new host's (new processes see them).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointAtReady, checkpointGate, freshDir, orphanStubs, restoreChecked, snapvisor, snapvisorStreaming, stderrLines } from './helpers.js';

const SIMULATE = 'SNAPVISOR_SIMULATE_HOST_CPU_FEATURES';

/** This host's /proc/cpuinfo flags. */
function hostFlags(): string[] {
  return /^flags\s*:(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'latin1'))![1].trim().split(/\s+/);
}

async function recordedFeatures(id: string, store: string): Promise<string[]> {
  const r = await snapvisor(['inspect', id, '--store', store, '--json']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return JSON.parse(r.stdout.toString()).checkpoint.cpuFeatures;
}

describe('CPU features of checkpoints', () => {
  it('records the guest-visible features, refuses a host lacking some (naming them, losing nothing), and records the new host\'s after a restore', async () => {
    // The guest waits for gate1 after `ready` and for gate2 after `go`, both made by the test once
    // it has checkpointed there: no fixed sleep that a loaded machine outlasts.
    const gate1 = checkpointGate('cpufeat-1'), gate2 = checkpointGate('cpufeat-2');
    const wait = (n: number) => `while [ ! -e "$${n}" ]; do sleep 0.02; done`;
    const script = `echo ready; ${wait(1)}; echo go; ${wait(2)}; for i in $(seq 1 5); do sleep 0.1; echo t$i; done; echo after`;
    const c = await checkpointAtReady('cpufeat', ['/bin/sh', '-c', script, 'sh', gate1.sandbox, gate2.sandbox]);
    expect(c.before).toEqual(['ready']);
    const recorded = await recordedFeatures(c.id, c.store);
    // What user code can execute, as Linux names it; not Linux's own software flags.
    expect(recorded).toEqual([...recorded].sort());
    expect(recorded).toContain('sse2');
    for (const f of recorded) expect(hostFlags()).toContain(f);
    for (const f of ['hypervisor', 'rep_good', 'constant_tsc']) expect(recorded).not.toContain(f);

    // A host without two of them: refused with one line naming both, nothing started.
    const lacking = [recorded[0], recorded[recorded.length - 1]];
    const smaller = recorded.filter((f) => !lacking.includes(f));
    const refused = await snapvisor(['--root', c.root, 'restore', c.id, '--store', c.store], { env: { ...process.env, [SIMULATE]: smaller.join(',') }, timeoutMs: 20_000 });
    expect(refused.timedOut).toBe(false);
    expect(refused.status).not.toBe(0);
    expect(stderrLines(refused.stderr)).toEqual([`snapvisor: checkpoint ${c.id} needs CPU features this host lacks: ${lacking.join(' ')} (its guest may use them; restore it on a host that has them)`]);
    expect(refused.stdout.toString()).toBe('');
    expect(orphanStubs()).toEqual([]);

    // A pool refuses it at its start too.
    const sock = path.join(freshDir('cpufeat-pool'), 'pool.sock');
    const pool = await snapvisor(['pool', 'serve', '--checkpoint', c.id, '--store', c.store, '--size', '1', '--listen', sock], { env: { ...process.env, [SIMULATE]: smaller.join(',') }, timeoutMs: 20_000 });
    expect(pool.status).toBe(1);
    expect(stderrLines(pool.stderr)).toEqual([`snapvisor: pool: checkpoint ${c.id} needs CPU features this host lacks: ${lacking.join(' ')} (its guest may use them; restore it on a host that has them)`]);

    // On a host with one more feature, the restored sandbox records that host's features.
    gate1.open();
    const bigger = [...recorded, 'amx_tile'].filter((f, i, a) => a.indexOf(f) === i);
    const name = `cpufeat-${process.pid}`;
    const run = snapvisorStreaming(['--root', c.root, 'restore', c.id, '--store', c.store, '--name', name], { env: { ...process.env, [SIMULATE]: bigger.join(',') }, timeoutMs: 60_000 });
    // Checkpoint it again once it runs (it then waits for gate2).
    await run.waitFor((l) => l === 'go', 40_000);
    const again = await snapvisor(['--root', c.root, 'checkpoint', name, '--store', c.store], { timeoutMs: 20_000, env: { ...process.env, [SIMULATE]: bigger.join(',') } });
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(await run.done).toBe(137);
    const id2 = again.stdout.toString().trim().split(/\s+/).pop()!;
    gate2.open();

    // The first checkpoint is intact: on this host it restores and finishes, from where it was caught.
    const r = await restoreChecked(c);
    expect(r.stdout.toString()).toBe(['go', 't1', 't2', 't3', 't4', 't5', 'after'].join('\n') + '\n');
    expect(r.status).toBe(0);

    expect(await recordedFeatures(id2, c.store)).toEqual([...bigger].sort());
    // …and this host, lacking amx_tile, now refuses that one.
    const refused2 = await snapvisor(['--root', c.root, 'restore', id2, '--store', c.store], { timeoutMs: 20_000 });
    expect(refused2.status).not.toBe(0);
    expect(refused2.stderr).toContain('needs CPU features this host lacks: amx_tile');
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('run --cpu-features other than host is refused with one line (the guest would see every host feature)', async () => {
    const r = await snapvisor(['run', '--cpu-features', 'baseline', '--', '/bin/true'], { timeoutMs: 20_000 });
    expect(r.status).toBe(2);
    expect(stderrLines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^snapvisor: --cpu-features baseline: only "host" is possible: /);
    const ok = await snapvisor(['run', '--cpu-features', 'host', '--', '/bin/true'], { timeoutMs: 20_000 });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
  }, 60_000);
});
