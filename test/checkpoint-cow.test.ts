/**
 * --leave-running checkpoints are copy-on-write: the guest goes on changing its memory while
 * the checkpoint is written, and the restored run must still see the memory of the moment
 * of the checkpoint (its digest at each later step equals the original's at that step).
 */
import { describe, expect, it } from 'vitest';
import { freshDir, snapvisor, snapvisorStreaming } from './helpers.js';

// Each step's line is one write(2): with PYTHONUNBUFFERED=1 (CI's environment, which the guest
// inherits) print() writes each argument and separator on its own, and a checkpoint taken
// between them restores, as Linux would, to a run whose first output is the rest of a line
// (CI c3e7fa9's lone `69a1ea5380616f79`; test/checkpoint-output.test.ts checks that case).
const GUEST = [
  'import hashlib, os, time',
  'b = bytearray(96 * 1024 * 1024)',
  'for i in range(0, len(b), 4096): b[i] = (i >> 12) & 255',
  'os.write(1, b"ready\\n")',
  'for step in range(40):',
  '    for j in range(step % 64 * 4096, len(b), 64 * 4096): b[j] = (b[j] + 1) & 255',
  '    os.write(1, f"{step} {hashlib.sha256(b).hexdigest()[:16]}\\n".encode())',
  '    time.sleep(0.03)',
].join('\n');

describe('copy-on-write capture', () => {
  it('a guest rewriting 96 MB during a --leave-running checkpoint restores to the captured state', async () => {
    const root = freshDir('cow-root'), store = freshDir('cow-store');
    const name = `cow-${process.pid}`;
    // Quiet: ~12 s in all. Each step has its own limit; together they fit the test's at load ~16.
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', GUEST], { timeoutMs: 150_000 });
    await run.waitFor((l) => l.startsWith('3 '), 90_000);
    const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 60_000 });
    expect(cp.status, cp.stderr).toBe(0);
    expect(await run.done, run.stderr()).toBe(0);
    const original = new Map(run.lines.filter((l) => /^\d+ /.test(l)).map((l) => [l.split(' ')[0], l]));
    expect(original.size).toBe(40);
    const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
    const r = await snapvisor(['restore', id, '--store', store], { timeoutMs: 90_000 });
    expect(r.status, r.stderr).toBe(0);
    const restored = r.stdout.toString().trim().split('\n');
    expect(restored.length).toBeGreaterThan(5);
    expect(restored[restored.length - 1]).toMatch(/^39 /);
    for (const line of restored) expect(line).toBe(original.get(line.split(' ')[0]));
  }, 240_000);
});
