/**
 * Checkpoint and restore through the real CLI, as separate processes (as `snapvisor demo`
 * does): `run --name`, `checkpoint`, `restore`, `checkpoints`. Each test has its own
 * state directory (--root) and store (--store).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkpointGate, freshDir, orphanStubs, snapvisor, snapvisorStreaming, type Streaming } from './helpers.js';

const N = 40;
/**
 * Prints START {pid,cwd,mark}, then 1..N every 50 ms (each also appended to a file it
 * keeps open), then appends "end", rereads the file and prints END {pid,cwd,mark,log}.
 * SV_GATES ({"i": path}) makes it wait after printing i until that gate file exists: the test
 * makes it once it checkpointed there, so the counter is still running when the checkpoint comes
 * however slow the machine.
 */
const COUNTER = [
  'import json, os, time',
  "f = open('counter.log', 'w+')",
  "gates = json.loads(os.environ.get('SV_GATES', '{}'))",
  "def info(): return {'pid': os.getpid(), 'cwd': os.getcwd(), 'mark': os.environ.get('SV_MARK')}",
  "print('START ' + json.dumps(info()), flush=True)",
  `for i in range(1, ${N + 1}):`,
  '    print(i, flush=True)',
  "    f.write(f'{i}\\n'); f.flush()",
  '    while str(i) in gates and not os.path.exists(gates[str(i)]): time.sleep(0.02)',
  "    time.sleep(float(os.environ.get('SV_DELAY', '0.05')))",
  "f.write('end\\n'); f.flush()",
  'f.seek(0)',
  "d = info(); d['log'] = f.read().split()",
  "print('END ' + json.dumps(d), flush=True)",
].join('\n');

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
const numbersIn = (lines: string[]) => lines.filter((l) => /^\d+$/.test(l)).map(Number);
const jsonLine = (lines: string[], tag: string): Record<string, unknown> | undefined => {
  const l = lines.find((x) => x.startsWith(tag + ' '));
  return l === undefined ? undefined : JSON.parse(l.slice(tag.length + 1));
};
const lastWord = (s: string) => s.trim().split(/\s+/).pop()!;

interface Setup { root: string; store: string; name: string; mark: string }
function setup(): Setup {
  return { root: freshDir('root'), store: freshDir('store'), name: `sv-${randomBytes(4).toString('hex')}`, mark: `m-${randomBytes(6).toString('hex')}` };
}

/** Start the counter; `gates` maps a number to the gate (checkpointGate) it waits for after printing it. */
function startCounter(s: Setup, gates: Record<number, { sandbox: string }> = {}, delay = '0.05'): Streaming {
  const paths = Object.fromEntries(Object.entries(gates).map(([i, g]) => [i, g.sandbox]));
  return snapvisorStreaming(['--root', s.root, 'run', '--name', s.name, '--cwd', '/tmp', '--env', `SV_MARK=${s.mark}`, '--env', `SV_DELAY=${delay}`,
    '--env', `SV_GATES=${JSON.stringify(paths)}`, '--', '/usr/bin/python3', '-c', COUNTER], { timeoutMs: 90_000 });
}

/** Checkpoint the named sandbox; returns the id and how many numbers the test had seen before and after. */
async function checkpoint(s: Setup, run: Streaming, extra: string[] = []) {
  const seenBefore = numbersIn(run.lines).length;
  const cp = await snapvisor(['--root', s.root, 'checkpoint', s.name, '--store', s.store, ...extra], { timeoutMs: 20_000 });
  const seenAfter = numbersIn(run.lines).length;
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  const id = lastWord(cp.stdout.toString());
  expect(id).toMatch(/^[0-9a-f]{16}$/);
  return { id, seenBefore, seenAfter, stdout: cp.stdout.toString() };
}

/** Restore `id` and check it continues from `last`+1 to N, with the same pid/cwd/env and its open file. */
async function expectRestoreContinues(s: Setup, id: string, last: number, start: Record<string, unknown>) {
  const r = await snapvisor(['--root', s.root, 'restore', id, '--store', s.store], { timeoutMs: 40_000 });
  expect(r.timedOut).toBe(false);
  const lines = r.stdout.toString().split('\n').filter((l) => l !== '');
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(numbersIn(lines)).toEqual(range(last + 1, N));
  expect(lines.filter((l) => !/^\d+$/.test(l) && !l.startsWith('END '))).toEqual([]);
  expect(jsonLine(lines, 'END')).toEqual({ ...start, log: [...range(1, N).map(String), 'end'] });
  return lines;
}

