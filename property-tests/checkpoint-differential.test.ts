/**
 * Checkpoint property: for a generated program (difftest/program.ts) and a cut point, running
 * it under snapvisor, checkpointing the sandbox at the cut (which kills it) and restoring the
 * checkpoint gives the same trace as running it straight through. The executor prints `C`
 * after the cut step and waits for a file `go` in its directory; the test checkpoints when it
 * sees that line, makes the file on the host (the sandbox sees it through its lower layer), and
 * restores: the output before the checkpoint plus the restored run's output must be the whole trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Workspace, runProcess, REPO_ROOT } from './difftest/runner.js';
import { programArb, programText, type Program } from './difftest/program.js';
import { compareProgram, parseTrace } from './difftest/trace.js';
import { snapvisor, snapvisorStreaming } from '../test/helpers.js';

const SEED = 20261202, CASES = 6;
const CLI = path.join(REPO_ROOT, 'dist', 'bundle', 'main.js');

let ws: Workspace;
beforeAll(() => { ws = new Workspace(); });
afterAll(() => ws?.dispose());

async function straight(progFile: string): Promise<string> {
  const r = await runProcess([process.execPath, CLI, 'run', '--cwd', ws.freshDir('straight'), '--', ws.executor, progFile], REPO_ROOT, 60_000);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

async function cutAndRestore(progFile: string, cut: number): Promise<{ before: string; after: string }> {
  const root = ws.freshDir('root'), store = ws.freshDir('store');
  const name = `dt-${randomBytes(4).toString('hex')}`;
  const dir = ws.freshDir('cut');
  const run = snapvisorStreaming(['--root', root, 'run', '--name', name, '--cwd', dir, '--', ws.executor, progFile, '0', String(cut)], { timeoutMs: 90_000 });
  await run.waitFor((l) => l === 'C', 30_000);
  const cp = await snapvisor(['--root', root, 'checkpoint', name, '--store', store], { timeoutMs: 30_000 });
  expect(cp.stderr).toBe('');
  expect(cp.status).toBe(0);
  expect(await run.done).toBe(137);
  const id = cp.stdout.toString().trim().split(/\s+/).pop()!;
  fs.writeFileSync(path.join(dir, 'go'), '');
  const restored = await snapvisor(['restore', id, '--store', store], { timeoutMs: 60_000 });
  expect(restored.stderr).toBe('');
  expect(restored.status).toBe(0);
  return { before: run.lines.join('\n') + '\n', after: restored.stdout.toString('latin1') };
}

describe('checkpoint property', () => {
  const cases = fc.sample(fc.tuple(programArb(16), fc.nat()), { seed: SEED, numRuns: CASES })
    .map(([p, n]): [Program, number] => [p, n % p.length]);

  it.each(cases.map((c, i) => [i, ...c] as const))('program %i: checkpoint + kill + restore at the cut gives the same trace as a straight run', async (_i, program, cut) => {
    const progFile = path.join(ws.freshDir('programs'), 'programs.txt');
    fs.writeFileSync(progFile, programText(program, 0));
    const whole = parseTrace(await straight(progFile)).get(0)!;
    const { before, after } = await cutAndRestore(progFile, cut);
    const resumed = parseTrace(before + after).get(0)!;
    expect(resumed.cut).toBe(true);
    const diff = compareProgram(whole, resumed);
    expect(diff, `cut after step ${cut}; program:\n${programText(program, 0)}\nstraight:\n${whole.steps.map((s) => s.raw).join('\n')}\nresumed:\n${before}${after}`).toBeUndefined();
  }, 120_000);
});
