/**
 * `npm run property -- [--runs N] [--seed S] [--batch B] [--replay PATH]`: a long
 * differential campaign (docs/differential-testing.md). Runs N generated programs (default
 * 1000) of seed S (default: random, printed) natively and under snapvisor, prints each
 * unexplained difference with its seed and path and the program fast-check shrank it to,
 * and a summary; exits 1 if any difference was unexplained. `--replay PATH` runs only
 * program PATH of seed S, alone, and shrinks it.
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Workspace, runBatch, describeFinding } from './runner.js';
import { checkSeed, failureText, shrink } from './property.js';
import { programArb } from './program.js';
import fc from 'fast-check';

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({ options: { runs: { type: 'string' }, seed: { type: 'string' }, batch: { type: 'string' }, replay: { type: 'string' } } }).values;
  } catch (e) {
    process.stderr.write(`property: ${(e as Error).message}\n`);
    return 2;
  }
  const int = (v: string | undefined, name: string, dflt: number) => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v)) throw new Error(`--${name}: '${v}' is not a whole number`);
    return Number(v);
  };
  let runs: number, seed: number, batch: number, replay: number | undefined;
  try {
    runs = int(args.runs, 'runs', 1000);
    seed = int(args.seed, 'seed', randomInt(2 ** 31));
    batch = int(args.batch, 'batch', 50);
    replay = args.replay === undefined ? undefined : int(args.replay, 'replay', 0);
  } catch (e) {
    process.stderr.write(`property: ${(e as Error).message}\n`);
    return 2;
  }
  const ws = new Workspace();
  try {
    if (replay !== undefined) {
      const [program] = fc.sample(programArb(), { seed, numRuns: replay + 1 }).slice(replay);
      const r = await runBatch(ws, [program]);
      const f = r.findings[0];
      if (!f) { console.log(`seed ${seed} path ${replay}: no difference`); return 0; }
      console.log(describeFinding(f, r.native.get(0), r.sandbox.get(0)));
      if (f.known) { console.log(`(known difference: ${f.known.name})`); return 0; }
      const s = await shrink(ws, seed, replay);
      if (s) console.log(`shrunk to ${s.program.length} step(s):\n${s.report}`);
      return 1;
    }
    console.log(`differential campaign: ${runs} programs, seed ${seed}, batches of ${batch}`);
    const started = Date.now();
    let lastReport = 0;
    const r = await checkSeed(ws, seed, runs, {
      batchSize: batch,
      shrink: true,
      onFailure: (f) => console.log(`  unexplained difference: seed ${f.seed} path ${f.path} (${f.finding.diff.op}: native '${f.finding.diff.native}', snapvisor '${f.finding.diff.sandbox}'); shrunk at the end`),
      onBatch: (done) => {
        if (Date.now() - lastReport > 30_000 || done === runs) {
          lastReport = Date.now();
          console.log(`  ${done}/${runs} programs, ${((Date.now() - started) / 1000).toFixed(0)} s`);
        }
      },
    });
    for (const f of r.failures) console.log('\n' + failureText(f));
    console.log(`\n${r.programs} programs in ${((Date.now() - started) / 1000).toFixed(0)} s, seed ${seed}: ${r.failures.length} unexplained difference(s)${r.failures.length ? ` (paths ${r.failures.map((f) => f.path).join(', ')})` : ''}`);
    console.log(`known differences hit: ${[...r.known].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
    return r.failures.length ? 1 : 0;
  } finally {
    ws.dispose();
  }
}

main().then((code) => { process.exitCode = code; }, (e: Error) => { process.stderr.write(`property: ${e.message}\n`); process.exitCode = 1; });