/** The line a `run` ended by a checkpoint prints on stderr. */
const awayLine = (s: Setup, id: string) => `snapvisor: sandbox ${s.name} was checkpointed and stopped: ${id} (\`snapvisor restore ${id} --store ${s.store}\` continues it)\n`;

describe('checkpoint and restore (python3 counter)', () => {
  it('(a) checkpoint stops the sandbox; restore continues from the next number with pid, cwd, env and open file', async () => {
    const s = setup();
    const gate = checkpointGate('counter-a');
    const run = startCounter(s, { 10: gate });
    await run.waitFor((l) => l === '10', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    gate.open();
    expect(run.stderr()).toBe(awayLine(s, id));
    const before = numbersIn(run.lines);
    expect(before).toEqual(range(1, 10));
    expect(jsonLine(run.lines, 'END')).toBeUndefined();
    const start = jsonLine(run.lines, 'START')!;
    expect(start).toEqual({ pid: expect.any(Number), cwd: '/tmp', mark: s.mark });
    await expectRestoreContinues(s, id, before.length, start);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(b) the same checkpoint can be restored twice, with the same continuation', async () => {
    const s = setup();
    const gate = checkpointGate('counter-b');
    const run = startCounter(s, { 8: gate });
    await run.waitFor((l) => l === '8', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    gate.open();
    const last = numbersIn(run.lines).length;
    expect(last).toBe(8);
    const start = jsonLine(run.lines, 'START')!;
    const first = await expectRestoreContinues(s, id, last, start);
    const second = await expectRestoreContinues(s, id, last, start);
    expect(second).toEqual(first);
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(c) --leave-running: the original goes on to the end, and the checkpoint restores from the right number', async () => {
    const s = setup();
    const gate = checkpointGate('counter-c');
    const run = startCounter(s, { 10: gate });
    await run.waitFor((l) => l === '10', 40_000);
    const { id, seenBefore, seenAfter } = await checkpoint(s, run, ['--leave-running']);
    gate.open(); // the original goes on, and so will the restore
    expect(await run.done).toBe(0);
    expect(numbersIn(run.lines)).toEqual(range(1, N));
    const start = jsonLine(run.lines, 'START')!;
    expect(jsonLine(run.lines, 'END')).toEqual({ ...start, log: [...range(1, N).map(String), 'end'] });

    const r = await snapvisor(['--root', s.root, 'restore', id, '--store', s.store], { timeoutMs: 40_000 });
    expect(r.timedOut).toBe(false);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.toString().split('\n').filter((l) => l !== '');
    const nums = numbersIn(lines);
    // The guest was captured after printing `k`: at least what the test had seen when it
    // asked, at most what it had seen when the checkpoint was reported done.
    const k = nums[0] - 1;
    expect(k).toBeGreaterThanOrEqual(seenBefore);
    expect(k).toBeLessThanOrEqual(seenAfter);
    expect(nums).toEqual(range(k + 1, N));
    expect(jsonLine(lines, 'END')).toEqual({ ...start, log: [...range(1, N).map(String), 'end'] });
    expect(orphanStubs()).toEqual([]);
  }, 120_000);

  it('(d) checkpoints lists the ids, oldest first; kill ends the sandbox', async () => {
    const s = setup();
    // It waits at 3 until the first checkpoint is taken and at 6 for good: the kill comes first.
    const gate3 = checkpointGate('counter-d3'), gate6 = checkpointGate('counter-d6');
    const run = startCounter(s, { 3: gate3, 6: gate6 }, '0.2');
    await run.waitFor((l) => l === '3', 40_000);
    const first = await checkpoint(s, run, ['--leave-running']);
    gate3.open();
    await run.waitFor((l) => l === '6', 40_000);
    const second = await checkpoint(s, run, ['--leave-running']);
    const k = await snapvisor(['--root', s.root, 'kill', s.name]);
    expect(k.status).toBe(0);
    expect(await run.done).toBe(137);
    expect(run.stderr()).toBe(''); // --leave-running checkpoints and a kill: no 'checkpointed' line
    expect(numbersIn(run.lines).length).toBeLessThan(N);

    const list = await snapvisor(['checkpoints', '--store', s.store]);
    expect(list.status).toBe(0);
    const rows = list.stdout.toString().trim().split('\n');
    expect(rows[0]).toMatch(/^ID\s+CREATED\s+NAME\s+PARENT\s+PAGES\s+STORED\s+ON DISK$/);
    expect(rows.slice(1).map((r) => r.split(/\s+/)[0])).toEqual([first.id, second.id]);
    expect(rows.slice(1).map((r) => r.split(/\s+/)[2])).toEqual([s.name, s.name]);

    const json = await snapvisor(['checkpoints', '--store', s.store, '--json']);
    expect(json.status).toBe(0);
    expect((JSON.parse(json.stdout.toString()) as Array<{ id: string }>).map((c) => c.id)).toEqual([first.id, second.id]);
  }, 120_000);
});

/** Counts to 60, waiting after 10 for the gate file $1 (made after the checkpoint). */
const BUSYBOX_LOOP = 'i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo $i; if [ $i -eq 10 ]; then while [ ! -e "$1" ]; do sleep 0.02; done; fi; sleep 0.05; done';

describe('checkpoint and restore (busybox sh)', () => {
  // busybox sh runs `sleep` as a child process: this needs fork, wait4 and checkpoints of several processes.
  it('(e) a busybox shell loop continues after restore', async () => {
    const s = setup();
    const gate = checkpointGate('busybox-loop');
    const run = snapvisorStreaming(['--root', s.root, 'run', '--name', s.name, '--', '/bin/busybox', 'sh', '-c', BUSYBOX_LOOP, 'sh', gate.sandbox], { timeoutMs: 60_000 });
    await run.waitFor((l) => l === '10', 40_000);
    const { id } = await checkpoint(s, run);
    expect(await run.done).toBe(137);
    gate.open();
    const before = numbersIn(run.lines);
    expect(before).toEqual(range(1, 10));
    // ~50 fork+execs of busybox sleep: ~2.5 s quiet, 20 s and more at load 10 (docs/benchmarks.md "Fork and exec").
    const r = await snapvisor(['--root', s.root, 'restore', id, '--store', s.store], { timeoutMs: 50_000 });
    expect(before.length).toBeLessThan(60);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(numbersIn(r.stdout.toString().split('\n'))).toEqual(range(before.length + 1, 60));
  }, 90_000);
});

describe('a run checkpointed away', () => {
  it('(f) ps and list show it; it ends at once, saying so, while its guest waits on a stdin that stays open; 137 as a runc container dumped by CRIU', async () => {
    const s = setup();
    const run = snapvisorStreaming(['--root', s.root, 'run', '--name', s.name, '--', '/bin/busybox', 'sh', '-c', 'echo ready; read x; echo "never $x"'], { stdin: 'pipe' });
    try {
      await run.waitFor((l) => l === 'ready');
      // ps NAME and list show a run --name sandbox as they show an OCI container.
      const ps = await snapvisor(['--root', s.root, 'ps', s.name]);
      expect(ps.stderr).toBe('');
      // CMD: the command line, as ps -ef shows it.
      expect(ps.stdout.toString()).toMatch(/^PID\s+PPID\s+UID\s+STAT\s+CMD\n1\s+0\s+\d+\s+S\s+\/bin\/busybox sh -c echo ready; read x; echo "never \$x"\n$/);
      expect(JSON.parse((await snapvisor(['--root', s.root, 'ps', '--format', 'json', s.name])).stdout.toString())).toEqual([run.child.pid]);
      const list = await snapvisor(['--root', s.root, 'list', '--format', 'json']);
      expect(JSON.parse(list.stdout.toString())).toEqual([expect.objectContaining({ id: s.name, status: 'running', pid: run.child.pid })]);
      const { id } = await checkpoint(s, run);
      const t0 = Date.now();
      const status = await Promise.race([run.done, new Promise((r) => setTimeout(() => r('still running after 10 s'), 10_000))]);
      expect(status).toBe(137);
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(run.stderr()).toBe(awayLine(s, id));
      expect(run.lines).toEqual(['ready']);
      expect((await snapvisor(['--root', s.root, 'list', '-q'])).stdout.toString()).toBe('');
      // The checkpoint holds the guest in its read: given a line, the restored guest finishes.
      const r = await snapvisor(['--root', s.root, 'restore', id, '--store', s.store], { input: 'typed\n', timeoutMs: 20_000 });
      expect([r.status, r.stdout.toString(), r.stderr]).toEqual([0, 'never typed\n', '']);
    } finally {
      run.child.stdin!.end();
      run.child.kill('SIGKILL');
    }
  });
});
