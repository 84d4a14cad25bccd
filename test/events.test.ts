/**
 * The event stream from outside: `snapvisor events NAME` follows a running sandbox's
 * events as JSON lines through its control socket (filterable with --type), and
 * `run --events FILE` writes the same lines to a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkpointGate, freshDir, SH_WAIT_FOR_GATE, snapvisorStreaming } from './helpers.js';

interface Ev { seq: number; timeNs: number; type: string; [k: string]: unknown }

/** Index of each step in `evs`, each found after the previous one; -1 where missing. */
function inOrder(evs: Ev[], steps: Array<(e: Ev) => boolean>): number[] {
  const at: number[] = [];
  let from = 0;
  for (const s of steps) {
    const i = evs.findIndex((e, j) => j >= from && s(e));
    at.push(i);
    if (i >= 0) from = i + 1;
  }
  return at;
}

// The loop of issue 6's acceptance item, run by a shell started once both followers have
// attached (the guest polls a gate file, forking a sleep each time, until the test makes it
// once each follower printed an event): the fork and exec of that shell, then each file's
// creation and write, in order.
const LOOP = 'for i in 1 2 3; do echo $i > /tmp/f$i; done';
const steps = (): Array<(e: Ev) => boolean> => [
  (e) => e.type === 'task.fork',
  (e) => e.type === 'task.exec' && String(e.path).endsWith('sh'),
  ...[1, 2, 3].flatMap((i): Array<(e: Ev) => boolean> => [
    (e) => e.type === 'file.create' && e.path === `/tmp/f${i}`,
    (e) => e.type === 'file.write' && e.len === 2,
  ]),
  (e) => e.type === 'task.exit',
];

describe('snapvisor events', () => {
  it('streams a running sandbox\'s forks, execs, file creations and writes in order; run --events writes the same', async () => {
    const root = freshDir('events-root');
    const file = path.join(freshDir('events-file'), 'events.jsonl');
    const gate = checkpointGate('events');
    const t0 = Date.now();
    const run = snapvisorStreaming(['--root', root, 'run', '--name', 'ev', '--events', file, '--', '/bin/sh', '-c', `echo ready; ${SH_WAIT_FOR_GATE}; /bin/sh -c '${LOOP}'; echo done`, 'sh', gate.sandbox], { timeoutMs: 90_000 });
    await run.waitFor((l) => l === 'ready', 40_000);
    const all = snapvisorStreaming(['--root', root, 'events', 'ev'], { timeoutMs: 90_000 });
    const some = snapvisorStreaming(['--root', root, 'events', 'ev', '--type', 'task.*,file.create'], { timeoutMs: 90_000 });
    await Promise.all([all.waitFor(() => true, 40_000), some.waitFor(() => true, 40_000)]);
    gate.open();
    await run.waitFor((l) => l === 'done', 40_000);
    expect(await run.done).toBe(0);
    // Both followers end with the sandbox.
    expect(await all.done).toBe(0);
    expect(await some.done).toBe(0);
    expect(Date.now() - t0).toBeLessThan(90_000);

    const evs: Ev[] = all.lines.map((l) => JSON.parse(l));
    for (const e of evs) {
      expect(Number.isInteger(e.seq) && typeof e.timeNs === 'number' && typeof e.type === 'string').toBe(true);
    }
    // Sequence numbers go up by one (nothing lost), time never goes back.
    evs.forEach((e, i) => { if (i) { expect(e.seq).toBe(evs[i - 1].seq + 1); expect(e.timeNs).toBeGreaterThanOrEqual(evs[i - 1].timeNs); } });
    const at = inOrder(evs, steps());
    expect(at.every((i) => i >= 0), JSON.stringify(evs.map((e) => e.type))).toBe(true);
    // The write of /tmp/fN goes to the inode created for it.
    for (const i of [0, 1, 2]) expect(evs[at[3 + 2 * i]].inode).toBe(evs[at[2 + 2 * i]].inode);

    // --type keeps only matching types, and the same events (same seq).
    const filtered: Ev[] = some.lines.map((l) => JSON.parse(l));
    expect(filtered.length).toBeGreaterThan(4);
    expect(filtered.every((e) => e.type.startsWith('task.') || e.type === 'file.create')).toBe(true);
    const bySeq = new Map(evs.map((e) => [e.seq, JSON.stringify(e)]));
    for (const e of filtered) if (bySeq.has(e.seq)) expect(JSON.stringify(e)).toBe(bySeq.get(e.seq));

    // run --events: every event from the start, the attached stream's among them, identical.
    const fromFile: Ev[] = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(fromFile.length).toBeGreaterThanOrEqual(evs.length);
    const fileBySeq = new Map(fromFile.map((e) => [e.seq, JSON.stringify(e)]));
    for (const e of evs) expect(fileBySeq.get(e.seq)).toBe(JSON.stringify(e));
    expect(inOrder(fromFile, steps()).every((i) => i >= 0)).toBe(true);
  }, 120_000);

  it('events NAME started together with run --name NAME waits for the name and follows it to the end', async () => {
    for (let i = 0; i < 3; i++) {
      const root = freshDir('events-race');
      const name = `race-${i}`;
      // Both at once, as `snapvisor run --name N … & snapvisor events N` does: run registers N only once its sandbox is built.
      const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--', '/bin/busybox', 'sh', '-c', 'sleep 1; /bin/busybox true; echo done'], { timeoutMs: 60_000 });
      const ev = snapvisorStreaming(['--root', root, 'events', name], { timeoutMs: 60_000 });
      expect(await run.done).toBe(0);
      expect(await ev.done, ev.stderr()).toBe(0);
      expect(ev.stderr()).toBe('');
      const types = ev.lines.map((l) => JSON.parse(l).type as string);
      expect(types).toContain('task.exec');
      expect(types).toContain('task.exit');
      // The mark of a starting sandbox (STATE/NAME.starting, which events waits on) is gone with it.
      expect(fs.readdirSync(root).filter((n) => n.endsWith('.starting'))).toEqual([]);
    }
  }, 120_000);

  it('names a sandbox that is not running in one line', async () => {
    const root = freshDir('events-none');
    const t0 = Date.now();
    const r = snapvisorStreaming(['--root', root, 'events', 'nosuch']);
    expect(await r.done).toBe(1);
    // After waiting for the name a while (2 s), not for ever.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.stderr().trim()).toMatch(/^snapvisor: container nosuch does not exist \(nor a running sandbox of that name/);
    expect(r.stderr().trim().split('\n')).toHaveLength(1);
  });
});
