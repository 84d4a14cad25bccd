/**
 * The differential property over many programs, cheaply: the programs of fast-check runs
 * 0..N-1 for a seed (fc.sample gives exactly the values fc.assert would try, in order) are
 * run in batches — one executor guest, one snapvisor start, for many programs — and only a
 * program that shows an unexplained difference is handed back to fast-check (seed + path)
 * to be replayed alone and shrunk.
 */
import fc from 'fast-check';
import { programArb, programText, type Program } from './program.js';
import { Workspace, runBatch, describeFinding, type Finding } from './runner.js';

/** One program's unexplained difference: where it came from and its shrunk form. */
export interface Failure {
  seed: number;
  /** Its fast-check path (the run index): `npm run property -- --seed SEED --replay PATH` replays it. */
  path: number;
  finding: Finding;
  /** The account of the difference in the original program. */
  report: string;
  shrunk?: { program: Program; report: string };
}

export interface CampaignResult {
  programs: number;
  /** Known differences hit, by name. */
  known: Map<string, number>;
  failures: Failure[];
}

/** Run programs 0..count-1 of `seed` in batches of `batchSize`; shrink each unexplained difference when `shrink`. */
export async function checkSeed(ws: Workspace, seed: number, count: number, opts: { batchSize?: number; shrink?: boolean; maxSteps?: number; onBatch?: (done: number) => void; onFailure?: (f: Failure) => void } = {}): Promise<CampaignResult> {
  const batchSize = opts.batchSize ?? 50;
  const arb = programArb(opts.maxSteps);
  const programs = fc.sample(arb, { seed, numRuns: count });
  const result: CampaignResult = { programs: 0, known: new Map(), failures: [] };
  for (let start = 0; start < programs.length; start += batchSize) {
    const batch = programs.slice(start, start + batchSize);
    const r = await runBatch(ws, batch);
    result.programs += batch.length;
    for (const f of r.findings) {
      if (f.known) { result.known.set(f.known.name, (result.known.get(f.known.name) ?? 0) + 1); continue; }
      const path = start + f.diff.programId;
      const failure: Failure = { seed, path, finding: f, report: describeFinding(f, r.native.get(f.diff.programId), r.sandbox.get(f.diff.programId)) };
      result.failures.push(failure);
      opts.onFailure?.(failure);
    }
    opts.onBatch?.(result.programs);
  }
  if (opts.shrink) for (const failure of result.failures) failure.shrunk = await shrink(ws, seed, failure.path, opts.maxSteps);
  return result;
}

/** Replay run `path` of `seed` alone and let fast-check shrink it; undefined if it no longer fails alone. */
export async function shrink(ws: Workspace, seed: number, path: number, maxSteps?: number): Promise<{ program: Program; report: string } | undefined> {
  let last: { program: Program; report: string } | undefined;
  const out = await fc.check(fc.asyncProperty(programArb(maxSteps), async (p) => {
    const r = await runBatch(ws, [p]);
    const bad = r.findings.find((f) => !f.known);
    if (!bad) return true;
    last = { program: p, report: describeFinding(bad, r.native.get(0), r.sandbox.get(0)) };
    return false;
  }), { seed, path: String(path), endOnFailure: false });
  return out.failed ? last : undefined;
}

/** A failure as text: seed, path, the shrunk program's account (or the original's). */
export function failureText(f: Failure): string {
  const head = `FAIL seed=${f.seed} path=${f.path} (replay: npm run property -- --seed ${f.seed} --replay ${f.path})`;
  if (!f.shrunk) return `${head}\n${f.report}`;
  return `${head}\nshrunk to ${f.shrunk.program.length} step(s):\n${f.shrunk.report}\n(shrunk program in executor form:\n${programText(f.shrunk.program, 0)})`;
}
