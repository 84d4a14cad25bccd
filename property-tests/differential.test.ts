/**
 * Differential property: generated syscall programs (property-tests/difftest/program.ts) run
 * by the executor guest (difftest/executor.c, compiled here with gcc -static) give the same
 * trace natively and under snapvisor, step by step, after the normalizations listed in
 * difftest/trace.ts. A difference is either listed in difftest/known-differences.ts (with its
 * reason, owner and a regression program) or fails the test with the shrunk program.
 * docs/differential-testing.md explains the format and how to run a long campaign.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Workspace, runBatch, describeFinding, explain } from './difftest/runner.js';
import { checkSeed, failureText } from './difftest/property.js';
import { parseProgram } from './difftest/program.js';
import { KNOWN_DIFFERENCES } from './difftest/known-differences.js';
import { FIXED_DIFFERENCES } from './difftest/regressions.js';

/** CI's fixed seed: the same 500 programs every run. */
export const CI_SEED = 20261201;
const PROGRAMS = 500;

let ws: Workspace;
beforeAll(() => { ws = new Workspace(); });
afterAll(() => ws?.dispose());

describe('differential property tests against Linux', () => {
  it(`${PROGRAMS} generated programs (seed ${CI_SEED}) trace the same natively and under snapvisor, but for known differences`, async () => {
    const started = Date.now();
    const r = await checkSeed(ws, CI_SEED, PROGRAMS, { batchSize: 50, shrink: true });
    console.log(`differential: ${r.programs} programs in ${((Date.now() - started) / 1000).toFixed(1)} s; known differences hit: ${JSON.stringify(Object.fromEntries(r.known))}`);
    expect(r.programs).toBe(PROGRAMS);
    expect(r.failures.map(failureText)).toEqual([]);
  }, 900_000);

  it('the known-differences table is accurate: each regression program still shows exactly its difference', async () => {
    const programs = KNOWN_DIFFERENCES.map((k) => parseProgram(k.regression));
    const r = await runBatch(ws, programs);
    const byProgram = new Map(r.findings.map((f) => [f.diff.programId, f]));
    const report = KNOWN_DIFFERENCES.map((k, id) => {
      const f = byProgram.get(id);
      if (!f) return `${k.name}: no longer differs (fixed? then remove it from property-tests/difftest/known-differences.ts)`;
      const known = explain(f.diff, f.program);
      if (known !== k) return `${k.name}: differs otherwise now (${known ? `explained as ${known.name}` : 'unexplained'}):\n${describeFinding(f, r.native.get(id), r.sandbox.get(id))}`;
      return `${k.name}: ok`;
    });
    expect(report).toEqual(KNOWN_DIFFERENCES.map((k) => `${k.name}: ok`));
  }, 120_000);
  it('differences found and fixed stay fixed: each named regression program traces the same natively and under snapvisor', async () => {
    const r = await runBatch(ws, FIXED_DIFFERENCES.map((x) => parseProgram(x.program)));
    const byProgram = new Map(r.findings.map((f) => [f.diff.programId, f]));
    expect(r.native.size).toBe(FIXED_DIFFERENCES.length);
    const report = FIXED_DIFFERENCES.map((x, id) => {
      const f = byProgram.get(id);
      return f ? `${x.name}: differs again:\n${describeFinding(f, r.native.get(id), r.sandbox.get(id))}` : `${x.name}: ok`;
    });
    expect(report).toEqual(FIXED_DIFFERENCES.map((x) => `${x.name}: ok`));
  }, 120_000);
});
