/**
 * A guest's output across --leave-running checkpoints taken while it writes as fast as it can:
 * the capture falls between two of its write(2)s, never inside one. The original's output is the
 * whole stream, in order, nothing lost or repeated; each restored run's output is the rest of the
 * same stream from the write after the captured one, which may be the middle of a line when a
 * line took several writes (as print() makes it with PYTHONUNBUFFERED=1: CI c3e7fa9's
 * checkpoint-cow flake was that case, read as a split write).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { freshDir, snapvisor, snapvisorStreaming, type Streaming } from './helpers.js';

/** Line i, written as three write(2)s: its number, a space, a digest and newline. */
const GUEST = [
  'import hashlib, os',
  'for i in range(10_000_000):',
  '    os.write(1, str(i).encode())',
  '    os.write(1, b" ")',
  '    os.write(1, hashlib.sha256(str(i).encode()).hexdigest()[:16].encode() + b"\\n")',
].join('\n');
const digest = (i: number) => createHash('sha256').update(String(i)).digest('hex').slice(0, 16);
/** The writes of line i, in order. */
const writesOf = (i: number) => [String(i), ' ', `${digest(i)}\n`];

/** stdout of `s` as it comes, whole. */
function rawOutput(s: Streaming): () => string {
  let out = '';
  s.child.stdout!.on('data', (d: Buffer) => { out += d.toString('latin1'); });
  return () => out;
}

/** The complete lines of `out` (what follows its last newline dropped): line numbers must run on by one. Returns [first, count]. */
function expectConsecutive(lines: string[], what: string): [number, number] {
  const first = Number(lines[0]?.split(' ')[0]);
  lines.forEach((l, k) => expect(l, `${what}, line ${k}`).toBe(`${first + k} ${digest(first + k)}`));
  return [first, lines.length];
}

describe('output across a --leave-running capture', () => {
  it('a guest writing lines in pieces as fast as it can: no write lost, repeated or split in the original or in runs restored from three captures', async () => {
    const root = freshDir('out-root'), store = freshDir('out-store');
    const name = `out-${process.pid}`;
    const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/usr/bin/python3', '-c', GUEST], { timeoutMs: 150_000 });
    const original = rawOutput(run);
    await run.waitFor((l) => l.startsWith('200 '), 60_000);
    const ids: string[] = [];
    for (let k = 0; k < 3; k++) {
      const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store, '--leave-running'], { timeoutMs: 60_000 });
      expect(cp.status, cp.stderr).toBe(0);
      ids.push(cp.stdout.toString().trim().split(/\s+/).pop()!);
    }
    expect((await snapvisor(['--root', root, 'kill', name], { timeoutMs: 30_000 })).status).toBe(0);
    expect(await run.done).toBe(137);
    const o = original();
    const [first, written] = expectConsecutive(o.slice(0, o.lastIndexOf('\n')).split('\n'), 'original');
    expect(first).toBe(0);

    let previous = 0;
    for (const id of ids) {
      const r = snapvisorStreaming(['restore', id, '--store', store], { timeoutMs: 90_000 });
      const restored = rawOutput(r);
      // 300 lines on from where it began (its first line may be a line's end), then it is stopped.
      await r.waitFor((l, all) => all.length > 300, 60_000);
      r.child.kill('SIGKILL');
      await r.done;
      const out = restored();
      const nl = out.indexOf('\n');
      const [next] = expectConsecutive(out.slice(nl + 1, out.lastIndexOf('\n')).split('\n'), `restored ${id}`);
      // What comes before the first whole line is what was left of the line before: from one of
      // its writes to its end (a whole write: none was cut).
      const w = writesOf(next - 1), head = out.slice(0, nl + 1);
      expect([0, 1, 2].map((k) => w.slice(k).join('')), `restored ${id} begins ${JSON.stringify(head)}`).toContain(head);
      // The captures came in order, while the original wrote.
      expect(next).toBeGreaterThanOrEqual(previous);
      expect(next - 1).toBeLessThanOrEqual(written);
      previous = next;
    }
  }, 240_000);
});
